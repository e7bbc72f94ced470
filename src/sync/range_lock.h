// SPDX-License-Identifier: MIT
// range_lock.h - RangeLock: a FIFO reader/writer lock on address ranges,
// the lock of the per_vma_range mode (docs/range-writers.md, 3.1; its
// holds are kept by mm/range_writer.h).
//
// Semantics:
//   - A Request is one or two half-open intervals [lo, hi) and a mode,
//     read or write.  Two requests CONFLICT when an interval of one
//     overlaps an interval of the other and not both are reads.
//     Adjacent intervals ([a, b) and [b, c)) do not overlap.
//   - FIFO per conflict, with bounded stealing: a request waits for the
//     conflicting requests queued ahead of it, granted or still waiting.
//     A request that conflicts with nothing queued is granted at once,
//     whatever else waits.  A queued writer stops later overlapping
//     readers (the writer preference of RwSemaphore); readers never
//     steal.  Stealing (as RwSemaphore's, the kernel rwsem's since 5.3):
//     an arriving WRITE request whose conflicting requests are all
//     waiting - none runs with its grant: each is blocked, or granted
//     while its owner has not yet woken to claim it - is granted at once,
//     queued ahead of them; a grant not yet claimed is taken back (its
//     owner waits again).  Without it, a release hands the range to a
//     sleeping thread and every running thread that wants it queues
//     behind the wake-up: with more threads than CPUs, mmap/munmap from 4
//     threads ran 10x slower than from 2.  Bounded: nobody steals past a
//     request that has waited kHandoffAfter; from then on it waits only
//     for the requests ahead of it (a finite number, each released after
//     a finite operation), so nobody starves.
//   - try_lock() succeeds iff nothing in the queue conflicts; it never
//     waits.
//   - downgrade(): write -> read; later read requests that overlap it
//     stop waiting for it (they may be granted now), later writers still
//     wait.
//   - Sleeping: the request is queued first (its place in the order),
//     then a short spin, then a futex wait on the request's own word; a
//     woken request claims its grant under the queue's spinlock.
//   - A thread holds at most one request per RangeLock (lockdep checks
//     it as recursion); two RangeLocks of one class nest only with a
//     subclass (fork: the child's as subclass 1), as mmap_lock does.
//
// A Request lives on its caller's stack (the queue is an intrusive list:
// nothing is allocated on the lock path).  It must stay alive, and must
// not be changed, from lock()/a successful try_lock() until unlock();
// afterwards it may be set() and queued again.
//
// Lifetime: unlock() and downgrade() stop touching the RangeLock when
// they drop its internal spinlock, before they tell the requests they
// granted (only those requests' futex words are touched afterwards).  So
// a thread granted a request that conflicts with every other (a kWhole
// write) may destroy the RangeLock after unlocking it, provided nobody
// queues a new request meanwhile.
//
// Misuse (unlocking a request that is not granted to this thread,
// downgrading a read request, queueing a request twice, an empty
// interval) is undefined behaviour in release builds; debug builds abort
// with a message naming the lock, its class and the thread.
//
// The correctness argument is at the top of range_lock.cpp.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "sync/lockdep.h"
#include "sync/spinlock.h"

namespace vmspace {

class RangeLock {
 public:
  enum class Mode : std::uint8_t { read, write };

  // The half-open interval [lo, hi); lo < hi.
  struct Interval {
    std::uint64_t lo = 0;
    std::uint64_t hi = 0;
  };

  // Every address: the request that conflicts with every other (write)
  // or with every writer (read), i.e. the mmap_lock.
  static constexpr Interval kWhole{0, ~std::uint64_t{0}};

  // Request::granted_ values.
  static constexpr std::uint32_t kWaiting = 0, kGranted = 1, kAsleep = 2;

  // How long a waiting request may be overtaken by stealers.
  static constexpr std::chrono::nanoseconds kHandoffAfter = std::chrono::milliseconds(1);

  class Request {
   public:
    Request(Interval a, Mode mode) { set(a, mode); }
    Request(Interval a, Interval b, Mode mode) { set(a, b, mode); }
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;
    ~Request();  // debug builds: abort if still queued

    // Change an unqueued request (a retry with a wider range).
    void set(Interval a, Mode mode);
    void set(Interval a, Interval b, Mode mode);

    // The owner may read these at any time; other threads read them
    // only under the queue lock (RangeLock::lock_).
    Mode mode() const { return mode_; }
    unsigned interval_count() const { return n_; }
    const Interval& interval(unsigned i) const { return iv_[i]; }

    // Is every address of [lo, hi) inside the union of the intervals?
    bool covers(std::uint64_t lo, std::uint64_t hi) const;
    // An interval of this request overlaps one of `other`'s.
    bool overlaps(const Request& other) const;
    bool conflicts_with(const Request& other) const {
      return (mode_ == Mode::write || other.mode_ == Mode::write) && overlaps(other);
    }

    // Racy (relaxed); for tests and assertions.
    bool is_granted() const { return granted_.load(std::memory_order_relaxed) == kGranted; }

   private:
    friend class RangeLock;

