// SPDX-License-Identifier: MIT
// Deterministic fork races (issue 15).  Each test forces its interleaving
// with test hooks (mm.h ForkHooks, fault.h FaultHooks, mmap_lock.h
// VmaLockHooks; compiled out of release builds, where these tests skip)
// and promises; every lock mode runs every test it can express, on both
// kinds of test host (support/test_host.h):
//   - Linux 6.4's fork corruption (bugzilla 217624; "kernel/fork: mark
//     VMAs as locked before copying pages during fork"): a write fault in
//     the parent while fork is stopped at each of its points (every VMA
//     write-locked; about to copy each VMA), on pages of VMAs already
//     copied and not yet copied, with and without an anon_vma: the fault
//     waits for the mmap_lock and finishes only after fork, so the child
//     never sees the parent's later write and both reverse maps are whole;
//   - a fault already holding a VMA (or the mmap_lock) delays fork until
//     it is done;
//   - lock_vma_under_rcu in the parent while fork runs never locks a VMA,
//     even for a reader that found the VMA before fork started;
//   - copy-on-write faults on one page from parent and child at once, in
//     both orders and concurrently (threads, repeated);
//   - faults in one space while the other unmaps / mprotects / remaps the
//     same range.
// Every test ends with every frame back in the pool the spaces share.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fault/fault.h"
#include "mem/phys_mem.h"
#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/rmap.h"
#include "mm/vma.h"
#include "support/test_host.h"
#include "sync/rcu.h"
#include "unit/sync/test_util.h"
#include "support/expect_valid.h"
#include "vmspace/address_space.h"
#include "vmspace/physical_memory.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kPage = 4096;
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr int kAnon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;

#if defined(VMSPACE_DEBUG_CHECKS)
constexpr bool kHooks = true;
#else
constexpr bool kHooks = false;
#endif

std::uint64_t P(std::uint64_t page) { return kBase + page * kPage; }

using test::get_or_die;
using test::is_blocked;
using test::is_ready;
using test::kDeadline;
using test::wait_or_die;

// ---- gates ------------------------------------------------------------------------

// A gate on fork: it stops at ForkHooks::locked (every parent VMA
// write-locked, nothing copied) when `at` is kLocked, or at
// ForkHooks::copying of the parent VMA that starts at `at`; kNever: it only
// records.  The fork thread waits there until open().
struct ForkGate {
  static constexpr std::uint64_t kLocked = 0;
  static constexpr std::uint64_t kNever = ~std::uint64_t{0};
  explicit ForkGate(std::uint64_t stop_at) : at(stop_at) {}
  const std::uint64_t at;
  std::promise<void> arrived_p, go_p;
  std::shared_future<void> arrived_f = arrived_p.get_future().share();
  std::shared_future<void> go_f = go_p.get_future().share();
  std::atomic<bool> locked_seen{false};
  std::vector<std::uint64_t> copied;  // vm_start of each VMA copied, in order (fork thread)
  bool opened = false;

  void park() {
    arrived_p.set_value();
    go_f.wait();
  }
  static void locked(mm::MmStruct*, void* arg) {
    auto* g = static_cast<ForkGate*>(arg);
    g->locked_seen = true;
    if (g->at == kLocked) g->park();
  }
  static void copying(mm::MmStruct*, mm::Vma* vma, void* arg) {
    auto* g = static_cast<ForkGate*>(arg);
    g->copied.push_back(vma->vm_start);
    if (g->at == vma->vm_start) g->park();
  }
  void wait_arrived(const char* what) const { wait_or_die(arrived_f, what); }
  void open() {
    if (!opened) go_p.set_value();
    opened = true;
  }
};

std::future<std::unique_ptr<AddressSpace>> fork_async(AddressSpace& as, ForkGate& g) {
  return std::async(std::launch::async, [&as, &g] {
    mm::ForkHooks h;
    h.locked = &ForkGate::locked;
    h.copying = &ForkGate::copying;
    h.arg = &g;
    mm::set_fork_hooks(&h);
    int err = 1;
    std::unique_ptr<AddressSpace> child = as.fork(&err);
    mm::set_fork_hooks(nullptr);
    EXPECT_EQ(err, 0);
    return child;
  });
}

