// SPDX-License-Identifier: MIT
// Randomized differential test: RangeTree against a std::map model.
//
// Ops per seed: kOpsPerSeed (8 seeds => 2M ops in debug/release builds),
// divided by 8 under ASan, 16 under TSan.  VMSPACE_TREE_DIFF_OPS overrides.
#include "tree/range_tree.h"

#include <gtest/gtest.h>

#include <iterator>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <vector>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define VMSPACE_TREE_SANITIZED 1
#endif

namespace vmspace::tree {
namespace {

using u64 = std::uint64_t;
using u128 = unsigned __int128;

std::size_t ops_per_seed() {
  if (const char* s = std::getenv("VMSPACE_TREE_DIFF_OPS")) return std::strtoull(s, nullptr, 0);
#if defined(__SANITIZE_THREAD__)
  return 250000 / 16;
#elif defined(VMSPACE_TREE_SANITIZED)
  return 250000 / 8;
#else
  return 250000;
#endif
}

// The model: start -> (end, ptr), disjoint.
struct Model {
  std::map<u64, std::pair<u64, void*>> m;

  std::vector<Entry> overlapping(u64 s, u64 e) const {
    std::vector<Entry> v;
    auto it = m.upper_bound(s);
    if (it != m.begin()) {
      auto p = std::prev(it);
      if (p->second.first > s) it = p;
    }
    for (; it != m.end() && it->first < e; ++it) v.push_back(Entry{it->first, it->second.first, it->second.second});
    return v;
  }
  std::vector<Entry> erase(u64 s, u64 e) {
    std::vector<Entry> v = overlapping(s, e);
    for (const Entry& x : v) {
      m.erase(x.start);
      if (x.start < s) m[x.start] = {s, x.ptr};
      if (x.end > e) m[e] = {x.end, x.ptr};
    }
    return v;
  }
  std::vector<Entry> store(u64 s, u64 e, void* p) {
    std::vector<Entry> v = erase(s, e);
    m[s] = {e, p};
    return v;
  }
  std::optional<Entry> find_vma(u64 a) const {
    auto it = m.upper_bound(a);
    if (it != m.begin()) {
      auto p = std::prev(it);
      if (p->second.first > a) return Entry{p->first, p->second.first, p->second.second};
    }
    if (it == m.end()) return std::nullopt;
    return Entry{it->first, it->second.first, it->second.second};
  }
  std::optional<Entry> find(u64 a) const {
    auto e = find_vma(a);
    if (e && e->start <= a) return e;
    return std::nullopt;
  }
  std::optional<Entry> find_prev(u64 a) const {
    auto it = m.lower_bound(a);
    if (it == m.begin()) return std::nullopt;
    --it;
    return Entry{it->first, it->second.first, it->second.second};
  }
  // Brute-force gap search over every gap, with 128-bit arithmetic.
  std::optional<u64> gap(u64 len, u64 align, u64 low, u64 high, bool top) const {
    std::optional<u64> best;
    auto consider = [&](u64 gs, u64 ge) {
      u128 lo = std::max<u128>(gs, low), hi = std::min<u128>(ge, high);
      if (hi <= lo) return;
      if (top) {
        if (hi < u128(len)) return;
        u128 s = (hi - len) / align * align;
        if (s >= lo && s + len <= hi) best = u64(s);  // later gaps are higher
      } else {
        u128 s = (lo + align - 1) / align * align;
        if (s + len <= hi && !best) best = u64(s);
      }
    };
    u64 prev_end = 0;
    for (auto& [s, v] : m) {
      consider(prev_end, s);
      prev_end = v.first;
    }
    consider(prev_end, kMaxAddr);
    return best;
  }
};

std::vector<Entry> tree_entries(const RangeTree& t) {
  std::vector<Entry> v;
  t.for_each(0, kMaxAddr, [&](const Entry& e) { v.push_back(e); });
  return v;
}

std::vector<Entry> model_entries(const Model& md) {
  std::vector<Entry> v;
  for (auto& [s, x] : md.m) v.push_back(Entry{s, x.first, x.second});
  return v;
}

void run_seed(unsigned seed) {
  std::mt19937_64 rng(seed);
  auto rnd = [&](u64 n) { return n ? rng() % n : 0; };
  RangeTree t;
  Model md;
  std::uintptr_t next_id = 1;

  // Per-seed shape of the address space: unit (sub-page granularity so that
  // alignment matters), span in units, and where it sits (sometimes at the
  // very top of the 64-bit space).
  const u64 unit = (seed % 3 == 0) ? 4096 : 1024;
  const bool dense = seed % 4 == 2;  // many small entries: a deeper tree
  const u64 span_units = dense ? 40000 + rnd(20000) : 2000 + rnd(30000);
  const u64 long_len = dense ? 20 : 300;
  u64 base = 0;
  if (seed % 4 == 3) base = (kMaxAddr - (span_units + 4) * unit) / 4096 * 4096;
  auto addr = [&](u64 u) { return base + u * unit; };

  const std::size_t nops = ops_per_seed();
  std::vector<Entry> d;
  for (std::size_t op = 0; op < nops; ++op) {
    unsigned kind = unsigned(rnd(100));
    if (kind < 45) {  // store: mostly short ranges, sometimes long ones
      u64 len = rnd(10) < 8 ? 1 + rnd(dense ? 3 : 12) : 1 + rnd(long_len);
      u64 s = rnd(span_units);
      u64 e = std::min(s + len, span_units + 1);
      void* p = reinterpret_cast<void*>(next_id++);
      d.clear();
      t.store(addr(s), addr(e), p, &d);
      auto want = md.store(addr(s), addr(e), p);
      ASSERT_EQ(d, want) << "store op " << op;
    } else if (kind < 65) {  // erase
      u64 len = rnd(10) < 8 ? 1 + rnd(dense ? 3 : 12) : 1 + rnd(long_len * 2);
      u64 s = rnd(span_units);
      u64 e = std::min(s + len, span_units + 1);
      // sometimes unaligned to the unit
      u64 as = addr(s), ae = addr(e);
      if (rnd(8) == 0) {
        as += rnd(unit);
        ae -= rnd(unit);
        if (ae <= as) ae = as + 1;
      }
      d.clear();
      t.erase(as, ae, &d);
      auto want = md.erase(as, ae);
      ASSERT_EQ(d, want) << "erase op " << op;
    } else if (kind < 85) {  // point queries
      rcu::ReadGuard g;
      u64 a = addr(rnd(span_units + 2)) + rnd(unit);
      if (rnd(16) == 0) a = rnd(2) ? 0 : kMaxAddr - rnd(3);
      ASSERT_EQ(t.find(a), md.find(a)) << "find " << a;
      ASSERT_EQ(t.find_vma(a), md.find_vma(a)) << "find_vma " << a;
      ASSERT_EQ(t.find_prev(a), md.find_prev(a)) << "find_prev " << a;
      auto e = t.find_vma(a);
      if (e) {
        auto n = t.next(*e);
        ASSERT_EQ(n, md.find_vma(e->end));
        ASSERT_EQ(t.prev(*e), md.find_prev(e->start));
      }
    } else if (kind < 95) {  // gap searches (brute force is O(n): rarer when dense)
      if (dense && rnd(8) != 0) continue;
      rcu::ReadGuard g;
      u64 len = rnd(4) == 0 ? 1 + rnd(unit * 400) : unit * (1 + rnd(20));
      u64 align = u64{4096} << rnd(rnd(4) == 0 ? 12 : 4);
      u64 lo = rnd(3) == 0 ? 0 : addr(rnd(span_units));
      u64 hi = rnd(3) == 0 ? kMaxAddr : addr(rnd(span_units + 2)) + rnd(unit);
      if (rnd(2) == 0) lo += rnd(unit);
      ASSERT_EQ(t.gap_bottom_up(len, align, lo, hi), md.gap(len, align, lo, hi, false))
          << "bottom-up len " << len << " align " << align << " [" << lo << "," << hi << ")";
      ASSERT_EQ(t.gap_top_down(len, align, lo, hi), md.gap(len, align, lo, hi, true))
          << "top-down len " << len << " align " << align << " [" << lo << "," << hi << ")";
    } else if (kind < 99) {  // range iteration
      rcu::ReadGuard g;
      u64 s = addr(rnd(span_units)), e = std::min(s + unit * rnd(200) + 1, kMaxAddr);
      std::vector<Entry> got;
      t.for_each(s, e, [&](const Entry& x) { got.push_back(x); });
      ASSERT_EQ(got, md.overlapping(s, e));
    } else if (rnd(200) == 0) {  // rare: clear everything
      d.clear();
      t.clear(&d);
      ASSERT_EQ(d, model_entries(md));
      md.m.clear();
    }
    if (op % 50000 == 0 && std::getenv("TREE_DIFF_VERBOSE")) {
      MemStats ms = t.stats();
      std::printf("seed %u op %zu: %zu entries, height %u, %.1f B/entry\n", seed, op, ms.entries, ms.height, ms.bytes_per_entry);
    }
    if (op % (dense ? 257 : 16) == 0) {
      std::string why;
      ASSERT_TRUE(t.validate(&why)) << why << " after op " << op;
      ASSERT_EQ(t.size(), md.m.size());
    }
    if (op % 1999 == 0) {
      ASSERT_EQ(tree_entries(t), model_entries(md)) << "after op " << op;
    }
  }
  std::string why;
  ASSERT_TRUE(t.validate(&why)) << why;
  ASSERT_EQ(tree_entries(t), model_entries(md));
}

class RangeTreeDiff : public ::testing::TestWithParam<unsigned> {
 protected:
  void TearDown() override {
    rcu::barrier();
#if VMSPACE_TREE_AVX2
    detail::use_avx2 = saved_use_avx2_;
#endif
  }
#if VMSPACE_TREE_AVX2
  bool saved_use_avx2_ = detail::use_avx2;
#endif
};

// Odd seeds look entries up with the portable key scan, even seeds with the
// AVX2 scan (where the CPU has it): both walk the same kinds of trees.
TEST_P(RangeTreeDiff, RandomOps) {
#if VMSPACE_TREE_AVX2
  if (GetParam() % 2 == 1) detail::use_avx2 = false;
#endif
  run_seed(GetParam());
}

#if VMSPACE_TREE_AVX2
// rank_le_avx2 can only be inlined into AVX2 code.
template <unsigned N>
__attribute__((target("avx2"), noinline)) unsigned rank_avx2(const u64* keys, u64 a) {
  return detail::rank_le_avx2<N>(keys, a);
}
#endif

// The AVX2 key scan against the portable one, at the values where a signed
// compare would go wrong (around 2^63) and at the ends of the range.
TEST(tree_RankScan, Avx2MatchesPortable) {
#if VMSPACE_TREE_AVX2
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "no AVX2 on this CPU";
  const u64 edge[] = {0, 1, 4095, 4096, (u64{1} << 63) - 1, u64{1} << 63, (u64{1} << 63) + 1, kMaxAddr - 1, kMaxAddr};
  std::mt19937_64 rng(11);
  for (int round = 0; round < 20000; ++round) {
    alignas(64) u64 keys[detail::kInnerKeys];
    const unsigned used = 1 + static_cast<unsigned>(rng() % detail::kInnerSlots);
    for (unsigned i = 0; i < used; ++i) keys[i] = rng() % 4 == 0 ? edge[rng() % std::size(edge)] : rng();
    std::sort(keys, keys + used);
    for (unsigned i = used; i < detail::kInnerKeys; ++i) keys[i] = kMaxAddr;
    for (int q = 0; q < 8; ++q) {
      const u64 a = q < 2 ? edge[rng() % std::size(edge)] : (q < 5 ? keys[rng() % used] + (rng() % 3) - 1 : rng());
      ASSERT_EQ(rank_avx2<detail::kInnerKeys>(keys, a), detail::rank_le<detail::kInnerKeys>(keys, a))
          << "a=" << a << " used=" << used;
      ASSERT_EQ(rank_avx2<detail::kLeafKeys>(keys, a), detail::rank_le<detail::kLeafKeys>(keys, a))
          << "a=" << a << " used=" << used;
    }
  }
#else
  GTEST_SKIP() << "no AVX2 scan on this architecture";
#endif
}

INSTANTIATE_TEST_SUITE_P(tree, RangeTreeDiff, ::testing::Range(1u, 9u));

}  // namespace
}  // namespace vmspace::tree
