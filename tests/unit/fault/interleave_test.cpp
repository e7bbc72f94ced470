// SPDX-License-Identifier: MIT
// Deterministic interleaving tests (issue 12) for paths where a fault, a
// stack expansion, a merge or a populate meets another thread.  Each test
// forces its interleaving with test hooks (fault.h FaultHooks, mmap_lock.h
// VmaLockHooks, rmap.h AnonVmaHooks; compiled out of release builds, where
// these tests skip) and promises; a bounded sleep (kBlockedFor) only
// confirms that a thread IS blocked.  Every lock mode runs every test where
// it applies, on both kinds of test host (support/test_host.h).
//
//   - stack expansion (expand_downwards) against VMA-locked faults on the
//     stack and on its neighbour, and against a neighbour mapped inside the
//     guard gap (or the stack unmapped) while the fault re-locks (Linux:
//     StackRot, "lock a vma before stack expansion");
//   - a merge that removes both neighbours (prev|middle|next) while faults
//     hold, and wait for, each of the three VMAs;
//   - the RETRY path and the detach-retry path of lock_vma_under_rcu, each
//     hit a known number of times (exact vm_stat counters);
//   - racing first faults in two adjacent VMAs that share an anon_vma
//     (seed 004: find_mergeable_anon_vma);
//   - populate (MAP_POPULATE, MAP_LOCKED, mprotect of locked memory)
//     against munmap of the same range (seed 003).
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fault/fault.h"
#include "mem/phys_mem.h"
#include "mm/memory.h"
#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/rmap.h"
#include "mm/vma.h"
#include "support/test_host.h"
#include "sync/rcu.h"
#include "unit/sync/test_util.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kStack = 0x300000000000;  // nothing else within 8 MiB
constexpr std::uint64_t kPage = 4096;
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr int kRWX = PROT_READ | PROT_WRITE | PROT_EXEC;
constexpr int kAnon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;

#if defined(VMSPACE_DEBUG_CHECKS)
constexpr bool kHooks = true;
#else
constexpr bool kHooks = false;
#endif

using test::get_or_die;
using test::is_blocked;
using test::is_ready;
using test::kDeadline;
using test::wait_or_die;

// A gate on a hook point: the `at`-th call (1-based; kNever: none)
// announces it arrived and waits to be let go; every call runs `each` first
// (on the hooked thread), and the paused one runs `after` once let go.
struct Gate {
  static constexpr int kNever = 0;
  explicit Gate(int at_call = 1) : at(at_call) {}
  const int at;
  std::promise<void> arrived_p, go_p;
  std::shared_future<void> arrived_f = arrived_p.get_future().share();
  std::shared_future<void> go_f = go_p.get_future().share();
  std::atomic<int> calls{0};
  std::function<void()> each, after;
  mm::Vma* found = nullptr;  // after_lookup: the VMA of the first call

  static void hook(void* arg) {
    auto* g = static_cast<Gate*>(arg);
    if (g->each) g->each();
    if (g->calls.fetch_add(1) + 1 != g->at) return;
    g->arrived_p.set_value();
    g->go_f.wait();
    if (g->after) g->after();
  }
  static void lookup_hook(mm::MmStruct*, mm::Vma* vma, void* arg) {
    auto* g = static_cast<Gate*>(arg);
    if (g->calls.load() == 0) g->found = vma;
    hook(arg);
  }
  void wait_arrived(const char* what) const { wait_or_die(arrived_f, what); }
  void open() { go_p.set_value(); }
};

// A fault on its own thread, with hooks installed there.
struct Hooks {
  const fault::FaultHooks* fault = nullptr;
  const mm::VmaLockHooks* lookup = nullptr;
  const mm::AnonVmaHooks* anon = nullptr;
};
std::future<Fault> fault_async(AddressSpace& as, std::uint64_t va, bool write, Hooks h = {}) {
  return std::async(std::launch::async, [&as, va, write, h] {
    fault::set_fault_hooks(h.fault);
    mm::set_vma_lock_hooks(h.lookup);
    mm::set_anon_vma_hooks(h.anon);
    Fault r = as.fault_in(va, write);
    fault::set_fault_hooks(nullptr);
    mm::set_vma_lock_hooks(nullptr);
    mm::set_anon_vma_hooks(nullptr);
    return r;
  });
}

fault::FaultHooks gate_hooks(void (*fault::FaultHooks::*point)(void*), Gate& g) {
  fault::FaultHooks h;
  h.*point = &Gate::hook;
  h.arg = &g;
  return h;
}

// The VMA counters of lock_vma_under_rcu and the fault path.  mmap_lock
// mode has no VMA locks: all of them stay 0 there.
struct VmaCounts {
  std::uint64_t success = 0, abort = 0, retry = 0, miss = 0;
};
void expect_counts(const AddressSpace& as, VmaCounts c) {
  if (as.mode() == LockMode::mmap_lock) c = VmaCounts{};
  EXPECT_EQ(as.vm_stat(VmStat::vma_lock_success), c.success) << "vma_lock_success";
  EXPECT_EQ(as.vm_stat(VmStat::vma_lock_abort), c.abort) << "vma_lock_abort";
  EXPECT_EQ(as.vm_stat(VmStat::vma_lock_retry), c.retry) << "vma_lock_retry";
  EXPECT_EQ(as.vm_stat(VmStat::vma_lock_miss), c.miss) << "vma_lock_miss";
}

mm::Vma* vma_at(AddressSpace& as, std::uint64_t addr) {
  mm::mmap_read_lock(as.mm());
  mm::Vma* v = mm::vma_lookup(as.mm(), addr);
  mm::mmap_read_unlock(as.mm());
  return v;
}

// [vm_start, vm_end) of the VMA at addr, or {0, 0}.
std::pair<std::uint64_t, std::uint64_t> range_at(AddressSpace& as, std::uint64_t addr) {
  mm::mmap_read_lock(as.mm());
  mm::Vma* v = mm::vma_lookup(as.mm(), addr);
  auto r = v != nullptr ? std::pair{v->vm_start, v->vm_end} : std::pair<std::uint64_t, std::uint64_t>{0, 0};
  mm::mmap_read_unlock(as.mm());
  return r;
}

mm::AnonVma* anon_at(AddressSpace& as, std::uint64_t addr) {
  mm::mmap_read_lock(as.mm());
  mm::Vma* v = mm::vma_lookup(as.mm(), addr);
  mm::AnonVma* av = v != nullptr ? v->anon_vma.load() : nullptr;
  mm::mmap_read_unlock(as.mm());
  return av;
}

// The reverse map is exact: each private VMA with an anon_vma is on that
// anon_vma's list once, each anon_vma lists only VMAs that point to it, and
// every anonymous frame mapped in a VMA points to the VMA's anon_vma with
// its linear page index; and validate() holds.
void expect_rmap_consistent(AddressSpace& as) {
  mm::MmStruct* m = as.mm();
  mm::mmap_read_lock(m);
  m->mm_mt.for_each(0, tree::kMaxAddr, [&](const tree::Entry& e) {
    mm::Vma* v = e.as<mm::Vma>();
    if (v->vm_file != nullptr) return;
    mm::AnonVma* av = v->anon_vma.load();
    if (av != nullptr) {
      av->rwsem.lock_shared();
      EXPECT_EQ(std::count(av->vmas.begin(), av->vmas.end(), v), 1) << std::hex << v->vm_start;
      for (mm::Vma* o : av->vmas) EXPECT_EQ(o->anon_vma.load(), av) << std::hex << o->vm_start;
      av->rwsem.unlock_shared();
    }
    for (std::uint64_t a = v->vm_start; a < v->vm_end; a += kPage) {
      mem::pte_t p;
      {
        rcu::ReadGuard g;
        p = m->pgtables.lookup(a);
      }
      if (!mem::pte_present(p) || mem::pte_pfn(p) == m->phys->zero_pfn()) continue;
      ASSERT_NE(av, nullptr) << "anonymous page without an anon_vma at " << std::hex << a;
      const mem::Frame& fr = m->phys->frame(mem::pte_pfn(p));
      EXPECT_EQ(fr.mapping.load(), reinterpret_cast<std::uintptr_t>(av) | mem::kMappingAnon)
          << "frame at " << std::hex << a << " points to another anon_vma";
      EXPECT_EQ(fr.index.load(), mm::linear_page_index(v, a)) << std::hex << a;
      EXPECT_EQ(fr.mapcount.load(), 1) << std::hex << a;
    }
  });
  mm::mmap_read_unlock(m);
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

class Interleave : public ::testing::TestWithParam<LockMode> {
 protected:
  void SetUp() override {
    if (!kHooks) GTEST_SKIP() << "test hooks are compiled out of release builds";
  }
  AddressSpaceOptions opts() const {
    AddressSpaceOptions o = test::test_options(GetParam());
    o.phys_bytes = 64ull << 20;
    o.phys_pretouch = false;
    return o;
  }
  bool per_vma() const { return GetParam() != LockMode::mmap_lock; }
  // Is a writer (vma_start_write or a detaching vma_mark_detached) waiting
  // for this VMA's readers?
  bool writer_waits_on(const mm::Vma* v) const {
    if (GetParam() == LockMode::per_vma_refcount || GetParam() == LockMode::per_vma_range) return v->vm_refcnt.load() >= mm::kVmaLockOffset;
    return v->vm_lock.has_waiters();
  }
};

// ---- stack expansion ------------------------------------------------------

// A stack of 4 pages at kStack with its top page written (it has an
// anon_vma): one VMA-locked fault (vma_lock_success 1 in per-VMA modes).
void map_stack(AddressSpace& as) {
  ASSERT_EQ(as.mmap(kStack, 4 * kPage, kRW, kAnon | MAP_GROWSDOWN), static_cast<long>(kStack));
  ASSERT_EQ(as.fault_in(kStack + 3 * kPage, true), Fault::none);
}

// A fault holds the stack VMA's read lock (mmap R in mmap_lock mode); a
// fault below the stack must not change the stack's range until it leaves:
// expand_downwards write-locks the VMA first (Linux "mm: lock a vma before
// stack expansion"), which waits for the reader.
TEST_P(Interleave, StackGrowthWaitsForFaultHoldingTheStack) {
  AddressSpace as(opts());
  ASSERT_NO_FATAL_FAILURE(map_stack(as));
  Gate holder;  // B, inside its fault on the stack
  fault::FaultHooks bh = gate_hooks(&fault::FaultHooks::fault_locked, holder);
  std::atomic<bool> write_locked{false};  // A got the stack's write lock
  Gate grow(Gate::kNever);  // only notes the call
  grow.each = [&] { write_locked = true; };
  fault::FaultHooks ah = gate_hooks(&fault::FaultHooks::stack_write_locked, grow);

  auto b = fault_async(as, kStack + 2 * kPage, true, {&bh});
  holder.wait_arrived("fault on the stack");
  const std::uint64_t below = kStack - 2 * kPage;
  auto a = fault_async(as, below, true, {&ah});
  EXPECT_TRUE(is_blocked(a)) << "the stack grew while a fault held it";
  EXPECT_FALSE(write_locked.load()) << "expand_downwards write-locked the stack under a reader";
  holder.open();
  EXPECT_EQ(get_or_die(b, "fault on the stack"), Fault::none);
  EXPECT_EQ(get_or_die(a, "fault below the stack"), Fault::none);
  EXPECT_TRUE(write_locked.load());
  EXPECT_EQ(range_at(as, kStack), std::pair(below, kStack + 4 * kPage));
  // map_stack 1 + B 1 success; A found no VMA at `below`: 1 abort.
  expect_counts(as, {.success = 2, .abort = 1});
  expect_rmap_consistent(as);
}

// The other order: the stack is write-locked for growing (range not changed
// yet) when a fault on the stack comes.  Its VMA lock fails (abort) and it
// waits for the mmap_lock until the growth is over.
TEST_P(Interleave, FaultOnStackWaitsForStackGrowth) {
  AddressSpace as(opts());
  ASSERT_NO_FATAL_FAILURE(map_stack(as));
  Gate grow;
  fault::FaultHooks ah = gate_hooks(&fault::FaultHooks::stack_write_locked, grow);
  const std::uint64_t below = kStack - 2 * kPage;
  auto a = fault_async(as, below, true, {&ah});
  grow.wait_arrived("stack write-locked for growing");
  auto b = fault_async(as, kStack + 2 * kPage, true);
  EXPECT_TRUE(test::wait_until([&] { return mm::mmap_lock_has_waiters(as.mm()); }))
      << "the fault on the stack did not fall back to the mmap_lock";
  EXPECT_TRUE(is_blocked(b)) << "a fault used the stack VMA while it was write-locked for growing";
  grow.open();
  EXPECT_EQ(get_or_die(a, "fault below the stack"), Fault::none);
  EXPECT_EQ(get_or_die(b, "fault on the stack"), Fault::none);
  EXPECT_EQ(range_at(as, kStack).first, below);
  // map_stack 1 success; A (no VMA at `below`) and B (write-locked) abort.
  expect_counts(as, {.success = 1, .abort = 2});
  expect_rmap_consistent(as);
}

// Growth write-locks only the stack: a VMA-locked fault on the neighbour
// below (outside the guard gap) neither waits for a growth in progress nor
// makes one wait.  In mmap_lock mode each waits for the other.
TEST_P(Interleave, NeighbourFaultsRunDuringStackGrowth) {
  AddressSpace as(opts());
  ASSERT_NO_FATAL_FAILURE(map_stack(as));
  const std::uint64_t gap = as.mm()->cfg.stack_guard_gap;
  const std::uint64_t a1 = kStack - kPage, a2 = kStack - 2 * kPage;
  const std::uint64_t nb = a2 - gap - 2 * kPage;  // [nb, nb + 2 pages): a2 - its end == gap
  ASSERT_EQ(as.mmap(nb, 2 * kPage, kRW, kAnon), static_cast<long>(nb));
  ASSERT_EQ(as.fault_in(nb, true), Fault::none);

  // 1. B holds the neighbour; A grows the stack by a page.
  {
    Gate holder;
    fault::FaultHooks bh = gate_hooks(&fault::FaultHooks::fault_locked, holder);
    auto b = fault_async(as, nb, true, {&bh});
    holder.wait_arrived("fault on the neighbour");
    auto a = fault_async(as, a1, true);
    if (per_vma()) {
      EXPECT_EQ(a.wait_for(kDeadline), std::future_status::ready)
          << "stack growth waited for a fault on the neighbour";
    } else {
      EXPECT_TRUE(is_blocked(a));
    }
    holder.open();
    EXPECT_EQ(get_or_die(a, "growth"), Fault::none);
    EXPECT_EQ(get_or_die(b, "fault on the neighbour"), Fault::none);
  }
  // 2. A is growing the stack (write-locked); B faults in the neighbour.
  {
    Gate grow;
    fault::FaultHooks ah = gate_hooks(&fault::FaultHooks::stack_write_locked, grow);
    auto a = fault_async(as, a2, true, {&ah});
    grow.wait_arrived("stack write-locked for growing");
    auto b = fault_async(as, nb + kPage, true);
    if (per_vma()) {
      EXPECT_EQ(b.wait_for(kDeadline), std::future_status::ready)
          << "a fault on the neighbour waited for stack growth";
    } else {
      EXPECT_TRUE(test::wait_until([&] { return mm::mmap_lock_has_waiters(as.mm()); }));
      EXPECT_TRUE(is_blocked(b));
    }
    grow.open();
    EXPECT_EQ(get_or_die(a, "growth"), Fault::none);
    EXPECT_EQ(get_or_die(b, "fault on the neighbour"), Fault::none);
  }
  EXPECT_EQ(range_at(as, kStack), std::pair(a2, kStack + 4 * kPage));
  EXPECT_EQ(range_at(as, nb), std::pair(nb, nb + 2 * kPage));
  // Successes: map_stack, the neighbour's first page, both B faults.
  // Aborts: both growth faults (no VMA below the stack).
  expect_counts(as, {.success = 4, .abort = 2});
  expect_rmap_consistent(as);
}

// A fault below the stack dropped mmap R to take mmap W (growth needs it).
// In that window another thread maps a neighbour inside the guard gap: the
// growth must see it (the gap is checked under mmap W) and refuse.
TEST_P(Interleave, GuardGapNeighbourMappedWhileFaultRelocks) {
  AddressSpace as(opts());
  ASSERT_NO_FATAL_FAILURE(map_stack(as));
  const std::uint64_t gap = as.mm()->cfg.stack_guard_gap;
  const std::uint64_t below = kStack - 2 * kPage;
  Gate relock;
  fault::FaultHooks ah = gate_hooks(&fault::FaultHooks::stack_relock, relock);
  auto a = fault_async(as, below, true, {&ah});
  relock.wait_arrived("fault between mmap R and mmap W");
  // Ends gap - 1 page below the fault address: inside the guard gap.
  const std::uint64_t nb = below - gap;
  EXPECT_EQ(as.mmap(nb, kPage, kRW, kAnon), static_cast<long>(nb));
  relock.open();
  EXPECT_EQ(get_or_die(a, "fault below the stack"), Fault::segv_maperr)
      << "the stack grew into the guard gap of a new neighbour";
  EXPECT_EQ(range_at(as, kStack).first, kStack);
  EXPECT_EQ(range_at(as, nb), std::pair(nb, nb + kPage));
  EXPECT_EQ(as.map_count(), 2);
  expect_counts(as, {.success = 1, .abort = 1});
  expect_rmap_consistent(as);
}

// Same window, but the stack is unmapped (and its VMA freed): the fault
// must look the VMA up again under mmap W, never use the one it found
// under mmap R (asan: use-after-free).
TEST_P(Interleave, StackUnmappedWhileFaultRelocks) {
  AddressSpace as(opts());
  ASSERT_NO_FATAL_FAILURE(map_stack(as));
  const std::uint64_t below = kStack - 2 * kPage;
  Gate relock;
  fault::FaultHooks ah = gate_hooks(&fault::FaultHooks::stack_relock, relock);
  auto a = fault_async(as, below, true, {&ah});
  relock.wait_arrived("fault between mmap R and mmap W");
  EXPECT_EQ(as.munmap(kStack, 4 * kPage), 0);
  rcu::barrier();  // the old stack VMA is freed now
  relock.open();
  EXPECT_EQ(get_or_die(a, "fault below the stack"), Fault::segv_maperr);
  EXPECT_EQ(as.map_count(), 0);
  EXPECT_EQ(as.rss_pages(), 0u);
  expect_counts(as, {.success = 1, .abort = 1});
  expect_rmap_consistent(as);
}

// ---- a merge that removes both neighbours -----------------------------------

// prev | middle | next, then mprotect(middle) makes all three one VMA (prev
// grows; middle and next are removed).  Faults hold each of the three
// (fault_locked) and more faults found each in the tree and wait to lock it
// (after_lookup).  The merge write-locks the three one by one, waiting for
// each holder; faults that come to a VMA while it is being (or has been)
// write-locked abort and wait for the mmap_lock; the faults that found the
// removed middle or next miss (detached), walk again and lock the merged
// VMA.  No holder sees the tree change under it.
TEST_P(Interleave, MergeRemovingBothNeighboursWaitsForEachReader) {
  AddressSpace as(opts());
  std::uint64_t addr[3];
  for (int i = 0; i < 3; ++i) {
    addr[i] = kBase + 2 * kPage * i;
    ASSERT_EQ(as.mmap(addr[i], 2 * kPage, i == 1 ? kRWX : kRW, kAnon), static_cast<long>(addr[i]));
  }
  ASSERT_EQ(as.map_count(), 3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(as.fill(addr[i], static_cast<unsigned char>(0x10 + i), 2 * kPage).ok());
  mm::Vma* v[3];
  for (int i = 0; i < 3; ++i) v[i] = vma_at(as, addr[i]);
  mm::AnonVma* av = anon_at(as, addr[0]);
  ASSERT_NE(av, nullptr);
  for (int i = 1; i < 3; ++i) ASSERT_EQ(anon_at(as, addr[i]), av) << "the neighbours do not share the anon_vma";

  // Holders: inside a fault on page 0 of each VMA.  Each checks, when let
  // go (still holding), that the tree still maps its address to its VMA.
  std::vector<std::unique_ptr<Gate>> holder, looker;
  std::atomic<bool> tree_kept[3] = {true, true, true};
  std::vector<fault::FaultHooks> hh(3);
  std::vector<mm::VmaLockHooks> lh(3);
  std::vector<std::future<Fault>> h, l, w;
  for (int i = 0; i < 3; ++i) {
    holder.push_back(std::make_unique<Gate>());
    holder[i]->after = [&, i] {
      rcu::ReadGuard g;
      tree_kept[i] = as.mm()->mm_mt.lookup(addr[i]) == v[i];
    };
    hh[i] = gate_hooks(&fault::FaultHooks::fault_locked, *holder[i]);
    h.push_back(fault_async(as, addr[i], false, {&hh[i]}));
    holder[i]->wait_arrived("holder");
  }
  // Lookers: found VMA i in the tree, not locked yet (per-VMA modes only).
  if (per_vma()) {
    for (int i = 0; i < 3; ++i) {
      looker.push_back(std::make_unique<Gate>());
      lh[i].after_lookup = &Gate::lookup_hook;
      lh[i].arg = looker[i].get();
      l.push_back(fault_async(as, addr[i] + kPage, false, {nullptr, &lh[i]}));
      looker[i]->wait_arrived("looker");
      EXPECT_EQ(looker[i]->found, v[i]);
    }
  }

  auto merge = std::async(std::launch::async, [&] { return as.mprotect(addr[1], 2 * kPage, kRW); });
  mm::MmStruct* m = as.mm();
  bool released[3] = {false, false, false};
  for (int step = 0; step < 3; ++step) {
    // The VMA the merge waits for now (in mmap_lock mode: for mmap W,
    // which the holders keep in read mode; they are let go in order).
    int j = step;
    if (per_vma()) {
      j = -1;
      EXPECT_TRUE(test::wait_until([&] {
        for (int k = 0; k < 3; ++k)
          if (!released[k] && writer_waits_on(v[k])) j = k;
        return j >= 0;
      })) << "step " << step << ": the merge waits for no VMA a fault holds";
      if (j < 0) break;
    } else {
      EXPECT_TRUE(test::wait_until([&] { return mm::mmap_lock_has_waiters(m); }));
    }
    // A fault comes to VMA j now: it cannot lock it, and waits for the
    // mmap_lock.
    w.push_back(fault_async(as, addr[j] + kPage, true));
    const std::size_t queued = (per_vma() ? 0 : 1) + w.size();
    EXPECT_TRUE(test::wait_until([&] { return mm::mmap_lock_waiter_count(m) == queued; }))
        << "step " << step << ": the fault on a VMA being merged did not fall back";
    EXPECT_TRUE(is_blocked(merge)) << "step " << step << ": the merge did not wait for the holder of VMA " << j;
    released[j] = true;
    holder[j]->open();
    EXPECT_EQ(get_or_die(h[j], "holder"), Fault::none);
  }
  for (int i = 0; i < 3; ++i)
    if (!released[i]) holder[i]->open();
  EXPECT_EQ(get_or_die(merge, "merge"), 0);
  for (auto& f : w) EXPECT_EQ(get_or_die(f, "waiter"), Fault::none);
  for (auto& g : looker) g->open();
  for (auto& f : l) EXPECT_EQ(get_or_die(f, "looker"), Fault::none);
  for (auto& f : h) {
    if (f.valid()) {
      EXPECT_EQ(get_or_die(f, "holder"), Fault::none);
    }
  }
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(tree_kept[i].load()) << "VMA " << i << " changed under its holder";
  if (per_vma()) {
    EXPECT_EQ(looker[0]->calls.load(), 1);  // found prev, locked it
    EXPECT_EQ(looker[1]->calls.load(), 2);  // found middle (removed), walked again
    EXPECT_EQ(looker[2]->calls.load(), 2);  // found next (removed), walked again
  }

  EXPECT_EQ(as.map_count(), 1);
  EXPECT_EQ(vma_at(as, addr[1]), v[0]);
  EXPECT_EQ(range_at(as, addr[0]), std::pair(kBase, kBase + 6 * kPage));
  for (int i = 0; i < 3; ++i) {
    unsigned char b = 0;
    ASSERT_TRUE(as.read(addr[i], &b, 1).ok());
    EXPECT_EQ(b, 0x10 + i);
  }
  // Successes: 6 first writes, 3 holders, 3 lookers.  Aborts: 3 waiters.
  // Misses: the lookers that found middle and next.
  expect_counts(as, {.success = 12, .abort = 3, .miss = 2});
  expect_rmap_consistent(as);
}

// ---- RETRY and detach-retry, counted ------------------------------------------

// The first anonymous fault of a VMA under its VMA lock needs the
// mmap_lock for the anon_vma; it only try-locks it (it may not wait for it
// holding a VMA lock).  Held for write by another thread: RETRY, and the
// fault is done under mmap R once the writer leaves (vma_lock_retry).  Held
// for read: the try-lock succeeds and the fault stays on the VMA lock.
TEST_P(Interleave, FirstAnonFaultRetriesExactlyWhileMmapLockHeld) {
  if (!per_vma()) GTEST_SKIP() << "no VMA locks in mmap_lock mode";
  constexpr int kVmas = 3;
  AddressSpace as(opts());
  mm::MmStruct* m = as.mm();
  for (int i = 0; i <= kVmas; ++i)
    ASSERT_EQ(as.mmap(kBase + 16 * kPage * i, 4 * kPage, kRW, kAnon), static_cast<long>(kBase + 16 * kPage * i));
  for (int i = 0; i < kVmas; ++i) {
    const std::uint64_t va = kBase + 16 * kPage * i;
    Gate g;  // F, VMA-locked, about to try the mmap_lock for the anon_vma
    fault::FaultHooks fh = gate_hooks(&fault::FaultHooks::anon_prepare, g);
    auto f = fault_async(as, va, true, {&fh});
    g.wait_arrived("first anonymous fault");
    mm::mmap_write_lock(m);
    g.open();
    EXPECT_TRUE(test::wait_until([&] { return mm::mmap_lock_has_waiters(m); }))
        << "the fault did not fall back to the mmap_lock";
    EXPECT_TRUE(is_blocked(f));
    mm::mmap_write_unlock(m);
    EXPECT_EQ(get_or_die(f, "retried fault"), Fault::none);
    EXPECT_EQ(g.calls.load(), 2) << "the fallback prepares the anon_vma under mmap R";
    EXPECT_NE(anon_at(as, va), nullptr);
    EXPECT_EQ(as.vm_stat(VmStat::vma_lock_retry), static_cast<std::uint64_t>(i + 1));
  }
  // With the anon_vma in place, first touches of other pages need no
  // mmap_lock: they stay on the VMA lock.
  for (int i = 0; i < kVmas; ++i) EXPECT_EQ(as.fault_in(kBase + 16 * kPage * i + kPage, true), Fault::none);
  // mmap_lock held for read elsewhere: the try-lock succeeds.
  {
    const std::uint64_t va = kBase + 16 * kPage * kVmas;
    Gate g(Gate::kNever);
    fault::FaultHooks fh = gate_hooks(&fault::FaultHooks::anon_prepare, g);
    mm::mmap_read_lock(m);
    auto f = fault_async(as, va, true, {&fh});
    EXPECT_EQ(f.wait_for(kDeadline), std::future_status::ready) << "a fault waited for a reader of the mmap_lock";
    mm::mmap_read_unlock(m);
    EXPECT_EQ(get_or_die(f, "fault"), Fault::none);
    EXPECT_EQ(g.calls.load(), 1);
  }
  expect_counts(as, {.success = kVmas + 1, .retry = kVmas});
  EXPECT_EQ(as.vm_stat(VmStat::pgfault), 2u * kVmas + 1);
  expect_rmap_consistent(as);
}

// lock_vma_under_rcu finds a VMA that is replaced (MAP_FIXED) before it can
// lock it, three times in a row: each time it sees the VMA detached, counts
// a miss and walks again; the fourth walk locks the current VMA.  Then a
// VMA that is unmapped after the lookup: one miss, then no VMA (abort), and
// the fallback reports SEGV_MAPERR.
TEST_P(Interleave, DetachedAfterLookupRetriesExactly) {
  if (!per_vma()) GTEST_SKIP() << "no VMA locks in mmap_lock mode";
  constexpr int kReplaced = 3;
  {
    AddressSpace as(opts());
    ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, kAnon), static_cast<long>(kBase));
    std::vector<mm::Vma*> found;
    Gate g(Gate::kNever);
    mm::VmaLockHooks lh;
    lh.after_lookup = [](mm::MmStruct*, mm::Vma* vma, void* arg) {
      auto* gate = static_cast<Gate*>(arg);
      gate->found = vma;
      Gate::hook(arg);
    };
    lh.arg = &g;
    g.each = [&] {
      found.push_back(g.found);
      if (found.size() > kReplaced) return;
      // Inside the reader's RCU section, between lookup and lock.
      std::thread([&] {
        EXPECT_EQ(as.mmap(kBase, 4 * kPage, kRW, kAnon), static_cast<long>(kBase));
      }).join();
    };
    auto f = fault_async(as, kBase + kPage, true, {nullptr, &lh});
    EXPECT_EQ(get_or_die(f, "fault"), Fault::none);
    ASSERT_EQ(found.size(), kReplaced + 1u);
    for (std::size_t i = 1; i < found.size(); ++i) EXPECT_NE(found[i], found[i - 1]);
    EXPECT_EQ(vma_at(as, kBase), found.back());
    expect_counts(as, {.success = 1, .miss = kReplaced});
    expect_rmap_consistent(as);
  }
  {
    AddressSpace as(opts());
    ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, kAnon), static_cast<long>(kBase));
    Gate g(Gate::kNever);
    mm::VmaLockHooks lh;
    lh.after_lookup = &Gate::lookup_hook;
    lh.arg = &g;
    g.each = [&] {
      if (g.calls.load() == 0)
        std::thread([&] { EXPECT_EQ(as.munmap(kBase, 4 * kPage), 0); }).join();
    };
    auto f = fault_async(as, kBase + kPage, true, {nullptr, &lh});
    EXPECT_EQ(get_or_die(f, "fault"), Fault::segv_maperr);
    EXPECT_EQ(g.calls.load(), 1);  // the second walk finds nothing
    expect_counts(as, {.abort = 1, .miss = 1});
  }
}

// ---- seed 004: racing first faults in adjacent VMAs ----------------------------

// Gates on anon_vma_prepare's two hook points, and what the first call saw.
struct AnonHook {
  explicit AnonHook(int candidate_at = Gate::kNever, int install_at = Gate::kNever) : at_candidate(candidate_at), at_install(install_at) {}
  Gate at_candidate, at_install;
  mm::AnonVma* av = nullptr;  // the first candidate
  bool reused = false;
  int calls = 0;
  static void candidate(mm::Vma*, mm::AnonVma* av, bool reused, void* arg) {
    auto* c = static_cast<AnonHook*>(arg);
    if (c->calls++ == 0) {
      c->av = av;
      c->reused = reused;
    }
    Gate::hook(&c->at_candidate);
  }
  static void installing(mm::Vma*, mm::AnonVma*, void* arg) { Gate::hook(&static_cast<AnonHook*>(arg)->at_install); }
  mm::AnonVmaHooks hooks() { return {&candidate, &installing, this}; }
};


// X | N, adjacent, anon_vma-compatible (flags differ only in access bits),
// neither with an anon_vma.  `first` is the VMA whose fault F1 pauses in
// anon_vma_prepare with a fresh candidate; then F2 gives the other VMA an
// anon_vma, and F3, another first fault in `first`, reuses it
// (find_mergeable_anon_vma) and installs it.  F1, let go, must find the
// anon_vma installed (the re-check under the page_table_lock) and drop its
// candidate: both VMAs end with the same anon_vma and every frame points to
// it.  Hugh Dickins' race in seed 004: two faults on one VMA with different
// candidates.
void adjacent_first_faults(AddressSpace& as, bool first_is_prev) {
  const std::uint64_t x = kBase, n = kBase + 2 * kPage;
  ASSERT_EQ(as.mmap(x, 2 * kPage, kRW, kAnon), static_cast<long>(x));
  ASSERT_EQ(as.mmap(n, 2 * kPage, kRWX, kAnon), static_cast<long>(n));
  ASSERT_EQ(as.map_count(), 2);
  const std::uint64_t first = first_is_prev ? x : n, other = first_is_prev ? n : x;

  AnonHook c1(1), c2, c3;
  mm::AnonVmaHooks h1 = c1.hooks(), h2 = c2.hooks(), h3 = c3.hooks();
  auto f1 = fault_async(as, first, true, {nullptr, nullptr, &h1});
  c1.at_candidate.wait_arrived("F1 with its candidate");
  EXPECT_FALSE(c1.reused) << "no neighbour had an anon_vma yet";
  auto f2 = fault_async(as, other, true, {nullptr, nullptr, &h2});
  EXPECT_EQ(get_or_die(f2, "F2"), Fault::none);
  EXPECT_FALSE(c2.reused);
  auto f3 = fault_async(as, first + kPage, true, {nullptr, nullptr, &h3});
  EXPECT_EQ(get_or_die(f3, "F3"), Fault::none);
  EXPECT_TRUE(c3.reused) << "F3 did not reuse the neighbour's anon_vma";
  EXPECT_EQ(c3.av, c2.av);
  c1.at_candidate.open();
  EXPECT_EQ(get_or_die(f1, "F1"), Fault::none);
  EXPECT_EQ(c1.calls, 1);
  EXPECT_EQ(c2.calls, 1);
  EXPECT_EQ(c3.calls, 1);
  EXPECT_EQ(c1.at_install.calls.load(), 0) << "F1 installed its candidate over F3's";

  mm::AnonVma* av = anon_at(as, other);
  EXPECT_EQ(av, c2.av);
  EXPECT_EQ(anon_at(as, first), av) << "adjacent VMAs ended with different anon_vmas";
  EXPECT_NE(c1.av, av);
  av->rwsem.lock_shared();
  EXPECT_EQ(av->vmas.size(), 2u);
  av->rwsem.unlock_shared();
  EXPECT_EQ(as.rss_pages(), 3u);
  expect_counts(as, {.success = 3});
  expect_rmap_consistent(as);
}

TEST_P(Interleave, AdjacentFirstFaultsShareNextsAnonVma) {
  AddressSpace as(opts());
  adjacent_first_faults(as, /*first_is_prev=*/true);
}

TEST_P(Interleave, AdjacentFirstFaultsSharePrevsAnonVma) {
  AddressSpace as(opts());
  adjacent_first_faults(as, /*first_is_prev=*/false);
}

// Seed 004 proper: two first faults on X with different candidates (F1 a
// fresh anon_vma, F3 the neighbour's, reused) and their critical sections
// overlapping: F1 has re-checked X under its anon_vma's lock and the
// page_table_lock and is about to install; F3 holds the other anon_vma's
// lock.  F3 must wait for the page_table_lock and then find F1's anon_vma
// installed: exactly one install, and F3's frame follows it.  (The anon_vma
// locks differ, so only the page_table_lock orders the two.)  X and N end
// with different anon_vmas: the benign outcome Hugh Dickins describes.
TEST_P(Interleave, FirstFaultsWithDifferentCandidatesInstallOneAnonVma) {
  AddressSpace as(opts());
  const std::uint64_t x = kBase, n = kBase + 2 * kPage;
  ASSERT_EQ(as.mmap(x, 2 * kPage, kRW, kAnon), static_cast<long>(x));
  ASSERT_EQ(as.mmap(n, 2 * kPage, kRWX, kAnon), static_cast<long>(n));
  AnonHook c1(1, 1), c2, c3(1);
  mm::AnonVmaHooks h1 = c1.hooks(), h2 = c2.hooks(), h3 = c3.hooks();

  auto f1 = fault_async(as, x, true, {nullptr, nullptr, &h1});
  c1.at_candidate.wait_arrived("F1 with a fresh candidate");
  EXPECT_FALSE(c1.reused);
  auto f2 = fault_async(as, n, true, {nullptr, nullptr, &h2});
  EXPECT_EQ(get_or_die(f2, "F2"), Fault::none);
  auto f3 = fault_async(as, x + kPage, true, {nullptr, nullptr, &h3});
  c3.at_candidate.wait_arrived("F3 with the neighbour's anon_vma");
  EXPECT_TRUE(c3.reused);
  EXPECT_EQ(c3.av, c2.av);
  EXPECT_NE(c3.av, c1.av);
  c1.at_candidate.open();
  c1.at_install.wait_arrived("F1 between its re-check and its install");
  c3.at_candidate.open();
  EXPECT_TRUE(is_blocked(f3)) << "F3 got past the page_table_lock while F1 was installing";
  c1.at_install.open();
  EXPECT_EQ(get_or_die(f1, "F1"), Fault::none);
  EXPECT_EQ(get_or_die(f3, "F3"), Fault::none);
  EXPECT_EQ(c1.at_install.calls.load(), 1);
  EXPECT_EQ(c3.at_install.calls.load(), 0) << "F3 installed a second anon_vma on X";
  EXPECT_EQ(anon_at(as, x), c1.av);
  EXPECT_EQ(anon_at(as, n), c2.av);
  for (mm::AnonVma* av : {c1.av, c2.av}) {
    av->rwsem.lock_shared();
    EXPECT_EQ(av->vmas.size(), 1u);
    av->rwsem.unlock_shared();
  }
  EXPECT_EQ(as.rss_pages(), 3u);
  expect_counts(as, {.success = 3});
  expect_rmap_consistent(as);
}

