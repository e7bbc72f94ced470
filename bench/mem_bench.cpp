// SPDX-License-Identifier: MIT
// Memory-layer microbenchmarks: frame allocation and page-table walks.
//
//   BM_AllocPut          alloc() + put() pair, steady state (per-thread cache
//                        hits; refills, RCU batch submission and the rare
//                        wait for recycled frames amortized in)
//   BM_AllocZeroedPut    the same with alloc_zeroed()
//   BM_Memset4K          memset of one 4 KiB frame: the floor for zeroing
//   BM_LookupHit         lockless lookup() hits, all inside one ReadGuard
//   BM_LookupHitGuarded  one ReadGuard per lookup
//   BM_PteAllocFresh     pte_alloc() that must allocate a new PTE table
//   BM_PteAllocExisting  pte_alloc() of a table that exists
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "mem/page_table.h"
#include "mem/phys_mem.h"
#include "sync/rcu.h"

namespace {

using namespace vmspace;
using namespace vmspace::mem;

PhysMem& phys() {
  static PhysMem* pm = [] {
    PhysMemOptions o;
    o.capacity_bytes = 256ull << 20;
    o.pretouch = true;
    return new PhysMem(o);  // leaked on purpose: outlives every benchmark
  }();
  return *pm;
}

pfn_t alloc_or_wait(PhysMem& pm, bool zeroed) {
  pfn_t p = zeroed ? pm.alloc_zeroed() : pm.alloc();
  while (p == kNoFrame) {  // every frame waits for its grace period
    pm.drain_deferred();
    p = zeroed ? pm.alloc_zeroed() : pm.alloc();
  }
  return p;
}

void BM_AllocPut(benchmark::State& state) {
  PhysMem& pm = phys();
  for (auto _ : state) {
    pfn_t p = alloc_or_wait(pm, false);
    benchmark::DoNotOptimize(p);
    pm.put(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AllocPut);

void BM_AllocZeroedPut(benchmark::State& state) {
  PhysMem& pm = phys();
  for (auto _ : state) {
    pfn_t p = alloc_or_wait(pm, true);
    benchmark::DoNotOptimize(p);
    pm.put(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AllocZeroedPut);

void BM_Memset4K(benchmark::State& state) {
  PhysMem& pm = phys();
  pfn_t p = alloc_or_wait(pm, false);
  void* a = pm.addr(p);
  for (auto _ : state) {
    std::memset(a, 0, kFrameSize);
    benchmark::ClobberMemory();
  }
  pm.put(p);
  state.SetBytesProcessed(state.iterations() * kFrameSize);
}
BENCHMARK(BM_Memset4K);

struct Mapped {
  SpinLock ptl{LockClass::page_table_lock};
  PageTables pt{ptl};
  std::vector<std::uint64_t> vas;
  explicit Mapped(std::uint64_t pages) {
    const std::uint64_t base = 0x7f0000000000;
    for (std::uint64_t i = 0; i < pages; ++i) {
      std::uint64_t va = base + i * kPageSize;
      PteTable* t = pt.pte_alloc(va);
      PageTables::pte_lock(t).lock();
      PageTables::pte_slot(t, va).store(make_pte(i, true), std::memory_order_release);
      PageTables::pte_lock(t).unlock();
      vas.push_back(va);
    }
    std::shuffle(vas.begin(), vas.end(), std::mt19937_64(1));
  }
};

void BM_LookupHit(benchmark::State& state) {
  Mapped m(static_cast<std::uint64_t>(state.range(0)));
  const std::size_t mask = m.vas.size() - 1;
  std::size_t i = 0;
  rcu::ReadGuard g;
  for (auto _ : state) {
    pte_t v = m.pt.lookup(m.vas[i++ & mask]);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LookupHit)->Arg(512)->Arg(1 << 16);

void BM_LookupHitGuarded(benchmark::State& state) {
  Mapped m(512);
  const std::size_t mask = m.vas.size() - 1;
  std::size_t i = 0;
  for (auto _ : state) {
    rcu::ReadGuard g;
    pte_t v = m.pt.lookup(m.vas[i++ & mask]);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LookupHitGuarded);

void BM_PteAllocFresh(benchmark::State& state) {
  SpinLock ptl{LockClass::page_table_lock};
  PageTables pt{ptl};
  const std::uint64_t base = 0x100000000, limit = base + (1ull << 32);  // 2048 tables
  std::uint64_t va = base;
  for (auto _ : state) {
    if (va == limit) {
      state.PauseTiming();
      pt.free_pgtables(base, limit, base, limit);
      rcu::barrier();
      va = base;
      state.ResumeTiming();
    }
    benchmark::DoNotOptimize(pt.pte_alloc(va));
    va += kPteTableSpan;
  }
  state.SetItemsProcessed(state.iterations());
  rcu::barrier();
}
BENCHMARK(BM_PteAllocFresh);

void BM_PteAllocExisting(benchmark::State& state) {
  SpinLock ptl{LockClass::page_table_lock};
  PageTables pt{ptl};
  for (std::uint64_t i = 0; i < 64; ++i) pt.pte_alloc(0x100000000 + i * kPteTableSpan);
  std::uint64_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(pt.pte_alloc(0x100000000 + (i++ & 63) * kPteTableSpan));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PteAllocExisting);

}  // namespace

BENCHMARK_MAIN();
