// SPDX-License-Identifier: MIT
#include "sync/rwsem.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "test_util.h"

namespace vmspace {
namespace {

using test::kBlockedFor;
using test::wait_until;

TEST(RwSemaphore, TryLockResults) {
  RwSemaphore sem;
  ASSERT_TRUE(sem.try_lock());
  EXPECT_TRUE(sem.is_write_locked());
  std::thread([&] {
    EXPECT_FALSE(sem.try_lock());
    EXPECT_FALSE(sem.try_lock_shared());
  }).join();
  sem.unlock();

  ASSERT_TRUE(sem.try_lock_shared());
  std::thread([&] {
    EXPECT_FALSE(sem.try_lock());
    ASSERT_TRUE(sem.try_lock_shared());  // readers share
    EXPECT_EQ(sem.reader_count(), 2u);
    sem.unlock_shared();
  }).join();
  sem.unlock_shared();
  EXPECT_FALSE(sem.is_locked());
}

TEST(RwSemaphore, ReadersShareWriterExcludes) {
  RwSemaphore sem;
  sem.lock_shared();
  std::atomic<bool> second_reader{false};
  std::thread r([&] {
    sem.lock_shared();
    second_reader = true;
    sem.unlock_shared();
  });
  ASSERT_TRUE(wait_until([&] { return second_reader.load(); }));
  r.join();

  std::atomic<bool> writer_in{false};
  std::thread w([&] {
    sem.lock();
    writer_in = true;
    sem.unlock();
  });
  std::this_thread::sleep_for(kBlockedFor);
  EXPECT_FALSE(writer_in.load());
  sem.unlock_shared();
  w.join();
  EXPECT_TRUE(writer_in.load());
}

// A waiting writer stops new readers (the kernel rwsem's writer preference).
TEST(RwSemaphore, ReaderArrivingWhileWriterWaitsBlocks) {
  RwSemaphore sem;
  sem.lock_shared();
  std::atomic<int> order{0};
  int writer_at = 0, reader_at = 0;
  std::thread w([&] {
    sem.lock();
    writer_at = ++order;
    sem.unlock();
  });
  ASSERT_TRUE(wait_until([&] { return sem.waiter_count() == 1; }));
  std::thread r([&] {
    sem.lock_shared();
    reader_at = ++order;
    sem.unlock_shared();
  });
  ASSERT_TRUE(wait_until([&] { return sem.waiter_count() == 2; }));
  std::thread([&] { EXPECT_FALSE(sem.try_lock_shared()); }).join();
  std::this_thread::sleep_for(kBlockedFor);
  EXPECT_EQ(order.load(), 0);
  sem.unlock_shared();
  w.join();
  r.join();
  EXPECT_EQ(writer_at, 1);
  EXPECT_EQ(reader_at, 2);
}

// Queue: [reader, reader, writer].  downgrade() admits both readers and
// leaves the writer queued until every reader (us included) is gone.
TEST(RwSemaphore, DowngradeAdmitsQueuedReadersButNoWriter) {
  RwSemaphore sem;
  sem.lock();
  std::atomic<int> readers_in{0};
  std::atomic<bool> release_readers{false};
  std::atomic<bool> writer_in{false};
  std::vector<std::thread> readers;
  for (int i = 0; i < 2; ++i) {
    readers.emplace_back([&] {
      sem.lock_shared();
      ++readers_in;
      while (!release_readers) std::this_thread::yield();
      EXPECT_FALSE(writer_in.load());
      sem.unlock_shared();
    });
  }
  ASSERT_TRUE(wait_until([&] { return sem.waiter_count() == 2; }));
  std::thread w([&] {
    sem.lock();
    writer_in = true;
    sem.unlock();
  });
  ASSERT_TRUE(wait_until([&] { return sem.waiter_count() == 3; }));
  EXPECT_EQ(readers_in.load(), 0);

  sem.downgrade();
  sem.assert_locked();
  ASSERT_TRUE(wait_until([&] { return readers_in.load() == 2; }));
  EXPECT_EQ(sem.reader_count(), 3u);
  EXPECT_EQ(sem.waiter_count(), 1u);  // the writer
  std::this_thread::sleep_for(kBlockedFor);
  EXPECT_FALSE(writer_in.load());

  sem.unlock_shared();
  std::this_thread::sleep_for(kBlockedFor);
  EXPECT_FALSE(writer_in.load());  // the two readers still hold it
  release_readers = true;
  for (auto& t : readers) t.join();
  w.join();
  EXPECT_TRUE(writer_in.load());
  EXPECT_FALSE(sem.is_locked());
}

// Hand-off: a reader queued behind the holding writer gets the lock before
// a writer that queued after it, so a stream of writers cannot starve it.
TEST(RwSemaphore, WriterUnlockHandsOffToQueuedReaderFirst) {
  RwSemaphore sem;
  sem.lock();
  std::atomic<bool> reader_in{false}, release_reader{false}, writer_in{false};
  std::thread r([&] {
    sem.lock_shared();
    reader_in = true;
    while (!release_reader) std::this_thread::yield();
    sem.unlock_shared();
  });
  ASSERT_TRUE(wait_until([&] { return sem.waiter_count() == 1; }));
  std::thread w([&] {
    sem.lock();
    writer_in = true;
    sem.unlock();
  });
  ASSERT_TRUE(wait_until([&] { return sem.waiter_count() == 2; }));
  sem.unlock();
  ASSERT_TRUE(wait_until([&] { return reader_in.load(); }));
  EXPECT_FALSE(writer_in.load());
  EXPECT_FALSE(sem.is_write_locked());
  release_reader = true;
  r.join();
  w.join();
  EXPECT_TRUE(writer_in.load());
}

// Every hand-off (a writer's unlock to queued readers and to a queued
// writer, the last reader's unlock, downgrade, a waiter granting itself)
// wakes the new owners only after dropping the internal wait lock: a
// wake-up may switch the CPU to the woken thread at once, and a thread
// preempted inside that spinlock stalls every locker until its next time
// slice (mmap + munmap from 4 threads on 2 CPUs ran 30x slower than from
// 2).  Debug builds abort in futex_wake() under a SpinLock, so each path
// below would die if it woke inside the lock.  (The wake-ups themselves
// are checked by the hand-off tests above.)
TEST(RwSemaphore, HandOffsWakeOutsideTheWaitLock) {
  if (!lockdep::enabled) GTEST_SKIP() << "the futex_wake check is compiled out in release builds";
  RwSemaphore sem;
  for (int round = 0; round < 20; ++round) {
    // Writer -> two queued readers -> (last reader's unlock) -> queued writer.
    sem.lock();
    std::atomic<int> readers_in{0};
    std::atomic<bool> writer_in{false};
    std::vector<std::thread> ts;
    for (int i = 0; i < 2; ++i)
      ts.emplace_back([&] {
        sem.lock_shared();
        readers_in.fetch_add(1);
        while (readers_in.load() < 2) std::this_thread::yield();
        sem.unlock_shared();
      });
    ASSERT_TRUE(wait_until([&] { return sem.waiter_count() == 2; }));
    ts.emplace_back([&] {
      sem.lock();
      writer_in = true;
      sem.downgrade();  // no one queued now: the fast path
      sem.unlock_shared();
    });
    ASSERT_TRUE(wait_until([&] { return sem.waiter_count() == 3; }));
    sem.unlock();
    for (auto& t : ts) t.join();
    EXPECT_EQ(readers_in.load(), 2);
    EXPECT_TRUE(writer_in.load());
    // downgrade() admitting a queued reader.
    sem.lock();
    std::thread r([&] {
      sem.lock_shared();
      sem.unlock_shared();
    });
    ASSERT_TRUE(wait_until([&] { return sem.waiter_count() == 1; }));
    sem.downgrade();
    r.join();
    sem.unlock_shared();
    EXPECT_FALSE(sem.is_locked());
  }
}

// Lock stealing and its bound, made deterministic with the retry hook:
// the woken head stops just before it retries, so the test decides who
// gets in first.
class RwSemaphoreSteal : public ::testing::Test {
 protected:
  static inline std::atomic<int> in_hook{0};
  static inline std::atomic<bool> go{false};
  void SetUp() override {
    in_hook = 0;
    go = false;
    RwSemaphore::set_retry_hook_for_test([](RwSemaphore*) {
      in_hook.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
    });
  }
  void TearDown() override {
    go = true;
    RwSemaphore::set_retry_hook_for_test(nullptr);
    RwSemaphore::set_handoff_after_for_test(std::chrono::nanoseconds(-1));
  }
  // A lock() that must not block: fail (not hang) if it does.
  static void lock_or_die(RwSemaphore& sem, const char* what) {
    std::atomic<bool> done{false};
    std::thread watchdog([&] {
      if (!wait_until([&] { return done.load(); }, std::chrono::seconds(10))) {
        ADD_FAILURE() << what << ": lock() blocked";
        std::fflush(nullptr);
        std::_Exit(1);
      }
    });
    sem.lock();
    done = true;
    watchdog.join();
  }
  // Where the writer tests start: a writer b (lock, set b_in, hold until
  // release_b, unlock) queued behind us; our release woke it and it
  // stopped in the hook before retrying; we took the lock back (a steal).
  // Returns b's thread.
  static std::thread writer_woken_and_overtaken(RwSemaphore& sem, std::atomic<bool>& b_in,
                                                std::atomic<bool>& release_b) {
    sem.lock();
    std::thread b([&] {
      sem.lock();
      b_in = true;
      while (!release_b.load()) std::this_thread::yield();
      sem.unlock();
    });
    EXPECT_TRUE(wait_until([&] { return sem.waiter_count() == 1; }));
    sem.unlock();  // wakes b, which stops in the hook
    EXPECT_TRUE(wait_until([&] { return in_hook.load() == 1; }));
    lock_or_die(sem, "steal past a woken head");
    return b;
  }
};

// The releasing writer takes the lock back before the head it woke has
// retried (no context switch per operation); the head then sleeps again
// at the head of the queue and gets the lock at the next release.
TEST_F(RwSemaphoreSteal, ReleasingWriterStealsBackWhileTheWokenHeadRetries) {
  RwSemaphore::set_handoff_after_for_test(std::chrono::hours(1));
  RwSemaphore sem;
  std::atomic<bool> b_in{false}, release_b{true};
  std::thread b = writer_woken_and_overtaken(sem, b_in, release_b);
  EXPECT_EQ(sem.waiter_count(), 1u);
  go = true;  // b retries, finds us holding the lock, sleeps again
  std::this_thread::sleep_for(kBlockedFor);
  EXPECT_FALSE(b_in.load());
  EXPECT_EQ(sem.waiter_count(), 1u);
  EXPECT_FALSE(sem.handoff_pending());
  sem.unlock();
  b.join();
  EXPECT_TRUE(b_in.load());
  EXPECT_EQ(in_hook.load(), 2);  // woken twice
  EXPECT_FALSE(sem.is_locked());
  EXPECT_FALSE(sem.has_waiters());
}

// A head that has waited its bound and loses a retry sets the hand-off
// bit: nobody steals any more, and the next release makes it the owner
// before returning.
TEST_F(RwSemaphoreSteal, ExpiredHeadIsHandedTheLockAtTheNextRelease) {
  RwSemaphore::set_handoff_after_for_test(std::chrono::hours(1));
  RwSemaphore sem;
  std::atomic<bool> b_in{false}, release_b{false};
  std::thread b = writer_woken_and_overtaken(sem, b_in, release_b);
  RwSemaphore::set_handoff_after_for_test(std::chrono::nanoseconds(0));
  go = true;
  ASSERT_TRUE(wait_until([&] { return sem.handoff_pending(); }));
  // No stealing now: another thread's try_lock fails although we are
  // about to let go, and our unlock grants to b synchronously.
  std::thread([&] { EXPECT_FALSE(sem.try_lock()); }).join();
  sem.unlock();
  EXPECT_TRUE(sem.is_write_locked());  // b's, granted inside our unlock
  EXPECT_FALSE(sem.handoff_pending());
  EXPECT_EQ(sem.waiter_count(), 0u);
  ASSERT_TRUE(wait_until([&] { return b_in.load(); }));
  release_b = true;
  b.join();
  EXPECT_FALSE(sem.is_locked());
}

// The same bound for a queued reader behind stealing writers: once the
// bit is set, the next writer release admits the reader (and every other
// queued reader) before any writer.
TEST_F(RwSemaphoreSteal, ExpiredReaderHeadIsAdmittedWithTheOtherReaders) {
  RwSemaphore::set_handoff_after_for_test(std::chrono::hours(1));
  RwSemaphore sem;
  sem.lock();
  std::atomic<int> readers_in{0};
  std::atomic<bool> release_readers{false};
  std::vector<std::thread> rs;
  for (int i = 0; i < 2; ++i)
    rs.emplace_back([&] {
      sem.lock_shared();
      readers_in.fetch_add(1);
      while (!release_readers.load()) std::this_thread::yield();
      sem.unlock_shared();
    });
  ASSERT_TRUE(wait_until([&] { return sem.waiter_count() == 2; }));
  sem.unlock();  // wakes the head reader, which stops in the hook
  ASSERT_TRUE(wait_until([&] { return in_hook.load() == 1; }));
  lock_or_die(sem, "writer steal past a woken reader");
  RwSemaphore::set_handoff_after_for_test(std::chrono::nanoseconds(0));
  go = true;
  ASSERT_TRUE(wait_until([&] { return sem.handoff_pending(); }));
  EXPECT_EQ(readers_in.load(), 0);
  sem.unlock();
  EXPECT_EQ(sem.reader_count(), 2u);  // both granted inside our unlock
  ASSERT_TRUE(wait_until([&] { return readers_in.load() == 2; }));
  release_readers = true;
  for (auto& t : rs) t.join();
  EXPECT_FALSE(sem.is_locked());
}

// A head that a release woke but that has not run yet (preempted, or
// slow to be scheduled) cannot be overtaken for ever: once its bound has
// passed, a release that finds the lock free grants to it directly, even
// though it never retried (the review's case: without this, stealers
// could take and release the lock any number of times meanwhile).
TEST_F(RwSemaphoreSteal, WokenHeadOffItsCpuIsGrantedOnceItsBoundPasses) {
  RwSemaphore::set_handoff_after_for_test(std::chrono::hours(1));
  RwSemaphore sem;
  std::atomic<bool> b_in{false}, release_b{false};
  // b, woken, sits in the hook: off its CPU, as it were.
  std::thread b = writer_woken_and_overtaken(sem, b_in, release_b);
  RwSemaphore::set_handoff_after_for_test(std::chrono::nanoseconds(0));
  sem.unlock();
  EXPECT_TRUE(sem.is_write_locked());  // b's, granted inside our unlock
  EXPECT_EQ(sem.waiter_count(), 0u);
  go = true;  // b's retry finds itself granted
  ASSERT_TRUE(wait_until([&] { return b_in.load(); }));
  release_b = true;
  b.join();
  EXPECT_EQ(in_hook.load(), 1);
  EXPECT_FALSE(sem.is_locked());
}

// downgrade() admits a queued head reader that a release had already
// woken to retry: the reader must take the grant, not retry on a queue it
// has left.
TEST_F(RwSemaphoreSteal, WokenReaderGrantedByADowngradeBeforeItRetries) {
  RwSemaphore::set_handoff_after_for_test(std::chrono::hours(1));
  RwSemaphore sem;
  sem.lock();
  std::atomic<bool> r_in{false}, release_r{false};
  std::thread r([&] {
    sem.lock_shared();
    r_in = true;
    while (!release_r.load()) std::this_thread::yield();
    sem.unlock_shared();
  });
  ASSERT_TRUE(wait_until([&] { return sem.waiter_count() == 1; }));
  sem.unlock();
  ASSERT_TRUE(wait_until([&] { return in_hook.load() == 1; }));
  lock_or_die(sem, "steal past a woken reader");
  sem.downgrade();  // grants r while it sits in the hook
  EXPECT_EQ(sem.reader_count(), 2u);
  EXPECT_EQ(sem.waiter_count(), 0u);
  go = true;
  ASSERT_TRUE(wait_until([&] { return r_in.load(); }));
  sem.unlock_shared();
  release_r = true;
  r.join();
  EXPECT_FALSE(sem.is_locked());
}

TEST(RwSemaphore, ReaderNotStarvedByWriterStream) {
  RwSemaphore sem;
  std::atomic<bool> stop{false};
  long shared_value = 0;
  std::vector<std::thread> writers;
  for (int i = 0; i < 2; ++i) {
    writers.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        sem.lock();
        ++shared_value;
        sem.unlock();
      }
    });
  }
  long seen = -1;
  for (int i = 0; i < 2000; ++i) {
    sem.lock_shared();
    EXPECT_GE(shared_value, seen);
    seen = shared_value;
    sem.unlock_shared();
  }
  stop = true;
  for (auto& t : writers) t.join();
}