// A gate on a fault hook point (fault.h) or lock_vma_under_rcu's
// after_lookup: the first call announces it arrived and waits to be let go.
struct Gate {
  std::promise<void> arrived_p, go_p;
  std::shared_future<void> arrived_f = arrived_p.get_future().share();
  std::shared_future<void> go_f = go_p.get_future().share();
  std::atomic<int> calls{0};
  mm::Vma* found = nullptr;  // after_lookup: the VMA of the first call
  bool opened = false;

  static void hook(void* arg) {
    auto* g = static_cast<Gate*>(arg);
    if (g->calls.fetch_add(1) != 0) return;
    g->arrived_p.set_value();
    g->go_f.wait();
  }
  static void lookup_hook(mm::MmStruct*, mm::Vma* vma, void* arg) {
    auto* g = static_cast<Gate*>(arg);
    if (g->calls.load() == 0) g->found = vma;
    hook(arg);
  }
  void wait_arrived(const char* what) const { wait_or_die(arrived_f, what); }
  void open() {
    if (!opened) go_p.set_value();
    opened = true;
  }
};

fault::FaultHooks gate_hooks(void (*fault::FaultHooks::*point)(void*), Gate& g) {
  fault::FaultHooks h;
  h.*point = &Gate::hook;
  h.arg = &g;
  return h;
}

// A write fault on its own thread (hooks installed there), then, once it
// is resolved, a write of `byte` (0: none) through the soft MMU.
std::future<Fault> write_async(AddressSpace& as, std::uint64_t va, unsigned char byte,
                               const fault::FaultHooks* hooks = nullptr) {
  return std::async(std::launch::async, [&as, va, byte, hooks] {
    fault::set_fault_hooks(hooks);
    Fault r = as.fault_in(va, true);
    fault::set_fault_hooks(nullptr);
    if (r == Fault::none && byte != 0) r = as.write(va, &byte, 1).fault;
    return r;
  });
}

// ---- observations -----------------------------------------------------------------

int byte_at(AddressSpace& as, std::uint64_t va) {
  unsigned char b = 0;
  return as.read(va, &b, 1).ok() ? b : -1;
}

mem::pfn_t pfn_at(AddressSpace& as, std::uint64_t va) {
  rcu::ReadGuard g;
  const mem::pte_t p = as.mm()->pgtables.lookup(va);
  return mem::pte_present(p) ? mem::pte_pfn(p) : mem::kNoFrame;
}

mm::Vma* vma_at(AddressSpace& as, std::uint64_t va) {
  mm::mmap_read_lock(as.mm());
  mm::Vma* v = mm::vma_lookup(as.mm(), va);
  mm::mmap_read_unlock(as.mm());
  return v;
}

mm::AnonVma* anon_vma_at(AddressSpace& as, std::uint64_t va) {
  mm::Vma* v = vma_at(as, va);
  return v != nullptr ? v->anon_vma.load() : nullptr;
}

// ---- the fixture --------------------------------------------------------------------

class ForkRace : public ::testing::TestWithParam<LockMode> {
 protected:
  void SetUp() override {
    free0_ = pool_->free_bytes();
    if (!kHooks) GTEST_SKIP() << "test hooks are compiled out of release builds";
  }
  void TearDown() override {
    pool_->internal()->drain_deferred();
    EXPECT_EQ(pool_->free_bytes(), free0_) << "frames leaked: " << (free0_ - pool_->free_bytes()) / kPage;
  }
  AddressSpaceOptions opts() const {
    AddressSpaceOptions o = test::test_options(GetParam());
    o.pool = pool_;
    return o;
  }
  bool per_vma() const { return GetParam() != LockMode::mmap_lock; }
  std::int64_t free_pages() const { return static_cast<std::int64_t>(pool_->free_bytes() / kPage); }
  // Is a writer (vma_start_write) waiting for this VMA's readers?
  bool writer_waits_on(const mm::Vma* v) const {
    if (GetParam() == LockMode::per_vma_refcount || GetParam() == LockMode::per_vma_range) return v->vm_refcnt.load() >= mm::kVmaLockOffset;
    return v->vm_lock.has_waiters();
  }

