// SPDX-License-Identifier: MIT
// RangeTree benchmarks (issue 3 targets), with std::map side by side.
//
//   find at 64K entries <= 60 ns, at 1M <= 120 ns (random hits); the floor
//   under them (BM_LoadLatencyFloor: one random load from a region the
//   tree's size) is printed beside
//   store of one entry at 64K entries <= 1 us
//   <= 48 bytes per entry at 64K entries (counter bytes_per_entry)
//
// Data: N entries of one page each, separated by one-page gaps.
#include <benchmark/benchmark.h>

#include <sys/mman.h>

#include <algorithm>

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "sync/rcu.h"
#include "tree/range_tree.h"

namespace {

using vmspace::tree::RangeTree;
using u64 = std::uint64_t;
constexpr u64 P = 4096;
constexpr u64 kBase = u64{1} << 30;

u64 entry_start(u64 i) { return kBase + i * 2 * P; }

void* obj(u64 i) { return reinterpret_cast<void*>((i + 1) * 64); }

enum class Order { kAscending, kDescending, kRandom };

std::vector<u64> order_of(u64 n, Order o) {
  std::vector<u64> v(n);
  for (u64 i = 0; i < n; ++i) v[i] = o == Order::kDescending ? n - 1 - i : i;
  if (o == Order::kRandom) std::shuffle(v.begin(), v.end(), std::mt19937_64(42));
  return v;
}

// Trees are built once per size and kept (building 1M entries takes a while).
RangeTree& tree_of(u64 n) {
  static std::map<u64, std::unique_ptr<RangeTree>> cache;
  auto& t = cache[n];
  if (!t) {
    t = std::make_unique<RangeTree>();
    for (u64 i : order_of(n, Order::kRandom)) t->store(entry_start(i), entry_start(i) + P, obj(i));
    vmspace::rcu::barrier();
  }
  return *t;
}

std::vector<u64> random_hits(u64 n, std::size_t count) {
  std::mt19937_64 rng(7);
  std::vector<u64> v(count);
  for (auto& a : v) a = entry_start(rng() % n) + rng() % P;
  return v;
}

constexpr std::size_t kAddrs = 1 << 16;

// One ReadGuard per lookup.
void BM_TreeFind(benchmark::State& state) {
  const u64 n = u64(state.range(0));
  RangeTree& t = tree_of(n);
  auto addrs = random_hits(n, kAddrs);
  std::size_t i = 0;
  for (auto _ : state) {
    vmspace::rcu::ReadGuard g;
    benchmark::DoNotOptimize(t.lookup(addrs[i++ & (kAddrs - 1)]));
  }
  state.SetItemsProcessed(state.iterations());
}

// One ReadGuard for the whole batch (the lookup cost alone).
void BM_TreeFindBatchGuard(benchmark::State& state) {
  const u64 n = u64(state.range(0));
  RangeTree& t = tree_of(n);
  auto addrs = random_hits(n, kAddrs);
  std::size_t i = 0;
  vmspace::rcu::ReadGuard g;
  for (auto _ : state) {
    auto e = t.find(addrs[i++ & (kAddrs - 1)]);
    benchmark::DoNotOptimize(e);
  }
  state.SetItemsProcessed(state.iterations());
}

// std::map<start, (end, ptr)> range lookup via upper_bound, same data.
void BM_MapFind(benchmark::State& state) {
  const u64 n = u64(state.range(0));
  std::map<u64, std::pair<u64, void*>> m;
  for (u64 i : order_of(n, Order::kRandom)) m.emplace(entry_start(i), std::make_pair(entry_start(i) + P, obj(i)));
  auto addrs = random_hits(n, kAddrs);
  std::size_t i = 0;
  for (auto _ : state) {
    u64 a = addrs[i++ & (kAddrs - 1)];
    void* r = nullptr;
    auto it = m.upper_bound(a);
    if (it != m.begin()) {
      --it;
      if (a < it->second.first) r = it->second.second;
    }
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}

// store() of one page into a random one-page gap, then erase() it again:
// two single-entry mutations per iteration (see items_per_second).
void BM_TreeStoreEraseInGap(benchmark::State& state) {
  const u64 n = u64(state.range(0));
  RangeTree t;
  for (u64 i = 0; i < n; ++i) t.store(entry_start(i), entry_start(i) + P, obj(i));
  std::mt19937_64 rng(9);
  std::vector<u64> gaps(kAddrs);
  for (auto& g : gaps) g = entry_start(rng() % n) + P;
  std::size_t i = 0;
  for (auto _ : state) {
    u64 g = gaps[i++ & (kAddrs - 1)];
    t.store(g, g + P, obj(0));
    t.erase(g, g + P);
  }
  state.SetItemsProcessed(state.iterations() * 2);
  state.counters["ns_per_op"] = benchmark::Counter(double(state.iterations() * 2),
                                                   benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  vmspace::rcu::barrier();
}

// store() replacing one existing entry exactly (new pointer).
void BM_TreeStoreReplace(benchmark::State& state) {
  const u64 n = u64(state.range(0));
  RangeTree t;
  for (u64 i = 0; i < n; ++i) t.store(entry_start(i), entry_start(i) + P, obj(i));
  std::mt19937_64 rng(11);
  std::vector<u64> idx(kAddrs);
  for (auto& x : idx) x = rng() % n;
  std::size_t i = 0;
  for (auto _ : state) {
    u64 k = idx[i++ & (kAddrs - 1)];
    t.store(entry_start(k), entry_start(k) + P, obj(k + i));
  }
  state.SetItemsProcessed(state.iterations());
  vmspace::rcu::barrier();
}

// A merge: one store() covering 4 neighbouring entries and the 3 gaps
// between them (a multi-entry replacement, published as one step), then
// the restore: one erase() of the merged range and 4 single-entry stores.
// Six tree operations per iteration.
void BM_TreeStoreMerge4Cycle(benchmark::State& state) {
  const u64 n = u64(state.range(0));
  RangeTree t;
  for (u64 i = 0; i < n; ++i) t.store(entry_start(i), entry_start(i) + P, obj(i));
  std::mt19937_64 rng(13);
  std::size_t i = 0;
  for (auto _ : state) {
    u64 k = rng() % (n - 4);
    t.store(entry_start(k), entry_start(k + 3) + P, obj(i++));
    t.erase(entry_start(k), entry_start(k + 3) + P);
    for (u64 j = k; j < k + 4; ++j) t.store(entry_start(j), entry_start(j) + P, obj(j));
  }
  state.SetItemsProcessed(state.iterations() * 6);
  vmspace::rcu::barrier();
}

void BM_TreeGapTopDown(benchmark::State& state) {
  const u64 n = u64(state.range(0));
  RangeTree& t = tree_of(n);
  std::mt19937_64 rng(17);
  vmspace::rcu::ReadGuard g;
  for (auto _ : state) {
    // Every gap between entries is one page: a 2-page request below the
    // last entry must prune the whole tree via max_gap and land in the
    // space below the first entry.
    u64 hi = entry_start(n - 1 - rng() % 64);
    auto r = t.gap_top_down(2 * P, P, 0, hi);
    if (!r || *r != kBase - 2 * P) state.SkipWithError("wrong gap");
    benchmark::DoNotOptimize(r);
  }
}

// Memory: bytes per entry after building N entries in a given order.
void BM_TreeMemory(benchmark::State& state) {
  const u64 n = u64(state.range(0));
  const auto order = Order(state.range(1));
  vmspace::tree::MemStats m;
  for (auto _ : state) {
    RangeTree t;
    for (u64 i : order_of(n, order)) t.store(entry_start(i), entry_start(i) + P, obj(i));
    m = t.stats();
    state.PauseTiming();
    vmspace::rcu::barrier();
    state.ResumeTiming();
  }
  state.counters["bytes_per_entry"] = m.bytes_per_entry;
  state.counters["bytes"] = double(m.bytes);
  state.counters["leaves"] = double(m.leaf_nodes);
  state.counters["inner"] = double(m.inner_nodes);
  state.counters["height"] = m.height;
  state.SetLabel(order == Order::kAscending ? "ascending" : order == Order::kDescending ? "descending" : "random");
}

// The floor under find(): one dependent load from a random cache line of a
// region as big as the tree (2 MiB ~ 64K entries, 32 MiB ~ 1M entries),
// backed by huge pages as the tree's nodes are.  A lookup in a tree that
// does not fit the cache pays at least this for its leaf.
void BM_LoadLatencyFloor(benchmark::State& state) {
  const std::size_t bytes = std::size_t(state.range(0)) << 20, lines = bytes / 64;
  void* m = mmap(nullptr, bytes + (2u << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    state.SkipWithError("mmap failed");
    return;
  }
  char* base = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(m) + (2u << 20) - 1) & ~std::uintptr_t{(2u << 20) - 1});
  madvise(base, bytes, MADV_HUGEPAGE);
  std::vector<std::size_t> perm(lines);
  for (std::size_t i = 0; i < lines; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), std::mt19937_64(5));
  for (std::size_t i = 0; i < lines; ++i)  // one cycle through every line
    *reinterpret_cast<char**>(base + perm[i] * 64) = base + perm[(i + 1) % lines] * 64;
  char* p = base;
  for (std::size_t i = 0; i < lines; ++i) p = *reinterpret_cast<char**>(p);  // warm
  for (auto _ : state) {
    p = *reinterpret_cast<char**>(p);
    benchmark::DoNotOptimize(p);
  }
  state.SetLabel(std::to_string(state.range(0)) + " MiB, huge pages");
  munmap(m, bytes + (2u << 20));
}

BENCHMARK(BM_TreeFind)->Arg(1 << 16)->Arg(1 << 20);
BENCHMARK(BM_LoadLatencyFloor)->Arg(2)->Arg(32);
BENCHMARK(BM_TreeFindBatchGuard)->Arg(1 << 16)->Arg(1 << 20);
BENCHMARK(BM_MapFind)->Arg(1 << 16)->Arg(1 << 20);
BENCHMARK(BM_TreeStoreEraseInGap)->Arg(1 << 16);
BENCHMARK(BM_TreeStoreReplace)->Arg(1 << 16);
BENCHMARK(BM_TreeStoreMerge4Cycle)->Arg(1 << 16);
BENCHMARK(BM_TreeGapTopDown)->Arg(1 << 16)->Arg(1 << 20);
BENCHMARK(BM_TreeMemory)
    ->Args({1 << 16, int(Order::kAscending)})
    ->Args({1 << 16, int(Order::kDescending)})
    ->Args({1 << 16, int(Order::kRandom)})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
