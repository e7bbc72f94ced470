// SPDX-License-Identifier: MIT
// Basic unit tests for tree::RangeTree.
#include "tree/range_tree.h"
#include "sync/rcu.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace vmspace::tree {
namespace {

constexpr std::uint64_t P = 4096;

void* tagp(std::uintptr_t v) { return reinterpret_cast<void*>(v); }

std::vector<Entry> all_entries(const RangeTree& t) {
  std::vector<Entry> v;
  t.for_each(0, kMaxAddr, [&](const Entry& e) { v.push_back(e); });
  return v;
}

#define EXPECT_VALID(t)                   \
  do {                                    \
    std::string why_;                     \
    EXPECT_TRUE((t).validate(&why_)) << why_; \
  } while (0)

class tree_RangeTree : public ::testing::Test {
 protected:
  void TearDown() override { rcu::barrier(); }
};

TEST_F(tree_RangeTree, Empty) {
  RangeTree t;
  rcu::ReadGuard g;
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.size(), 0u);
  EXPECT_FALSE(t.find(0));
  EXPECT_FALSE(t.find(12345));
  EXPECT_FALSE(t.find_vma(0));
  EXPECT_FALSE(t.find_prev(kMaxAddr));
  EXPECT_EQ(t.lookup(5), nullptr);
  EXPECT_EQ(t.gap_bottom_up(P, P, 0, 1 << 20), 0u);
  EXPECT_EQ(t.gap_top_down(P, P, 0, 1 << 20), (1u << 20) - P);
  EXPECT_FALSE(t.gap_top_down(P, P, 0, P - 1));
  EXPECT_FALSE(t.gap_bottom_up(0, P, 0, 1 << 20));
  EXPECT_VALID(t);
}

TEST_F(tree_RangeTree, StoreFindBoundaries) {
  RangeTree t;
  t.store(10 * P, 20 * P, tagp(1));
  EXPECT_EQ(t.size(), 1u);
  EXPECT_FALSE(t.find(10 * P - 1));
  ASSERT_TRUE(t.find(10 * P));
  EXPECT_EQ(*t.find(10 * P), (Entry{10 * P, 20 * P, tagp(1)}));
  EXPECT_EQ(t.lookup(20 * P - 1), tagp(1));
  EXPECT_FALSE(t.find(20 * P));
  EXPECT_EQ(t.find_vma(0)->start, 10 * P);
  EXPECT_EQ(t.find_vma(15 * P)->start, 10 * P);
  EXPECT_FALSE(t.find_vma(20 * P));
  EXPECT_FALSE(t.find_prev(10 * P));
  EXPECT_EQ(t.find_prev(10 * P + 1)->start, 10 * P);
  EXPECT_VALID(t);
}

TEST_F(tree_RangeTree, OverlapTrimAndDisplaced) {
  RangeTree t;
  std::vector<Entry> d;
  t.store(10 * P, 20 * P, tagp(1), &d);
  EXPECT_TRUE(d.empty());
  t.store(15 * P, 30 * P, tagp(2), &d);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0], (Entry{10 * P, 20 * P, tagp(1)}));
  EXPECT_EQ(all_entries(t), (std::vector<Entry>{{10 * P, 15 * P, tagp(1)}, {15 * P, 30 * P, tagp(2)}}));
  // Split an entry in the middle.
  d.clear();
  t.store(20 * P, 22 * P, tagp(3), &d);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0], (Entry{15 * P, 30 * P, tagp(2)}));
  EXPECT_EQ(all_entries(t), (std::vector<Entry>{{10 * P, 15 * P, tagp(1)},
                                                {15 * P, 20 * P, tagp(2)},
                                                {20 * P, 22 * P, tagp(3)},
                                                {22 * P, 30 * P, tagp(2)}}));
  // Merge all back into one (multi-entry replacement).
  d.clear();
  t.store(10 * P, 30 * P, tagp(4), &d);
  EXPECT_EQ(d.size(), 4u);
  EXPECT_EQ(all_entries(t), (std::vector<Entry>{{10 * P, 30 * P, tagp(4)}}));
  // Exact replacement.
  d.clear();
  t.store(10 * P, 30 * P, tagp(5), &d);
  EXPECT_EQ(d, (std::vector<Entry>{{10 * P, 30 * P, tagp(4)}}));
  EXPECT_EQ(t.lookup(11 * P), tagp(5));
  EXPECT_VALID(t);
}