  std::shared_ptr<PhysicalMemory> pool_ =
      std::make_shared<PhysicalMemory>(PhysicalMemory::Options{.limit_bytes = 64ull << 20, .pretouch = false});
  std::uint64_t free0_ = 0;
};

// ---- bugzilla 217624 --------------------------------------------------------------

// The parent: four VMAs (gaps between them), two with anonymous memory and
// two never written (no anon_vma: their first write fault must prepare one).
//   V0 [0, 4):   pages 0, 1 written 0xa0, 0xa1
//   V1 [8, 12):  never touched
//   V2 [16, 20): page 16 written 0xb0
//   V3 [24, 28): never touched
constexpr std::uint64_t kVma[4] = {0, 8, 16, 24};

void make_parent(AddressSpace& as) {
  for (std::uint64_t v : kVma) ASSERT_EQ(as.mmap(P(v), 4 * kPage, kRW, kAnon), static_cast<long>(P(v)));
  ASSERT_TRUE(as.fill(P(0), 0xa0, kPage).ok());
  ASSERT_TRUE(as.fill(P(1), 0xa1, kPage).ok());
  ASSERT_TRUE(as.fill(P(16), 0xb0, kPage).ok());
  ASSERT_NE(anon_vma_at(as, P(0)), nullptr);
  ASSERT_EQ(anon_vma_at(as, P(8)), nullptr);
  ASSERT_NE(anon_vma_at(as, P(16)), nullptr);
  ASSERT_EQ(anon_vma_at(as, P(24)), nullptr);
}

// What make_parent's pages hold.
int initial_byte(std::uint64_t page) {
  switch (page) {
    case 0: return 0xa0;
    case 1: return 0xa1;
    case 16: return 0xb0;
    default: return 0;
  }
}

struct Target {
  const char* what;
  std::uint64_t page;
};
constexpr Target kTargets[] = {
    {"an unwritten page of a VMA with an anon_vma (V0)", 2},
    {"a written page of V0 (copy-on-write once fork has copied V0)", 1},
    {"the first write to a VMA without an anon_vma (V1)", 9},
    {"an unwritten page of a VMA with an anon_vma (V2)", 18},
    {"the first write to a VMA without an anon_vma (V3)", 27},
};

std::string stop_name(std::uint64_t at) {
  if (at == ForkGate::kLocked) return "every VMA write-locked";
  return "about to copy V" + std::to_string((at - kBase) / kPage / 8);
}

// Fork stops at each point; a write fault on each target page comes then.
// The fault must wait (for the mmap_lock, which fork holds: in the per-VMA
// modes its VMA lock fails) until fork is over; then the parent has its
// write and the child has the page as it was when fork started, and both
// reverse maps are whole.  Afterwards each side's writes are its own.
TEST_P(ForkRace, ParentWriteFaultWaitsForFork) {
  int runs = 0;
  for (std::uint64_t stop : {ForkGate::kLocked, P(0), P(8), P(16), P(24)}) {
    for (const Target& t : kTargets) {
      SCOPED_TRACE(::testing::Message() << "fork stopped " << stop_name(stop) << "; fault on " << t.what);
      AddressSpace parent(opts());
      ASSERT_NO_FATAL_FAILURE(make_parent(parent));
      const std::uint64_t aborts = parent.vm_stat(VmStat::vma_lock_abort);
      const std::uint64_t va = P(t.page) + 5;

      ForkGate gate(stop);
      auto forked = fork_async(parent, gate);
      gate.wait_arrived("fork at its stop");
      auto fault = write_async(parent, va, 0xee);
      // The fault queues on the parent's mmap_lock (or, wrongly, completes).
      test::wait_until([&] { return mm::mmap_lock_has_waiters(parent.mm()) || is_ready(fault); });
      EXPECT_FALSE(is_ready(fault)) << "the write fault completed while fork held the parent";
      EXPECT_TRUE(mm::mmap_lock_has_waiters(parent.mm())) << "the fault is not waiting for the mmap_lock";
      if (per_vma()) {
        EXPECT_GT(parent.vm_stat(VmStat::vma_lock_abort), aborts) << "the fault locked a VMA fork holds";
      }
      gate.open();
      std::unique_ptr<AddressSpace> child = get_or_die(forked, "fork");
      EXPECT_EQ(get_or_die(fault, "write fault"), Fault::none);
      ASSERT_NE(child, nullptr);
      EXPECT_EQ(gate.copied, (std::vector<std::uint64_t>{P(0), P(8), P(16), P(24)}));

      EXPECT_EQ(byte_at(parent, va), 0xee);
      EXPECT_EQ(byte_at(*child, va), initial_byte(t.page)) << "the child sees the parent's write after fork";
      for (std::uint64_t v : kVma)
        for (std::uint64_t p = v; p < v + 4; ++p) {
          if (p == t.page) continue;
          EXPECT_EQ(byte_at(parent, P(p)), initial_byte(p)) << "parent page " << p;
          EXPECT_EQ(byte_at(*child, P(p)), initial_byte(p)) << "child page " << p;
        }
      EXPECT_VALID(parent, "parent after fork");
      EXPECT_VALID(*child, "child after fork");
      // Each side's writes from now on are its own.
      ASSERT_TRUE(parent.fill(P(16), 0xb1, kPage).ok());
      ASSERT_TRUE(child->fill(P(0), 0xc0, kPage).ok());
      ASSERT_TRUE(child->fill(va, 0xcc, 1).ok());
      EXPECT_EQ(byte_at(*child, P(16)), 0xb0);
      EXPECT_EQ(byte_at(parent, P(0)), 0xa0);
      EXPECT_EQ(byte_at(parent, va), 0xee);
      EXPECT_VALID(parent, "parent at the end");
      EXPECT_VALID(*child, "child at the end");
      ++runs;
    }
  }
  EXPECT_EQ(runs, 25);
}