    // The intervals: set while unqueued by the owner, then constant until
    // unlock().  Read by the owner, and by other threads under lock_.
    Interval iv_[2];
    std::uint8_t n_ = 0;
    // Written by the owner while unqueued, or under lock_ (downgrade).
    // Read by the owner, and by other threads under lock_.
    Mode mode_ = Mode::read;
    // The lock it is queued on, nullptr when not queued.  Written by the
    // owner under lock_ (enqueue, unlink); read by the owner, or under
    // lock_.
    RangeLock* queued_on_ = nullptr;
    // Queue links, in arrival order.  lock_.
    Request* prev_ = nullptr;
    Request* next_ = nullptr;
    // The number of requests ahead of this one in the queue that conflict
    // with it; 0 = granted.  lock_.  Decreases as they leave; a stealer
    // queued ahead of it adds one.
    std::uint32_t blocked_by_ = 0;
    // Granted and its owner runs with it: granted on arrival or by a
    // steal, or claimed by the woken owner (lock_).  A grant not claimed
    // can be taken back by a stealer.  lock_.
    bool claimed_ = false;
    // When a request queued blocked started waiting (steady clock, ns):
    // stealers do not pass it after kHandoffAfter.  Set under lock_ at
    // queueing, read by stealers under lock_.
    std::int64_t since_ns_ = 0;
    // Chain of the requests one unlock()/downgrade() has granted, to be
    // woken after lock_ is dropped.  Written under lock_ by the thread
    // whose step took blocked_by_ to 0 (once per grant: a grant is taken
    // back only after its waker's exchange, see range_lock.cpp), read by
    // that thread after it drops lock_; nobody else touches it.
    Request* wake_next_ = nullptr;
    // The futex word: kWaiting, kGranted, or kAsleep (waiting, and the
    // owner sleeps or is about to: a grant must futex-wake it).  Set by
    // the owner when it queues the request (kGranted if granted on
    // arrival), kWaiting -> kAsleep by the owner's CAS before it sleeps;
    // set to kGranted by the waker's exchange with release ordering
    // (pairs with the owner's acquire loads in wait_granted()), which
    // wakes only when it replaced kAsleep; set back to kWaiting by a
    // stealer revoking an unclaimed grant (under lock_, only once the
    // word is kGranted: the grant's waker is done with the request).
    std::atomic<std::uint32_t> granted_{0};
#if defined(VMSPACE_DEBUG_CHECKS)
    // Thread id of the thread that queued it; owner-only.
    int owner_tid_ = 0;
#endif
  };

  explicit RangeLock(LockClass cls = LockClass::range_lock) : cls_(cls) {}
  RangeLock(const RangeLock&) = delete;
  RangeLock& operator=(const RangeLock&) = delete;
  ~RangeLock();  // debug builds: abort if a request is still queued

  // Queue `req` and wait until it is granted.
  void lock(Request& req, unsigned subclass = 0);
  // Grant `req` iff no queued request conflicts with it; never waits.
  [[nodiscard]] bool try_lock(Request& req);
  // Release a granted request; wakes the requests it was the last
  // blocker of (after dropping the internal spinlock).
  void unlock(Request& req);
  // Write -> read on a granted write request.
  void downgrade(Request& req);

  // Tests: replace kHandoffAfter (a negative value restores it).
  static void set_handoff_after_for_test(std::chrono::nanoseconds d);
  // Requests granted by stealing so far (relaxed; for tests and benches).
  std::uint64_t steals() const { return steals_.load(std::memory_order_relaxed); }

  // --- assertions (real checks in debug builds, no-ops in release) --------
  // `req` is granted on this lock, to this thread (and for write).
  void assert_locked(const Request& req) const;
  void assert_write_locked(const Request& req) const;

  // --- introspection (takes the internal spinlock; for tests) -------------
  std::size_t request_count();  // granted and waiting
  std::size_t waiter_count();   // waiting only
  std::uint32_t blockers(const Request& req);  // its blocked_by count
  LockClass lock_class() const { return cls_; }

 private:
  void enqueue(Request& req, std::uint32_t blocked_by);  // requires lock_
  void wait_granted(Request& req);
  bool may_steal(const Request& req, const Request* first, std::int64_t now) const;  // requires lock_
  void steal(Request& req, Request* first);  // requires lock_
  void check_owner(const Request& req, const char* what) const;
  void check_blocked(const Request& q) const;  // requires lock_
  static void wake(Request* chain);  // without lock_

  Request* head_ = nullptr;  // lock_
  Request* tail_ = nullptr;  // lock_
  // Protects the queue (head_, tail_, and every queued request's links,
  // blocked_by_ and, for other threads, mode_).  Internal leaf lock: held
  // for one scan of the queue, never while blocking or waking.  Not the
  // first member: lockdep knows locks by address, the RangeLock as this
  // and the spinlock as &lock_.
  SpinLock lock_{LockClass::none};
  LockClass cls_;
  // Steals so far: written on the steal path only, read by tests.
  std::atomic<std::uint64_t> steals_{0};
};

}  // namespace vmspace
