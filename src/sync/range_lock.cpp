// SPDX-License-Identifier: MIT
// range_lock.cpp - RangeLock (docs/range-writers.md, 3.1).
//
// Correctness argument.
//
// State: the queue, every request granted or waiting in arrival order,
// under lock_ (a SpinLock).  Invariant Q, true whenever lock_ is free:
//
//   for every queued request R,
//     R.blocked_by_ = |{ P queued before R : P conflicts with R }|
//
// where "conflicts" uses the modes as they are now.  R is granted iff
// blocked_by_ is 0.  Each step keeps Q:
//   - lock()/try_lock() append R and count the conflicting requests
//     already queued (all of them are before R).  Nothing after R exists.
//   - unlock(P) removes P; P was counted exactly by the later requests it
//     conflicts with (Q), and those lose one.  Earlier requests never
//     counted P.
//   - downgrade(P) turns P into a read: it stops conflicting exactly with
//     the later READ requests that overlap it, which lose one.  Earlier
//     requests never counted P, later writers still conflict.  (A granted
//     P has no earlier conflicting request, as a writer or as a reader.)
//   - Modes and intervals of queued requests change nowhere else.
//
// Mutual exclusion: two granted requests never conflict.  Of two
// conflicting queued requests, the later one counts the earlier one, so
// its blocked_by_ is at least 1.
//
// Progress (no deadlock, no starvation): blocked_by_ counts only earlier
// requests, so the earliest waiting request waits only for granted ones;
// they release after a finite operation (a thread never waits for a range
// while holding one of the same lock: one request per thread per lock,
// checked by lockdep).  By induction over the queue position, every
// request is granted after at most the requests queued before it; later
// arrivals never increase its count.
//
// No lost wake-up: blocked_by_ reaches 0 once per queueing, under lock_,
// in the unlock()/downgrade() of its last blocker, which links the request
// onto its wake chain and, after dropping lock_, exchanges granted_ for
// kGranted, and futex-wakes it if it replaced kAsleep.  The waiter sleeps
// only after its CAS kWaiting -> kAsleep succeeded, and only while the
// word is still kAsleep (futex_wait compares atomically): if the grant
// came first, the CAS fails and the waiter does not sleep; if the CAS came
// first, the exchange returns kAsleep and wakes it (a wake before the
// futex_wait makes it return at once).  A request granted on arrival sets
// its own word.  A grant to a waiter still spinning costs no system call.
//
// Memory ordering: everything a holder P did inside its range happens
// before the accesses of the next holder R of a conflicting request:
//   - R granted on arrival (lock() or try_lock()): P's unlink is under
//     lock_, whose release pairs with the acquire of R's lock_.lock().
//   - R granted by P's unlock()/downgrade(): P's release store of
//     granted_ (after its range accesses, in program order) pairs with
//     R's acquire load in lock().
//   - R granted by the unlock of a later-leaving blocker P2 while P left
//     earlier: P's unlink released lock_, P2 acquired it before its
//     release store to R: transitive.
// Requests that do not conflict need no ordering with each other.
//
// Wake-ups happen after lock_ is dropped (futex.h's rule, checked in debug
// builds): a woken thread may preempt the waker at once, and a waker
// preempted inside lock_ would stall every other locker spinning on it.
// Between the two, the granted requests are off nobody's list: they stay
// queued (granted requests are part of the queue) and only the waker
// follows wake_next_.
//
// A Request lives on its owner's stack.  The waker reads wake_next_
// before it stores granted_, and afterwards touches only the futex
// address (the owner may have run, unlocked and returned; a stale
// futex_wake is a harmless spurious wake-up elsewhere).
#include "sync/range_lock.h"

#include <cstdio>

#include "sync/futex.h"

namespace vmspace {

namespace {
// Polls of the request's word before sleeping: long enough to ride out a
// short operation on the other CPU, short enough not to matter when the
// holder is preempted.
constexpr int kSpinBeforeFutex = 512;

bool intervals_overlap(const RangeLock::Interval& a, const RangeLock::Interval& b) {
  return a.lo < b.hi && b.lo < a.hi;
}

[[maybe_unused, noreturn]] void bad_request(const void* lock, LockClass cls, const char* msg) {
  lockdep::fail(lock, cls, msg);
}
}  // namespace

// ---- Request --------------------------------------------------------------

RangeLock::Request::~Request() {
#if defined(VMSPACE_DEBUG_CHECKS)
  if (queued_on_ != nullptr)
    bad_request(queued_on_, queued_on_->cls_, "RangeLock::Request destroyed while still queued");
#endif
}

void RangeLock::Request::set(Interval a, Mode mode) {
#if defined(VMSPACE_DEBUG_CHECKS)
  if (queued_on_ != nullptr)
    bad_request(queued_on_, queued_on_->cls_, "RangeLock::Request::set on a queued request");
  if (a.lo >= a.hi) bad_request(this, LockClass::none, "RangeLock::Request: empty interval");
#endif
  iv_[0] = a;
  iv_[1] = Interval{};
  n_ = 1;
  mode_ = mode;
}

void RangeLock::Request::set(Interval a, Interval b, Mode mode) {
  set(a, mode);
#if defined(VMSPACE_DEBUG_CHECKS)
  if (b.lo >= b.hi) bad_request(this, LockClass::none, "RangeLock::Request: empty interval");
#endif
  iv_[1] = b;
  n_ = 2;
}

bool RangeLock::Request::overlaps(const Request& other) const {
  for (unsigned i = 0; i < n_; ++i)
    for (unsigned j = 0; j < other.n_; ++j)
      if (intervals_overlap(iv_[i], other.iv_[j])) return true;
  return false;
}

bool RangeLock::Request::covers(std::uint64_t lo, std::uint64_t hi) const {
  if (lo >= hi) return true;
  // Walk forward from lo through whichever interval contains it; with at
  // most two intervals, two rounds reach the end of their union.
  for (unsigned round = 0; round < n_; ++round) {
    bool moved = false;
    for (unsigned i = 0; i < n_; ++i) {
      if (iv_[i].lo <= lo && lo < iv_[i].hi) {
        if (hi <= iv_[i].hi) return true;
        lo = iv_[i].hi;
        moved = true;
      }
    }
    if (!moved) return false;
  }
  return false;
}

// ---- RangeLock ------------------------------------------------------------

RangeLock::~RangeLock() {
#if defined(VMSPACE_DEBUG_CHECKS)
  if (head_ != nullptr) bad_request(this, cls_, "RangeLock destroyed with requests queued");
#endif
}

void RangeLock::lock(Request& req, unsigned subclass) {
  lockdep::acquire(this, cls_, req.mode_ == Mode::write ? lockdep::Mode::exclusive
                                                         : lockdep::Mode::shared,
                   subclass, /*trylock=*/false);
#if defined(VMSPACE_DEBUG_CHECKS)
  if (req.queued_on_ != nullptr) bad_request(this, cls_, "RangeLock::lock: request already queued");
  req.owner_tid_ = lockdep::thread_id();
#endif
  std::uint32_t blocked_by = 0;
  lock_.lock();
  for (const Request* p = head_; p != nullptr; p = p->next_)
    if (p->conflicts_with(req)) ++blocked_by;
  enqueue(req, blocked_by);
  lock_.unlock();
  // Granted on arrival: lock_'s acquire above ordered us after every
  // conflicting holder's unlink.
  if (blocked_by == 0) return;
  int spins = 0;
  // Acquire pairs with the release exchange in wake().
  for (;;) {
    std::uint32_t w = req.granted_.load(std::memory_order_acquire);
    if (w == kGranted) break;
    if (++spins < kSpinBeforeFutex) {
      cpu_relax();
      continue;
    }

    if (w == kWaiting &&
        !req.granted_.compare_exchange_strong(w, kAsleep, std::memory_order_acquire, std::memory_order_acquire))
      continue;  // granted meanwhile: w is kGranted
    futex_wait(&req.granted_, kAsleep);
  }
}

// Append req with its count of earlier conflicting requests.  Requires
// lock_.  req is not visible to other threads before this.
void RangeLock::enqueue(Request& req, std::uint32_t blocked_by) {
  lock_.assert_locked();
  req.blocked_by_ = blocked_by;
  // Relaxed: only the owner reads it before a waker's release store,
  // which comes after blocked_by_ reaches 0 under lock_.
  req.granted_.store(blocked_by == 0 ? kGranted : kWaiting, std::memory_order_relaxed);
  req.wake_next_ = nullptr;
  req.next_ = nullptr;
  req.prev_ = tail_;
  if (tail_ != nullptr)
    tail_->next_ = &req;
  else
    head_ = &req;
  tail_ = &req;
  req.queued_on_ = this;
}

bool RangeLock::try_lock(Request& req) {
#if defined(VMSPACE_DEBUG_CHECKS)
  if (req.queued_on_ != nullptr)
    bad_request(this, cls_, "RangeLock::try_lock: request already queued");
#endif
  lock_.lock();
  for (const Request* p = head_; p != nullptr; p = p->next_) {
    if (p->conflicts_with(req)) {
      lock_.unlock();
      return false;
    }
  }
  enqueue(req, 0);
  lock_.unlock();
#if defined(VMSPACE_DEBUG_CHECKS)
  req.owner_tid_ = lockdep::thread_id();
#endif
  lockdep::acquire(this, cls_, req.mode_ == Mode::write ? lockdep::Mode::exclusive
                                                         : lockdep::Mode::shared,
                   0, /*trylock=*/true);
  return true;
}

void RangeLock::unlock(Request& req) {
  check_owner(req, "RangeLock::unlock");
  lockdep::release(this);
  Request* woken = nullptr;
  lock_.lock();
  // Everything after req that counted it (invariant Q) loses one blocker.
  for (Request* q = req.next_; q != nullptr; q = q->next_) {
    if (!req.conflicts_with(*q)) continue;
    check_blocked(*q);
    if (--q->blocked_by_ == 0) {
      q->wake_next_ = woken;
      woken = q;
    }
  }
  if (req.prev_ != nullptr)
    req.prev_->next_ = req.next_;
  else
    head_ = req.next_;
  if (req.next_ != nullptr)
    req.next_->prev_ = req.prev_;
  else
    tail_ = req.prev_;
  req.prev_ = req.next_ = nullptr;
  req.queued_on_ = nullptr;
  // Release: our range accesses happen before the next holder's lock_
  // acquire (a request granted on arrival).
  lock_.unlock();
  wake(woken);
}

void RangeLock::downgrade(Request& req) {
  check_owner(req, "RangeLock::downgrade");
#if defined(VMSPACE_DEBUG_CHECKS)
  if (req.mode_ != Mode::write)
    bad_request(this, cls_, "RangeLock::downgrade: the request is not a write request");
#endif
  lockdep::downgrade(this);
  Request* woken = nullptr;
  lock_.lock();
  req.mode_ = Mode::read;
  // Later readers that overlap req counted it as a writer (invariant Q).
  for (Request* q = req.next_; q != nullptr; q = q->next_) {
    if (q->mode_ != Mode::read || !req.overlaps(*q)) continue;
    check_blocked(*q);
    if (--q->blocked_by_ == 0) {
      q->wake_next_ = woken;
      woken = q;
    }
  }
  lock_.unlock();
  wake(woken);
}

// A later conflicting request counts its blocker (invariant Q): debug
// builds check it before taking one off.
void RangeLock::check_blocked(const Request& q) const {
#if defined(VMSPACE_DEBUG_CHECKS)
  if (q.blocked_by_ == 0)
    bad_request(this, cls_, "RangeLock: a later conflicting request did not count its blocker");
#else
  (void)q;
#endif
}

// Tell the requests that unlock()/downgrade() granted, after lock_ is
// dropped (see the top of this file).
void RangeLock::wake(Request* chain) {
  while (chain != nullptr) {
    Request* r = chain;
    chain = r->wake_next_;  // read before r's owner can return
    // Release pairs with the acquire load in lock(); r may be unlocked and
    // gone as soon as the owner sees it, so only the futex address is
    // used afterwards.
    if (r->granted_.exchange(kGranted, std::memory_order_release) == kAsleep) futex_wake(&r->granted_, 1);
  }
}

void RangeLock::check_owner(const Request& req, const char* what) const {
#if defined(VMSPACE_DEBUG_CHECKS)
  if (req.queued_on_ != this || req.granted_.load(std::memory_order_relaxed) != kGranted ||
      req.owner_tid_ != lockdep::thread_id() || !lockdep::held(this)) {
    std::fprintf(stderr, "vmspace: RangeLock %p (%s): %s by thread %d of a request it does not "
                         "hold (request queued on %p, owner thread %d)\n",
                 static_cast<const void*>(this), lock_class_name(cls_), what,
                 lockdep::thread_id(), static_cast<const void*>(req.queued_on_), req.owner_tid_);
    bad_request(this, cls_, what);
  }
#else
  (void)req;
  (void)what;
#endif
}

void RangeLock::assert_locked(const Request& req) const {
  check_owner(req, "RangeLock: expected a granted request (assert_locked)");
}

void RangeLock::assert_write_locked(const Request& req) const {
  check_owner(req, "RangeLock: expected a granted request (assert_write_locked)");
#if defined(VMSPACE_DEBUG_CHECKS)
  if (req.mode_ != Mode::write || !lockdep::held_exclusive(this))
    bad_request(this, cls_, "RangeLock: expected a granted WRITE request");
#endif
}

std::size_t RangeLock::request_count() {
  lock_.lock();
  std::size_t n = 0;
  for (const Request* p = head_; p != nullptr; p = p->next_) ++n;
  lock_.unlock();
  return n;
}

std::size_t RangeLock::waiter_count() {
  lock_.lock();
  std::size_t n = 0;
  for (const Request* p = head_; p != nullptr; p = p->next_)
    if (p->blocked_by_ != 0) ++n;
  lock_.unlock();
  return n;
}

std::uint32_t RangeLock::blockers(const Request& req) {
  lock_.lock();
  std::uint32_t n = req.queued_on_ == this ? req.blocked_by_ : 0;
  lock_.unlock();
  return n;
}

}  // namespace vmspace