// The other order: a write fault already holds its VMA's read lock
// (per-VMA modes) or mmap R when fork starts.  Fork waits for it before it
// write-locks anything more (ForkHooks::locked not reached); the page the
// fault installs is then the child's too, shared copy-on-write.
TEST_P(ForkRace, ForkWaitsForFaultInProgress) {
  AddressSpace parent(opts());
  ASSERT_NO_FATAL_FAILURE(make_parent(parent));
  Gate holder;
  fault::FaultHooks hh = gate_hooks(&fault::FaultHooks::fault_locked, holder);
  auto fault = write_async(parent, P(2), 0, &hh);
  holder.wait_arrived("fault holding V0");
  mm::Vma* v0 = vma_at(parent, P(0));  // (before fork queues for mmap W)
  ForkGate gate(ForkGate::kNever);
  auto forked = fork_async(parent, gate);
  if (per_vma()) {
    EXPECT_TRUE(test::wait_until([&] { return writer_waits_on(v0); })) << "fork does not wait for V0's reader";
  } else {
    EXPECT_TRUE(test::wait_until([&] { return mm::mmap_lock_has_waiters(parent.mm()); }));
  }
  EXPECT_TRUE(is_blocked(forked)) << "fork went on while a fault held V0";
  EXPECT_FALSE(gate.locked_seen.load());
  holder.open();
  EXPECT_EQ(get_or_die(fault, "fault"), Fault::none);
  std::unique_ptr<AddressSpace> child = get_or_die(forked, "fork");
  ASSERT_NE(child, nullptr);
  EXPECT_TRUE(gate.locked_seen.load());
  const mem::pfn_t pfn = pfn_at(parent, P(2));
  ASSERT_NE(pfn, mem::kNoFrame);
  EXPECT_EQ(pfn_at(*child, P(2)), pfn) << "the page faulted before fork is not the child's";
  EXPECT_EQ(parent.mm()->phys->frame(pfn).mapcount.load(), 2);
  const std::int64_t base = free_pages();
  ASSERT_TRUE(parent.fill(P(2), 0x22, kPage).ok());
  EXPECT_EQ(free_pages(), base - 1) << "the parent's write did not copy";
  EXPECT_EQ(byte_at(*child, P(2)), 0);
  EXPECT_VALID(parent, "parent");
  EXPECT_VALID(*child, "child");
}