// ---- seed 003: populate against munmap ---------------------------------------

enum class PopulateBy { map_populate, map_locked, mprotect_locked };

// Thread P populates 8 pages and is stopped before its third page (holding
// the mmap_lock: downgraded to read after mmap, write in mprotect); thread U
// munmaps the range.  U must wait until P is done: P never sees U's munmap
// return, its VMA cannot be freed under it (asan), and every page it
// populated is freed by the munmap.
void populate_vs_munmap(AddressSpace& as, PopulateBy how) {
  constexpr std::uint64_t kPages = 8;
  mm::MmStruct* m = as.mm();
  if (how == PopulateBy::mprotect_locked) {
    ASSERT_EQ(as.mmap(kBase, kPages * kPage, PROT_READ, kAnon | MAP_LOCKED), static_cast<long>(kBase));
  }
  std::atomic<bool> unmapped{false};
  std::atomic<int> saw_unmapped{0};
  Gate g(3);
  g.each = [&] {
    if (unmapped.load()) saw_unmapped.fetch_add(1);
  };
  fault::FaultHooks ph = gate_hooks(&fault::FaultHooks::populate_page, g);
  auto p = std::async(std::launch::async, [&] {
    fault::set_fault_hooks(&ph);
    long r = 0;
    switch (how) {
      case PopulateBy::map_populate: r = as.mmap(kBase, kPages * kPage, kRW, kAnon | MAP_POPULATE); break;
      case PopulateBy::map_locked: r = as.mmap(kBase, kPages * kPage, kRW, kAnon | MAP_LOCKED); break;
      case PopulateBy::mprotect_locked: r = as.mprotect(kBase, kPages * kPage, kRW); break;
    }
    fault::set_fault_hooks(nullptr);
    return r;
  });
  g.wait_arrived("populate, third page");
  if (how != PopulateBy::mprotect_locked) {
    EXPECT_EQ(as.rss_pages(), 2u);
  }
  auto u = std::async(std::launch::async, [&] {
    int r = as.munmap(kBase, kPages * kPage);
    unmapped = true;
    rcu::barrier();  // what munmap freed is gone now: a later use is a use-after-free
    return r;
  });
  EXPECT_TRUE(test::wait_until([&] { return mm::mmap_lock_has_waiters(m); })) << "munmap did not wait for populate";
  EXPECT_TRUE(is_blocked(u));
  g.open();
  const long want = how == PopulateBy::mprotect_locked ? 0 : static_cast<long>(kBase);
  EXPECT_EQ(get_or_die(p, "populate"), want);
  EXPECT_EQ(get_or_die(u, "munmap"), 0);
  EXPECT_EQ(g.calls.load(), static_cast<int>(kPages)) << "populate did not reach every page";
  EXPECT_EQ(saw_unmapped.load(), 0) << "munmap returned while populate was running";
  EXPECT_EQ(as.rss_pages(), 0u) << "munmap left populated pages behind";
  EXPECT_EQ(as.map_count(), 0);
  mm::mmap_read_lock(m);
  EXPECT_EQ(m->locked_vm, 0u);
  mm::mmap_read_unlock(m);
  EXPECT_EQ(as.vm_stat(VmStat::pgfault), 0u);  // populate is not a fault
  expect_counts(as, {});
  expect_rmap_consistent(as);
}

TEST_P(Interleave, MapPopulateRacingMunmap) {
  AddressSpace as(opts());
  populate_vs_munmap(as, PopulateBy::map_populate);
}

TEST_P(Interleave, MapLockedRacingMunmap) {
  AddressSpace as(opts());
  populate_vs_munmap(as, PopulateBy::map_locked);
}

TEST_P(Interleave, MprotectOfLockedMemoryRacingMunmap) {
  AddressSpace as(opts());
  populate_vs_munmap(as, PopulateBy::mprotect_locked);
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& p) { return std::string(lock_mode_name(p.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, Interleave, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace
