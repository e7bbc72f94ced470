// SPDX-License-Identifier: MIT
// Stress tier for RangeLock: threads take random one- and two-interval
// requests (read, write, try, downgrade, the whole range) on 64 slots.
// Per-slot counters check mutual exclusion at every grant; the slots'
// data are plain longs, so under the tsan preset a missing happens-before
// between conflicting holders is reported.  Every thread, including one
// that takes only whole-range writes, must keep making progress (FIFO per
// conflict: nobody starves).
#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "sync/range_lock.h"

namespace vmspace {
namespace {

std::chrono::milliseconds budget() {
  if (const char* s = std::getenv("VMSPACE_STRESS_MS")) return std::chrono::milliseconds(std::atol(s));
  return std::chrono::milliseconds(3000);
}

using Interval = RangeLock::Interval;
using Mode = RangeLock::Mode;
using Clock = std::chrono::steady_clock;

constexpr int kSlots = 64;  // slot i is the address range [i, i + 1)

struct Shared {
  RangeLock lock;
  // Holders of each slot, counted at every grant (seq_cst: a holder that
  // should have excluded another sees it, Dekker-style).
  std::atomic<int> readers[kSlots] = {};
  std::atomic<int> writers[kSlots] = {};
  // Protected by a write request covering the slot; read under a read
  // request covering it.  Plain, for tsan.
  long data[kSlots] = {};
  std::atomic<long> slot_writes{0};  // sum of the increments of data
  std::atomic<long> violations{0};
};

std::uint64_t slot_mask(const Interval& iv) {
  std::uint64_t hi = std::min<std::uint64_t>(iv.hi, kSlots);
  std::uint64_t m = 0;
  for (std::uint64_t s = iv.lo; s < hi; ++s) m |= std::uint64_t{1} << s;
  return m;
}

void report(Shared& sh, const char* what, int slot) {
  if (sh.violations.fetch_add(1) == 0)
    std::fprintf(stderr, "range lock stress: %s on slot %d\n", what, slot);
}

template <class F>
void for_each_slot(std::uint64_t mask, F f) {
  while (mask != 0) {
    int s = std::countr_zero(mask);
    mask &= mask - 1;
    f(s);
  }
}

// Enter or leave the slots of a granted request in the counters.
void enter(Shared& sh, std::uint64_t mask, Mode mode) {
  for_each_slot(mask, [&](int s) {
    if (mode == Mode::write) {
      if (sh.writers[s].fetch_add(1) != 0) report(sh, "two writers", s);
      if (sh.readers[s].load() != 0) report(sh, "writer with readers", s);
    } else {
      sh.readers[s].fetch_add(1);
      if (sh.writers[s].load() != 0) report(sh, "reader with a writer", s);
    }
  });
}

void leave(Shared& sh, std::uint64_t mask, Mode mode) {
  for_each_slot(mask, [&](int s) {
    if (mode == Mode::write)
      sh.writers[s].fetch_sub(1);
    else
      sh.readers[s].fetch_sub(1);
  });
}

Interval random_interval(std::minstd_rand& rng) {
  std::uint64_t lo = rng() % kSlots;
  std::uint64_t len = (rng() % 8 == 0) ? 1 + rng() % 32 : 1 + rng() % 4;
  return Interval{lo, std::min<std::uint64_t>(lo + len, kSlots)};
}

struct ThreadStats {
  long ops = 0;
  long failed_tries = 0;
  Clock::duration max_wait{};
};

// One operation of a random shape.  `whole`: the whole range, for write.
void one_op(Shared& sh, std::minstd_rand& rng, bool whole, ThreadStats& st) {
  Mode mode = (whole || rng() % 2 != 0) ? Mode::write : Mode::read;
  RangeLock::Request req(RangeLock::kWhole, mode);
  std::uint64_t mask = ~std::uint64_t{0};
  if (!whole) {
    Interval a = random_interval(rng);
    mask = slot_mask(a);
    if (rng() % 4 == 0) {
      Interval b = random_interval(rng);
      mask |= slot_mask(b);
      req.set(a, b, mode);
    } else {
      req.set(a, mode);
    }
  }
  if (!whole && rng() % 8 == 0) {
    if (!sh.lock.try_lock(req)) {
      ++st.failed_tries;
      return;
    }
  } else {
    auto t0 = Clock::now();
    sh.lock.lock(req);
    st.max_wait = std::max(st.max_wait, Clock::now() - t0);
  }
  enter(sh, mask, mode);
  long seen = 0;
  if (mode == Mode::write) {
    for_each_slot(mask, [&](int s) { ++sh.data[s]; });
    sh.slot_writes.fetch_add(std::popcount(mask), std::memory_order_relaxed);
    if (rng() % 4 == 0) {
      // Write -> read: count us as a reader before we stop excluding them.
      std::vector<long> mine;
      for_each_slot(mask, [&](int s) { mine.push_back(sh.data[s]); });
      for_each_slot(mask, [&](int s) { sh.readers[s].fetch_add(1); });
      leave(sh, mask, Mode::write);
      sh.lock.downgrade(req);
      mode = Mode::read;
      std::size_t i = 0;
      for_each_slot(mask, [&](int s) {
        if (sh.data[s] != mine[i++]) report(sh, "changed under a downgraded request", s);
      });
    }
  }
  if (rng() % 16 == 0) sched_yield();  // hold longer now and then
  for_each_slot(mask, [&](int s) { seen += sh.data[s]; });
  if (seen < 0) report(sh, "negative data", 0);
  leave(sh, mask, mode);
  sh.lock.unlock(req);
  ++st.ops;
}

TEST(RangeLockStress, MutualExclusionAndProgress) {
  constexpr int kThreads = 6;  // on 2 CPUs: the futex path is taken
  Shared sh;
  std::vector<ThreadStats> stats(kThreads);
  auto end = Clock::now() + budget();
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      std::minstd_rand rng(1000 + t);
      bool whole = t == 0;  // thread 0: only whole-range writes (fork, exit)
      while (Clock::now() < end) one_op(sh, rng, whole, stats[t]);
    });
  }
  for (auto& th : ts) th.join();

  EXPECT_EQ(sh.violations.load(), 0);
  long sum = 0;
  for (long d : sh.data) sum += d;
  EXPECT_EQ(sum, sh.slot_writes.load());
  EXPECT_EQ(sh.lock.request_count(), 0u);
  for (int t = 0; t < kThreads; ++t) {
    auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(stats[t].max_wait);
    std::printf("thread %d%s: %ld ops, %ld failed tries, longest wait %lld ms\n", t,
                t == 0 ? " (whole range)" : "", stats[t].ops, stats[t].failed_tries,
                static_cast<long long>(wait_ms.count()));
    // Progress: nobody starves, not even the whole-range writer among
    // five threads of overlapping readers and writers.
    EXPECT_GE(stats[t].ops, 10) << "thread " << t;
  }
}

// Disjoint writers never wait for each other: each thread has its own
// slot range, so no request is ever queued behind another.
TEST(RangeLockStress, DisjointWritersNeverBlock) {
  constexpr int kThreads = 4;
  RangeLock lock;
  long data[kThreads] = {};
  std::atomic<long> blocked{0};
  auto end = Clock::now() + budget() / 3;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      std::uint64_t lo = static_cast<std::uint64_t>(t) * 16;
      while (Clock::now() < end) {
        RangeLock::Request req({lo, lo + 16}, Mode::write);
        lock.lock(req);
        if (lock.waiter_count() != 0) blocked.fetch_add(1);
        ++data[t];
        lock.unlock(req);
      }
    });
  }
  for (auto& th : ts) th.join();
  EXPECT_EQ(blocked.load(), 0);
  for (long d : data) EXPECT_GT(d, 0);
}

}  // namespace
}  // namespace vmspace