// The bug's shape from the other side: the first write to V1 (no anon_vma)
// is about to prepare one, holding V1's read lock (mmap R in mmap_lock
// mode), when fork starts.  Fork waits for the VMA.  Under a VMA lock the
// fault may only try the mmap_lock, which fork holds by then: it retries
// after fork, so the child has no page (and V1 no anon_vma); in mmap_lock
// mode it completes first and the child shares the page.
TEST_P(ForkRace, AnonVmaPrepareRacingForkStart) {
  AddressSpace parent(opts());
  ASSERT_NO_FATAL_FAILURE(make_parent(parent));
  Gate prep;
  fault::FaultHooks hh = gate_hooks(&fault::FaultHooks::anon_prepare, prep);
  auto fault = write_async(parent, P(9), 0, &hh);
  prep.wait_arrived("fault preparing V1's anon_vma");
  mm::Vma* v1 = vma_at(parent, P(8));  // (before fork queues for mmap W)
  ForkGate gate(ForkGate::kNever);
  auto forked = fork_async(parent, gate);
  if (per_vma()) {
    EXPECT_TRUE(test::wait_until([&] { return writer_waits_on(v1); })) << "fork does not wait for V1's reader";
  } else {
    EXPECT_TRUE(test::wait_until([&] { return mm::mmap_lock_has_waiters(parent.mm()); }));
  }
  EXPECT_TRUE(is_blocked(forked));
  prep.open();
  std::unique_ptr<AddressSpace> child = get_or_die(forked, "fork");
  EXPECT_EQ(get_or_die(fault, "fault"), Fault::none);
  ASSERT_NE(child, nullptr);
  ASSERT_NE(pfn_at(parent, P(9)), mem::kNoFrame);
  if (per_vma()) {
    EXPECT_EQ(parent.vm_stat(VmStat::vma_lock_retry), 1u) << "the fault did not retry under the mmap_lock";
    EXPECT_EQ(pfn_at(*child, P(9)), mem::kNoFrame) << "the child got a page faulted after fork";
    EXPECT_EQ(anon_vma_at(*child, P(8)), nullptr);
  } else {
    EXPECT_EQ(pfn_at(*child, P(9)), pfn_at(parent, P(9)));
    EXPECT_NE(anon_vma_at(*child, P(8)), nullptr);
  }
  EXPECT_EQ(byte_at(*child, P(9)), 0);
  ASSERT_TRUE(parent.fill(P(9), 0x99, kPage).ok());
  EXPECT_EQ(byte_at(*child, P(9)), 0);
  EXPECT_VALID(parent, "parent");
  EXPECT_VALID(*child, "child");
}

// ---- lock_vma_under_rcu during fork ------------------------------------------------

// At every point fork can be stopped, lock_vma_under_rcu in the parent
// fails for every VMA (each is write-locked until fork drops the
// mmap_lock), counting an abort; so does it for a reader that found a VMA
// in the tree before fork started and tries to lock it now.  After fork,
// both spaces lock their VMAs again.
TEST_P(ForkRace, VmaLockFailsWhileForkCopies) {
  if (!per_vma()) GTEST_SKIP() << "mmap_lock mode has no VMA locks";
  for (std::uint64_t stop : {ForkGate::kLocked, P(0), P(8), P(16), P(24)}) {
    SCOPED_TRACE(::testing::Message() << "fork stopped " << stop_name(stop));
    AddressSpace parent(opts());
    ASSERT_NO_FATAL_FAILURE(make_parent(parent));
    mm::MmStruct* m = parent.mm();
    // A reader found V2 in the tree and waits before locking it.
    Gate looker;
    mm::VmaLockHooks lh;
    lh.after_lookup = &Gate::lookup_hook;
    lh.arg = &looker;
    auto late = std::async(std::launch::async, [m, &lh] {
      mm::set_vma_lock_hooks(&lh);
      mm::Vma* v = mm::lock_vma_under_rcu(m, P(17));
      mm::set_vma_lock_hooks(nullptr);
      if (v != nullptr) mm::vma_end_read(v);
      return v != nullptr;
    });
    looker.wait_arrived("reader between lookup and lock");
    EXPECT_EQ(looker.found, vma_at(parent, P(16)));

    ForkGate gate(stop);
    auto forked = fork_async(parent, gate);
    gate.wait_arrived("fork at its stop");
    const std::uint64_t aborts = parent.vm_stat(VmStat::vma_lock_abort);
    for (std::uint64_t v : kVma) {
      for (std::uint64_t a : {P(v), P(v + 3)}) {
        mm::Vma* got = mm::lock_vma_under_rcu(m, a);
        EXPECT_EQ(got, nullptr) << "locked the VMA at " << std::hex << a << " while fork holds it";
        if (got != nullptr) mm::vma_end_read(got);
      }
    }
    EXPECT_EQ(parent.vm_stat(VmStat::vma_lock_abort), aborts + 8);
    looker.open();
    EXPECT_FALSE(get_or_die(late, "reader")) << "a reader that found V2 before fork locked it during fork";
    EXPECT_EQ(parent.vm_stat(VmStat::vma_lock_abort), aborts + 9);
    gate.open();
    std::unique_ptr<AddressSpace> child = get_or_die(forked, "fork");
    ASSERT_NE(child, nullptr);
    for (AddressSpace* as : {&parent, child.get()}) {
      for (std::uint64_t v : kVma) {
        mm::Vma* got = mm::lock_vma_under_rcu(as->mm(), P(v));
        EXPECT_NE(got, nullptr) << std::hex << P(v);
        if (got != nullptr) {
          EXPECT_EQ(got->vm_start, P(v));
          mm::vma_end_read(got);
        }
      }
    }
    EXPECT_VALID(parent, "parent");
    EXPECT_VALID(*child, "child");
  }
}

