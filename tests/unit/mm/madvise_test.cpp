// SPDX-License-Identifier: MIT
// madvise advice that acts on pages (DONTNEED under a VMA read lock, FREE
// and PAGEOUT, POPULATE_*, guard regions) and mincore(2), in every lock
// mode.  The host kernel checks results, maps and contents through
// tests/scripts/madvise_pages.ops and guard_regions.ops and the hostile
// table; these tests check what it cannot show: which lock a call took,
// the page-table entries (guard markers surviving mprotect, DONTNEED and
// mremap, removed by munmap), VM_MAYBE_GUARD and its merges.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "vmspace/mman.h"
#include "mem/page_table.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kPage = 4096;
constexpr int kAnon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
constexpr int kShared = MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED;
constexpr int kRW = PROT_READ | PROT_WRITE;

std::uint64_t at(std::uint64_t page) { return kBase + page * kPage; }

class Madvise : public ::testing::TestWithParam<LockMode> {
 protected:
  AddressSpaceOptions opts() const {
    AddressSpaceOptions o = test::test_options(GetParam());
    o.phys_bytes = 64ull << 20;
    o.phys_pretouch = false;
    return o;
  }
  bool per_vma() const { return GetParam() != LockMode::mmap_lock; }

  static mem::pte_t pte(AddressSpace& as, std::uint64_t va) {
    rcu::ReadGuard g;
    return as.mm()->pgtables.lookup(va);
  }
  static bool is_guard(AddressSpace& as, std::uint64_t va) { return mem::pte_is_guard(pte(as, va)); }
  static mm::vm_flags_t flags_at(AddressSpace& as, std::uint64_t va) {
    mm::mmap_read_lock(as.mm());
    const mm::Vma* v = mm::vma_lookup(as.mm(), va);
    const mm::vm_flags_t f = v != nullptr ? v->vm_flags : 0;
    mm::mmap_read_unlock(as.mm());
    return f;
  }
  // The byte at va, or -1 and the fault.
  static int byte_at(AddressSpace& as, std::uint64_t va, Fault* f = nullptr) {
    unsigned char b = 0;
    AccessResult r = as.read(va, &b, 1);
    if (f != nullptr) *f = r.fault;
    return r.ok() ? b : -1;
  }
  static Fault read_fault(AddressSpace& as, std::uint64_t va) {
    unsigned char b;
    return as.read(va, &b, 1).fault;
  }
  static Fault write_fault(AddressSpace& as, std::uint64_t va) {
    unsigned char b = 1;
    return as.write(va, &b, 1).fault;
  }
  static std::string mincore_bits(AddressSpace& as, std::uint64_t addr, std::uint64_t pages) {
    std::vector<unsigned char> v(pages, 9);
    const int r = as.mincore(addr, pages * kPage, v.data());
    std::string s = r == 0 ? "" : "err" + std::to_string(r) + ":";
    for (unsigned char c : v) s += static_cast<char>('0' + c);
    return s;
  }
};

// ---- DONTNEED / DONTNEED_LOCKED / FREE: which lock ---------------------

