// SPDX-License-Identifier: MIT
// Stress: lock-free RangeTree readers against a writer that stores, erases
// and replaces multi-entry ranges; and (tree_ConcurrentStress) several
// writers on disjoint key ranges in the concurrent-writer mode.
// Time-bounded: VMSPACE_STRESS_SECONDS (default 4) per test, scaled.
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
#include <map>
#include <ostream>
#include <random>
#include <set>
#include <string>
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

// ---------------------------------------------------------------------------
// Concurrent writers (RangeTree::set_concurrent_writers, issue 19).
//
// The space [kCBase, kCBase + nchunks * chunk pages) is cut into chunks;
// chunk c belongs to writer c % writers.  Every operation of a writer lies
// inside one of its chunks, so writers' key ranges are disjoint, while
// chunks are adjacent: neighbouring writers' entries share leaves (small
// chunks: most leaves) and inner nodes, and every rebalance copies other
// writers' entries.  A writer checks after each operation that what it
// displaced and what its chunk now holds match its private shadow map
// (nobody else writes there).  Entry pointers are tags, never
// dereferenced: (writer + 1) << 48 | sequence << 3.  Readers check under
// RCU that every entry they see is sane: it lies inside one chunk and is
// tagged with that chunk's owner, and snapshots are sorted and disjoint.

constexpr u64 kCBase = u64{1} << 36;

}  // namespace

// gtest prints entries by their bytes otherwise (found by ADL).
void PrintTo(const Entry& e, std::ostream* os) {
  *os << std::hex << "[" << e.start << ", " << e.end << ") -> " << e.ptr << std::dec;
}

namespace {

struct Layout {
  unsigned writers;
  u64 chunk;    // pages per chunk
  u64 nchunks;  // chunks in all (writers * chunks per writer)
  u64 lo() const { return kCBase; }
  u64 hi() const { return kCBase + nchunks * chunk * P; }
  u64 chunk_lo(u64 c) const { return kCBase + c * chunk * P; }
  u64 chunk_of(u64 addr) const { return (addr - kCBase) / (chunk * P); }
  unsigned owner(u64 c) const { return unsigned(c % writers); }
};

void* wtag(unsigned w, u64 seq) { return reinterpret_cast<void*>((u64(w + 1) << 48) | (seq << 3)); }
unsigned tag_writer(const void* p) { return unsigned((reinterpret_cast<std::uintptr_t>(p) >> 48) - 1); }

// An entry any reader may see: inside one chunk, tagged with its owner.
void check_owned(const Layout& L, const Entry& e) {
  ASSERT_GE(e.start, L.lo());
  ASSERT_LE(e.end, L.hi());
  ASSERT_LT(e.start, e.end);
  const u64 c = L.chunk_of(e.start);
  ASSERT_EQ(L.chunk_of(e.end - 1), c) << "entry crosses a chunk: " << std::hex << e.start << "-" << e.end;
  ASSERT_EQ(tag_writer(e.ptr), L.owner(c)) << "entry in chunk " << c << " has another writer's tag";
}

// The model of one writer's entries (start -> entry).
struct Shadow {
  std::map<u64, Entry> m;
  std::vector<Entry> overlapping(u64 s, u64 e) const {
    std::vector<Entry> v;
    auto it = m.upper_bound(s);
    if (it != m.begin() && std::prev(it)->second.end > s) --it;
    for (; it != m.end() && it->first < e; ++it) v.push_back(it->second);
    return v;
  }
  std::vector<Entry> erase(u64 s, u64 e) {
    std::vector<Entry> v = overlapping(s, e);
    for (const Entry& x : v) {
      m.erase(x.start);
      if (x.start < s) m[x.start] = Entry{x.start, s, x.ptr};
      if (x.end > e) m[e] = Entry{e, x.end, x.ptr};
    }
    return v;
  }
};

struct CWriterStats {
  std::size_t ops = 0, prealloc = 0, reserve_hits = 0;
};

void cwriter_loop(RangeTree& t, const Layout& L, unsigned w, std::atomic<bool>& stop, Shadow& sh,
                  CWriterStats& st) {
  std::mt19937_64 rng(1000 + w);
  std::vector<Entry> d, want, got;
  d.reserve(256);
  const u64 mine = L.nchunks / L.writers;  // chunks w, w + writers, ...
  u64 seq = 0;
  bool fresh = false;  // preallocate() just filled this thread's reserve
  while (!stop.load(std::memory_order_relaxed)) {
    const u64 c = w + L.writers * (rng() % mine);
    const u64 clo = L.chunk_lo(c), chi = clo + L.chunk * P;
    unsigned kind = unsigned(rng() % 100);
    if (kind < 10) {  // preallocate; the next change must draw on this thread's reserve
      ++st.prealloc;
      ASSERT_TRUE(t.preallocate(1 + unsigned(rng() % 2)));
      ASSERT_GT(t.reserved_nodes(), 0u);
      fresh = true;
      continue;
    }
    u64 s, e;
    if (kind < 15) {  // long ranges (up to the whole chunk): multi-entry changes
      const u64 len = std::min<u64>(L.chunk, 16 + rng() % 48);
      s = clo + (rng() % (L.chunk - len + 1)) * P;
      e = s + len * P;
    } else {
      const u64 len = 1 + rng() % std::min<u64>(8, L.chunk);
      const u64 sp = rng() % (L.chunk - len + 1);
      s = clo + sp * P;
      e = s + len * P;
      if (kind >= 90 && len > 1) {  // sub-page edges
        s += rng() % P;
        e -= rng() % P;
      }
    }
    const std::size_t reserve_before = t.reserved_nodes();
    d.clear();
    if (kind < 60) {
      void* p = wtag(w, ++seq);
      t.store(s, e, p, &d);
      want = sh.erase(s, e);
      sh.m[s] = Entry{s, e, p};
    } else {
      t.erase(s, e, &d);
      want = sh.erase(s, e);
    }
    ++st.ops;
    ASSERT_EQ(d, want) << "writer " << w << " op " << st.ops << " displaced";
    // The first change after preallocate() copies at least one node, from
    // this thread's reserve (a full one holds leaves and inner nodes; later
    // ones may find only the inner nodes left).
    if (fresh && (kind < 60 || !want.empty())) {
      fresh = false;
      ++st.reserve_hits;
      ASSERT_LT(t.reserved_nodes(), reserve_before) << "writer " << w << ": a change did not use its reserve";
    }
    // Our chunk is ours alone: it holds exactly what the shadow says.  The
    // neighbourhood of the change every time, the whole chunk now and then.
    const u64 wlo = st.ops % 64 == 0 ? clo : std::max(clo, s > 32 * P ? s - 32 * P : 0);
    const u64 whi = st.ops % 64 == 0 ? chi : std::min(chi, e + 32 * P);
    got.clear();
    {
      rcu::ReadGuard g;
      t.for_each(wlo, whi, [&](const Entry& x) { got.push_back(x); });
      u64 a = clo + rng() % (L.chunk * P);
      auto f = t.find(a);
      auto it = sh.m.upper_bound(a);
      bool expect_hit = it != sh.m.begin() && std::prev(it)->second.contains(a);
      ASSERT_EQ(f.has_value(), expect_hit) << std::hex << a;
      if (f) {
        ASSERT_EQ(*f, std::prev(it)->second);
      }
    }
    ASSERT_EQ(got, sh.overlapping(wlo, whi)) << "writer " << w << " chunk " << c;
  }
}

struct CReaderStats {
  std::size_t lookups = 0, hits = 0, snapshots = 0, validations = 0;
};

void creader_loop(const RangeTree& t, const Layout& L, std::atomic<bool>& stop, unsigned seed, bool validator,
                  CReaderStats& st) {
  std::mt19937_64 rng(seed);
  const u64 span = L.hi() - L.lo();
  while (!stop.load(std::memory_order_relaxed)) {
    {
      rcu::ReadGuard g;
      for (int k = 0; k < 32; ++k) {
        ++st.lookups;
        unsigned kind = unsigned(rng() % 16);
        if (kind < 9) {  // point lookup
          u64 a = L.lo() + rng() % span;
          auto e = t.find(a);
          if (e) {
            ++st.hits;
            ASSERT_TRUE(e->contains(a));
            check_owned(L, *e);
          }
        } else if (kind < 12) {  // step-wise walk: progress, sane entries
          u64 a = L.lo() + rng() % span;
          auto e = t.find_vma(a);
          u64 last_end = a;
          for (int i = 0; e && e->start < L.hi() && i < 16; ++i, e = t.next(*e)) {
            ASSERT_GT(e->end, last_end);
            last_end = e->end;
            check_owned(L, *e);
          }
          e = t.find_prev(a);
          if (e && e->start >= L.lo()) check_owned(L, *e);
        } else if (kind < 14) {  // one snapshot: sorted, disjoint, sane
          ++st.snapshots;
          u64 lo = L.lo() + rng() % span, hi = std::min(L.hi(), lo + (rng() % 64 + 1) * L.chunk * P);
          u64 prev_end = 0;
          bool bad_order = false;
          t.for_each(lo, hi, [&](const Entry& e) {
            if (e.start < prev_end || e.start >= e.end) {
              bad_order = true;
              return false;
            }
            prev_end = e.end;
            check_owned(L, e);
            return !::testing::Test::HasFatalFailure();
          });
          ASSERT_FALSE(bad_order) << "snapshot unsorted or overlapping at " << std::hex << prev_end;
        } else {  // gap searches: inside the window, aligned
          u64 len = P * (1 + rng() % 4), align = P << (rng() % 3);
          u64 lo = L.lo() + rng() % span, hi = std::min(L.hi(), lo + 256 * P);
          auto r = (kind == 14) ? t.gap_top_down(len, align, lo, hi) : t.gap_bottom_up(len, align, lo, hi);
          if (r) {
            ASSERT_EQ(*r % align, 0u);
            ASSERT_GE(*r, lo);
            ASSERT_LE(*r + len, hi);
          }
        }
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
    // Leave the CPU to a writer now and then: on a small machine readers
    // outnumbering the cores would otherwise keep the next commit-lock
    // ticket holder off the CPU (a FIFO lock hands over to it, running or
    // not), and the writers would make little progress.
    std::this_thread::yield();
    // The counters and a whole-tree check, between two commits (the tree
    // takes its commit lock for them in this mode).
    if (validator && rng() % 64 == 0) {
      ++st.validations;
      std::string why;
      ASSERT_TRUE(t.validate(&why)) << why;
      MemStats m = t.stats();  // one consistent set of counters
      ASSERT_LE(m.entries, m.leaf_nodes * detail::kLeafSlots);
      ASSERT_GE(m.entries, m.leaf_nodes);
    }
  }
}

void run_concurrent(const Layout& L, unsigned nreaders, double seconds) {
  RangeTree t;
  t.set_concurrent_writers(true);
  std::atomic<bool> stop{false};
  std::vector<Shadow> shadows(L.writers);
  std::vector<CWriterStats> wst(L.writers);
  std::vector<CReaderStats> rst(nreaders);
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < L.writers; ++w) {
    threads.emplace_back([&, w] { cwriter_loop(t, L, w, stop, shadows[w], wst[w]); });
  }
  for (unsigned i = 0; i < nreaders; ++i) {
    threads.emplace_back([&, i] { creader_loop(t, L, stop, 500 + i, i == 0, rst[i]); });
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline && !::testing::Test::HasFailure()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop.store(true);
  for (auto& th : threads) th.join();

  std::string why;
  EXPECT_TRUE(t.validate(&why)) << why;
  std::vector<Entry> expect, got;
  std::map<u64, Entry> all;
  for (const Shadow& sh : shadows) all.insert(sh.m.begin(), sh.m.end());
  for (auto& [k, e] : all) expect.push_back(e);
  t.for_each(0, kMaxAddr, [&](const Entry& e) { got.push_back(e); });
  EXPECT_EQ(got.size(), expect.size());
  EXPECT_TRUE(got == expect) << "the tree is not the union of the writers' shadows";
  EXPECT_EQ(t.size(), expect.size());
  std::size_t ops = 0, hits = 0, lookups = 0, snaps = 0, vals = 0;
  for (unsigned w = 0; w < L.writers; ++w) {
    EXPECT_GT(wst[w].ops, 100u) << "writer " << w << " starved";
    EXPECT_GT(wst[w].reserve_hits, 0u) << "writer " << w;
    ops += wst[w].ops;
    hits += wst[w].reserve_hits;
  }
  for (auto& r : rst) {
    lookups += r.lookups;
    snaps += r.snapshots;
    vals += r.validations;
  }
  std::printf("writers %u: ops %zu (changes on a reserve %zu), reader lookups %zu, snapshots %zu, validations %zu, "
              "final entries %zu, height %u\n",
              L.writers, ops, hits, lookups, snaps, vals, t.size(), t.stats().height);
  EXPECT_GT(lookups, 1000u);
  rcu::barrier();
}

// Three writers, one region each, side by side: they share the leaves and
// inner nodes at the borders and the upper levels.
TEST(tree_ConcurrentStress, AdjacentRegions) {
  run_concurrent(Layout{3, 2048, 3}, 2, budget_seconds() * 0.6);
}

// Four writers on interleaved 16-page chunks: nearly every leaf holds
// several writers' entries, so nearly every change copies and rebalances
// nodes holding other writers' keys.
TEST(tree_ConcurrentStress, InterleavedChunks) {
  run_concurrent(Layout{4, 16, 4 * 48}, 1, budget_seconds() * 0.6);
}

}  // namespace
}  // namespace vmspace::tree