// ---- copy-on-write from both sides at once --------------------------------------

// Parent and child each have a write fault on the same shared page parked
// at fault_locked; both are let go at once.  Whether one copies and the
// other reuses, or both copy and the old frame goes, one frame more is in
// use; each side has its own data.
TEST_P(ForkRace, CowFaultsOnTheSamePageAtOnce) {
  AddressSpace parent(opts());
  ASSERT_EQ(parent.mmap(P(0), kPage, kRW, kAnon), static_cast<long>(P(0)));
  ASSERT_TRUE(parent.fill(P(0), 0x10, kPage).ok());
  int err = 1;
  std::unique_ptr<AddressSpace> child = parent.fork(&err);
  ASSERT_NE(child, nullptr);
  const mem::pfn_t old = pfn_at(parent, P(0));
  ASSERT_EQ(pfn_at(*child, P(0)), old);
  const std::int64_t base = free_pages();
  Gate gp, gc;
  fault::FaultHooks hp = gate_hooks(&fault::FaultHooks::fault_locked, gp);
  fault::FaultHooks hc = gate_hooks(&fault::FaultHooks::fault_locked, gc);
  auto fp = write_async(parent, P(0), 0, &hp);
  auto fc = write_async(*child, P(0), 0, &hc);
  gp.wait_arrived("parent's fault");
  gc.wait_arrived("child's fault");
  gp.open();
  gc.open();
  EXPECT_EQ(get_or_die(fp, "parent's fault"), Fault::none);
  EXPECT_EQ(get_or_die(fc, "child's fault"), Fault::none);
  EXPECT_EQ(free_pages(), base - 1);
  EXPECT_NE(pfn_at(parent, P(0)), pfn_at(*child, P(0)));
  ASSERT_TRUE(parent.fill(P(0) + 1, 0xaa, 1).ok());
  ASSERT_TRUE(child->fill(P(0) + 1, 0xcc, 1).ok());
  EXPECT_EQ(free_pages(), base - 1) << "a write after both faults copied again";
  EXPECT_EQ(byte_at(parent, P(0) + 1), 0xaa);
  EXPECT_EQ(byte_at(*child, P(0) + 1), 0xcc);
  EXPECT_EQ(byte_at(parent, P(0)), 0x10);
  EXPECT_EQ(byte_at(*child, P(0)), 0x10);
  EXPECT_VALID(parent, "parent");
  EXPECT_VALID(*child, "child");
}