TEST_P(Madvise, DontneedInsideOneVmaTakesTheVmaLock) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(at(0), 8 * kPage, kRW, kAnon), static_cast<long>(at(0)));
  ASSERT_TRUE(as.fill(at(0), 0x5a, 8 * kPage).ok());
  const std::uint64_t vma_before = as.vm_stat(VmStat::madvise_vma_lock);
  const std::uint64_t mmap_before = as.vm_stat(VmStat::madvise_mmap_lock);
  auto expect_paths = [&](std::uint64_t vma, std::uint64_t mmap, const char* what) {
    EXPECT_EQ(as.vm_stat(VmStat::madvise_vma_lock) - vma_before, per_vma() ? vma : 0) << what;
    EXPECT_EQ(as.vm_stat(VmStat::madvise_mmap_lock) - mmap_before, per_vma() ? mmap : vma + mmap) << what;
  };

  ASSERT_EQ(as.madvise(at(1), 2 * kPage, MADV_DONTNEED), 0);
  expect_paths(1, 0, "inside one VMA");
  EXPECT_EQ(byte_at(as, at(1)), 0);
  EXPECT_EQ(byte_at(as, at(3)), 0x5a);
  ASSERT_EQ(as.madvise(at(0), 8 * kPage, MADV_DONTNEED_LOCKED), 0);  // the whole VMA
  ASSERT_EQ(as.madvise(at(4), kPage, MADV_FREE), 0);
  expect_paths(3, 0, "whole VMA, FREE");

  // Two VMAs, a hole at the start, a trailing hole: the mmap_lock.
  ASSERT_EQ(as.mprotect(at(4), 4 * kPage, PROT_READ), 0);
  ASSERT_EQ(as.madvise(at(2), 4 * kPage, MADV_DONTNEED), 0);
  ASSERT_EQ(as.madvise(at(6), 4 * kPage, MADV_DONTNEED), -ENOMEM);
  ASSERT_EQ(as.madvise(at(100), kPage, MADV_FREE), -ENOMEM);
  expect_paths(3, 3, "not inside one VMA");

  // The per-VMA path makes the same checks, in the same order.
  ASSERT_EQ(as.mmap(at(20), 2 * kPage, kRW, kAnon | MAP_LOCKED), static_cast<long>(at(20)));
  EXPECT_EQ(as.madvise(at(20), kPage, MADV_DONTNEED), -EINVAL);
  EXPECT_EQ(as.madvise(at(20), kPage, MADV_FREE), -EINVAL);
  EXPECT_EQ(as.madvise(at(20), kPage, MADV_DONTNEED_LOCKED), 0);
  ASSERT_EQ(as.mmap(at(30), 2 * kPage, kRW, kShared), static_cast<long>(at(30)));
  EXPECT_EQ(as.madvise(at(30), kPage, MADV_FREE), -EINVAL);  // not private anonymous
  ASSERT_EQ(as.mmap(at(40), 2 * kPage, PROT_READ, kAnon), static_cast<long>(at(40)));
  ASSERT_EQ(as.mseal(at(40), 2 * kPage), 0);
  EXPECT_EQ(as.madvise(at(40), kPage, MADV_DONTNEED), -EPERM);  // sealed read-only private
  expect_paths(8, 3, "checks");
  // Other advice is not counted.
  ASSERT_EQ(as.madvise(at(0), kPage, MADV_COLD), 0);
  ASSERT_EQ(as.madvise(at(0), kPage, MADV_RANDOM), 0);
  expect_paths(8, 3, "other advice");
}

// A VMA that cannot be read-locked (a writer holds it) sends DONTNEED to
// the mmap_lock, which then waits for the writer.
TEST_P(Madvise, DontneedFallsBackWhenTheVmaIsWriteLocked) {
  if (!per_vma()) GTEST_SKIP() << "no VMA locks in mmap_lock mode";
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(at(0), 4 * kPage, kRW, kAnon), static_cast<long>(at(0)));
  ASSERT_TRUE(as.fill(at(0), 1, 4 * kPage).ok());
  mm::MmStruct* mm = as.mm();
  mm::mmap_write_lock(mm);
  mm::vma_start_write(mm::vma_lookup(mm, at(0)));
  std::atomic<bool> done{false};
  std::thread t([&] {
    EXPECT_EQ(as.madvise(at(0), 2 * kPage, MADV_DONTNEED), 0);
    done = true;
  });
  while (as.vm_stat(VmStat::madvise_mmap_lock) == 0) std::this_thread::yield();
  EXPECT_EQ(as.vm_stat(VmStat::vma_lock_abort), 1u);  // lock_vma_under_rcu gave up
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(done.load());  // waiting for the mmap_lock
  mm::mmap_write_unlock(mm);
  t.join();
  EXPECT_EQ(as.vm_stat(VmStat::madvise_vma_lock), 0u);
  EXPECT_EQ(byte_at(as, at(0)), 0);
  EXPECT_EQ(byte_at(as, at(2)), 1);
}

// ---- FREE, PAGEOUT, COLD ------------------------------------------------

TEST_P(Madvise, FreeThenPageoutDiscardsCleanPages) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(at(0), 4 * kPage, kRW, kAnon), static_cast<long>(at(0)));
  ASSERT_TRUE(as.fill(at(0), 3, 4 * kPage).ok());
  ASSERT_EQ(as.madvise(at(0), 4 * kPage, MADV_FREE), 0);
  EXPECT_EQ(mincore_bits(as, at(0), 4), "1111");
  EXPECT_EQ(byte_at(as, at(0)), 3);  // lazily: the data stays for now
  ASSERT_TRUE(as.fill(at(1), 7, 1).ok());  // page 1 written again
  ASSERT_EQ(as.madvise(at(0), 4 * kPage, MADV_COLD), 0);
  EXPECT_EQ(mincore_bits(as, at(0), 4), "1111");
  ASSERT_EQ(as.madvise(at(0), 4 * kPage, MADV_PAGEOUT), 0);
  EXPECT_EQ(mincore_bits(as, at(0), 4), "0100");
  EXPECT_EQ(as.rss_pages(), 1u);
  EXPECT_EQ(byte_at(as, at(0)), 0);
  EXPECT_EQ(byte_at(as, at(1)), 7);
  EXPECT_EQ(byte_at(as, at(1) + 1), 3);
  // Written pages that were never freed stay (no swap).
  ASSERT_TRUE(as.fill(at(2), 5, kPage).ok());
  ASSERT_EQ(as.madvise(at(2), kPage, MADV_PAGEOUT), 0);
  EXPECT_EQ(byte_at(as, at(2)), 5);
}

// ---- POPULATE_READ / POPULATE_WRITE -------------------------------------

TEST_P(Madvise, PopulateFaultsInAndStopsAtTheFirstProblem) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(at(0), 6 * kPage, kRW, kAnon), static_cast<long>(at(0)));
  ASSERT_EQ(as.mprotect(at(2), 2 * kPage, PROT_NONE), 0);
  EXPECT_EQ(as.madvise(at(0), 6 * kPage, MADV_POPULATE_WRITE), -EINVAL);
  EXPECT_EQ(mincore_bits(as, at(0), 6), "110000");
  EXPECT_EQ(as.rss_pages(), 2u);
  EXPECT_TRUE(mem::pte_write(pte(as, at(0))));
  ASSERT_EQ(as.mprotect(at(2), 2 * kPage, kRW), 0);
  const std::uint64_t faults = as.vm_stat(VmStat::pgfault);
  EXPECT_EQ(as.madvise(at(0), 6 * kPage, MADV_POPULATE_READ), 0);
  EXPECT_EQ(as.vm_stat(VmStat::pgfault), faults);  // not counted as faults
  EXPECT_EQ(mincore_bits(as, at(0), 6), "111111");
  if (test::test_host_facts().zero_page) {
    EXPECT_EQ(mem::pte_pfn(pte(as, at(4))), as.phys()->zero_pfn());
  }
  // Permissions (no FOLL_FORCE): read needs PROT_READ, write PROT_WRITE.
  ASSERT_EQ(as.mmap(at(10), kPage, PROT_WRITE, kAnon), static_cast<long>(at(10)));
  ASSERT_EQ(as.mmap(at(12), kPage, PROT_READ, kAnon), static_cast<long>(at(12)));
  ASSERT_EQ(as.mmap(at(14), kPage, PROT_EXEC, kAnon), static_cast<long>(at(14)));
  EXPECT_EQ(as.madvise(at(10), kPage, MADV_POPULATE_READ), -EINVAL);
  EXPECT_EQ(as.madvise(at(10), kPage, MADV_POPULATE_WRITE), 0);
  EXPECT_EQ(as.madvise(at(12), kPage, MADV_POPULATE_WRITE), -EINVAL);
  EXPECT_EQ(as.madvise(at(12), kPage, MADV_POPULATE_READ), 0);
  EXPECT_EQ(as.madvise(at(14), kPage, MADV_POPULATE_READ), -EINVAL);
  // Holes stop it (-ENOMEM), the leading one too.
  EXPECT_EQ(as.madvise(at(5), 3 * kPage, MADV_POPULATE_WRITE), -ENOMEM);
  EXPECT_EQ(as.madvise(at(8), 3 * kPage, MADV_POPULATE_WRITE), -ENOMEM);
  EXPECT_EQ(mincore_bits(as, at(10), 1), "1");
  // Shared memory: the object's pages.
  ASSERT_EQ(as.mmap(at(20), 2 * kPage, kRW, kShared), static_cast<long>(at(20)));
  EXPECT_EQ(as.madvise(at(20), 2 * kPage, MADV_POPULATE_WRITE), 0);
  EXPECT_TRUE(mem::pte_write(pte(as, at(21))));
}

// ---- guard regions ------------------------------------------------------

