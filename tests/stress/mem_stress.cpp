// SPDX-License-Identifier: MIT
// Stress tests for the memory layer's foundations: the frame allocator
// (ownership is never shared, frees are RCU-deferred, thread caches come
// back at thread exit and are reclaimed from live threads) and the page tables (lockless walkers racing with
// pte_alloc / set / zap / free_pgtables).  Each test runs for
// VMSPACE_STRESS_MS milliseconds (default 3000).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "mem/page_table.h"
#include "mem/phys_mem.h"
#include "sync/rcu.h"

namespace vmspace::mem {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds duration() {
  if (const char* s = std::getenv("VMSPACE_STRESS_MS")) return std::chrono::milliseconds(std::atoll(s));
  return std::chrono::milliseconds(3000);
}

struct Rng {
  std::uint64_t x;
  explicit Rng(std::uint64_t seed) : x(seed * 0x9e3779b97f4a7c15ull + 1) {}
  std::uint64_t next() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }
  std::uint64_t below(std::uint64_t n) { return next() % n; }
};

// (1) Frames are never handed to two owners; contents survive until put.
TEST(MemStress, FrameOwnership) {
  PhysMemOptions o;
  o.capacity_bytes = 1024 * kFrameSize;
  o.pretouch = false;
  o.per_thread_cache = 16;
  PhysMem pm(o);
  const std::uint64_t cap = pm.capacity_frames();
  std::unique_ptr<std::atomic<int>[]> owner(new std::atomic<int>[cap]);
  for (std::uint64_t i = 0; i < cap; ++i) owner[i].store(-1);
  std::atomic<std::uint64_t> errors{0}, allocs{0}, ooms{0};
  const auto end = Clock::now() + duration();
  constexpr int kThreads = 4;
  int generation = 0;
  // Rounds of short-lived threads, so thread-exit cache flushing is exercised.
  while (Clock::now() < end) {
    std::vector<std::thread> ts;
    const auto round_end = Clock::now() + std::chrono::milliseconds(150);
    for (int t = 0; t < kThreads; ++t) {
      const int tid = generation * kThreads + t;
      ts.emplace_back([&, tid] {
        Rng rng(tid + 1);
        std::vector<std::pair<pfn_t, std::uint64_t>> mine;  // pfn, tag
        std::uint64_t seq = 0;
        auto release = [&](std::size_t i) {
          auto [pfn, tag] = mine[i];
          auto* w = static_cast<std::uint64_t*>(pm.addr(pfn));
          if (w[0] != tag || w[511] != tag || pm.frame(pfn).index.load() != tag)
            errors.fetch_add(1);
          if (pm.frame(pfn).refcount.load() != 1) errors.fetch_add(1);
          int expect = tid;
          if (!owner[pfn].compare_exchange_strong(expect, -1)) errors.fetch_add(1);
          pm.put(pfn);
          mine[i] = mine.back();
          mine.pop_back();
        };
        while (Clock::now() < round_end) {
          for (int k = 0; k < 64; ++k) {
            if (mine.size() < 150 && rng.below(100) < 55) {
              bool zeroed = rng.below(8) == 0;
              pfn_t pfn = zeroed ? pm.alloc_zeroed() : pm.alloc();
              if (pfn == kNoFrame) {
                ooms.fetch_add(1, std::memory_order_relaxed);
                if (!mine.empty()) release(rng.below(mine.size()));
                pm.drain_deferred();  // what the fault path does on OOM: wait, retry
                continue;
              }
              allocs.fetch_add(1, std::memory_order_relaxed);
              if (pfn >= cap) {
                errors.fetch_add(1);
                continue;
              }
              int expect = -1;
              if (!owner[pfn].compare_exchange_strong(expect, tid)) errors.fetch_add(1);
              auto* w = static_cast<std::uint64_t*>(pm.addr(pfn));
              if (zeroed && (w[0] != 0 || w[300] != 0 || w[511] != 0)) errors.fetch_add(1);
              std::uint64_t tag = (std::uint64_t(tid) << 40) | ++seq;
              w[0] = tag;
              w[511] = tag;
              pm.frame(pfn).index.store(tag);
              if (rng.below(4) == 0) {  // an extra reference, dropped again
                pm.get(pfn);
                pm.put(pfn);
              }
              mine.emplace_back(pfn, tag);
            } else if (!mine.empty()) {
              release(rng.below(mine.size()));
            }
          }
        }
        while (!mine.empty()) release(mine.size() - 1);
      });
    }
    for (auto& th : ts) th.join();
    ++generation;
  }
  rcu::barrier();
  EXPECT_EQ(errors.load(), 0u);
  EXPECT_GT(allocs.load(), 0u);
  EXPECT_EQ(pm.free_frames(), cap);
  EXPECT_EQ(pm.reusable_frames(), cap);
  std::printf("frames: %llu allocs, %llu ooms, %d thread rounds\n",
              static_cast<unsigned long long>(allocs.load()),
              static_cast<unsigned long long>(ooms.load()), generation);
}