// One side's copy-on-write fault waits (fault_locked) while the other
// side's completes: the other copies (the frame is still shared), then the
// waiting one finds the frame its own and reuses it in place: no frame,
// same PTE frame, reverse map pointing to its VMA's anon_vma.
TEST_P(ForkRace, CowFaultFindsThePageItsOwnAfterTheOtherCopied) {
  for (bool parent_waits : {true, false}) {
    SCOPED_TRACE(parent_waits ? "the parent's fault waits" : "the child's fault waits");
    AddressSpace parent(opts());
    ASSERT_EQ(parent.mmap(P(0), kPage, kRW, kAnon), static_cast<long>(P(0)));
    ASSERT_TRUE(parent.fill(P(0), 0x10, kPage).ok());
    int err = 1;
    std::unique_ptr<AddressSpace> child = parent.fork(&err);
    ASSERT_NE(child, nullptr);
    AddressSpace& waiter = parent_waits ? parent : *child;
    AddressSpace& other = parent_waits ? *child : parent;
    const mem::pfn_t old = pfn_at(parent, P(0));
    const std::int64_t base = free_pages();
    Gate g;
    fault::FaultHooks h = gate_hooks(&fault::FaultHooks::fault_locked, g);
    auto fw = write_async(waiter, P(0), 0x77, &h);
    g.wait_arrived("waiting fault");
    ASSERT_TRUE(other.fill(P(0), 0x55, kPage).ok());
    EXPECT_EQ(free_pages(), base - 1) << "the other side did not copy";
    EXPECT_NE(pfn_at(other, P(0)), old);
    g.open();
    EXPECT_EQ(get_or_die(fw, "waiting fault"), Fault::none);
    EXPECT_EQ(free_pages(), base - 1) << "the waiting side copied a frame only it maps";
    EXPECT_EQ(pfn_at(waiter, P(0)), old);
    EXPECT_EQ(waiter.mm()->phys->frame(old).mapping.load(),
              reinterpret_cast<std::uintptr_t>(anon_vma_at(waiter, P(0))) | mem::kMappingAnon);
    EXPECT_EQ(byte_at(waiter, P(0)), 0x77);
    EXPECT_EQ(byte_at(waiter, P(0) + 1), 0x10);
    EXPECT_EQ(byte_at(other, P(0)), 0x55);
    EXPECT_VALID(parent, "parent");
    EXPECT_VALID(*child, "child");
  }
}

// Threads: fork, then parent and child write the same pages at the same
// moment (one ascending, the other descending, so that they meet on every
// page at some point of the walk), many times over.  Each side reads its
// own data; the family uses exactly one frame per page per space once
// both wrote, and the parent's alone after the child exits.
TEST_P(ForkRace, ConcurrentCowWritesRepeated) {
  constexpr int kRounds = 100;
  constexpr int kPages = 8;
  AddressSpace parent(opts());
  ASSERT_EQ(parent.mmap(P(0), kPages * kPage, kRW, kAnon), static_cast<long>(P(0)));
  ASSERT_TRUE(parent.fill(P(0), 1, kPages * kPage).ok());
  const std::int64_t with_parent = free_pages();
  for (int round = 0; round < kRounds; ++round) {
    int err = 1;
    std::unique_ptr<AddressSpace> child = parent.fork(&err);
    ASSERT_NE(child, nullptr);
    const auto pb = static_cast<unsigned char>(2 + round % 100);
    const auto cb = static_cast<unsigned char>(pb + 100);
    std::atomic<int> ready{0};
    auto writer = [&ready](AddressSpace& as, unsigned char b, bool up) {
      ready.fetch_add(1);
      while (ready.load() < 2) {
      }
      bool ok = true;
      for (int k = 0; k < kPages; ++k) {
        const std::uint64_t page = static_cast<std::uint64_t>(up ? k : kPages - 1 - k);
        ok = as.fill(P(page), b, kPage).ok() && ok;
      }
      return ok;
    };
    std::thread tp([&] { EXPECT_TRUE(writer(parent, pb, true)); });
    std::thread tc([&] { EXPECT_TRUE(writer(*child, cb, false)); });
    tp.join();
    tc.join();
    for (int k = 0; k < kPages; ++k) {
      ASSERT_EQ(byte_at(parent, P(k) + round), pb) << "round " << round << " page " << k;
      ASSERT_EQ(byte_at(*child, P(k) + round), cb) << "round " << round << " page " << k;
    }
    ASSERT_EQ(free_pages(), with_parent - kPages) << "round " << round;
    if (round % 20 == 0) {
      EXPECT_VALID(parent, "round " + std::to_string(round));
      EXPECT_VALID(*child, "round " + std::to_string(round));
    }
    child.reset();
    ASSERT_EQ(free_pages(), with_parent) << "round " << round;
  }
}