TEST_P(Madvise, GuardPagesFaultMaperrAfterTheProtectionCheck) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(at(0), 4 * kPage, kRW, kAnon), static_cast<long>(at(0)));
  ASSERT_TRUE(as.fill(at(0), 4, 4 * kPage).ok());
  EXPECT_EQ(mm::vma_lookup(as.mm(), at(0))->anon_vma.load() != nullptr, true);
  ASSERT_EQ(as.madvise(at(1), kPage, MADV_GUARD_INSTALL), 0);
  EXPECT_TRUE(is_guard(as, at(1)));
  EXPECT_EQ(as.map_count(), 1);  // no split
  EXPECT_TRUE(flags_at(as, at(0)) & mm::VM_MAYBE_GUARD);
  EXPECT_NE(as.smaps().find(" gu "), std::string::npos);
  EXPECT_EQ(as.rss_pages(), 3u);  // the guarded page's contents are gone
  unsigned char buf[16];
  AccessResult r = as.read(at(1) - 8, buf, 16);
  EXPECT_EQ(r.fault, Fault::segv_maperr);
  EXPECT_EQ(r.addr, at(1));
  EXPECT_EQ(r.done, 8u);
  EXPECT_EQ(write_fault(as, at(1) + 5), Fault::segv_maperr);
  EXPECT_EQ(byte_at(as, at(0)), 4);
  EXPECT_EQ(byte_at(as, at(2)), 4);
  {
    AddressSpace::AccessScope scope(as);
    EXPECT_EQ(scope.translate(at(1), false), nullptr);
    EXPECT_NE(scope.translate(at(2), false), nullptr);
  }
  EXPECT_EQ(mincore_bits(as, at(0), 4), "1011");
  // The VMA's protection is checked first.
  ASSERT_EQ(as.mprotect(at(0), 4 * kPage, PROT_NONE), 0);
  EXPECT_EQ(read_fault(as, at(1)), Fault::segv_accerr);
  ASSERT_EQ(as.mprotect(at(0), 4 * kPage, PROT_READ), 0);
  EXPECT_EQ(read_fault(as, at(1)), Fault::segv_maperr);
  EXPECT_EQ(write_fault(as, at(1)), Fault::segv_accerr);
  // Populating over it: -EFAULT, with the pages before it faulted in.
  ASSERT_EQ(as.mprotect(at(0), 4 * kPage, kRW), 0);
  ASSERT_EQ(as.madvise(at(0), 4 * kPage, MADV_DONTNEED), 0);
  EXPECT_EQ(as.madvise(at(0), 4 * kPage, MADV_POPULATE_READ), -EFAULT);
  EXPECT_EQ(as.madvise(at(0), 4 * kPage, MADV_POPULATE_WRITE), -EFAULT);
  EXPECT_EQ(mincore_bits(as, at(0), 4), "1000");
  // Removing it: a fresh zero-filled page.
  ASSERT_EQ(as.madvise(at(0), 4 * kPage, MADV_GUARD_REMOVE), 0);
  EXPECT_FALSE(is_guard(as, at(1)));
  EXPECT_EQ(byte_at(as, at(1)), 0);
  EXPECT_TRUE(flags_at(as, at(0)) & mm::VM_MAYBE_GUARD);  // never cleared
}

TEST_P(Madvise, GuardMarkersSurviveMprotectAndDiscardingAdvice) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(at(0), 8 * kPage, kRW, kAnon), static_cast<long>(at(0)));
  ASSERT_TRUE(as.fill(at(0), 9, 8 * kPage).ok());
  ASSERT_EQ(as.madvise(at(2), 2 * kPage, MADV_GUARD_INSTALL), 0);
  // mprotect: over the whole VMA, splitting at the guard pages, merging back.
  for (int prot : {PROT_READ, PROT_NONE, kRW}) {
    ASSERT_EQ(as.mprotect(at(0), 8 * kPage, prot), 0);
    EXPECT_TRUE(is_guard(as, at(2)) && is_guard(as, at(3))) << prot;
  }
  ASSERT_EQ(as.mprotect(at(3), kPage, PROT_READ), 0);
  EXPECT_EQ(as.map_count(), 3);
  EXPECT_TRUE(is_guard(as, at(2)) && is_guard(as, at(3)));
  EXPECT_EQ(read_fault(as, at(3)), Fault::segv_maperr);
  ASSERT_EQ(as.mprotect(at(3), kPage, kRW), 0);
  EXPECT_EQ(as.map_count(), 1);
  EXPECT_TRUE(is_guard(as, at(2)) && is_guard(as, at(3)));
  // Discarding advice keeps them, on the VMA-lock path (inside one VMA)
  // and on the mmap_lock path (across two).
  for (int advice : {MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_FREE, MADV_COLD, MADV_PAGEOUT, MADV_WILLNEED}) {
    ASSERT_EQ(as.madvise(at(0), 8 * kPage, advice), 0) << advice;
    EXPECT_TRUE(is_guard(as, at(2)) && is_guard(as, at(3))) << advice;
  }
  ASSERT_EQ(as.mmap(at(8), 2 * kPage, PROT_READ, kAnon), static_cast<long>(at(8)));
  ASSERT_EQ(as.madvise(at(2), 8 * kPage, MADV_DONTNEED), 0);
  EXPECT_TRUE(is_guard(as, at(2)) && is_guard(as, at(3)));
  EXPECT_EQ(read_fault(as, at(2)), Fault::segv_maperr);
  EXPECT_EQ(byte_at(as, at(4)), 0);  // the rest was discarded as usual
  // Installing over markers keeps them.
  ASSERT_EQ(as.madvise(at(0), 4 * kPage, MADV_GUARD_INSTALL), 0);
  EXPECT_TRUE(is_guard(as, at(0)) && is_guard(as, at(3)));
  EXPECT_FALSE(is_guard(as, at(4)));
}

TEST_P(Madvise, GuardMarkersGoWithMunmapAndMoveWithMremap) {
  AddressSpace as(opts());
  // munmap of the guard page alone: its page table stays (the neighbours
  // use it), so the zap itself must drop the marker.
  ASSERT_EQ(as.mmap(at(0), 4 * kPage, kRW, kAnon), static_cast<long>(at(0)));
  ASSERT_EQ(as.madvise(at(1), kPage, MADV_GUARD_INSTALL), 0);
  ASSERT_EQ(as.munmap(at(1), kPage), 0);
  EXPECT_EQ(pte(as, at(1)), 0u);
  ASSERT_EQ(as.mmap(at(1), kPage, kRW, kAnon), static_cast<long>(at(1)));
  EXPECT_EQ(byte_at(as, at(1)), 0);
  // MAP_FIXED over a guard page replaces it.
  ASSERT_EQ(as.madvise(at(2), kPage, MADV_GUARD_INSTALL), 0);
  ASSERT_EQ(as.mmap(at(2), kPage, kRW, kAnon), static_cast<long>(at(2)));
  EXPECT_EQ(byte_at(as, at(2)), 0);
  ASSERT_EQ(as.munmap(at(0), 4 * kPage), 0);

  // mremap moves the markers with the other page-table entries.
  ASSERT_EQ(as.mmap(at(0), 4 * kPage, kRW, kAnon), static_cast<long>(at(0)));
  ASSERT_TRUE(as.fill(at(0), 6, 4 * kPage).ok());
  ASSERT_EQ(as.madvise(at(1), kPage, MADV_GUARD_INSTALL), 0);
  ASSERT_EQ(as.mremap(at(0), 4 * kPage, 4 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, at(100)),
            static_cast<long>(at(100)));
  EXPECT_TRUE(is_guard(as, at(101)));
  EXPECT_EQ(read_fault(as, at(101)), Fault::segv_maperr);
  EXPECT_EQ(byte_at(as, at(102)), 6);
  EXPECT_EQ(pte(as, at(1)), 0u);
  EXPECT_TRUE(flags_at(as, at(100)) & mm::VM_MAYBE_GUARD);
  // A move of a whole page table (2 MiB aligned on both sides) relinks it.
  constexpr std::uint64_t k2M = 2ull << 20;
  ASSERT_EQ(as.mmap(kBase + 4 * k2M, k2M, kRW, kAnon), static_cast<long>(kBase + 4 * k2M));
  ASSERT_EQ(as.madvise(kBase + 4 * k2M + 7 * kPage, kPage, MADV_GUARD_INSTALL), 0);
  ASSERT_EQ(as.mremap(kBase + 4 * k2M, k2M, k2M, MREMAP_MAYMOVE | MREMAP_FIXED, kBase + 8 * k2M),
            static_cast<long>(kBase + 8 * k2M));
  EXPECT_TRUE(is_guard(as, kBase + 8 * k2M + 7 * kPage));
  // DONTUNMAP: the destination has them, the source does not.
  ASSERT_EQ(as.mremap(at(100), 4 * kPage, 4 * kPage, MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED, at(200)),
            static_cast<long>(at(200)));
  EXPECT_TRUE(is_guard(as, at(201)));
  EXPECT_FALSE(is_guard(as, at(101)));
  EXPECT_EQ(byte_at(as, at(101)), 0);
  EXPECT_EQ(byte_at(as, at(202)), 6);
}

TEST_P(Madvise, GuardAdviceChecks) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(at(0), 2 * kPage, kRW, kAnon | MAP_LOCKED), static_cast<long>(at(0)));
  EXPECT_EQ(as.madvise(at(0), kPage, MADV_GUARD_INSTALL), -EINVAL);  // locked
  EXPECT_EQ(as.madvise(at(0), kPage, MADV_GUARD_REMOVE), 0);         // allowed there
  EXPECT_FALSE(flags_at(as, at(0)) & mm::VM_MAYBE_GUARD);
  // Holes: the mapped parts get them, then -ENOMEM.
  ASSERT_EQ(as.mmap(at(4), 2 * kPage, PROT_NONE, kAnon), static_cast<long>(at(4)));
  EXPECT_EQ(as.madvise(at(3), 4 * kPage, MADV_GUARD_INSTALL), -ENOMEM);
  EXPECT_TRUE(is_guard(as, at(4)) && is_guard(as, at(5)));
  EXPECT_EQ(as.madvise(at(3), 4 * kPage, MADV_GUARD_REMOVE), -ENOMEM);
  EXPECT_FALSE(is_guard(as, at(4)));
  // Sealed read-only private memory refuses installing, not removing.
  ASSERT_EQ(as.mmap(at(10), kPage, PROT_READ, kAnon), static_cast<long>(at(10)));
  ASSERT_EQ(as.mseal(at(10), kPage), 0);
  EXPECT_EQ(as.madvise(at(10), kPage, MADV_GUARD_INSTALL), -EPERM);
  EXPECT_EQ(as.madvise(at(10), kPage, MADV_GUARD_REMOVE), 0);
  // An untouched private VMA counts as faulted afterwards (anon_vma).
  ASSERT_EQ(as.mmap(at(20), 2 * kPage, kRW, kAnon), static_cast<long>(at(20)));
  EXPECT_EQ(mm::vma_lookup(as.mm(), at(20))->anon_vma.load(), nullptr);
  ASSERT_EQ(as.madvise(at(21), kPage, MADV_GUARD_INSTALL), 0);
  EXPECT_NE(mm::vma_lookup(as.mm(), at(20))->anon_vma.load(), nullptr);
}

// Shared memory keeps its data under a guard marker.
TEST_P(Madvise, GuardOnSharedMemoryHidesItsPages) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(at(0), 4 * kPage, kRW, kShared), static_cast<long>(at(0)));
  ASSERT_TRUE(as.fill(at(0), 6, 4 * kPage).ok());
  ASSERT_EQ(as.madvise(at(1), kPage, MADV_GUARD_INSTALL), 0);
  EXPECT_EQ(read_fault(as, at(1)), Fault::segv_maperr);
  EXPECT_EQ(mincore_bits(as, at(0), 4), "1111");  // the object still has it
  ASSERT_EQ(as.madvise(at(0), 4 * kPage, MADV_REMOVE), 0);
  EXPECT_TRUE(is_guard(as, at(1)));
  ASSERT_TRUE(as.fill(at(2), 8, kPage).ok());
  ASSERT_EQ(as.madvise(at(2), kPage, MADV_GUARD_INSTALL), 0);
  ASSERT_EQ(as.madvise(at(2), kPage, MADV_GUARD_REMOVE), 0);
  EXPECT_EQ(byte_at(as, at(2)), 8);
}

// VM_MAYBE_GUARD is ignored by merges and kept by the merged VMA.
TEST_P(Madvise, MaybeGuardIsStickyInMerges) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(at(0), 2 * kPage, kRW, kAnon), static_cast<long>(at(0)));
  ASSERT_EQ(as.madvise(at(0), kPage, MADV_GUARD_INSTALL), 0);
  // A fresh neighbour merges into it.
  ASSERT_EQ(as.mmap(at(2), 2 * kPage, kRW, kAnon), static_cast<long>(at(2)));
  EXPECT_EQ(as.map_count(), 1);
  EXPECT_TRUE(flags_at(as, at(3)) & mm::VM_MAYBE_GUARD);
  // Splitting keeps it on both pieces.
  ASSERT_EQ(as.madvise(at(2), 2 * kPage, MADV_RANDOM), 0);
  EXPECT_EQ(as.map_count(), 2);
  EXPECT_TRUE(flags_at(as, at(0)) & mm::VM_MAYBE_GUARD);
  EXPECT_TRUE(flags_at(as, at(2)) & mm::VM_MAYBE_GUARD);
  // A plain neighbour advised into the same flags merges and gets it.
  ASSERT_EQ(as.mmap(at(4), 2 * kPage, kRW, kAnon), static_cast<long>(at(4)));
  ASSERT_EQ(as.madvise(at(0), 2 * kPage, MADV_RANDOM), 0);  // [0,4) random, gu
  EXPECT_EQ(as.map_count(), 2);
  ASSERT_EQ(as.madvise(at(4), 2 * kPage, MADV_RANDOM), 0);  // merges left into the gu VMA
  EXPECT_EQ(as.map_count(), 1);
  EXPECT_TRUE(flags_at(as, at(5)) & mm::VM_MAYBE_GUARD);
  EXPECT_TRUE(is_guard(as, at(0)));
  // ... and merging right, into a guarded next VMA.
  ASSERT_EQ(as.mmap(at(20), 4 * kPage, kRW, kAnon), static_cast<long>(at(20)));
  ASSERT_EQ(as.madvise(at(22), 2 * kPage, MADV_RANDOM), 0);
  ASSERT_EQ(as.madvise(at(23), kPage, MADV_GUARD_INSTALL), 0);
  EXPECT_FALSE(flags_at(as, at(20)) & mm::VM_MAYBE_GUARD);
  ASSERT_EQ(as.madvise(at(20), 2 * kPage, MADV_RANDOM), 0);
  EXPECT_EQ(as.map_count(), 2);
  EXPECT_TRUE(flags_at(as, at(20)) & mm::VM_MAYBE_GUARD);
  EXPECT_TRUE(is_guard(as, at(23)));
  // ... and when the surviving VMA is a plain one that absorbs a guarded
  // next VMA (prev | middle | next -> prev).
  ASSERT_EQ(as.mmap(at(40), 6 * kPage, kRW, kAnon), static_cast<long>(at(40)));
  ASSERT_EQ(as.madvise(at(42), 2 * kPage, MADV_RANDOM), 0);
  ASSERT_EQ(as.madvise(at(45), kPage, MADV_GUARD_INSTALL), 0);
  EXPECT_EQ(as.map_count(), 5);
  EXPECT_FALSE(flags_at(as, at(40)) & mm::VM_MAYBE_GUARD);
  ASSERT_EQ(as.madvise(at(42), 2 * kPage, MADV_NORMAL), 0);
  EXPECT_EQ(as.map_count(), 3);
  EXPECT_TRUE(flags_at(as, at(40)) & mm::VM_MAYBE_GUARD);
  EXPECT_TRUE(is_guard(as, at(45)));
}

// ---- flag advice added with this advice set ------------------------------

TEST_P(Madvise, ForkAndHugePageFlags) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(at(0), 4 * kPage, kRW, kAnon), static_cast<long>(at(0)));
  ASSERT_EQ(as.madvise(at(1), kPage, MADV_WIPEONFORK), 0);
  EXPECT_TRUE(flags_at(as, at(1)) & mm::VM_WIPEONFORK);
  EXPECT_EQ(as.map_count(), 3);
  ASSERT_EQ(as.madvise(at(1), kPage, MADV_KEEPONFORK), 0);
  EXPECT_EQ(as.map_count(), 1);
  ASSERT_EQ(as.madvise(at(0), 2 * kPage, MADV_HUGEPAGE), 0);
  EXPECT_EQ(flags_at(as, at(0)) & (mm::VM_HUGEPAGE | mm::VM_NOHUGEPAGE), mm::VM_HUGEPAGE);
  ASSERT_EQ(as.madvise(at(0), 2 * kPage, MADV_NOHUGEPAGE), 0);
  EXPECT_EQ(flags_at(as, at(0)) & (mm::VM_HUGEPAGE | mm::VM_NOHUGEPAGE), mm::VM_NOHUGEPAGE);
  // MAP_STACK means VM_NOHUGEPAGE: a MAP_STACK neighbour merges.
  ASSERT_EQ(as.mmap(at(4), kPage, kRW, kAnon | MAP_STACK), static_cast<long>(at(4)));
  ASSERT_EQ(as.madvise(at(2), 2 * kPage, MADV_NOHUGEPAGE), 0);
  EXPECT_EQ(as.map_count(), 1);
  ASSERT_EQ(as.mmap(at(10), kPage, kRW, kShared), static_cast<long>(at(10)));
  EXPECT_EQ(as.madvise(at(10), kPage, MADV_WIPEONFORK), -EINVAL);
  EXPECT_EQ(as.madvise(at(10), kPage, MADV_HUGEPAGE), 0);
  // MAP_DROPPABLE memory is always wiped and never dumped (host-checked).
  constexpr int kDroppable = 0x08 | MAP_ANONYMOUS | MAP_FIXED;
  ASSERT_EQ(as.mmap(at(12), 2 * kPage, kRW, kDroppable), static_cast<long>(at(12)));
  EXPECT_EQ(as.madvise(at(12), kPage, MADV_KEEPONFORK), -EINVAL);
  EXPECT_EQ(as.madvise(at(12), kPage, MADV_DODUMP), -EINVAL);
  EXPECT_EQ(as.madvise(at(12), kPage, MADV_WIPEONFORK), 0);
  EXPECT_EQ(as.madvise(at(12), kPage, MADV_GUARD_INSTALL), 0);
}

