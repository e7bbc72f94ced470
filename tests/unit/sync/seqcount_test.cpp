// SPDX-License-Identifier: MIT
#include "sync/seqcount.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

namespace vmspace {
namespace {

TEST(SeqCount, OddWhileWriting) {
  SeqCount sc;
  EXPECT_EQ(sc.raw_read(), 0u);
  sc.write_begin();
  EXPECT_TRUE(sc.write_in_progress());
  EXPECT_EQ(sc.raw_read() & 1, 1u);
  sc.write_end();
  EXPECT_FALSE(sc.write_in_progress());
  EXPECT_EQ(sc.raw_read(), 2u);
}

TEST(SeqCount, RetryAfterConcurrentWrite) {
  SeqCount sc;
  std::uint64_t s = sc.read_begin();
  EXPECT_FALSE(sc.read_retry(s));
  sc.write_begin();
  sc.write_end();
  EXPECT_TRUE(sc.read_retry(s));
  s = sc.read_begin();
  EXPECT_FALSE(sc.read_retry(s));
}

TEST(SeqCount, ReadBeginWaitsOutWriter) {
  SeqCount sc;
  sc.write_begin();
  std::atomic<bool> got{false};
  std::uint64_t seen = 0;
  std::thread r([&] {
    seen = sc.read_begin();
    got = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_FALSE(got.load());
  sc.write_end();
  r.join();
  EXPECT_EQ(seen, 2u);
}

// Readers never accept a torn pair: every accepted read has a == b.  The
// writer keeps writing until the reader has accepted enough reads.  Data
// under the seqcount: release stores, acquire loads (seqcount.h).
TEST(SeqCount, ReadersNeverAcceptTornData) {
  SeqCount sc;
  std::atomic<long> a{0}, b{0};
  std::atomic<bool> stop{false};
  std::atomic<long> writes{0};
  std::thread writer([&] {
    for (long i = 1; !stop.load(std::memory_order_relaxed); ++i) {
      sc.write_begin();
      a.store(i, std::memory_order_release);
      b.store(i, std::memory_order_release);
      sc.write_end();
      writes.store(i, std::memory_order_relaxed);
    }
  });
  while (writes.load(std::memory_order_relaxed) == 0) std::this_thread::yield();
  long retries = 0;
  for (long accepted = 0; accepted < 100000; ++accepted) {
    long x, y;
    std::uint64_t s;
    do {
      s = sc.read_begin();
      x = a.load(std::memory_order_acquire);
      y = b.load(std::memory_order_acquire);
    } while (sc.read_retry(s) && ++retries);
    ASSERT_EQ(x, y);
    ASSERT_EQ(s, 2u * static_cast<std::uint64_t>(x));  // the snapshot of section x exactly
  }
  stop = true;
  writer.join();
  EXPECT_GT(writes.load(), 0);
}

// A reader that has seen a store of a section that began after its
// read_begin() must be told to retry.
TEST(SeqCount, ReaderThatSawInProgressDataRetries) {
  SeqCount sc;
  std::atomic<long> x{0};
  std::atomic<int> stage{0};
  const std::uint64_t s = sc.read_begin();
  std::thread writer([&] {
    while (stage.load() != 1) std::this_thread::yield();
    sc.write_begin();
    x.store(1, std::memory_order_release);
    stage.store(2);
    while (stage.load() != 3) std::this_thread::yield();
    sc.write_end();
  });
  stage.store(1);
  while (x.load(std::memory_order_acquire) != 1) std::this_thread::yield();
  EXPECT_TRUE(sc.read_retry(s));
  stage.store(3);
  writer.join();
  EXPECT_TRUE(sc.read_retry(s));
  EXPECT_EQ(sc.read_begin(), 2u);
}

// raw_read() that returns the odd value of a section in progress
// synchronizes with the previous section's write_end(): write_begin() is a
// read-modify-write, so the odd value is in that release sequence.
// (mm_lock_seq relies on this: vma_start_read() re-checks vm_lock_seq
// against mm_lock_seq and may read a later session's odd value.)  The
// payload is deliberately NOT atomic: only the counter orders it, so tsan
// would report a race if that edge were missing.
TEST(SeqCount, OddValueSynchronizesWithPreviousWriteEnd) {
  SeqCount sc;
  long payload = 0;  // plain
  std::atomic<bool> checked{false};
  std::thread writer([&] {
    sc.write_begin();
    payload = 42;
    sc.write_end();    // 2, release
    sc.write_begin();  // 3: the reader sees only this value
    while (!checked.load()) std::this_thread::yield();
    sc.write_end();
  });
  std::uint64_t v;
  while ((v = sc.raw_read()) != 3) cpu_relax();
  EXPECT_EQ(payload, 42);
  EXPECT_TRUE(sc.write_in_progress());
  checked.store(true);
  writer.join();
  EXPECT_EQ(sc.raw_read(), 4u);
}

// Two readers and one writer; every accepted snapshot is a consistent one,
// and snapshots a reader accepts never go back in time.
TEST(SeqCount, ConcurrentReadersSeeConsistentMonotonicSnapshots) {
  SeqCount sc;
  std::atomic<long> f[4] = {};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (long i = 1; !stop.load(std::memory_order_relaxed); ++i) {
      sc.write_begin();
      for (int k = 0; k < 4; ++k) f[k].store(i * (k + 1), std::memory_order_release);
      sc.write_end();
    }
  });
  auto reader = [&](std::atomic<long>& bad) {
    long last = 0;
    for (int n = 0; n < 50000; ++n) {
      long v[4];
      std::uint64_t s;
      do {
        s = sc.read_begin();
        for (int k = 0; k < 4; ++k) v[k] = f[k].load(std::memory_order_acquire);
      } while (sc.read_retry(s));
      for (int k = 0; k < 4; ++k)
        if (v[k] != v[0] * (k + 1)) bad.fetch_add(1);
      if (v[0] < last) bad.fetch_add(1);
      last = v[0];
    }
  };
  std::atomic<long> bad1{0}, bad2{0};
  std::thread r1(reader, std::ref(bad1)), r2(reader, std::ref(bad2));
  r1.join();
  r2.join();
  stop = true;
  writer.join();
  EXPECT_EQ(bad1.load(), 0);
  EXPECT_EQ(bad2.load(), 0);
}

}  // namespace
}  // namespace vmspace