TEST_F(tree_RangeTree, EraseTrims) {
  RangeTree t;
  for (std::uint64_t i = 0; i < 100; ++i) t.store(i * 2 * P, (i * 2 + 1) * P, tagp(i + 1));
  std::vector<Entry> d;
  t.erase(P / 2, 11 * P, &d);  // trims entry 0, removes 1..5
  EXPECT_EQ(d.size(), 6u);
  EXPECT_EQ(t.size(), 95u);
  EXPECT_EQ(*t.find(0), (Entry{0, P / 2, tagp(1)}));
  EXPECT_EQ(*t.find_vma(P), (Entry{12 * P, 13 * P, tagp(7)}));
  d.clear();
  t.erase(12 * P + 100, 12 * P + 200, &d);  // punch a hole: split in two
  EXPECT_EQ(d, (std::vector<Entry>{{12 * P, 13 * P, tagp(7)}}));
  EXPECT_EQ(t.size(), 96u);
  EXPECT_EQ(*t.find(12 * P + 200), (Entry{12 * P + 200, 13 * P, tagp(7)}));
  EXPECT_FALSE(t.find(12 * P + 150));
  EXPECT_VALID(t);
  d.clear();
  t.erase(500 * P, 600 * P, &d);  // nothing there
  EXPECT_TRUE(d.empty());
  t.erase(0, kMaxAddr, &d);
  EXPECT_EQ(d.size(), 96u);
  EXPECT_TRUE(t.empty());
  EXPECT_VALID(t);
}

TEST_F(tree_RangeTree, ManySequentialBothDirections) {
  for (int dir = 0; dir < 2; ++dir) {
    RangeTree t;
    const std::uint64_t n = 20000;
    for (std::uint64_t i = 0; i < n; ++i) {
      std::uint64_t k = dir ? n - 1 - i : i;
      t.store(k * 2 * P, (k * 2 + 1) * P, tagp(k + 1));
    }
    EXPECT_EQ(t.size(), n);
    EXPECT_VALID(t);
    MemStats m = t.stats();
    EXPECT_LT(m.bytes_per_entry, 40.0) << "dir " << dir;
    {
      rcu::ReadGuard g;
      for (std::uint64_t k = 0; k < n; k += 7) {
        EXPECT_EQ(t.lookup(k * 2 * P + 5), tagp(k + 1));
        EXPECT_EQ(t.lookup(k * 2 * P + P), nullptr);
      }
    }
    // One store replacing the middle half (10000 entries, many retired
    // nodes in one operation), then one erase across what is left of it.
    std::vector<Entry> d;
    t.store(n / 4 * 2 * P + P / 2, 3 * n / 4 * 2 * P, tagp(999999), &d);
    EXPECT_EQ(d.size(), n / 2);
    EXPECT_EQ(t.size(), n / 2 + 2);  // entry n/4 survives, trimmed
    EXPECT_VALID(t);
    d.clear();
    t.erase(P, (n - 1) * 2 * P, &d);
    EXPECT_EQ(d.size(), n / 2);  // everything but entries 0 and n-1
    EXPECT_EQ(t.size(), 2u);
    EXPECT_VALID(t);
    EXPECT_EQ(t.first()->ptr, tagp(1));
    EXPECT_EQ(t.last()->ptr, tagp(n));
  }
}