// ---- one space faults while the other changes the range ------------------------

// After fork, one space faults (reads and copy-on-write writes) over a
// range while the other mprotects it back and forth, unmaps part of it,
// maps it again and writes there, many times.  The faulting side always
// reads its own snapshot (or its own writes); the other side's changes
// never reach it; both stay valid.
TEST_P(ForkRace, FaultsWhileTheOtherSideUnmapsAndMprotects) {
  constexpr std::uint64_t kPages = 16;
  constexpr int kRounds = 60;
  constexpr int kChanges = 40;
  for (bool child_faults : {true, false}) {
    SCOPED_TRACE(child_faults ? "child faults, parent changes" : "parent faults, child changes");
    AddressSpace parent(opts());
    ASSERT_EQ(parent.mmap(P(0), kPages * kPage, kRW, kAnon), static_cast<long>(P(0)));
    for (std::uint64_t i = 0; i < kPages; ++i)
      ASSERT_TRUE(parent.fill(P(i), static_cast<unsigned char>(0x10 + i), kPage).ok());
    int err = 1;
    std::unique_ptr<AddressSpace> child = parent.fork(&err);
    ASSERT_NE(child, nullptr);
    AddressSpace& faulter = child_faults ? *child : parent;
    AddressSpace& changer = child_faults ? parent : *child;

    // Both sides run until each has done its share: the faulter at least
    // kRounds rounds and until the changer is done.
    std::atomic<int> started{0};
    std::atomic<bool> changer_done{false};
    auto start_together = [&started] {
      started.fetch_add(1);
      while (started.load() < 2) std::this_thread::yield();
    };
    std::vector<int> want(kPages);
    for (std::uint64_t i = 0; i < kPages; ++i) want[i] = 0x10 + static_cast<int>(i);
    int rounds = 0;
    std::thread f([&] {
      start_together();
      for (int round = 0; round < kRounds || !changer_done.load(); ++round) {
        for (std::uint64_t i = 0; i < kPages; ++i) {
          unsigned char b = 0;
          const AccessResult r = faulter.read(P(i) + round % 64, &b, 1);
          EXPECT_TRUE(r.ok()) << "round " << round << " page " << i;
          EXPECT_EQ(b, want[i]) << "round " << round << " page " << i;
        }
        const std::uint64_t i = static_cast<std::uint64_t>(round) % kPages;
        want[i] = 0xc0 + static_cast<int>(i) + round % 2;
        EXPECT_TRUE(faulter.fill(P(i), static_cast<unsigned char>(want[i]), kPage).ok()) << "round " << round;
        rounds = round + 1;
      }
    });
    start_together();
    for (int c = 0; c < kChanges; ++c) {
      EXPECT_EQ(changer.mprotect(P(0), kPages * kPage, PROT_READ), 0);
      EXPECT_EQ(changer.mprotect(P(0), kPages * kPage, kRW), 0);
      EXPECT_EQ(changer.munmap(P(4), 4 * kPage), 0);
      EXPECT_EQ(changer.mmap(P(4), 4 * kPage, kRW, kAnon), static_cast<long>(P(4)));
      EXPECT_TRUE(changer.fill(P(4), 0xee, 4 * kPage).ok());
      EXPECT_TRUE(changer.fill(P(10), 0xef, 1).ok());
      EXPECT_EQ(changer.madvise(P(12), 2 * kPage, MADV_DONTNEED), 0);
    }
    changer_done = true;
    f.join();
    EXPECT_GE(rounds, kRounds);
    for (std::uint64_t i = 0; i < kPages; ++i) {
      EXPECT_EQ(byte_at(faulter, P(i)), want[i]) << "page " << i;
      int other = 0x10 + static_cast<int>(i);
      if (i >= 4 && i < 8) other = 0xee;
      if (i == 10) other = 0xef;
      if (i == 12 || i == 13) other = 0;
      EXPECT_EQ(byte_at(changer, P(i)), other) << "page " << i;
    }
    EXPECT_VALID(parent, "parent");
    EXPECT_VALID(*child, "child");
  }
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& p) { return std::string(lock_mode_name(p.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, ForkRace, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace
