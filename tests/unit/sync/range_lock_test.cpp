// SPDX-License-Identifier: MIT
#include "sync/range_lock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <optional>
#include <thread>
#include <vector>

#include "sync/rwsem.h"
#include "test_util.h"

namespace vmspace {
namespace {

using Interval = RangeLock::Interval;
using Mode = RangeLock::Mode;
using Request = RangeLock::Request;
using test::kBlockedFor;
using test::wait_until;

constexpr Mode R = Mode::read;
constexpr Mode W = Mode::write;

// A thread that queues one request on `lock` at construction and holds it
// until release().  A RangeLock allows one request per thread, so every
// concurrent holder in these tests is a Holder.
class Holder {
 public:
  Holder(RangeLock& lock, Interval a, Mode mode) : lock_(lock), req_(a, mode) { start(); }
  Holder(RangeLock& lock, Interval a, Interval b, Mode mode) : lock_(lock), req_(a, b, mode) {
    start();
  }
  Holder(const Holder&) = delete;
  Holder& operator=(const Holder&) = delete;
  ~Holder() {
    release();
    thread_.join();
  }

  // Has the lock been granted (waiting at most `d`)?
  bool granted(std::chrono::milliseconds d = std::chrono::milliseconds(0)) const {
    return granted_f_.wait_for(d) == std::future_status::ready;
  }
  // Still waiting after kBlockedFor.
  bool blocked() const { return !granted(kBlockedFor); }
  void wait_granted() const { test::wait_or_die(granted_f_, "a range lock grant"); }
  // Let the thread unlock and wait until it has.
  void release() {
    if (released_) return;
    released_ = true;
    release_.set_value();
    test::wait_or_die(unlocked_f_, "a range unlock");
  }
  const Request& request() const { return req_; }
  // Order of the grant among the holders of a test (1, 2, ...).
  int grant_order() const { return order_; }

  static inline std::atomic<int> next_order{0};

 private:
  void start() {
    granted_f_ = granted_.get_future().share();
    unlocked_f_ = unlocked_.get_future().share();
    thread_ = std::thread([this, go = release_.get_future()]() mutable {
      lock_.lock(req_);
      order_ = ++next_order;
      granted_.set_value();
      go.wait();
      lock_.unlock(req_);
      unlocked_.set_value();
    });
  }