TEST_F(tree_RangeTree, IterationPrevNext) {
  RangeTree t;
  for (std::uint64_t i = 1; i <= 1000; ++i) t.store(i * 3 * P, (i * 3 + 2) * P, tagp(i));
  rcu::ReadGuard g;
  std::uint64_t k = 1;
  for (auto e = t.first(); e; e = t.next(*e), ++k) EXPECT_EQ(e->ptr, tagp(k));
  EXPECT_EQ(k, 1001u);
  k = 1000;
  for (auto e = t.last(); e; e = t.prev(*e), --k) EXPECT_EQ(e->ptr, tagp(k));
  EXPECT_EQ(k, 0u);
  std::vector<Entry> v;
  t.for_each(10 * P, 20 * P, [&](const Entry& e) { v.push_back(e); });
  // entries 3..6 start at 9P,12P,15P,18P; [9P,11P) intersects 10P.
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v.front().ptr, tagp(3));
  EXPECT_EQ(v.back().ptr, tagp(6));
  int visited = 0;
  t.for_each(0, kMaxAddr, [&](const Entry&) { return ++visited < 5; });
  EXPECT_EQ(visited, 5);
  // Cursor / range-for from an address inside entry 500.
  k = 500;
  for (const Entry& e : t.from(500 * 3 * P + 1)) EXPECT_EQ(e.ptr, tagp(k++));
  EXPECT_EQ(k, 1001u);
  auto c = t.cursor(10 * 3 * P + 3 * P - 1);  // in the gap after entry 10
  ASSERT_TRUE(c);
  EXPECT_EQ(c->ptr, tagp(11));
  --c;
  EXPECT_EQ(c->ptr, tagp(10));
  ++c;
  ++c;
  EXPECT_EQ(c->ptr, tagp(12));
}

TEST_F(tree_RangeTree, EdgesAreTheFirstAndLastEntryMeetingARange) {
  // Entries [10k, 10k + 5) for k < 2000 (a tree of several levels); edges()
  // against a scan, for windows of every kind: empty, inside one entry,
  // inside a gap, across many entries, at both ends.
  RangeTree t;
  for (std::uint64_t k = 0; k < 2000; ++k) t.store(10 * k + 100, 10 * k + 105, reinterpret_cast<void*>(k + 1));
  std::uint64_t seed = 12345;
  for (int n = 0; n < 5000; ++n) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    const std::uint64_t lo = (seed >> 33) % 20300;
    const std::uint64_t hi = lo + ((seed >> 13) % 500);
    std::optional<Entry> first, last;
    t.for_each(lo, hi, [&](const Entry& e) {
      if (!first) first = e;
      last = e;
    });
    const auto got = t.edges(lo, hi);
    ASSERT_EQ(got.has_value(), first.has_value()) << lo << ", " << hi;
    if (got) {
      EXPECT_EQ(got->first, *first) << lo << ", " << hi;
      EXPECT_EQ(got->second, *last) << lo << ", " << hi;
    }
  }
}

// range_write_lock skips its second look when the snapshot is the same
// before and after its grant: every change must publish a new one, in
// both writer modes (per_vma_range runs the concurrent one).
void snapshot_changes_with_every_change(bool concurrent) {
  RangeTree t;
  t.set_concurrent_writers(concurrent);
  rcu::ReadGuard g;  // no root is freed and reused while we compare
  const auto empty = t.snapshot();
  t.store(100, 200, tagp(1));
  const auto one = t.snapshot();
  EXPECT_NE(one, empty);
  EXPECT_EQ(t.snapshot(), one) << "no change, same snapshot";
  t.store(100, 200, tagp(2));  // same range, new pointer
  const auto repointed = t.snapshot();
  EXPECT_NE(repointed, one);
  t.store(150, 160, tagp(3));  // a split
  EXPECT_NE(t.snapshot(), repointed);
  const auto split = t.snapshot();
  t.erase(100, 200);
  EXPECT_NE(t.snapshot(), split);
  for (std::uint64_t k = 0; k < 500; ++k) {  // a deeper tree: the root is still replaced
    const auto before = t.snapshot();
    t.store(1000 + 10 * k, 1005 + 10 * k, tagp(k + 1));
    ASSERT_NE(t.snapshot(), before) << k;
  }
  const auto full = t.snapshot();
  t.erase(1000, 1000 + 10 * 250);  // many entries at once
  EXPECT_NE(t.snapshot(), full);
}

TEST_F(tree_RangeTree, SnapshotChangesWithEveryPublishedChange) { snapshot_changes_with_every_change(false); }

