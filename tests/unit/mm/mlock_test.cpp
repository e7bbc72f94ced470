// SPDX-License-Identifier: MIT
// mlock, mlock2, munlock, mlockall, munlockall and mseal: what the kernel
// cannot easily be asked here, or shows only through /proc text the op
// scripts do not compare (docs/research/linux-anon-surface.md sections 2,
// 3 and 7 have the rules, verified on Linux 6.18): locked_vm after every
// kind of change, which pages get faulted in, mm->def_flags, RLIMIT_MEMLOCK
// and CAP_IPC_LOCK, the map_count limit, what a seal refuses, the smaps
// text, the lock held while populating, concurrency and allocation
// failures.  The results, VMA boundaries, VmFlags, Locked: and VmLck of
// the same calls are compared with the host kernel by
// tests/unit/api/mlock_diff_test.cpp and tests/scripts/mlock*.ops.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "vmspace/mman.h"
#include "fault/fault.h"
#include "mem/phys_mem.h"
#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"
#include "support/test_host.h"
#include "sync/fail_nth.h"
#include "sync/rcu.h"
#include "support/smaps.h"
#include "vmspace/address_space.h"

namespace vmspace::mm {
namespace {

constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kPage = 4096;
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr int kPriv = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
constexpr int kShared = MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED;

constexpr std::uint64_t P(std::uint64_t i) { return kBase + i * kPage; }

class Mlock : public ::testing::TestWithParam<LockMode> {
 protected:
  ~Mlock() override { rcu::barrier(); }
  AddressSpaceOptions opts() const {
    AddressSpaceOptions o = test::test_options(GetParam());
    o.phys_bytes = 32ull << 20;
    o.phys_pretouch = false;
    return o;
  }
};

// The pages of VM_LOCKED VMAs: what locked_vm must be when nothing drifted
// (only MREMAP_DONTUNMAP makes Linux's count drift).
std::uint64_t locked_pages(AddressSpace& as) {
  MmStruct* mm = as.mm();
  mmap_read_lock(mm);
  std::uint64_t n = 0;
  for (Vma* v = find_vma(mm, 0); v != nullptr; v = vma_next(mm, v))
    if (v->vm_flags & VM_LOCKED) n += v->pages();
  mmap_read_unlock(mm);
  return n;
}

std::uint64_t locked_vm(AddressSpace& as) {
  mmap_read_lock(as.mm());
  const std::uint64_t n = as.mm()->locked_vm;
  mmap_read_unlock(as.mm());
  return n;
}

vm_flags_t flags_at(AddressSpace& as, std::uint64_t addr) {
  MmStruct* mm = as.mm();
  mmap_read_lock(mm);
  Vma* v = vma_lookup(mm, addr);
  const vm_flags_t f = v != nullptr ? v->vm_flags : ~vm_flags_t{0};
  mmap_read_unlock(mm);
  return f;
}

using test::smaps_line;

std::string vmflags(AddressSpace& as, std::uint64_t start) { return smaps_line(as, start, "VmFlags:"); }

// "Locked: N kB" -> N
std::uint64_t locked_kb(AddressSpace& as, std::uint64_t start) {
  std::istringstream in(smaps_line(as, start, "Locked:").substr(7));
  std::uint64_t kb = ~std::uint64_t{0};
  in >> kb;
  return kb;
}

mem::pte_t pte(AddressSpace& as, std::uint64_t va) {
  rcu::ReadGuard g;
  return as.mm()->pgtables.lookup(va);
}
bool present(AddressSpace& as, std::uint64_t va) { return mem::pte_present(pte(as, va)); }
// A page of its own (not the zero page) is mapped at va.
bool has_page(AddressSpace& as, std::uint64_t va) {
  const mem::pte_t p = pte(as, va);
  return mem::pte_present(p) && mem::pte_pfn(p) != as.phys()->zero_pfn();
}
std::uint64_t present_pages(AddressSpace& as, std::uint64_t start, std::uint64_t n) {
  std::uint64_t c = 0;
  for (std::uint64_t i = 0; i < n; ++i) c += present(as, start + i * kPage) ? 1 : 0;
  return c;
}

void expect_valid(AddressSpace& as, const char* where) {
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << where << ": " << why;
  EXPECT_EQ(locked_vm(as), locked_pages(as)) << where << "\n" << as.maps();
}

// ---------------------------------------------------------------------------
// mlock / munlock / mlock2 on ranges: splits, merges, locked_vm.

TEST_P(Mlock, SplitsMergesAndCounts) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(P(0), 8 * kPage, kRW, kPriv), static_cast<long>(P(0)));
  EXPECT_EQ(as.mlock(P(2), 2 * kPage), 0);
  EXPECT_EQ(as.map_count(), 3);
  EXPECT_EQ(locked_vm(as), 2u);
  EXPECT_EQ(vmflags(as, P(2)), "VmFlags: rd wr mr mw me lo ac ");
  // Next to a locked VMA: merges with it.
  EXPECT_EQ(as.mlock(P(4), kPage), 0);
  EXPECT_EQ(as.map_count(), 3);
  EXPECT_EQ(locked_vm(as), 3u);
  // Locking what is locked counts nothing.
  EXPECT_EQ(as.mlock(P(2), 3 * kPage), 0);
  EXPECT_EQ(locked_vm(as), 3u);
  // On-fault and plain locking do not merge, and switching counts nothing.
  EXPECT_EQ(as.mlock2(P(3), kPage, MLOCK_ONFAULT), 0);
  EXPECT_EQ(as.map_count(), 5);
  EXPECT_EQ(locked_vm(as), 3u);
  EXPECT_EQ(vmflags(as, P(3)), "VmFlags: rd wr mr mw me lo lf ac ");
  EXPECT_EQ(as.mlock(P(3), kPage), 0);
  EXPECT_EQ(as.map_count(), 3);
  // Unlocking everything folds the pieces back into one VMA.
  EXPECT_EQ(as.munlock(P(0), 8 * kPage), 0);
  EXPECT_EQ(as.map_count(), 1);
  EXPECT_EQ(locked_vm(as), 0u);
  // No alignment check: the range widens to whole pages.
  EXPECT_EQ(as.mlock(P(1) + 0x100, kPage), 0);
  EXPECT_EQ(locked_vm(as), 2u);
  EXPECT_EQ(flags_at(as, P(1)) & VM_LOCKED, VM_LOCKED);
  EXPECT_EQ(flags_at(as, P(2)) & VM_LOCKED, VM_LOCKED);
  EXPECT_EQ(as.munlock(P(2) + 1, 1), 0);  // unlocks page 2 only
  EXPECT_EQ(locked_vm(as), 1u);
  // A length that rounds to 0 asks for nothing, even on unmapped memory;
  // one whose end wraps is -EINVAL.
  EXPECT_EQ(as.mlock(P(100), 0), 0);
  EXPECT_EQ(as.mlock(P(0), ~std::uint64_t{0}), 0);
  EXPECT_EQ(as.munlock(P(100), 0), 0);
  EXPECT_EQ(as.mlock(~std::uint64_t{0} & kPageMask, 2 * kPage), -EINVAL);
  EXPECT_EQ(as.munlock(~std::uint64_t{0} & kPageMask, 2 * kPage), -EINVAL);
  EXPECT_EQ(as.mlock2(P(0), kPage, 2), -EINVAL);
  EXPECT_EQ(as.mlock2(P(0), kPage, ~0u), -EINVAL);
  // munmap and MAP_FIXED over locked pages give their count back.
  ASSERT_EQ(as.mlock(P(0), 8 * kPage), 0);
  EXPECT_EQ(locked_vm(as), 8u);
  EXPECT_EQ(as.munmap(P(6), 2 * kPage), 0);
  EXPECT_EQ(locked_vm(as), 6u);
  EXPECT_EQ(as.mmap(P(4), 2 * kPage, kRW, kPriv), static_cast<long>(P(4)));
  EXPECT_EQ(locked_vm(as), 4u);
  expect_valid(as, "end");
}

TEST_P(Mlock, HolesApplyThePartBefore) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(P(0), 4 * kPage, kRW, kPriv), static_cast<long>(P(0)));
  ASSERT_EQ(as.mmap(P(6), 2 * kPage, kRW, kPriv), static_cast<long>(P(6)));
  const std::string before = as.maps();
  // Starts in a hole: nothing changes.
  EXPECT_EQ(as.mlock(P(5), 2 * kPage), -ENOMEM);
  EXPECT_EQ(as.munlock(P(4), 4 * kPage), -ENOMEM);
  EXPECT_EQ(as.mlock(P(50), kPage), -ENOMEM);
  EXPECT_EQ(as.maps(), before);
  EXPECT_EQ(locked_vm(as), 0u);
  // A hole inside: the VMAs before it are locked (and populated).
  EXPECT_EQ(as.mlock(P(1), 7 * kPage), -ENOMEM);
  EXPECT_EQ(locked_vm(as), 3u);
  EXPECT_EQ(flags_at(as, P(0)) & VM_LOCKED, 0u);
  EXPECT_EQ(flags_at(as, P(1)) & VM_LOCKED, VM_LOCKED);
  EXPECT_EQ(flags_at(as, P(6)) & VM_LOCKED, 0u);
  EXPECT_EQ(present_pages(as, P(1), 3), 0u) << "the walk failed before populating";
  // Ends in a hole: the mapped part is done.
  EXPECT_EQ(as.mlock(P(6), 4 * kPage), -ENOMEM);
  EXPECT_EQ(locked_vm(as), 5u);
  // munlock stops at the hole too: [6,8) stays locked.
  EXPECT_EQ(as.munlock(P(2), 8 * kPage), -ENOMEM);
  EXPECT_EQ(locked_vm(as), 3u);
  EXPECT_EQ(flags_at(as, P(6)) & VM_LOCKED, VM_LOCKED);
  expect_valid(as, "end");
}

// ---------------------------------------------------------------------------
// Populating.

TEST_P(Mlock, PopulatesUnlessOnFault) {
  AddressSpace as(opts());
  const AddressSpaceOptions o = opts();
  ASSERT_EQ(as.mmap(P(0), 4 * kPage, kRW, kPriv), static_cast<long>(P(0)));
  ASSERT_EQ(as.mmap(P(8), 4 * kPage, kRW, kPriv), static_cast<long>(P(8)));
  EXPECT_EQ(as.mlock(P(0), 4 * kPage), 0);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(has_page(as, P(i))) << i;  // write faults: own pages
  EXPECT_EQ(smaps_line(as, P(0), "Locked:"), "Locked:               16 kB");
  EXPECT_EQ(as.mlock2(P(8), 4 * kPage, MLOCK_ONFAULT), 0);
  EXPECT_EQ(present_pages(as, P(8), 4), 0u);
  EXPECT_EQ(locked_vm(as), 8u) << "on-fault locking counts the whole range";
  EXPECT_EQ(locked_kb(as, P(8)), 0u);
  ASSERT_TRUE(as.fill(P(9), 1, 1).ok());
  EXPECT_EQ(locked_kb(as, P(8)), 4u);
  // Switching to plain locking populates.
  EXPECT_EQ(as.mlock(P(8), 4 * kPage), 0);
  EXPECT_EQ(present_pages(as, P(8), 4), 4u);

  // [NONE][RW]: both locked, the walk stops at the inaccessible VMA.
  ASSERT_EQ(as.mmap(P(20), 2 * kPage, PROT_NONE, kPriv), static_cast<long>(P(20)));
  ASSERT_EQ(as.mmap(P(22), 2 * kPage, kRW, kPriv), static_cast<long>(P(22)));
  EXPECT_EQ(as.mlock(P(20), 4 * kPage), -ENOMEM);
  EXPECT_EQ(flags_at(as, P(20)) & VM_LOCKED, VM_LOCKED);
  EXPECT_EQ(flags_at(as, P(22)) & VM_LOCKED, VM_LOCKED);
  EXPECT_EQ(present_pages(as, P(22), 2), 0u);
  EXPECT_EQ(locked_vm(as), 12u);
  // [RW][NONE]: the RW part is populated first.
  ASSERT_EQ(as.mmap(P(30), 2 * kPage, kRW, kPriv), static_cast<long>(P(30)));
  ASSERT_EQ(as.mmap(P(32), 2 * kPage, PROT_NONE, kPriv), static_cast<long>(P(32)));
  EXPECT_EQ(as.mlock(P(30), 4 * kPage), -ENOMEM);
  EXPECT_EQ(present_pages(as, P(30), 2), 2u);
  // On fault, PROT_NONE is fine.
  ASSERT_EQ(as.mmap(P(40), 2 * kPage, PROT_NONE, kPriv), static_cast<long>(P(40)));
  EXPECT_EQ(as.mlock2(P(40), 2 * kPage, MLOCK_ONFAULT), 0);
  // Write-only memory is populated (with write faults); read-only private
  // memory maps the zero page (not counted in Locked) where there is one.
  ASSERT_EQ(as.mmap(P(50), 2 * kPage, PROT_WRITE, kPriv), static_cast<long>(P(50)));
  EXPECT_EQ(as.mlock(P(50), 2 * kPage), 0);
  EXPECT_TRUE(has_page(as, P(50)) && has_page(as, P(51)));
  ASSERT_EQ(as.mmap(P(60), 2 * kPage, PROT_READ, kPriv), static_cast<long>(P(60)));
  EXPECT_EQ(as.mlock(P(60), 2 * kPage), 0);
  EXPECT_EQ(present_pages(as, P(60), 2), 2u);
  EXPECT_EQ(locked_kb(as, P(60)), o.zero_page ? 0u : 8u);
  // Execute-only memory: readable (populated) unless a protection key
  // makes it execute-only, then GUP refuses it: -ENOMEM.
  ASSERT_EQ(as.mmap(P(70), 2 * kPage, PROT_EXEC, kPriv), static_cast<long>(P(70)));
  EXPECT_EQ(as.mlock(P(70), 2 * kPage), o.exec_only_pkey ? -ENOMEM : 0);
  EXPECT_EQ(present_pages(as, P(70), 2), o.exec_only_pkey ? 0u : 2u);
  // Shared anonymous memory: its shmem pages.
  ASSERT_EQ(as.mmap(P(80), 2 * kPage, kRW, kShared), static_cast<long>(P(80)));
  EXPECT_EQ(as.mlock(P(80), 2 * kPage), 0);
  EXPECT_EQ(locked_kb(as, P(80)), 8u);
  expect_valid(as, "end");
}

// Running out of frames while populating is -EAGAIN (GUP's -ENOMEM,
// converted as Linux does), with the flags set; mlockall ignores it.
TEST_P(Mlock, PopulateOutOfMemory) {
  AddressSpaceOptions o = opts();
  o.phys_bytes = 64 * kPage;
  AddressSpace as(o);
  ASSERT_EQ(as.mmap(P(0), 256 * kPage, kRW, kPriv), static_cast<long>(P(0)));
  EXPECT_EQ(as.mlock(P(0), 256 * kPage), -EAGAIN);
  EXPECT_EQ(locked_vm(as), 256u);
  EXPECT_GT(present_pages(as, P(0), 256), 0u);
  EXPECT_EQ(as.munlockall(), 0);
  EXPECT_EQ(as.mlockall(MCL_CURRENT), 0);
  EXPECT_EQ(locked_vm(as), 256u);
  expect_valid(as, "end");
}

// MCL_FUTURE|MCL_ONFAULT, mlock2(MLOCK_ONFAULT): nothing else populates an
// on-fault locked VMA either (Linux's populate_vma_page_range returns at
// once for it): MAP_POPULATE, mprotect making it writable, mremap growth.
TEST_P(Mlock, OnFaultVmasAreNeverPopulated) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mlockall(MCL_FUTURE | MCL_ONFAULT), 0);
  ASSERT_EQ(as.mmap(P(0), 4 * kPage, kRW, kPriv | MAP_POPULATE), static_cast<long>(P(0)));
  EXPECT_EQ(present_pages(as, P(0), 4), 0u);
  EXPECT_EQ(vmflags(as, P(0)), "VmFlags: rd wr mr mw me lo lf ac ");
  ASSERT_EQ(as.munlockall(), 0);
  // mprotect of locked private read-only memory to writable.
  ASSERT_EQ(as.mmap(P(10), 2 * kPage, PROT_READ, kPriv), static_cast<long>(P(10)));
  ASSERT_EQ(as.mmap(P(20), 2 * kPage, PROT_READ, kPriv), static_cast<long>(P(20)));
  ASSERT_EQ(as.mlock2(P(10), 2 * kPage, MLOCK_ONFAULT), 0);
  ASSERT_EQ(as.mlock(P(20), 2 * kPage), 0);
  EXPECT_EQ(as.mprotect(P(10), 2 * kPage, kRW), 0);
  EXPECT_EQ(as.mprotect(P(20), 2 * kPage, kRW), 0);
  EXPECT_EQ(present_pages(as, P(10), 2), 0u);
  EXPECT_TRUE(has_page(as, P(20)) && has_page(as, P(21))) << "plain locked: COW broken at once";
  // mremap growth.
  ASSERT_EQ(as.mmap(P(30), 2 * kPage, kRW, kPriv), static_cast<long>(P(30)));
  ASSERT_EQ(as.mmap(P(40), 2 * kPage, kRW, kPriv), static_cast<long>(P(40)));
  ASSERT_EQ(as.mlock2(P(30), 2 * kPage, MLOCK_ONFAULT), 0);
  ASSERT_EQ(as.mlock(P(40), 2 * kPage), 0);
  EXPECT_EQ(as.mremap(P(30), 2 * kPage, 4 * kPage, 0), static_cast<long>(P(30)));
  EXPECT_EQ(as.mremap(P(40), 2 * kPage, 4 * kPage, 0), static_cast<long>(P(40)));
  EXPECT_EQ(present_pages(as, P(30), 4), 0u);
  EXPECT_EQ(present_pages(as, P(40), 4), 4u);
  expect_valid(as, "end");
}

// Populating runs under the mmap_lock downgraded to read (seed 003): no
// writer can get in (no VMA the walk found can go away), faults and other
// readers can.
TEST_P(Mlock, PopulatesUnderTheReadLock) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(P(0), 4 * kPage, kRW, kPriv), static_cast<long>(P(0)));
  ASSERT_EQ(as.mmap(P(10), 4 * kPage, kRW, kPriv), static_cast<long>(P(10)));
  struct Ctx {
    AddressSpace* as;
    int calls = 0;
    bool write_refused = false, read_allowed = false, fault_ran = false;
  } ctx{&as};
  fault::FaultHooks hooks;
  hooks.arg = &ctx;
  hooks.populate_page = [](void* arg) {
    auto* c = static_cast<Ctx*>(arg);
    if (c->calls++ != 0) return;
    // Another thread (this one holds the lock: lockdep would call a
    // try-lock here recursion) finds the write side taken and the read
    // side free, and a fault on another VMA completes meanwhile.
    auto f = std::async(std::launch::async, [c] {
      MmStruct* mm = c->as->mm();
      c->write_refused = !mmap_write_trylock(mm);
      if (!c->write_refused) mmap_write_unlock(mm);
      c->read_allowed = mmap_read_trylock(mm);
      if (c->read_allowed) mmap_read_unlock(mm);
      return c->as->fill(P(11), 7, 1).ok();
    });
    c->fault_ran = f.wait_for(std::chrono::seconds(20)) == std::future_status::ready && f.get();
  };
  fault::set_fault_hooks(&hooks);
  const int r = as.mlock(P(0), 4 * kPage);
  fault::set_fault_hooks(nullptr);
  EXPECT_EQ(r, 0);
  EXPECT_EQ(ctx.calls, 4);
  EXPECT_TRUE(ctx.write_refused);
  EXPECT_TRUE(ctx.read_allowed);
  EXPECT_TRUE(ctx.fault_ran);
  // Nothing is left held.
  ASSERT_TRUE(mmap_write_trylock(as.mm()));
  mmap_write_unlock(as.mm());
}

// ---------------------------------------------------------------------------
// RLIMIT_MEMLOCK and CAP_IPC_LOCK.

TEST_P(Mlock, NoLockingWithoutLimitOrCapability) {
  AddressSpaceOptions o = opts();
  o.rlimit_memlock = 0;
  o.cap_ipc_lock = false;
  AddressSpace as(o);
  ASSERT_EQ(as.mmap(P(0), 4 * kPage, kRW, kPriv), static_cast<long>(P(0)));
  EXPECT_EQ(as.mlock(P(0), kPage), -EPERM);
  EXPECT_EQ(as.mlock(P(0), 0), -EPERM) << "even for len 0";
  EXPECT_EQ(as.mlock2(P(0), kPage, MLOCK_ONFAULT), -EPERM);
  EXPECT_EQ(as.mlock2(P(0), kPage, 4), -EINVAL) << "flags first";
  EXPECT_EQ(as.munlock(P(0), kPage), 0);
  EXPECT_EQ(as.mlockall(MCL_FUTURE), -EPERM);
  EXPECT_EQ(as.mlockall(0), -EINVAL) << "flags first";
  EXPECT_EQ(as.mlockall(MCL_ONFAULT), -EINVAL);
  EXPECT_EQ(as.mlockall(8), -EINVAL);
  EXPECT_EQ(as.munlockall(), 0);
  EXPECT_EQ(as.mmap(P(8), kPage, kRW, kPriv | MAP_LOCKED), -EPERM);
  EXPECT_EQ(as.mseal(P(0), kPage), 0) << "sealing needs no limit";
  EXPECT_EQ(as.map_count(), 2);
  // With the capability, a limit of 0 means nothing.
  AddressSpaceOptions c = o;
  c.cap_ipc_lock = true;
  AddressSpace cap(c);
  ASSERT_EQ(cap.mmap(P(0), 4 * kPage, kRW, kPriv), static_cast<long>(P(0)));
  EXPECT_EQ(cap.mlock(P(0), 4 * kPage), 0);
  EXPECT_EQ(cap.mlockall(MCL_CURRENT | MCL_FUTURE), 0);
  EXPECT_EQ(cap.mmap(P(8), kPage, kRW, kPriv | MAP_LOCKED), static_cast<long>(P(8)));
  EXPECT_EQ(locked_vm(cap), 5u);
}

TEST_P(Mlock, MemlockLimit) {
  AddressSpaceOptions o = opts();
  o.rlimit_memlock = 4 * kPage;
  o.cap_ipc_lock = false;
  AddressSpace as(o);
  ASSERT_EQ(as.mmap(P(0), 8 * kPage, kRW, kPriv), static_cast<long>(P(0)));
  EXPECT_EQ(as.mlock(P(0), 2 * kPage), 0);
  // 2 locked + 4 asked is over, but 2 of the 4 are locked already.
  EXPECT_EQ(as.mlock(P(0), 4 * kPage), 0);
  EXPECT_EQ(locked_vm(as), 4u);
  EXPECT_EQ(as.mlock(P(0), 5 * kPage), -ENOMEM);
  EXPECT_EQ(locked_vm(as), 4u);
  // The limit is checked before the range is looked at.
  EXPECT_EQ(as.mlock(P(100), kPage), -ENOMEM);
  EXPECT_EQ(as.mlock2(P(4), kPage, MLOCK_ONFAULT), -ENOMEM);
  // mmap and mremap say -EAGAIN for the same thing.
  EXPECT_EQ(as.mmap(P(20), kPage, kRW, kPriv | MAP_LOCKED), -EAGAIN);
  EXPECT_EQ(as.mremap(P(0), 4 * kPage, 5 * kPage, MREMAP_MAYMOVE), -EAGAIN);
  EXPECT_EQ(as.munlock(P(3), kPage), 0);
  EXPECT_EQ(as.mlock2(P(4), kPage, MLOCK_ONFAULT), 0);
  EXPECT_EQ(locked_vm(as), 4u);
  // mlockall(MCL_CURRENT) compares the whole space (8 pages) with it.
  EXPECT_EQ(as.mlockall(MCL_CURRENT), -ENOMEM);
  EXPECT_EQ(as.mlockall(MCL_CURRENT | MCL_ONFAULT), -ENOMEM);
  EXPECT_EQ(as.mm()->def_flags, 0u);
  // MCL_FUTURE alone is not checked; later mappings are.
  EXPECT_EQ(as.mlockall(MCL_FUTURE), 0);
  EXPECT_EQ(as.mmap(P(20), kPage, kRW, kPriv), -EAGAIN);
  EXPECT_EQ(as.munlock(P(0), 2 * kPage), 0);
  EXPECT_EQ(as.mmap(P(20), kPage, kRW, kPriv), static_cast<long>(P(20)));
  EXPECT_EQ(locked_vm(as), 3u);
  EXPECT_EQ(as.munlockall(), 0);
  EXPECT_EQ(locked_vm(as), 0u);
  // A smaller space fits: MCL_CURRENT with 3 pages mapped.
  ASSERT_EQ(as.munmap(P(0), 32 * kPage), 0);
  ASSERT_EQ(as.mmap(P(0), 3 * kPage, kRW, kPriv), static_cast<long>(P(0)));
  EXPECT_EQ(as.mlockall(MCL_CURRENT), 0);
  EXPECT_EQ(locked_vm(as), 3u);
  expect_valid(as, "end");
}

// ---------------------------------------------------------------------------
// mlockall, munlockall and mm->def_flags.

TEST_P(Mlock, MlockallAndDefFlags) {
  AddressSpace as(opts());
  MmStruct* mm = as.mm();
  ASSERT_EQ(as.mmap(P(0), 2 * kPage, kRW, kPriv), static_cast<long>(P(0)));
  ASSERT_EQ(as.mmap(P(2), 2 * kPage, PROT_READ, kPriv), static_cast<long>(P(2)));
  ASSERT_EQ(as.mmap(P(10), 2 * kPage, PROT_NONE, kPriv), static_cast<long>(P(10)));
  EXPECT_EQ(as.mlockall(MCL_FUTURE), 0);
  EXPECT_EQ(mm->def_flags, VM_LOCKED);
  EXPECT_EQ(locked_vm(as), 0u) << "MCL_FUTURE alone leaves existing VMAs";
  // Later mappings are locked and populated, and merge with each other.
  ASSERT_EQ(as.mmap(P(20), 2 * kPage, kRW, kPriv), static_cast<long>(P(20)));
  ASSERT_EQ(as.mmap(P(22), 2 * kPage, kRW, kPriv), static_cast<long>(P(22)));
  EXPECT_EQ(vmflags(as, P(20)), "VmFlags: rd wr mr mw me lo ac ");
  EXPECT_EQ(smaps_line(as, P(20), "Size:"), "Size:                 16 kB");
  EXPECT_EQ(present_pages(as, P(20), 4), 4u);
  EXPECT_EQ(locked_vm(as), 4u);
  // Droppable memory is never locked, yet populated, and (its flags having
  // had VM_LOCKED when it was placed) does not merge with its like.
  ASSERT_EQ(as.mmap(P(30), 2 * kPage, kRW, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(P(30)));
  ASSERT_EQ(as.mmap(P(32), 2 * kPage, kRW, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(P(32)));
  EXPECT_EQ(vmflags(as, P(30)), "VmFlags: rd wr mr mw me nr wf dd dp ");
  EXPECT_EQ(vmflags(as, P(32)), "VmFlags: rd wr mr mw me nr wf dd dp ");
  EXPECT_EQ(present_pages(as, P(30), 4), 4u);
  EXPECT_EQ(locked_vm(as), 4u);
  // mlock leaves droppable memory alone (no split, not counted) but
  // populates it.
  ASSERT_EQ(as.munlockall(), 0);
  ASSERT_EQ(as.mmap(P(40), 4 * kPage, kRW, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(P(40)));
  const int before = as.map_count();
  EXPECT_EQ(as.mlock(P(41), kPage), 0);
  EXPECT_EQ(as.map_count(), before);
  EXPECT_TRUE(has_page(as, P(41)));
  EXPECT_EQ(locked_vm(as), 0u);
  // MCL_CURRENT: every VMA (PROT_NONE ones too), no split needed; MCL_FUTURE
  // is cleared when not asked for again.
  ASSERT_EQ(as.mlockall(MCL_FUTURE), 0);
  EXPECT_EQ(as.mlockall(MCL_CURRENT), 0);
  EXPECT_EQ(mm->def_flags, 0u);
  EXPECT_EQ(flags_at(as, P(10)) & VM_LOCKED_MASK, VM_LOCKED);
  EXPECT_EQ(flags_at(as, P(40)) & VM_LOCKED_MASK, 0u);
  EXPECT_EQ(as.map_count(), 7);  // [0,2) [2,4) [10,12) [20,24) [30,32) [32,34) [40,44)
  EXPECT_EQ(locked_vm(as), 2u + 2 + 2 + 4);
  ASSERT_EQ(as.mmap(P(50), kPage, kRW, kPriv), static_cast<long>(P(50)));
  EXPECT_EQ(flags_at(as, P(50)) & VM_LOCKED, 0u);
  // MCL_CURRENT | MCL_ONFAULT switches locked VMAs to on-fault, counting
  // nothing new for them.
  EXPECT_EQ(as.mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT), 0);
  EXPECT_EQ(mm->def_flags, VM_LOCKED | VM_LOCKONFAULT);
  EXPECT_EQ(flags_at(as, P(0)) & VM_LOCKED_MASK, VM_LOCKED_MASK);
  EXPECT_EQ(locked_vm(as), 2u + 2 + 2 + 4 + 1);
  ASSERT_EQ(as.mmap(P(60), 2 * kPage, kRW, kPriv), static_cast<long>(P(60)));
  EXPECT_EQ(present_pages(as, P(60), 2), 0u);
  EXPECT_EQ(flags_at(as, P(60)) & VM_LOCKED_MASK, VM_LOCKED_MASK);
  // munlockall: everything unlocked, equal neighbours merge again, future
  // mappings plain.
  EXPECT_EQ(as.munlockall(), 0);
  EXPECT_EQ(mm->def_flags, 0u);
  EXPECT_EQ(locked_vm(as), 0u);
  ASSERT_EQ(as.mmap(P(62), kPage, kRW, kPriv), static_cast<long>(P(62)));
  EXPECT_EQ(flags_at(as, P(62)) & VM_LOCKED_MASK, 0u);
  expect_valid(as, "end");
}

// mlockall and munlockall change whole VMAs: they work at the map_count
// limit, where an mlock that needs a split fails.
TEST_P(Mlock, MapCountLimit) {
  AddressSpaceOptions o = opts();
  o.max_map_count = 3;
  o.cap_ipc_lock = true;
  AddressSpace as(o);
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(as.mmap(P(10 * i), 4 * kPage, kRW, kPriv), static_cast<long>(P(10 * i)));
  const std::string at_limit = as.maps();
  EXPECT_EQ(as.mlock(P(1), kPage), -ENOMEM);    // head split: checked split
  EXPECT_EQ(as.mlock(P(3), kPage), -ENOMEM);    // tail split
  EXPECT_EQ(as.mseal(P(11), kPage), -ENOMEM);   // mseal splits the same way
  EXPECT_EQ(as.maps(), at_limit);
  EXPECT_EQ(locked_vm(as), 0u);
  EXPECT_EQ(as.mlockall(MCL_CURRENT), 0);
  EXPECT_EQ(locked_vm(as), 12u);
  EXPECT_EQ(as.munlockall(), 0);
  EXPECT_EQ(as.mlock(P(0), 4 * kPage), 0);  // a whole VMA needs no split
  EXPECT_EQ(as.munlock(P(0), 4 * kPage), 0);
  // One below the limit a middle lock makes its first split, then fails
  // the second, leaving the first (as Linux), and counts nothing.
  ASSERT_EQ(as.munmap(P(20), 4 * kPage), 0);
  EXPECT_EQ(as.mlock(P(1), 2 * kPage), -ENOMEM);
  EXPECT_EQ(as.map_count(), 3);
  EXPECT_EQ(locked_vm(as), 0u);
  EXPECT_EQ(flags_at(as, P(1)) & VM_LOCKED, 0u);
  expect_valid(as, "end");
}

// ---------------------------------------------------------------------------
// mseal and what a seal refuses.

TEST_P(Mlock, MsealArguments) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(P(0), 4 * kPage, kRW, kPriv), static_cast<long>(P(0)));
  ASSERT_EQ(as.mmap(P(6), 2 * kPage, kRW, kPriv), static_cast<long>(P(6)));
  const std::string before = as.maps();
  EXPECT_EQ(as.mseal(P(0), kPage, 1), -EINVAL);
  EXPECT_EQ(as.mseal(P(0), kPage, 1ul << 32), -EINVAL);
  EXPECT_EQ(as.mseal(P(0) + 1, kPage), -EINVAL);
  EXPECT_EQ(as.mseal(P(0), ~std::uint64_t{0}), -EINVAL);  // rounds up to 0
  EXPECT_EQ(as.mseal(~std::uint64_t{0} & kPageMask, 2 * kPage), -EINVAL);  // wraps
  EXPECT_EQ(as.mseal(P(100), 0), 0);
  // Any unmapped page: nothing sealed.
  EXPECT_EQ(as.mseal(P(0), 8 * kPage), -ENOMEM);  // interior hole
  EXPECT_EQ(as.mseal(P(6), 4 * kPage), -ENOMEM);  // tail hole
  EXPECT_EQ(as.mseal(P(5), 2 * kPage), -ENOMEM);  // starts in a hole
  EXPECT_EQ(as.mseal(0x7ffffffff000, 2 * kPage), -ENOMEM);  // beyond TASK_SIZE: no VMA
  EXPECT_EQ(as.maps(), before);
  EXPECT_EQ(vmflags(as, P(0)), "VmFlags: rd wr mr mw me ac ");
  expect_valid(as, "end");
}

TEST_P(Mlock, SealSplitsAndMerges) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(P(0), 8 * kPage, kRW, kPriv), static_cast<long>(P(0)));
  EXPECT_EQ(as.mseal(P(2), kPage), 0);
  EXPECT_EQ(as.map_count(), 3);
  EXPECT_EQ(vmflags(as, P(2)), "VmFlags: rd wr mr mw me ac sl ");
  EXPECT_EQ(as.mseal(P(2), kPage), 0) << "sealing again is a no-op";
  EXPECT_EQ(as.map_count(), 3);
  // Sealed pieces with otherwise equal flags merge; the rest stays apart.
  EXPECT_EQ(as.mseal(P(4), kPage), 0);
  EXPECT_EQ(as.mseal(P(1), 5 * kPage), 0);
  EXPECT_EQ(as.map_count(), 3);
  EXPECT_EQ(smaps_line(as, P(1), "Size:"), "Size:                 20 kB");
  // A fresh neighbour never merges with a sealed VMA.
  ASSERT_EQ(as.munmap(P(6), 2 * kPage), 0);
  ASSERT_EQ(as.mmap(P(6), kPage, kRW, kPriv), static_cast<long>(P(6)));
  EXPECT_EQ(as.map_count(), 3);
  // mlock and munlock still split and merge a sealed VMA.
  EXPECT_EQ(as.mlock(P(2), kPage), 0);
  EXPECT_EQ(vmflags(as, P(2)), "VmFlags: rd wr mr mw me lo ac sl ");
  EXPECT_EQ(as.map_count(), 5);
  EXPECT_EQ(as.munlock(P(0), 9 * kPage), -ENOMEM);  // [7,9) is a hole
  EXPECT_EQ(as.map_count(), 3);
  // mlockall too.
  EXPECT_EQ(as.mlockall(MCL_CURRENT | MCL_ONFAULT), 0);
  EXPECT_EQ(vmflags(as, P(1)), "VmFlags: rd wr mr mw me lo lf ac sl ");
  EXPECT_EQ(as.munlockall(), 0);
  expect_valid(as, "end");
}

TEST_P(Mlock, SealRefusesChanges) {
  AddressSpace as(opts());
  // [0,4) RW | [4,6) RW sealed | [6,8) RW     (sealed in the middle)
  ASSERT_EQ(as.mmap(P(0), 8 * kPage, kRW, kPriv), static_cast<long>(P(0)));
  ASSERT_EQ(as.mseal(P(4), 2 * kPage), 0);
  ASSERT_TRUE(as.fill(P(4), 0x5a, 2 * kPage).ok());
  const std::string sealed = as.maps();
  // munmap: any part of a sealed VMA.
  EXPECT_EQ(as.munmap(P(4), kPage), -EPERM);
  EXPECT_EQ(as.munmap(P(5), kPage), -EPERM);
  EXPECT_EQ(as.munmap(P(0), 64 * kPage), -EPERM);
  EXPECT_EQ(as.maps(), sealed);
  // ... its own checks come first.
  EXPECT_EQ(as.munmap(P(4), 0), -EINVAL);
  EXPECT_EQ(as.munmap(P(4) + 1, kPage), -EINVAL);
  // MAP_FIXED over any sealed page fails (a sealed VMA is not even split);
  // NOREPLACE says -EEXIST.
  EXPECT_EQ(as.mmap(P(4), 2 * kPage, kRW, kPriv), -EPERM);
  EXPECT_EQ(as.mmap(P(5), 4 * kPage, PROT_READ, kShared), -EPERM);
  EXPECT_EQ(as.mmap(P(4), kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE), -EEXIST);
  EXPECT_EQ(as.maps(), sealed);
  // mprotect, even to the same protection.
  EXPECT_EQ(as.mprotect(P(4), 2 * kPage, kRW), -EPERM);
  EXPECT_EQ(as.mprotect(P(5), kPage, PROT_READ), -EPERM);
  EXPECT_EQ(as.mprotect(P(4), 0, PROT_READ), 0) << "len 0 returns first";
  EXPECT_EQ(as.maps(), sealed);
  // mremap of it: shrink, same size, grow, move.
  EXPECT_EQ(as.mremap(P(4), 2 * kPage, kPage, 0), -EPERM);
  EXPECT_EQ(as.mremap(P(4), 2 * kPage, 2 * kPage, 0), -EPERM);
  EXPECT_EQ(as.mremap(P(4), 2 * kPage, 4 * kPage, MREMAP_MAYMOVE), -EPERM);
  EXPECT_EQ(as.mremap(P(4), 2 * kPage, 2 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, P(20)), -EPERM);
  EXPECT_EQ(as.mremap(P(4), 2 * kPage, 2 * kPage, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, P(20)), -EPERM);
  // ... or onto it.
  ASSERT_EQ(as.mmap(P(30), 2 * kPage, kRW, kPriv), static_cast<long>(P(30)));
  const std::string with_src = as.maps();
  EXPECT_EQ(as.mremap(P(30), 2 * kPage, 2 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, P(5)), -EPERM);
  EXPECT_EQ(as.mremap(P(30), kPage, 2 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, P(4)), -EPERM);
  // ... or a shrink of a neighbour whose tail reaches into it.
  EXPECT_EQ(as.mremap(P(3), 2 * kPage, kPage, 0), -EPERM);
  EXPECT_EQ(as.maps(), with_src);
  // The contents are still there.
  unsigned char b = 0;
  ASSERT_TRUE(as.read(P(5) + 100, &b, 1).ok());
  EXPECT_EQ(b, 0x5a);

  // Partial changes, as Linux (checked on 6.18): MAP_FIXED and munmap
  // keep the head split they made before reaching the sealed VMA, mprotect
  // its changes before it.
  EXPECT_EQ(as.mmap(P(3), 2 * kPage, kRW, kPriv), -EPERM);
  EXPECT_EQ(as.map_count(), 5);  // [0,3) [3,4) sealed [6,8) [30,32)
  EXPECT_EQ(as.munmap(P(2), 3 * kPage), -EPERM);
  EXPECT_EQ(as.map_count(), 6);  // [0,2) [2,3) [3,4) sealed [6,8) [30,32)
  EXPECT_EQ(smaps_line(as, P(2), "Size:"), "Size:                  4 kB");
  EXPECT_EQ(as.mprotect(P(0), 8 * kPage, PROT_READ), -EPERM);
  EXPECT_EQ(flags_at(as, P(0)) & VM_ACCESS_FLAGS, VM_READ);
  EXPECT_EQ(flags_at(as, P(6)) & VM_ACCESS_FLAGS, VM_READ | VM_WRITE);
  EXPECT_EQ(as.map_count(), 4) << as.maps();  // [0,4) merged back as R
  // Not refused: faults, mlock, non-discarding and writable-discarding
  // advice.
  EXPECT_TRUE(as.fill(P(4), 1, kPage).ok());
  EXPECT_EQ(as.mlock(P(4), 2 * kPage), 0);
  EXPECT_EQ(as.munlock(P(4), 2 * kPage), 0);
  EXPECT_EQ(as.madvise(P(4), 2 * kPage, MADV_DONTNEED), 0) << "writable: not protected";
  EXPECT_EQ(as.madvise(P(4), kPage, MADV_RANDOM), 0);
  expect_valid(as, "end");
}

// The helpers other calls use: can_modify_vma, vma_range_sealed and the
// madvise rule (docs/research/linux-anon-surface.md 3.4).
TEST_P(Mlock, SealHelpers) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(P(0), kPage, PROT_READ, kPriv), static_cast<long>(P(0)));    // private RO
  ASSERT_EQ(as.mmap(P(2), kPage, kRW, kPriv), static_cast<long>(P(2)));          // private RW
  ASSERT_EQ(as.mmap(P(4), kPage, PROT_READ, kShared), static_cast<long>(P(4)));  // shared RO
  ASSERT_EQ(as.mmap(P(6), kPage, PROT_NONE, kPriv), static_cast<long>(P(6)));    // private NONE
  ASSERT_EQ(as.mmap(P(8), kPage, PROT_READ, kPriv), static_cast<long>(P(8)));    // unsealed RO
  for (int i : {0, 2, 4, 6}) ASSERT_EQ(as.mseal(P(i), kPage), 0);
  MmStruct* mm = as.mm();
  mmap_read_lock(mm);
  const Vma* ro = vma_lookup(mm, P(0));
  const Vma* rw = vma_lookup(mm, P(2));
  const Vma* shared = vma_lookup(mm, P(4));
  const Vma* none = vma_lookup(mm, P(6));
  const Vma* open = vma_lookup(mm, P(8));
  EXPECT_FALSE(can_modify_vma(ro));
  EXPECT_TRUE(can_modify_vma(open));
  EXPECT_TRUE(vma_range_sealed(mm, P(1), P(3)));
  EXPECT_FALSE(vma_range_sealed(mm, P(8), P(20)));
  EXPECT_FALSE(vma_range_sealed(mm, P(1), P(2)));  // a hole
  for (int adv : {MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_FREE, MADV_REMOVE, MADV_DONTFORK, MADV_WIPEONFORK,
                  MADV_GUARD_INSTALL}) {
    EXPECT_FALSE(can_madvise_modify(ro, adv)) << adv;
    EXPECT_FALSE(can_madvise_modify(none, adv)) << adv;
    EXPECT_TRUE(can_madvise_modify(rw, adv)) << adv;
    EXPECT_TRUE(can_madvise_modify(shared, adv)) << adv;
    EXPECT_TRUE(can_madvise_modify(open, adv)) << adv;
  }
  for (int adv : {MADV_DOFORK, MADV_KEEPONFORK, MADV_WILLNEED, MADV_RANDOM, MADV_DONTDUMP, MADV_HUGEPAGE,
                  MADV_COLD, MADV_PAGEOUT, 22 /*POPULATE_READ*/, 23 /*POPULATE_WRITE*/, 103 /*GUARD_REMOVE*/})
    EXPECT_TRUE(can_madvise_modify(ro, adv)) << adv;
  mmap_read_unlock(mm);
}

// ---------------------------------------------------------------------------
// smaps: VmFlags names and Locked:.

TEST_P(Mlock, SmapsText) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(P(0), 2 * kPage, kRW, kPriv | MAP_LOCKED), static_cast<long>(P(0)));
  // The whole block, Linux's order and widths (host, Linux 6.18.44: the
  // same lines, among those vmspace leaves out, for a MAP_LOCKED mapping,
  // populated with write faults).
  const std::string text = as.smaps();
  EXPECT_EQ(text.substr(0, text.find("\n", text.find("VmFlags")) + 1),
            "200000000000-200000002000 rw-p 00000000 00:00 0 \n"
            "Size:                  8 kB\n"
            "Rss:                   8 kB\n"
            "Pss:                   8 kB\n"
            "Pss_Dirty:             8 kB\n"
            "Shared_Clean:          0 kB\n"
            "Shared_Dirty:          0 kB\n"
            "Private_Clean:         0 kB\n"
            "Private_Dirty:         8 kB\n"
            "Anonymous:             8 kB\n"
            "LazyFree:              0 kB\n"
            "Locked:                8 kB\n"
            "VmFlags: rd wr mr mw me lo ac \n");
  struct Case {
    std::uint64_t at;
    int prot, flags;
    const char* want;
  };
  const Case cases[] = {
      {10, kRW, kShared, "VmFlags: rd wr sh mr mw me ms "},
      {12, PROT_READ | PROT_EXEC, kPriv, "VmFlags: rd ex mr mw me "},
      {14, PROT_NONE, kPriv | MAP_NORESERVE, "VmFlags: mr mw me nr "},
      {16, kRW, kPriv | MAP_GROWSDOWN, "VmFlags: rd wr mr mw me gd ac "},
      {18, kRW, kPriv | MAP_STACK, "VmFlags: rd wr mr mw me ac nh "},
      {20, kRW, kPriv | MAP_SYNC, "VmFlags: rd wr mr mw me ac sf "},
      {22, kRW, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_FIXED, "VmFlags: rd wr mr mw me nr wf dd dp "},
  };
  for (const Case& c : cases) {
    ASSERT_EQ(as.mmap(P(c.at), kPage, c.prot, c.flags), static_cast<long>(P(c.at)));
    EXPECT_EQ(vmflags(as, P(c.at)), c.want) << c.at;
  }
  ASSERT_EQ(as.mmap(P(30), 4 * kPage, kRW, kPriv), static_cast<long>(P(30)));
  ASSERT_EQ(as.madvise(P(30), kPage, MADV_RANDOM), 0);
  ASSERT_EQ(as.madvise(P(31), kPage, MADV_SEQUENTIAL), 0);
  ASSERT_EQ(as.madvise(P(32), kPage, MADV_DONTFORK), 0);
  ASSERT_EQ(as.madvise(P(33), kPage, MADV_HUGEPAGE), 0);
  EXPECT_EQ(vmflags(as, P(30)), "VmFlags: rd wr mr mw me rr ac ");
  EXPECT_EQ(vmflags(as, P(31)), "VmFlags: rd wr mr mw me sr ac ");
  EXPECT_EQ(vmflags(as, P(32)), "VmFlags: rd wr mr mw me dc ac ");
  EXPECT_EQ(vmflags(as, P(33)), "VmFlags: rd wr mr mw me ac hg ");
  ASSERT_EQ(as.mseal(P(33), kPage), 0);
  ASSERT_EQ(as.mlock2(P(33), kPage, MLOCK_ONFAULT), 0);
  EXPECT_EQ(vmflags(as, P(33)), "VmFlags: rd wr mr mw me lo lf ac hg sl ");
  // Locked: counts resident pages only, shared pages by their share.
  ASSERT_EQ(as.mmap(P(40), 4 * kPage, kRW, kShared), static_cast<long>(P(40)));
  ASSERT_EQ(as.mlock(P(40), 4 * kPage), 0);
  EXPECT_EQ(locked_kb(as, P(40)), 16u);
  // A second mapping of the same shmem pages (mremap old_len 0): each has
  // half of them.
  ASSERT_EQ(as.mremap(P(40), 0, 4 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, P(50)), static_cast<long>(P(50)));
  ASSERT_EQ(as.mlock(P(50), 4 * kPage), 0);
  EXPECT_EQ(locked_kb(as, P(40)), 8u);
  EXPECT_EQ(locked_kb(as, P(50)), 8u);
  EXPECT_EQ(smaps_line(as, P(50), "Rss:"), "Rss:                  16 kB");
  // Unlocked: 0 whatever is resident.
  ASSERT_TRUE(as.fill(P(0), 1, 2 * kPage).ok());
  ASSERT_EQ(as.munlock(P(0), 2 * kPage), 0);
  EXPECT_EQ(locked_kb(as, P(0)), 0u);
}