// (1b) Stealers vs the lock-free fast paths.  A reclaimer thread sweeps
// every thread's cache continuously (the busy/steal handshake against
// their alloc()/put() fast paths); the allocators' own alloc() sweeps too
// when frees waiting for grace periods leave the pool empty; some frames are freed inside RCU
// callbacks (on the call_rcu worker, whose cache is swept as well).  A
// frame must never have two owners, and every frame comes back.
TEST(MemStress, ReclaimRacesFastPaths) {
  PhysMemOptions o;
  o.capacity_bytes = 512 * kFrameSize;
  o.pretouch = false;
  o.per_thread_cache = 16;
  PhysMem pm(o);
  const std::uint64_t cap = pm.capacity_frames();
  std::unique_ptr<std::atomic<int>[]> owner(new std::atomic<int>[cap]);
  for (std::uint64_t i = 0; i < cap; ++i) owner[i].store(-1);
  std::atomic<std::uint64_t> errors{0}, allocs{0}, ooms{0}, sweeps{0}, rcu_puts{0};
  std::atomic<bool> stop{false};
  constexpr int kAllocators = 3;
  constexpr int kRcuOwner = 1000;  // owner id of frames handed to a callback

  struct RcuPut {
    rcu::Head head;
    PhysMem* pm;
    pfn_t pfn;
    std::atomic<int>* owner;
    std::atomic<std::uint64_t>* errors;
    static void run(rcu::Head* h) {
      auto* self = reinterpret_cast<RcuPut*>(h);
      int expect = kRcuOwner;
      if (!self->owner->compare_exchange_strong(expect, -1)) self->errors->fetch_add(1);
      self->pm->put(self->pfn);
      delete self;
    }
  };

  auto allocator = [&](int tid) {
    Rng rng(tid + 7);
    std::vector<pfn_t> mine;
    auto release = [&](std::size_t i) {
      pfn_t pfn = mine[i];
      auto* w = static_cast<std::uint64_t*>(pm.addr(pfn));
      if (w[0] != pfn || w[511] != std::uint64_t(tid)) errors.fetch_add(1);
      int expect = tid;
      if (rng.below(8) == 0) {  // the last put happens in an RCU callback
        if (!owner[pfn].compare_exchange_strong(expect, kRcuOwner)) errors.fetch_add(1);
        rcu::call(&(new RcuPut{{}, &pm, pfn, &owner[pfn], &errors})->head, &RcuPut::run);
        rcu_puts.fetch_add(1, std::memory_order_relaxed);
      } else {
        if (!owner[pfn].compare_exchange_strong(expect, -1)) errors.fetch_add(1);
        pm.put(pfn);
      }
      mine[i] = mine.back();
      mine.pop_back();
    };
    while (!stop.load(std::memory_order_relaxed)) {
      if (mine.size() < 128 && rng.below(100) < 60) {
        pfn_t pfn = pm.alloc();
        if (pfn == kNoFrame) {
          ooms.fetch_add(1, std::memory_order_relaxed);
          if (!mine.empty()) release(rng.below(mine.size()));
          if (rng.below(16) == 0) pm.drain_deferred();
          continue;
        }
        allocs.fetch_add(1, std::memory_order_relaxed);
        if (pfn >= cap) {
          errors.fetch_add(1);
          continue;
        }
        int expect = -1;
        if (!owner[pfn].compare_exchange_strong(expect, tid)) errors.fetch_add(1);
        auto* w = static_cast<std::uint64_t*>(pm.addr(pfn));  // plain writes: tsan checks them
        w[0] = pfn;
        w[511] = tid;
        mine.push_back(pfn);
      } else if (!mine.empty()) {
        release(rng.below(mine.size()));
      }
    }
    while (!mine.empty()) release(mine.size() - 1);
  };

  std::vector<std::thread> ts;
  for (int t = 0; t < kAllocators; ++t) ts.emplace_back(allocator, t);
  ts.emplace_back([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      pm.reclaim();
      sweeps.fetch_add(1, std::memory_order_relaxed);
      // Leave the allocators time for fast paths between sweeps.
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  });
  std::this_thread::sleep_for(duration());
  stop.store(true);
  for (auto& th : ts) th.join();
  pm.drain_deferred();
  EXPECT_EQ(errors.load(), 0u);
  EXPECT_GT(allocs.load(), 0u);
  EXPECT_EQ(pm.free_frames(), cap);
  EXPECT_EQ(pm.reusable_frames(), cap);
  std::printf("reclaim: %llu allocs, %llu ooms, %llu sweeps, %llu frees in callbacks\n",
              static_cast<unsigned long long>(allocs.load()),
              static_cast<unsigned long long>(ooms.load()),
              static_cast<unsigned long long>(sweeps.load()),
              static_cast<unsigned long long>(rcu_puts.load()));
}

// (2) Lockless walkers vs writers that populate, zap and free page tables.
// Two writers own adjacent 3 MiB regions (so they share the PTE table that
// straddles the boundary and all upper tables); each maps frames tagged
// with their virtual address.  Walkers check every present PTE they see
// names a frame tagged with that address.
TEST(MemStress, WalkersVsWriters) {
  PhysMemOptions o;
  o.capacity_bytes = 4096 * kFrameSize;
  o.pretouch = false;
  o.per_thread_cache = 32;
  PhysMem pm(o);
  SpinLock ptl{LockClass::page_table_lock};
  auto pt = std::make_unique<PageTables>(ptl);
  constexpr std::uint64_t kBase = 0x7fffffc00000 - 0x600000;  // ends near the top: all levels
  constexpr std::uint64_t kRegion = 0x300000;
  constexpr int kWriters = 2, kWalkers = 2;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> errors{0}, hits{0}, walks{0}, maps{0}, frees{0};

  auto writer = [&](int w) {
    Rng rng(100 + w);
    const std::uint64_t lo = kBase + w * kRegion, hi = lo + kRegion;
    auto unmap = [&](std::uint64_t, pte_t old) { pm.put(pte_pfn(old)); };
    while (!stop.load(std::memory_order_relaxed)) {
      const unsigned op = rng.below(100);
      if (op < 70) {  // map a run of pages
        std::uint64_t va = lo + rng.below(kRegion / kPageSize) * kPageSize;
        const std::uint64_t n = 1 + rng.below(64);
        for (std::uint64_t i = 0; i < n && va < hi; ++i, va += kPageSize) {
          pfn_t pfn = pm.alloc();
          if (pfn == kNoFrame) {
            pm.drain_deferred();  // no locks held: wait for recycled frames
            pfn = pm.alloc();
          }
          if (pfn == kNoFrame) break;
          auto* words = static_cast<std::uint64_t*>(pm.addr(pfn));
          words[0] = va;  // written before the PTE is published (release)
          words[511] = va;
          pm.frame(pfn).index.store(va, std::memory_order_relaxed);
          PteTable* t = pt->pte_alloc(va);
          if (t == nullptr) {
            errors.fetch_add(1);
            pm.put(pfn);
            break;
          }
          PageTables::pte_lock(t).lock();
          std::atomic<pte_t>& slot = PageTables::pte_slot(t, va);
          const pte_t old = slot.load(std::memory_order_relaxed);
          slot.store(make_pte(pfn, true), std::memory_order_release);
          PageTables::pte_lock(t).unlock();
          if (pte_present(old)) pm.put(pte_pfn(old));  // after it left the PTE
          maps.fetch_add(1, std::memory_order_relaxed);
        }
      } else if (op < 85) {  // zap a run
        std::uint64_t s = lo + rng.below(kRegion / kPageSize) * kPageSize;
        std::uint64_t e = std::min(hi, s + (1 + rng.below(256)) * kPageSize);
        pt->zap_range(s, e, unmap);
      } else if (op < 92) {  // write-protect a run
        std::uint64_t s = lo + rng.below(kRegion / kPageSize) * kPageSize;
        pt->for_each_present(s, std::min(hi, s + 0x40000),
                             [](std::uint64_t, std::atomic<pte_t>& slot, pte_t old) {
                               slot.store(pte_wrprotect(old), std::memory_order_release);
                             });
      } else {  // munmap the whole region: zap + free_pgtables
        pt->zap_range(lo, hi, unmap);
        pt->free_pgtables(lo, hi, lo, hi);
        frees.fetch_add(1, std::memory_order_relaxed);
      }
    }
  };

  auto walker = [&](int w) {
    Rng rng(200 + w);
    while (!stop.load(std::memory_order_relaxed)) {
      rcu::ReadGuard g;
      for (int i = 0; i < 128; ++i) {
        const std::uint64_t va = kBase + rng.below(kWriters * kRegion / kPageSize) * kPageSize;
        const pte_t v = pt->lookup(va + rng.below(kPageSize));
        if (!pte_present(v)) continue;
        const pfn_t pfn = pte_pfn(v);
        if (pfn >= pm.capacity_frames()) {
          errors.fetch_add(1);
          continue;
        }
        const auto* words = static_cast<const std::uint64_t*>(pm.addr(pfn));
        if (words[0] != va || words[511] != va ||
            pm.frame(pfn).index.load(std::memory_order_relaxed) != va)
          errors.fetch_add(1);
        hits.fetch_add(1, std::memory_order_relaxed);
      }
      walks.fetch_add(1, std::memory_order_relaxed);
    }
  };

  std::vector<std::thread> ts;
  for (int w = 0; w < kWriters; ++w) ts.emplace_back(writer, w);
  for (int w = 0; w < kWalkers; ++w) ts.emplace_back(walker, w);
  std::this_thread::sleep_for(duration());
  stop.store(true);
  for (auto& th : ts) th.join();

  pt->zap_range(kBase, kBase + kWriters * kRegion, [&](std::uint64_t, pte_t old) {
    pm.put(pte_pfn(old));
  });
  pt->free_pgtables(kBase, kBase + kWriters * kRegion, 0, 0);
  EXPECT_EQ(pt->stats().pte_tables, 0u);
  EXPECT_EQ(pt->stats().upper_tables, 1u);
  pm.drain_deferred();
  EXPECT_EQ(errors.load(), 0u);
  EXPECT_GT(walks.load(), 0u);
  EXPECT_GT(maps.load(), 0u);
  EXPECT_EQ(pm.free_frames(), pm.capacity_frames());
  EXPECT_EQ(pm.reusable_frames(), pm.capacity_frames());
  pt.reset();
  std::printf("tables: %llu maps, %llu walks, %llu hits, %llu region frees\n",
              static_cast<unsigned long long>(maps.load()),
              static_cast<unsigned long long>(walks.load()),
              static_cast<unsigned long long>(hits.load()),
              static_cast<unsigned long long>(frees.load()));
}

}  // namespace
}  // namespace vmspace::mem