  RangeLock& lock_;
  Request req_;
  std::promise<void> granted_, release_, unlocked_;
  std::shared_future<void> granted_f_, unlocked_f_;
  std::thread thread_;
  bool released_ = false;
  int order_ = 0;  // written by the thread before granted_ is set
};

// Wait until `n` requests are queued (the last Holder has arrived).
void wait_queued(RangeLock& lock, std::size_t n) {
  ASSERT_TRUE(wait_until([&] { return lock.request_count() == n; }))
      << "queued: " << lock.request_count() << ", expected " << n;
}

TEST(RangeLock, ConflictRule) {
  Request a({0, 10}, W), adjacent({10, 20}, W), inside({3, 4}, R), far({100, 200}, R);
  EXPECT_FALSE(a.conflicts_with(adjacent));  // [0,10) and [10,20) share no address
  EXPECT_TRUE(a.conflicts_with(inside));
  EXPECT_FALSE(a.conflicts_with(far));
  Request r1({0, 10}, R), r2({5, 15}, R);
  EXPECT_TRUE(r1.overlaps(r2));
  EXPECT_FALSE(r1.conflicts_with(r2));  // readers share
  Request two({0, 10}, {100, 110}, W);
  EXPECT_TRUE(two.conflicts_with(far));  // through its second interval
  EXPECT_FALSE(two.conflicts_with(Request({10, 100}, W)));
}

TEST(RangeLock, Covers) {
  Request one({10, 20}, R);
  EXPECT_TRUE(one.covers(10, 20));
  EXPECT_TRUE(one.covers(12, 13));
  EXPECT_FALSE(one.covers(9, 11));
  EXPECT_FALSE(one.covers(19, 21));
  Request gap({0, 10}, {20, 30}, W);
  EXPECT_TRUE(gap.covers(20, 30));
  EXPECT_FALSE(gap.covers(5, 25));
  Request touching({20, 30}, {0, 20}, W);  // unsorted, adjacent: one union
  EXPECT_TRUE(touching.covers(5, 25));
  EXPECT_TRUE(touching.covers(0, 30));
  EXPECT_FALSE(touching.covers(0, 31));
}

TEST(RangeLock, AdjacentRangesDoNotConflict) {
  RangeLock lock(LockClass::none);
  Holder a(lock, {0x1000, 0x2000}, W);
  a.wait_granted();
  Holder b(lock, {0x2000, 0x3000}, W);  // starts where a ends
  b.wait_granted();
  Holder c(lock, {0x0, 0x1000}, W);  // ends where a starts
  c.wait_granted();
  EXPECT_EQ(lock.waiter_count(), 0u);
  Request probe({0x1fff, 0x2001}, R);  // one byte of each of a and b
  EXPECT_FALSE(lock.try_lock(probe));
}

TEST(RangeLock, ReadersShare) {
  RangeLock lock(LockClass::none);
  Holder a(lock, {0, 100}, R);
  a.wait_granted();
  Holder b(lock, {50, 150}, R);
  b.wait_granted();
  Holder c(lock, RangeLock::kWhole, R);
  c.wait_granted();
  EXPECT_EQ(lock.waiter_count(), 0u);
  Request w({120, 121}, W);
  EXPECT_FALSE(lock.try_lock(w));  // inside b and c
}

// Writers on disjoint ranges hold the lock at the same time.
TEST(RangeLock, DisjointWritersAreConcurrent) {
  RangeLock lock(LockClass::none);
  std::atomic<int> inside{0};
  auto writer = [&](Interval iv) {
    Request req(iv, W);
    lock.lock(req);
    ++inside;
    // Each stays until both are in: only possible if both are granted.
    bool both = wait_until([&] { return inside.load() == 2; }, test::kDeadline);
    lock.unlock(req);
    return both;
  };
  auto a = std::async(std::launch::async, writer, Interval{0, 0x10000});
  auto b = std::async(std::launch::async, writer, Interval{0x10000, 0x20000});
  EXPECT_TRUE(test::get_or_die(a, "writer a"));
  EXPECT_TRUE(test::get_or_die(b, "writer b"));
  EXPECT_EQ(lock.request_count(), 0u);
}

TEST(RangeLock, OverlappingWritersSerialize) {
  RangeLock lock(LockClass::none);
  Request mine({0, 10}, W);
  lock.lock(mine);
  Holder other(lock, {9, 20}, W);
  wait_queued(lock, 2);
  EXPECT_TRUE(other.blocked());
  EXPECT_EQ(lock.blockers(other.request()), 1u);
  EXPECT_EQ(lock.waiter_count(), 1u);
  Holder reader(lock, {5, 6}, R);  // overlaps mine only
  EXPECT_TRUE(reader.blocked());
  lock.unlock(mine);
  other.wait_granted();
  reader.wait_granted();  // both at once: they do not conflict
  EXPECT_EQ(lock.waiter_count(), 0u);
}

// FIFO per conflict: a writer queued behind a reader stops a later reader
// that overlaps both, although that reader is compatible with the holder.
TEST(RangeLock, QueuedWriterBlocksLaterOverlappingReader) {
  RangeLock lock(LockClass::none);
  Holder::next_order = 0;
  Holder reader1(lock, {0, 10}, R);
  reader1.wait_granted();
  Holder writer(lock, {5, 20}, W);
  wait_queued(lock, 2);
  Holder reader2(lock, {0, 30}, R);  // overlaps reader1 and writer
  wait_queued(lock, 3);
  EXPECT_TRUE(writer.blocked());
  EXPECT_TRUE(reader2.blocked());
  EXPECT_EQ(lock.blockers(writer.request()), 1u);   // reader1
  EXPECT_EQ(lock.blockers(reader2.request()), 1u);  // the writer, not reader1
  // A later reader that overlaps only reader1 does not queue behind the
  // writer (it does not conflict with it).
  Holder reader3(lock, {0, 5}, R);
  reader3.wait_granted();
  Request probe({1, 2}, R);  // try_lock: nothing queued conflicts
  EXPECT_TRUE(lock.try_lock(probe));
  lock.unlock(probe);

  reader1.release();
  writer.wait_granted();
  EXPECT_TRUE(reader2.blocked());
  writer.release();
  reader2.wait_granted();
  EXPECT_LT(writer.grant_order(), reader2.grant_order());
}

// The same with writers only: three overlapping writers are served in
// arrival order.
TEST(RangeLock, OverlappingWritersInArrivalOrder) {
  RangeLock lock(LockClass::none);
  Holder::next_order = 0;
  Holder first(lock, {0, 100}, W);
  first.wait_granted();
  Holder second(lock, {50, 60}, W);
  wait_queued(lock, 2);
  Holder third(lock, {0, 100}, W);
  wait_queued(lock, 3);
  EXPECT_EQ(lock.blockers(third.request()), 2u);
  first.release();
  second.wait_granted();
  EXPECT_TRUE(third.blocked());
  second.release();
  third.wait_granted();
  EXPECT_EQ(first.grant_order(), 1);
  EXPECT_EQ(second.grant_order(), 2);
  EXPECT_EQ(third.grant_order(), 3);
}

// Sets RangeLock's hand-off time for one test and restores it.
class HandoffAfter {
 public:
  explicit HandoffAfter(std::chrono::nanoseconds d) { RangeLock::set_handoff_after_for_test(d); }
  ~HandoffAfter() { RangeLock::set_handoff_after_for_test(std::chrono::nanoseconds(-1)); }
  HandoffAfter(const HandoffAfter&) = delete;
  HandoffAfter& operator=(const HandoffAfter&) = delete;
};
constexpr std::chrono::nanoseconds kNoHandoff = std::chrono::hours(1);

// Stealing: an arriving writer whose conflicting requests all wait (none
// runs with its grant) is granted at once, ahead of them; they wait for it
// too.  Without stealing, `late` would queue behind `waiting`.
TEST(RangeLock, ArrivingWriterPassesWaitingRequests) {
  HandoffAfter no_handoff(kNoHandoff);  // the test's own pace must not matter
  RangeLock lock(LockClass::none);
  Holder holder(lock, {0, 10}, W);
  holder.wait_granted();
  Holder waiting(lock, {5, 20}, W);  // behind holder
  wait_queued(lock, 2);
  const std::uint64_t steals = lock.steals();
  Holder late(lock, {15, 30}, W);  // conflicts with waiting only
  late.wait_granted();
  EXPECT_EQ(lock.steals(), steals + 1);
  EXPECT_EQ(lock.blockers(waiting.request()), 2u);  // holder and late
  holder.release();
  EXPECT_TRUE(waiting.blocked());
  EXPECT_EQ(lock.blockers(waiting.request()), 1u);
  late.release();
  waiting.wait_granted();
  EXPECT_EQ(lock.waiter_count(), 0u);
}

// No steal past a request that runs with its grant, nor by a reader, nor
// past a request that has waited kHandoffAfter (the bound that keeps
// stealing starvation-free).
TEST(RangeLock, StealingIsBounded) {
  RangeLock lock(LockClass::none);
  Holder holder(lock, {0, 10}, W);
  holder.wait_granted();
  std::optional<HandoffAfter> handoff(kNoHandoff);  // only the rule under test refuses
  Holder waiting(lock, {5, 20}, W);
  wait_queued(lock, 2);
  Holder reader(lock, {15, 30}, R);  // conflicts with waiting only: readers never steal
  wait_queued(lock, 3);
  EXPECT_TRUE(reader.blocked());
  Holder past_holder(lock, {0, 30}, W);  // conflicts with the holder, which runs
  wait_queued(lock, 4);
  EXPECT_TRUE(past_holder.blocked());
  EXPECT_EQ(lock.steals(), 0u);
  // A zero hand-off time: every waiter has waited it.  A writer that
  // conflicts only with waiters (waiting, reader, past_holder) is refused.
  handoff.emplace(std::chrono::nanoseconds(0));
  Holder late(lock, {18, 19}, W);
  wait_queued(lock, 5);
  EXPECT_TRUE(late.blocked());
  EXPECT_EQ(lock.steals(), 0u);
  handoff.reset();
  holder.release();
  waiting.wait_granted();
  waiting.release();
  reader.wait_granted();
  reader.release();
  past_holder.wait_granted();
  past_holder.release();
  late.wait_granted();
}

// More threads than CPUs taking one range in turn: a release grants the
// range to a sleeping waiter, and running threads steal it back before
// that waiter claims it (the grant is taken back and given again later).
// Mutual exclusion and the drained queue are checked; the threads run
// together (a start barrier) until some steals happened or a deadline.
TEST(RangeLock, StealingUnderOversubscription) {
  HandoffAfter no_handoff(kNoHandoff);
  RangeLock lock(LockClass::none);
  long counter = 0;  // protected by the write range [0, 1)
  const unsigned n = 2 * std::max(2u, std::thread::hardware_concurrency());
  std::atomic<int> inside{0};
  std::atomic<unsigned> ready{0};
  std::atomic<bool> overlap{false}, stop{false};
  std::atomic<long> ops{0};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < n; ++t)
    threads.emplace_back([&] {
      ready.fetch_add(1);
      while (ready.load() < n) std::this_thread::yield();
      Request req({0, 1}, W);
      long mine = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        lock.lock(req);
        if (inside.fetch_add(1, std::memory_order_relaxed) != 0) overlap = true;
        ++counter;
        inside.fetch_sub(1, std::memory_order_relaxed);
        lock.unlock(req);
        ++mine;
      }
      ops.fetch_add(mine);
    });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (lock.steals() < 100 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_FALSE(overlap.load());
  EXPECT_EQ(counter, ops.load());
  EXPECT_EQ(lock.request_count(), 0u);
  EXPECT_GE(lock.steals(), 100u);
}

TEST(RangeLock, TwoIntervalRequests) {
  RangeLock lock(LockClass::none);
  Request mremap({0x1000, 0x3000}, {0x10000, 0x12000}, W);
  lock.lock(mremap);
  // Between and around the two intervals: free.
  Holder between(lock, {0x3000, 0x10000}, W);
  between.wait_granted();
  Holder after(lock, {0x12000, 0x20000}, R);
  after.wait_granted();
  // Either interval conflicts.
  Request probe1({0x2fff, 0x3000}, R), probe2({0x11000, 0x11001}, W);
  EXPECT_FALSE(lock.try_lock(probe1));
  EXPECT_FALSE(lock.try_lock(probe2));
  Holder waiter(lock, {0x11fff, 0x20000}, W);  // mremap's second interval and `after`
  wait_queued(lock, 4);
  EXPECT_EQ(lock.blockers(waiter.request()), 2u);
  // A two-interval waiter blocked through both of its intervals.
  Holder both(lock, {0x0, 0x1001}, {0x11fff, 0x12000}, R);
  wait_queued(lock, 5);
  EXPECT_EQ(lock.blockers(both.request()), 2u);  // mremap (once) and waiter
  lock.unlock(mremap);
  EXPECT_TRUE(waiter.blocked());  // `after` still holds
  EXPECT_TRUE(both.blocked());    // behind waiter
  after.release();
  waiter.wait_granted();
  waiter.release();
  both.wait_granted();
}

TEST(RangeLock, TryLock) {
  RangeLock lock(LockClass::none);
  Request w({0, 10}, W);
  ASSERT_TRUE(lock.try_lock(w));
  EXPECT_TRUE(w.is_granted());
  std::thread([&] {
    Request r({5, 6}, R), w2({10, 20}, W);
    EXPECT_FALSE(lock.try_lock(r));
    EXPECT_TRUE(lock.try_lock(w2));
    lock.unlock(w2);
  }).join();
  lock.unlock(w);

  // try_lock never jumps the queue: holders are compatible, but a
  // queued writer conflicts.
  Holder reader(lock, {0, 10}, R);
  reader.wait_granted();
  Holder writer(lock, {0, 10}, W);
  wait_queued(lock, 2);
  Request r({0, 1}, R);
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(lock.try_lock(r));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));  // no wait
  EXPECT_EQ(lock.request_count(), 2u);  // a failed try leaves nothing queued
  Request elsewhere({10, 11}, R);
  EXPECT_TRUE(lock.try_lock(elsewhere));
  lock.unlock(elsewhere);
  reader.release();
  writer.wait_granted();
}

TEST(RangeLock, Downgrade) {
  RangeLock lock(LockClass::none);
  Request mine({0, 100}, W);
  lock.lock(mine);
  Holder reader(lock, {50, 150}, R);  // behind mine
  wait_queued(lock, 2);
  Holder writer(lock, {90, 95}, W);  // behind mine and reader
  wait_queued(lock, 3);
  Holder late_reader(lock, {92, 93}, R);  // behind mine and writer
  wait_queued(lock, 4);
  Holder other_reader(lock, {10, 20}, R);  // behind mine only
  wait_queued(lock, 5);
  EXPECT_EQ(lock.blockers(writer.request()), 2u);
  EXPECT_EQ(lock.blockers(late_reader.request()), 2u);

  lock.downgrade(mine);
  EXPECT_EQ(mine.mode(), Mode::read);
  reader.wait_granted();
  other_reader.wait_granted();
  EXPECT_TRUE(writer.blocked());       // mine (now a reader) and reader
  EXPECT_TRUE(late_reader.blocked());  // FIFO: behind the writer
  EXPECT_EQ(lock.blockers(writer.request()), 2u);
  EXPECT_EQ(lock.blockers(late_reader.request()), 1u);
  Request w({0, 1}, W);  // a new writer still conflicts with the read side
  std::thread([&] { EXPECT_FALSE(lock.try_lock(w)); }).join();

  lock.unlock(mine);
  EXPECT_TRUE(writer.blocked());
  reader.release();
  writer.wait_granted();
  writer.release();
  late_reader.wait_granted();
}

// A waiter is granted when its last blocker leaves, not before, whatever
// the order in which its blockers leave.
TEST(RangeLock, WokenExactlyWhenLastBlockerLeaves) {
  RangeLock lock(LockClass::none);
  Holder a(lock, {0, 10}, R);
  Holder b(lock, {5, 20}, R);
  Holder c(lock, {30, 40}, W);
  a.wait_granted();
  b.wait_granted();
  c.wait_granted();
  Holder waiter(lock, {0, 40}, W);
  wait_queued(lock, 4);
  EXPECT_EQ(lock.blockers(waiter.request()), 3u);
  a.release();
  EXPECT_TRUE(waiter.blocked());
  EXPECT_EQ(lock.blockers(waiter.request()), 2u);
  c.release();
  EXPECT_TRUE(waiter.blocked());
  EXPECT_EQ(lock.blockers(waiter.request()), 1u);
  b.release();
  waiter.wait_granted();
  EXPECT_EQ(lock.waiter_count(), 0u);
}

// One Request can be queued again after unlock(), with other intervals.
TEST(RangeLock, RequestReuse) {
  RangeLock lock(LockClass::none);
  Request req({0, 10}, W);
  for (int i = 0; i < 3; ++i) {
    lock.lock(req);
    lock.unlock(req);
    req.set({10, 20}, {30, 40}, i % 2 ? W : R);
  }
  EXPECT_EQ(lock.request_count(), 0u);
}

// Many short overlapping requests through the futex path, then a check
// that nothing is left queued.
TEST(RangeLock, ManyThreadsDrain) {
  RangeLock lock(LockClass::none);
  long counter = 0;  // protected by the write range [0, 1)
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        Request req(t % 2 ? Interval{0, 2} : Interval{0, 1}, W);
        lock.lock(req);
        ++counter;
        lock.unlock(req);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(counter, 8000);
  EXPECT_EQ(lock.request_count(), 0u);
}

// ---- lockdep ----------------------------------------------------------------

class RangeLockLockdep : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!lockdep::enabled) GTEST_SKIP() << "the lock-order checker is compiled out in release builds";
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  }
};

TEST_F(RangeLockLockdep, OneRequestPerThreadPerLock) {
  RangeLock lock;
  Request a({0, 10}, R), b({100, 110}, R);
  lock.lock(a);
  EXPECT_DEATH(lock.lock(b), "recursive locking: this thread already holds the lock");
  EXPECT_DEATH((void)lock.try_lock(b), "recursive locking");
  lock.unlock(a);
}

// fork: the parent's range lock, then the child's as subclass 1.
TEST_F(RangeLockLockdep, ForkNestsChildAsSubclass1) {
  RangeLock parent, child;
  Request p(RangeLock::kWhole, W), c(RangeLock::kWhole, W);
  parent.lock(p);
  EXPECT_DEATH(child.lock(c), "recursive locking of one lock class(.|\n)*range_lock/0");
  child.lock(c, /*subclass=*/1);
  EXPECT_EQ(lockdep::depth(), 2u);
  child.unlock(c);
  parent.unlock(p);
  EXPECT_EQ(lockdep::depth(), 0u);
}

TEST_F(RangeLockLockdep, OrderedAboveVmaLock) {
  RangeLock lock;
  RwSemaphore vma_lock(LockClass::vma_lock);
  Request req({0, 10}, W);
  lock.lock(req);
  vma_lock.lock();  // range_lock, then vma_lock: in order
  vma_lock.unlock();
  lock.unlock(req);
  vma_lock.lock_shared();
  EXPECT_DEATH(lock.lock(req), "lock order inversion(.|\n)*acquiring range_lock/0");
  Request other({0, 10}, R);
  EXPECT_TRUE(lock.try_lock(other));  // a VMA read-lock holder may try
  lock.unlock(other);
  vma_lock.unlock_shared();
}

TEST_F(RangeLockLockdep, MisuseAborts) {
  RangeLock lock;
  Request r({0, 10}, R);
  EXPECT_DEATH(lock.unlock(r), "RangeLock::unlock");
  lock.lock(r);
  EXPECT_DEATH(lock.downgrade(r), "not a write request");
  EXPECT_DEATH(lock.assert_write_locked(r), "WRITE request");
  lock.assert_locked(r);
  EXPECT_DEATH(std::thread([&] { lock.unlock(r); }).join(), "RangeLock::unlock");
  lock.unlock(r);
  EXPECT_DEATH(Request({5, 5}, W), "empty interval");
}

}  // namespace
}  // namespace vmspace