TEST_F(tree_RangeTree, SnapshotChangesWithEveryPublishedChangeConcurrentWriters) {
  snapshot_changes_with_every_change(true);
}

TEST_F(tree_RangeTree, GapSearchAlignment) {
  RangeTree t;
  // Mapped: [0,1M) and [1M+4K*3, 4M); gap [1M, 1M+12K) and [4M, top).
  const std::uint64_t M = 1 << 20;
  t.store(0, M, tagp(1));
  t.store(M + 3 * P, 4 * M, tagp(2));
  rcu::ReadGuard g;
  EXPECT_EQ(t.gap_bottom_up(3 * P, P, 0, 4 * M), M);
  EXPECT_EQ(t.gap_top_down(3 * P, P, 0, 4 * M), M);
  EXPECT_EQ(t.gap_top_down(2 * P, P, 0, 4 * M), M + P);
  EXPECT_FALSE(t.gap_bottom_up(4 * P, P, 0, 4 * M));
  // The 12K gap starts at 1M: 8K aligned at 8K fits at 1M only.
  EXPECT_EQ(t.gap_top_down(2 * P, 2 * P, 0, 4 * M), M);
  // 16K alignment of an 8K request: 1M is 16K aligned and fits.
  EXPECT_EQ(t.gap_bottom_up(2 * P, 4 * P, 0, 4 * M), M);
  // Shift: a gap of exactly the length but misaligned must not be used.
  t.erase(M, M + 3 * P);
  t.store(M, M + P, tagp(3));  // gap now [1M+4K, 1M+12K) = 8K, not 8K-aligned start
  EXPECT_FALSE(t.gap_bottom_up(2 * P, 2 * P, 0, 4 * M));
  EXPECT_EQ(t.gap_bottom_up(2 * P, P, 0, 4 * M), M + P);
  EXPECT_EQ(t.gap_bottom_up(2 * P, 2 * P, 0, 8 * M), 4 * M);
  EXPECT_EQ(t.gap_top_down(2 * P, 2 * P, 0, 8 * M), 8 * M - 2 * P);
  // Bounds clip gaps.
  EXPECT_EQ(t.gap_bottom_up(P, P, M + 2 * P, 8 * M), M + 2 * P);
  EXPECT_EQ(t.gap_top_down(P, P, 0, M + 3 * P), M + 2 * P);
  EXPECT_FALSE(t.gap_top_down(P, P, 0, M));
  // Top of the address space.
  EXPECT_EQ(t.gap_top_down(P, P, 0, kMaxAddr), kMaxAddr - (2 * P - 1));
}

TEST_F(tree_RangeTree, TopOfAddressSpace) {
  RangeTree t;
  t.store(kMaxAddr - 10, kMaxAddr, tagp(1));
  t.store(0, 1, tagp(2));
  EXPECT_EQ(t.lookup(kMaxAddr - 1), tagp(1));
  EXPECT_EQ(t.lookup(kMaxAddr), nullptr);
  EXPECT_FALSE(t.find_vma(kMaxAddr));
  EXPECT_EQ(t.find_prev(kMaxAddr)->ptr, tagp(1));
  EXPECT_EQ(t.gap_top_down(16, 16, 0, kMaxAddr), (kMaxAddr - 10 - 16) & ~std::uint64_t{15});
  EXPECT_EQ(t.gap_bottom_up(16, 16, 0, kMaxAddr), 16u);
  EXPECT_VALID(t);
}

TEST_F(tree_RangeTree, ClearAndStats) {
  RangeTree t;
  for (std::uint64_t i = 0; i < 5000; ++i) t.store(i * 2 * P, (i * 2 + 1) * P, tagp(i + 1));
  MemStats m = t.stats();
  EXPECT_EQ(m.entries, 5000u);
  EXPECT_GT(m.leaf_nodes, 0u);
  EXPECT_GT(m.height, 1u);
  std::vector<Entry> d;
  t.clear(&d);
  EXPECT_EQ(d.size(), 5000u);
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.stats().bytes, 0u);
  EXPECT_VALID(t);
}

}  // namespace
}  // namespace vmspace::tree
