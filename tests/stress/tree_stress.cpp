// SPDX-License-Identifier: MIT
// Stress: lock-free RangeTree readers against a writer that stores, erases
// and replaces multi-entry ranges.  Time-bounded: VMSPACE_STRESS_SECONDS
// (default 4) per test.
//
// Entries point to Obj.  The writer counts how many tree entries reference
// each Obj; when the count drops to zero the Obj is retired through
// rcu::call, whose callback poisons `magic` and frees it.  Readers check
// that whatever they find (under a ReadGuard) contains their address, lies
// inside the Obj's original range and still has a live magic; and that the
// permanently mapped window (which the writer keeps splitting, re-splitting
// and merging back with single stores) is never seen with a hole.
#include "tree/range_tree.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace vmspace::tree {
namespace {

using u64 = std::uint64_t;
constexpr u64 P = 4096;
constexpr u64 kAlive = 0xA11FE0A11FE0A11Full;
constexpr u64 kDead = 0xDEADDEADDEADDEADull;

struct Obj {
  std::atomic<u64> magic{kAlive};
  u64 ostart, oend;  // original range; entries pointing here lie inside it
  unsigned refs = 0;  // writer-only
  rcu::Head head;
};

void retire(Obj* o) {
  rcu::call(&o->head, [](rcu::Head* h) {
    Obj* x = reinterpret_cast<Obj*>(reinterpret_cast<char*>(h) - offsetof(Obj, head));
    x->magic.store(kDead, std::memory_order_relaxed);
    delete x;
  });
}

double budget_seconds() {
  if (const char* s = std::getenv("VMSPACE_STRESS_SECONDS")) return std::atof(s);
  return 4.0;
}

// Region layout (in pages): general churn in [0, kSpan), the permanent
// window in [kPermLo, kPermHi) inside it.
constexpr u64 kBase = u64{1} << 32;
constexpr u64 kSpan = 8192;
constexpr u64 kPermLo = 3000, kPermHi = 3096;
u64 A(u64 page) { return kBase + page * P; }

class Writer {
 public:
  explicit Writer(RangeTree& t) : t_(t) {}

  void store(u64 s, u64 e) {
    auto* o = new Obj;
    o->ostart = s;
    o->oend = e;
    o->refs = 1;
    disp_.clear();
    t_.store(s, e, o, &disp_);
    settle(s, e);
  }
  void erase(u64 s, u64 e) {
    disp_.clear();
    t_.erase(s, e, &disp_);
    settle(s, e);
  }
  // Frees every Obj still in the tree (no readers may remain).
  void drain() {
    std::set<Obj*> objs;
    t_.for_each(0, kMaxAddr, [&](const Entry& e) { objs.insert(e.as<Obj>()); });
    for (Obj* o : objs) delete o;
  }
  std::size_t ops = 0;

 private:
  void settle(u64 s, u64 e) {
    ++ops;
    for (const Entry& d : disp_) {
      Obj* x = d.as<Obj>();
      --x->refs;
      if (d.start < s) ++x->refs;
      if (d.end > e) ++x->refs;
      if (x->refs == 0) retire(x);
    }
  }
  RangeTree& t_;
  std::vector<Entry> disp_;
};

struct ReaderStats {
  std::size_t lookups = 0, hits = 0, snapshots = 0;
};

void check_entry(const Entry& e, u64 addr, bool must_contain) {
  if (must_contain) {
    ASSERT_TRUE(e.contains(addr)) << std::hex << e.start << "-" << e.end << " vs " << addr;
  }
  const Obj* o = e.as<Obj>();
  ASSERT_EQ(o->magic.load(std::memory_order_relaxed), kAlive) << "found a freed entry";
  ASSERT_LE(o->ostart, e.start);
  ASSERT_GE(o->oend, e.end);
}

void reader_loop(const RangeTree& t, std::atomic<bool>& stop, unsigned seed, ReaderStats& st) {
  std::mt19937_64 rng(seed);
  while (!stop.load(std::memory_order_relaxed)) {
    rcu::ReadGuard g;
    for (int k = 0; k < 64; ++k) {
      ++st.lookups;
      unsigned kind = unsigned(rng() % 16);
      if (kind < 10) {  // point lookup anywhere
        u64 a = A(rng() % kSpan) + rng() % P;
        auto e = t.find(a);
        bool perm = a >= A(kPermLo) && a < A(kPermHi);
        if (perm) {
          ASSERT_TRUE(e) << "hole in the permanent window at " << std::hex << a;
        }
        if (e) {
          ++st.hits;
          check_entry(*e, a, true);
        }
      } else if (kind < 13) {  // find_vma + next()/prev() steps: progress, alive
        u64 a = A(rng() % kSpan);
        auto e = t.find_vma(a);
        u64 last_end = a;
        for (int i = 0; e && i < 8; ++i, e = t.next(*e)) {
          ASSERT_GT(e->end, last_end);  // next() strictly advances the end
          last_end = e->end;
          check_entry(*e, 0, false);
        }
        e = t.find_prev(a);
        u64 last_start = a;
        for (int i = 0; e && i < 8; ++i, e = t.prev(*e)) {
          ASSERT_LT(e->start, last_start);  // prev() strictly lowers the start
          last_start = e->start;
          check_entry(*e, 0, false);
        }
      } else if (kind < 15) {  // snapshot of the permanent window: gap-free
        ++st.snapshots;
        u64 expect = A(kPermLo);
        bool hole = false;
        t.for_each(A(kPermLo), A(kPermHi), [&](const Entry& e) {
          check_entry(e, 0, false);
          if (e.start > expect) {
            hole = true;
            return false;
          }
          expect = e.end;
          return true;
        });
        ASSERT_FALSE(hole) << "hole in a snapshot at " << std::hex << expect;
        ASSERT_GE(expect, A(kPermHi)) << "snapshot ends early";
      } else {  // gap search: result must be sane
        u64 len = P * (1 + rng() % 8);
        u64 align = P << (rng() % 3);
        auto g1 = t.gap_top_down(len, align, A(0), A(kSpan));
        if (g1) {
          ASSERT_EQ(*g1 % align, 0u);
          ASSERT_GE(*g1, A(0));
          ASSERT_LE(*g1 + len, A(kSpan));
        }
      }
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

void run(unsigned nreaders, double seconds, bool perm_heavy) {
  RangeTree t;
  Writer w(t);
  std::mt19937_64 rng(perm_heavy ? 7 : 3);
  // Initial population, permanent window first.
  w.store(A(kPermLo), A(kPermHi));
  for (u64 p = 0; p < kSpan; p += 2 + rng() % 4) {
    if (p + 1 <= kPermLo || p >= kPermHi) w.store(A(p), A(p + 1));
  }
  std::atomic<bool> stop{false};
  std::vector<ReaderStats> stats(nreaders);
  std::vector<std::thread> readers;
  for (unsigned i = 0; i < nreaders; ++i) {
    readers.emplace_back([&, i] { reader_loop(t, stop, 100 + i, stats[i]); });
  }

  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  auto pick_outside = [&](u64 len) {  // a range of pages avoiding the window
    for (;;) {
      u64 s = rng() % (kSpan - len);
      if (s + len <= kPermLo || s >= kPermHi) return s;
    }
  };
  while (std::chrono::steady_clock::now() < deadline && !::testing::Test::HasFailure()) {
    for (int k = 0; k < 32; ++k) {
      unsigned kind = unsigned(rng() % 100);
      if (kind < (perm_heavy ? 60u : 15u)) {
        // Re-split the permanent window into pieces, one store each (each
        // store replaces part of it atomically), then merge it back.
        u64 p = kPermLo;
        while (p < kPermHi) {
          u64 q = std::min(kPermHi, p + 1 + rng() % 24);
          w.store(A(p), A(q));
          p = q;
        }
        if (rng() % 2) w.store(A(kPermLo), A(kPermHi));
        // Straddling replacement inside the window.
        u64 a = kPermLo + rng() % (kPermHi - kPermLo - 1);
        w.store(A(a), A(a + 1 + rng() % (kPermHi - a - 1 + 1)));
      } else if (kind < 55) {
        u64 len = 1 + rng() % 8;
        u64 s = pick_outside(len);
        w.store(A(s), A(s + len));
      } else if (kind < 90) {
        u64 len = 1 + rng() % 4;
        u64 s = pick_outside(len);
        w.erase(A(s), A(s + len));
      } else {  // multi-entry replacement (merge / munmap across VMAs)
        u64 len = 16 + rng() % 100;
        u64 s = pick_outside(len);
        if (rng() % 2) {
          w.store(A(s), A(s + len));
        } else {
          w.erase(A(s), A(s + len));
        }
      }
    }
    // Sub-page trims outside the window now and then.
    u64 s = pick_outside(2);
    w.erase(A(s) + 512, A(s) + 1024);
  }
  stop.store(true);
  for (auto& th : readers) th.join();
  std::string why;
  EXPECT_TRUE(t.validate(&why)) << why;
  std::size_t lookups = 0, hits = 0, snaps = 0;
  for (auto& s : stats) {
    lookups += s.lookups;
    hits += s.hits;
    snaps += s.snapshots;
  }
  std::printf("writer ops %zu, reader lookups %zu (hits %zu, snapshots %zu), final entries %zu\n", w.ops, lookups,
              hits, snaps, t.size());
  EXPECT_GT(w.ops, 100u);
  EXPECT_GT(lookups, 1000u);
  rcu::barrier();  // retired Objs and nodes
  w.drain();
}

TEST(tree_Stress, ReadersVsWriterChurn) { run(2, budget_seconds(), false); }

TEST(tree_Stress, PermanentWindowSplitMerge) { run(3, budget_seconds() * 0.75, true); }

}  // namespace
}  // namespace vmspace::tree
