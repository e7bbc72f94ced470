// SPDX-License-Identifier: MIT
// RangeTree's concurrent-writer mode (issue 19): the same results as the
// single-writer mode, per-thread preallocate() reserves, clear(), mode
// switches, and a short run of two writers on adjacent disjoint ranges.
// The long multi-writer runs are in tests/stress/tree_stress.cpp.
#include "tree/range_tree.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "sync/fail_nth.h"

namespace vmspace::tree {
namespace {

using u64 = std::uint64_t;
constexpr u64 P = 4096;

void* tagp(std::uintptr_t v) { return reinterpret_cast<void*>(v); }

std::vector<Entry> all_entries(const RangeTree& t) {
  std::vector<Entry> v;
  rcu::ReadGuard g;
  t.for_each(0, kMaxAddr, [&](const Entry& e) { v.push_back(e); });
  return v;
}

unsigned height(const RangeTree& t) { return t.stats().height; }

#define EXPECT_VALID(t)                       \
  do {                                        \
    std::string why_;                         \
    EXPECT_TRUE((t).validate(&why_)) << why_; \
  } while (0)

class tree_RangeTreeConcurrent : public ::testing::Test {
 protected:
  void TearDown() override { rcu::barrier(); }
};

// The same random operations on a single-writer tree and on a
// concurrent-mode tree (one thread): same displaced entries, same
// entries, same counters, both valid.
TEST_F(tree_RangeTreeConcurrent, SameResultsAsSingleWriter) {
  RangeTree a, b;
  b.set_concurrent_writers(true);
  EXPECT_FALSE(a.concurrent_writers());
  EXPECT_TRUE(b.concurrent_writers());
  std::mt19937_64 rng(19);
  std::vector<Entry> da, db;
  std::uintptr_t id = 1;
  for (int op = 0; op < 40000; ++op) {
    unsigned kind = unsigned(rng() % 100);
    u64 s = rng() % 6000, len = rng() % 8 == 0 ? 1 + rng() % 200 : 1 + rng() % 6;
    da.clear();
    db.clear();
    if (kind < 55) {
      void* p = tagp(id++);
      a.store(s * P, (s + len) * P, p, &da);
      b.store(s * P, (s + len) * P, p, &db);
    } else if (kind < 90) {
      u64 lo = s * P + (rng() % 4 == 0 ? rng() % P : 0);
      a.erase(lo, (s + len) * P, &da);
      b.erase(lo, (s + len) * P, &db);
    } else if (kind < 99) {
      unsigned n = 1 + unsigned(rng() % 2);
      ASSERT_EQ(a.preallocate(n), b.preallocate(n));
    } else if (rng() % 20 == 0) {
      a.clear(&da);
      b.clear(&db);
    }
    ASSERT_EQ(da, db) << "op " << op;
    if (op % 997 == 0) {
      ASSERT_EQ(all_entries(a), all_entries(b)) << "op " << op;
      ASSERT_EQ(a.size(), b.size());
      MemStats ma = a.stats(), mb = b.stats();
      ASSERT_EQ(ma.leaf_nodes, mb.leaf_nodes);
      ASSERT_EQ(ma.inner_nodes, mb.inner_nodes);
      ASSERT_EQ(ma.height, mb.height);
      EXPECT_VALID(a);
      EXPECT_VALID(b);
    }
  }
  EXPECT_EQ(all_entries(a), all_entries(b));
  EXPECT_VALID(b);
}

// In concurrent mode a reserve belongs to the thread that made it: another
// thread neither sees nor consumes it, and each thread's store draws on
// its own.
TEST_F(tree_RangeTreeConcurrent, ReserveIsPerThread) {
  RangeTree t;
  t.set_concurrent_writers(true);
  for (u64 i = 0; i < 2000; ++i) t.store(i * 2 * P, (i * 2 + 1) * P, tagp(i + 1));
  const unsigned h = height(t);
  ASSERT_GE(h, 2u);

  EXPECT_EQ(t.reserved_nodes(), 0u);
  ASSERT_TRUE(t.preallocate(1));
  const std::size_t mine = t.reserved_nodes();
  EXPECT_GE(mine, std::size_t{h});

  // Two other threads, at the same time: each sees an empty reserve, fills
  // its own, and its store (a new entry in a gap: a path copy of h nodes)
  // takes nodes from it and from nowhere else.
  std::atomic<int> ready{0};
  auto writer = [&](u64 page, std::size_t* before, std::size_t* after, std::size_t* empty_at_start) {
    *empty_at_start = t.reserved_nodes();
    EXPECT_TRUE(t.preallocate(1));
    *before = t.reserved_nodes();
    ready.fetch_add(1);
    while (ready.load() < 2) std::this_thread::yield();
    t.store((page + 1) * P, (page + 2) * P, tagp(7));  // fills the gap after entry page / 2
    *after = t.reserved_nodes();
  };
  std::size_t b1, a1, e1, b2, a2, e2;
  std::thread t1(writer, 100, &b1, &a1, &e1), t2(writer, 3000, &b2, &a2, &e2);
  t1.join();
  t2.join();
  EXPECT_EQ(e1, 0u);
  EXPECT_EQ(e2, 0u);
  EXPECT_EQ(b1, mine);  // same height, same sizing
  EXPECT_EQ(b2, mine);
  EXPECT_LE(a1 + h, b1);  // at least the path came from the thread's reserve
  EXPECT_LE(a2 + h, b2);
  EXPECT_EQ(t.reserved_nodes(), mine);  // untouched by the other threads

  // This thread's store draws on its reserve.
  t.store(501 * P, 502 * P, tagp(8));
  EXPECT_LE(t.reserved_nodes() + h, mine);
  EXPECT_EQ(t.size(), 2003u);
  EXPECT_VALID(t);
}

// fail_nth reaches preallocate() the same way in both modes: a full
// reserve needs no allocation (nothing counted, nothing can fail); after a
// store drew on it, topping it up fails when injected and changes nothing.
TEST_F(tree_RangeTreeConcurrent, PreallocateFailureInjectionBothModes) {
  if (!fail_nth::armed()) GTEST_SKIP() << "fail_nth needs a debug build";
  for (bool concurrent : {false, true}) {
    SCOPED_TRACE(concurrent ? "concurrent" : "single writer");
    RangeTree t;
    t.set_concurrent_writers(concurrent);
    for (u64 i = 0; i < 500; ++i) t.store(i * 2 * P, (i * 2 + 1) * P, tagp(i + 1));
    {
      fail_nth::Scope f(1);
      EXPECT_FALSE(t.preallocate(1));  // empty reserve: the allocation fails
      EXPECT_EQ(fail_nth::failures(), 1u);
      EXPECT_EQ(t.reserved_nodes(), 0u);
    }
    ASSERT_TRUE(t.preallocate(1));
    const std::size_t full = t.reserved_nodes();
    {
      fail_nth::Scope f(1);
      EXPECT_TRUE(t.preallocate(1));  // already full: no allocation at all
      EXPECT_EQ(fail_nth::calls(), 0u);
      t.store(11 * P, 12 * P, tagp(9));
      EXPECT_LT(t.reserved_nodes(), full);  // the store used the reserve
      const std::size_t left = t.reserved_nodes();
      EXPECT_FALSE(t.preallocate(1));  // topping up fails, reserve unchanged
      EXPECT_EQ(t.reserved_nodes(), left);
    }
    EXPECT_TRUE(t.preallocate(1));
    EXPECT_EQ(t.reserved_nodes(), full);
    EXPECT_EQ(t.size(), 501u);
    EXPECT_VALID(t);
  }
}

// A thread's reserve is keyed by the tree (its id, not its address).
TEST_F(tree_RangeTreeConcurrent, ReserveFollowsTheTree) {
  auto a = std::make_unique<RangeTree>();
  RangeTree b;
  a->set_concurrent_writers(true);
  b.set_concurrent_writers(true);
  ASSERT_TRUE(a->preallocate(2));
  EXPECT_GT(a->reserved_nodes(), 0u);
  EXPECT_EQ(b.reserved_nodes(), 0u);
  ASSERT_TRUE(b.preallocate(1));  // returns a's reserve first
  EXPECT_EQ(a->reserved_nodes(), 0u);
  EXPECT_GT(b.reserved_nodes(), 0u);
  b.store(P, 2 * P, tagp(1));  // draws on b's reserve only
  a->store(P, 2 * P, tagp(2));  // no reserve for a: allocates
  EXPECT_VALID(*a);
  EXPECT_VALID(b);

  // Another thread's reserve for a tree that is then destroyed and
  // rebuilt at the same address: never taken for the new tree's.
  std::atomic<int> step{0};
  std::size_t seen_new = 1;
  std::thread other([&] {
    EXPECT_TRUE(a->preallocate(1));
    step.store(1);
    while (step.load() != 2) std::this_thread::yield();
    seen_new = a->reserved_nodes();  // the new tree at the same address
    a->store(10 * P, 11 * P, tagp(3));
    EXPECT_TRUE(a->preallocate(1));  // drops the stale blocks, sizes a new reserve
    EXPECT_GT(a->reserved_nodes(), 0u);
  });
  while (step.load() != 1) std::this_thread::yield();
  RangeTree* where = a.get();
  a->~RangeTree();
  new (where) RangeTree;
  where->set_concurrent_writers(true);
  step.store(2);
  other.join();  // its reserve goes back to the pool at thread exit
  EXPECT_EQ(seen_new, 0u);
  EXPECT_EQ(a->size(), 1u);
  EXPECT_VALID(*a);
}

TEST_F(tree_RangeTreeConcurrent, ClearAndStats) {
  RangeTree t;
  t.set_concurrent_writers(true);
  for (u64 i = 0; i < 5000; ++i) t.store(i * 2 * P, (i * 2 + 1) * P, tagp(i + 1));
  MemStats m = t.stats();
  EXPECT_EQ(m.entries, 5000u);
  EXPECT_GT(m.height, 1u);
  EXPECT_EQ(t.size(), 5000u);
  std::vector<Entry> d;
  d.reserve(5000);
  t.clear(&d);
  EXPECT_EQ(d.size(), 5000u);
  EXPECT_EQ(d.front(), (Entry{0, P, tagp(1)}));
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.stats().bytes, 0u);
  EXPECT_VALID(t);
  t.clear();  // empty: nothing to do
  t.store(P, 3 * P, tagp(1));
  EXPECT_EQ(all_entries(t), (std::vector<Entry>{{P, 3 * P, tagp(1)}}));
  EXPECT_VALID(t);
}

// Switching on hands the tree's own reserve back; switching off the
// calling thread's.  The tree keeps its entries either way.
TEST_F(tree_RangeTreeConcurrent, SwitchModes) {
  RangeTree t;
  for (u64 i = 0; i < 300; ++i) t.store(i * 2 * P, (i * 2 + 1) * P, tagp(i + 1));
  ASSERT_TRUE(t.preallocate(1));
  EXPECT_GT(t.reserved_nodes(), 0u);
  t.set_concurrent_writers(true);
  EXPECT_EQ(t.reserved_nodes(), 0u);
  ASSERT_TRUE(t.preallocate(1));
  EXPECT_GT(t.reserved_nodes(), 0u);
  t.erase(0, 20 * P);
  EXPECT_EQ(t.size(), 290u);
  t.set_concurrent_writers(false);
  EXPECT_EQ(t.reserved_nodes(), 0u);
  t.store(0, P, tagp(1));
  EXPECT_EQ(t.size(), 291u);
  EXPECT_VALID(t);
}

// Two writers on adjacent ranges (their entries share leaves and inner
// nodes), each checking its own range against a private map after every
// operation.
TEST_F(tree_RangeTreeConcurrent, TwoWritersAdjacentRanges) {
  RangeTree t;
  t.set_concurrent_writers(true);
  constexpr u64 kPages = 400;  // per writer
  std::map<u64, Entry> shadow[2];
  auto writer = [&](unsigned w) {
    std::mt19937_64 rng(100 + w);
    const u64 base = w * kPages;
    std::map<u64, Entry>& m = shadow[w];
    std::vector<Entry> d;
    for (int op = 0; op < 3000 && !::testing::Test::HasFailure(); ++op) {
      u64 s = base + rng() % kPages, e = std::min(base + kPages, s + 1 + rng() % 6);
      d.clear();
      std::vector<Entry> want;
      for (auto it = m.begin(); it != m.end(); ++it) {
        const Entry& x = it->second;
        if (x.end > s * P && x.start < e * P) want.push_back(x);
      }
      for (const Entry& x : want) {
        m.erase(x.start);
        if (x.start < s * P) m[x.start] = Entry{x.start, s * P, x.ptr};
        if (x.end > e * P) m[e * P] = Entry{e * P, x.end, x.ptr};
      }
      if (rng() % 3 != 0) {
        void* p = tagp((u64(w + 1) << 40) | u64(op));
        t.store(s * P, e * P, p, &d);
        m[s * P] = Entry{s * P, e * P, p};
      } else {
        t.erase(s * P, e * P, &d);
      }
      ASSERT_EQ(d, want) << "writer " << w << " op " << op;
      std::vector<Entry> got, expect;
      {
        rcu::ReadGuard g;
        t.for_each(base * P, (base + kPages) * P, [&](const Entry& x) { got.push_back(x); });
      }
      for (auto& [k, x] : m) expect.push_back(x);
      ASSERT_EQ(got, expect) << "writer " << w << " op " << op;
    }
  };
  std::thread w0(writer, 0), w1(writer, 1);
  w0.join();
  w1.join();
  std::vector<Entry> expect;
  for (auto& m : shadow)
    for (auto& [k, x] : m) expect.push_back(x);
  EXPECT_EQ(all_entries(t), expect);
  EXPECT_EQ(t.size(), expect.size());
  EXPECT_VALID(t);
}

}  // namespace
}  // namespace vmspace::tree