// ---------------------------------------------------------------------------
// Robustness: random sequences, concurrency, allocation failures.

TEST_P(Mlock, RandomOperationsKeepLockedVmExact) {
  AddressSpaceOptions o = opts();
  o.cap_ipc_lock = true;
  AddressSpace as(o);
  std::mt19937_64 rng(7);
  auto page = [&](unsigned n) { return P(rng() % n); };
  for (int i = 0; i < 3000; ++i) {
    const std::uint64_t a = page(48);
    const std::uint64_t len = (1 + rng() % 6) * kPage;
    switch (rng() % 10) {
      case 0: as.mmap(a, len, static_cast<int>(rng() % 4), (rng() % 5 == 0 ? kShared : kPriv) | (rng() % 4 == 0 ? MAP_LOCKED : 0)); break;
      case 1: as.munmap(a, len); break;
      case 2: as.mprotect(a, len, static_cast<int>(rng() % 4)); break;
      case 3: as.mlock(a, len); break;
      case 4: as.mlock2(a, len, MLOCK_ONFAULT); break;
      case 5: as.munlock(a, len); break;
      case 6: as.mremap(a, len, (1 + rng() % 6) * kPage, MREMAP_MAYMOVE); break;
      case 7:
        if (rng() % 8 == 0) as.mlockall(static_cast<int>(1 + rng() % 7));
        else if (rng() % 4 == 0) as.munlockall();
        else as.fill(a, 1, kPage);
        break;
      case 8: as.madvise(a, len, rng() % 2 ? MADV_DONTNEED : MADV_DONTFORK); break;
      case 9: if (rng() % 16 == 0) as.mseal(a, len); break;
    }
    std::string why;
    ASSERT_TRUE(as.validate(&why)) << "op " << i << ": " << why;
    ASSERT_EQ(locked_vm(as), locked_pages(as)) << "op " << i << "\n" << as.maps();
  }
}

// Locking, unlocking and sealing while other threads fault, read and
// write the same VMAs (and the ThreadSanitizer build watches).
TEST_P(Mlock, ConcurrentWithFaults) {
  AddressSpaceOptions o = opts();
  o.cap_ipc_lock = true;
  AddressSpace as(o);
  ASSERT_EQ(as.mmap(P(0), 64 * kPage, kRW, kPriv), static_cast<long>(P(0)));
  ASSERT_EQ(as.mmap(P(64), 16 * kPage, kRW, kShared), static_cast<long>(P(64)));
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937 rng(t);
      unsigned char b = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const std::uint64_t a = P(rng() % 80) + rng() % kPage;
        if (rng() % 2) as.fill(a, static_cast<unsigned char>(t), 1);
        else as.read(a, &b, 1);
      }
    });
  }
  std::mt19937_64 rng(1);
  for (int i = 0; i < 400; ++i) {
    const std::uint64_t a = P(rng() % 80);
    const std::uint64_t len = (1 + rng() % 8) * kPage;
    switch (rng() % 7) {
      case 0: as.mlock(a, len); break;
      case 1: as.mlock2(a, len, MLOCK_ONFAULT); break;
      case 2: as.munlock(a, len); break;
      case 3: as.mlockall(MCL_CURRENT | (rng() % 2 ? MCL_ONFAULT : 0)); break;
      case 4: as.munlockall(); break;
      case 5: as.mprotect(a, len, rng() % 2 ? kRW : PROT_READ); break;
      case 6:
        // A fresh sealed mapping next to the others.
        if (as.mmap(P(100 + 4 * (i % 16)), 2 * kPage, kRW, kPriv) >= 0) as.mseal(P(100 + 4 * (i % 16)), kPage);
        break;
    }
  }
  stop = true;
  for (auto& w : workers) w.join();
  expect_valid(as, "end");
}

// Every allocation of a lock/seal sequence fails in turn: each call either
// succeeds or fails with Linux's errno for it, and locked_vm stays exact.
TEST_P(Mlock, AllocationFailures) {
  if (!fail_nth::armed()) GTEST_SKIP() << "allocation-failure injection is compiled out of release builds";
  AddressSpaceOptions o = opts();
  o.cap_ipc_lock = true;
  o.phys_bytes = 256 * kPage;
  auto run = [&](std::uint64_t nth) -> std::uint64_t {
    AddressSpace as(o);
    EXPECT_EQ(as.mmap(P(0), 16 * kPage, kRW, kPriv), static_cast<long>(P(0)));
    EXPECT_EQ(as.mmap(P(16), 8 * kPage, kRW, kShared), static_cast<long>(P(16)));
    struct Call {
      const char* name;
      std::function<int()> fn;
      std::vector<int> errs;  // what it may fail with
    };
    const std::vector<Call> calls = {
        {"mlock middle", [&] { return as.mlock(P(2), 4 * kPage); }, {-ENOMEM, -EAGAIN}},
        {"mlock2 onfault", [&] { return as.mlock2(P(8), 4 * kPage, MLOCK_ONFAULT); }, {-ENOMEM}},
        {"mlock merge", [&] { return as.mlock(P(6), 2 * kPage); }, {-ENOMEM, -EAGAIN}},
        {"mlock shared", [&] { return as.mlock(P(17), 2 * kPage); }, {-ENOMEM, -EAGAIN}},
        {"munlock across", [&] { return as.munlock(P(3), 16 * kPage); }, {-ENOMEM}},
        {"mlockall", [&] { return as.mlockall(MCL_CURRENT | MCL_FUTURE); }, {}},
        {"mmap future", [&] { return static_cast<int>(as.mmap(P(30), 4 * kPage, kRW, kPriv) < 0 ? -ENOMEM : 0); },
         {-ENOMEM}},
        {"munlockall", [&] { return as.munlockall(); }, {}},
        {"mseal middle", [&] { return as.mseal(P(10), 2 * kPage); }, {-ENOMEM}},
        {"mseal across", [&] { return as.mseal(P(12), 12 * kPage); }, {-ENOMEM}},
    };
    fail_nth::set(nth == 0 ? ~std::uint64_t{0} : nth);
    for (const Call& c : calls) {
      const int r = c.fn();
      const bool allowed = r == 0 || std::find(c.errs.begin(), c.errs.end(), r) != c.errs.end();
      std::string why;
      const bool valid = as.validate(&why);
      const std::uint64_t lv = locked_vm(as), lp = locked_pages(as);
      if (!allowed || !valid || lv != lp) {
        fail_nth::set(0);
        ADD_FAILURE() << c.name << " at N=" << nth << ": " << r << (valid ? "" : " invalid: " + why)
                      << " locked_vm " << lv << " vs " << lp << "\n" << as.maps();
        return 0;
      }
    }
    const std::uint64_t total = fail_nth::calls();
    fail_nth::set(0);
    return total;
  };
  const std::uint64_t total = run(0);
  ASSERT_GT(total, 20u);
  for (std::uint64_t nth = 1; nth <= total && !HasFailure(); ++nth) run(nth);
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, Mlock, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace::mm