TEST(RwSemaphore, AssertionsPassWhenHeld) {
  RwSemaphore sem(LockClass::mmap_lock);
  sem.lock();
  sem.assert_write_locked();
  sem.assert_locked();
  sem.downgrade();
  sem.assert_locked();
  sem.unlock_shared();
}

class RwSemaphoreDeathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!lockdep::enabled) GTEST_SKIP() << "misuse checks are compiled out in release builds";
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  }
};

TEST_F(RwSemaphoreDeathTest, UnlockWithoutHoldingAborts) {
  RwSemaphore sem(LockClass::mmap_lock);
  EXPECT_DEATH(sem.unlock(), "RwSemaphore 0x[0-9a-f]+ \\(mmap_lock\\): write unlock by thread [0-9]+");
  EXPECT_DEATH(sem.unlock_shared(), "does not hold it for read(.|\n)*lock mmap_lock 0x[0-9a-f]+, thread [0-9]+");
}

TEST_F(RwSemaphoreDeathTest, UnlockByAnotherThreadAborts) {
  RwSemaphore sem(LockClass::mmap_lock);
  sem.lock();
  EXPECT_DEATH(std::thread([&] { sem.unlock(); }).join(), "write owner: [0-9]+");
  sem.unlock();
}

TEST_F(RwSemaphoreDeathTest, DowngradeWithoutWriteSideAborts) {
  RwSemaphore sem(LockClass::mmap_lock);
  EXPECT_DEATH(sem.downgrade(), "downgrade by thread [0-9]+");
  sem.lock_shared();
  EXPECT_DEATH(sem.downgrade(), "does not hold it for write");
  sem.unlock_shared();
}

TEST_F(RwSemaphoreDeathTest, AssertWriteLockedAborts) {
  RwSemaphore sem(LockClass::mmap_lock);
  EXPECT_DEATH(sem.assert_write_locked(), "expected to be write-locked");
  sem.lock_shared();
  EXPECT_DEATH(sem.assert_write_locked(), "expected to be write-locked");
  sem.unlock_shared();
  EXPECT_DEATH(sem.assert_locked(), "expected to be locked");
}

}  // namespace
}  // namespace vmspace