// ---- mincore --------------------------------------------------------------

TEST_P(Madvise, MincoreReportsResidency) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(at(0), 6 * kPage, kRW, kAnon), static_cast<long>(at(0)));
  ASSERT_TRUE(as.fill(at(1), 1, kPage).ok());
  unsigned char b;
  ASSERT_TRUE(as.read(at(2), &b, 1).ok());  // zero page (or a zeroed page): 1
  ASSERT_TRUE(as.fill(at(3), 1, 2 * kPage).ok());
  ASSERT_EQ(as.madvise(at(3), kPage, MADV_DONTNEED), 0);
  ASSERT_EQ(as.madvise(at(5), kPage, MADV_GUARD_INSTALL), 0);
  EXPECT_EQ(mincore_bits(as, at(0), 6), "011010");
  ASSERT_EQ(as.mprotect(at(0), 6 * kPage, PROT_NONE), 0);
  EXPECT_EQ(mincore_bits(as, at(0), 6), "011010");  // permissions do not matter
  // Shared memory: what the object holds.
  ASSERT_EQ(as.mmap(at(10), 3 * kPage, kRW, kShared), static_cast<long>(at(10)));
  ASSERT_TRUE(as.fill(at(10), 1, 2 * kPage).ok());
  ASSERT_EQ(as.madvise(at(10), 3 * kPage, MADV_DONTNEED), 0);
  EXPECT_EQ(mincore_bits(as, at(10), 3), "110");
  ASSERT_EQ(as.madvise(at(11), kPage, MADV_REMOVE), 0);
  EXPECT_EQ(mincore_bits(as, at(10), 3), "100");
}

TEST_P(Madvise, MincoreArgumentsAndHoles) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(at(0), 4 * kPage, kRW, kAnon), static_cast<long>(at(0)));
  ASSERT_EQ(as.mmap(at(5), kPage, kRW, kAnon), static_cast<long>(at(5)));
  ASSERT_TRUE(as.fill(at(0), 1, 2 * kPage).ok());
  ASSERT_TRUE(as.fill(at(5), 1, kPage).ok());
  std::vector<unsigned char> v(8, 9);
  // A hole: -ENOMEM after the entries before it; the rest untouched.
  EXPECT_EQ(as.mincore(at(0), 6 * kPage, v.data()), -ENOMEM);
  EXPECT_EQ(std::string(v.begin(), v.end()), std::string("\1\1\0\0\t\t\t\t", 8));
  v.assign(8, 9);
  EXPECT_EQ(as.mincore(at(4), kPage, v.data()), -ENOMEM);
  EXPECT_EQ(v[0], 9);
  // An unaligned length counts its last partial page.
  EXPECT_EQ(as.mincore(at(0), kPage + 1, v.data()), 0);
  EXPECT_EQ(v[1], 1);
  EXPECT_EQ(v[2], 9);
  // Argument checks, in Linux's order.
  EXPECT_EQ(as.mincore(at(0) + 1, kPage, v.data()), -EINVAL);
  EXPECT_EQ(as.mincore(at(0) + 1, 0, nullptr), -EINVAL);
  EXPECT_EQ(as.mincore(at(0), ~std::uint64_t{0}, v.data()), -ENOMEM);
  EXPECT_EQ(as.mincore(0x7ffffffff000ULL - kPage, kPage, v.data()), -ENOMEM);  // unmapped
  EXPECT_EQ(as.mincore(0x7ffffffff000ULL - kPage, kPage + 1, nullptr), -ENOMEM);  // beyond the top
  EXPECT_EQ(as.mincore(at(0), 0, nullptr), 0);
  EXPECT_EQ(as.mincore(at(0), kPage, nullptr), -EFAULT);
  EXPECT_EQ(as.mincore(at(4), kPage, nullptr), -ENOMEM);  // the lookup comes first
  // More than one round of 4096 pages.
  ASSERT_EQ(as.mmap(at(1000), 5000 * kPage, kRW, kAnon), static_cast<long>(at(1000)));
  ASSERT_TRUE(as.fill(at(1000) + 4500 * kPage, 1, kPage).ok());
  std::vector<unsigned char> big(5001, 9);
  EXPECT_EQ(as.mincore(at(1000), 5001 * kPage, big.data()), -ENOMEM);
  EXPECT_EQ(big[4500], 1);
  EXPECT_EQ(big[4499], 0);
  EXPECT_EQ(big[4999], 0);
  EXPECT_EQ(big[5000], 9);
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, Madvise, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace
