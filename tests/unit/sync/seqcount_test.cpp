// SPDX-License-Identifier: MIT
#include "sync/seqcount.h"

#include <gtest/gtest.h>

#include <atomic>
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
// writer keeps writing until the reader has accepted enough reads.
TEST(SeqCount, ReadersNeverAcceptTornData) {
  SeqCount sc;
  std::atomic<long> a{0}, b{0};
  std::atomic<bool> stop{false};
  std::atomic<long> writes{0};
  std::thread writer([&] {
    for (long i = 1; !stop.load(std::memory_order_relaxed); ++i) {
      sc.write_begin();
      a.store(i, std::memory_order_relaxed);
      b.store(i, std::memory_order_relaxed);
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
      x = a.load(std::memory_order_relaxed);
      y = b.load(std::memory_order_relaxed);
    } while (sc.read_retry(s) && ++retries);
    ASSERT_EQ(x, y);
  }
  stop = true;
  writer.join();
  EXPECT_GT(writes.load(), 0);
}

}  // namespace
}  // namespace vmspace
