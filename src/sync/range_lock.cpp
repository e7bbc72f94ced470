// SPDX-License-Identifier: MIT
// range_lock.cpp - RangeLock (docs/range-writers.md, 3.1).
//
// Correctness argument.
//
// State: the queue, every request granted or waiting, under lock_ (a
// SpinLock).  Queue order is arrival order, except that a stealer is
// queued just before the first request it conflicts with.  Invariant Q,
// true whenever lock_ is free:
//
//   for every queued request R,
//     R.blocked_by_ = |{ P queued before R : P conflicts with R }|
//
// where "conflicts" uses the modes as they are now.  R is granted iff
// blocked_by_ is 0; it is claimed (claimed_) once its owner runs with it.
// Each step keeps Q:
//   - lock()/try_lock() append R and count the conflicting requests
//     already queued (all of them are before R).  Nothing after R exists.
//   - a steal queues R just before F, the first request R conflicts with:
//     nothing before F conflicts with R (its count is 0), and every
//     request after R that conflicts with it gains one.
//   - unlock(P) removes P; P was counted exactly by the later requests it
//     conflicts with (Q), and those lose one.  Earlier requests never
//     counted P.
//   - downgrade(P) turns P into a read: it stops conflicting exactly with
//     the later READ requests that overlap it, which lose one.  Earlier
//     requests never counted P, later writers still conflict.  (A granted
//     P has no earlier conflicting request, as a writer or as a reader.)
//   - Modes and intervals of queued requests change nowhere else.
//
// Mutual exclusion: two claimed requests never conflict.  Of two
// conflicting queued requests, the later one counts the earlier one, so
// its blocked_by_ is at least 1.  A steal only passes requests that are
// not claimed (may_steal), and an unclaimed grant it passes is taken back
// before lock_ is dropped (its count becomes 1, and its owner claims only
// under lock_ with a count of 0).
//
// Progress (no deadlock, no starvation): blocked_by_ counts only earlier
// requests, so the earliest waiting request waits only for granted ones;
// they release after a finite operation (a thread never waits for a range
// while holding one of the same lock: one request per thread per lock,
// checked by lockdep).  Stealers can pass a waiting request only until it
// has waited kHandoffAfter; after that, by induction over the queue
// position, it is granted after at most the requests then queued before
// it.  A granted request whose owner is asleep may lose its grant to a
// stealer, and gets it back when that stealer leaves (its last blocker
// again), under the same bound.
//
// No lost wake-up: blocked_by_ reaches 0 under lock_, in the
// unlock()/downgrade() of its last blocker, which links the request onto
// its wake chain and, after dropping lock_, exchanges granted_ for
// kGranted, and futex-wakes it if it replaced kAsleep.  The waiter sleeps
// only after its CAS kWaiting -> kAsleep succeeded, and only while the
// word is still kAsleep (futex_wait compares atomically): if the grant
// came first, the CAS fails and the waiter does not sleep; if the CAS came
// first, the exchange returns kAsleep and wakes it (a wake before the
// futex_wait makes it return at once).  A stealer takes a grant back only
// once its word is kGranted (the exchange done: at most one wake is in
// flight per request, so a request is never on two chains and its
// wake_next_ is not overwritten while a waker still follows it), setting
// the word to kWaiting under lock_; the next grant exchanges it again.
// The owner claims under lock_ only when its count is 0 and its word
// kGranted: the latest grant's waker has done its exchange.  A request
// granted on arrival or by a steal sets its own word and is claimed.
//
// Memory ordering: everything a holder P did inside its range happens
// before the accesses of the next holder R of a conflicting request:
//   - R granted on arrival or by a steal: P's unlink is under lock_,
//     whose release pairs with the acquire of R's lock_.lock().
//   - R granted by an unlock()/downgrade() and claimed: P's unlink
//     released lock_, and R's claim acquires lock_.
// And the waker's last accesses to a request (its read of wake_next_,
// before its release exchange of granted_) happen before the request is
// reused: the owner's claim and a stealer's may_steal() load the word
// kGranted with acquire ordering before they return or revoke (after
// which the owner, or a later unlock() chaining it again, writes it).
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
// address (the owner may have claimed, run, unlocked and returned; a
// stale futex_wake is a harmless spurious wake-up elsewhere).  The owner
// returns from lock() only after it claimed under lock_ with the word
// kGranted, i.e. after the exchange of the latest grant; an earlier
// grant's exchange was done before that grant could be taken back.
#include "sync/range_lock.h"

#include <chrono>
#include <cstdio>

#include "sync/futex.h"

namespace vmspace {

namespace {
// Polls of the request's word before sleeping: long enough to ride out a
// short operation on the other CPU, short enough not to matter when the
// holder is preempted.
constexpr int kSpinBeforeFutex = 512;

// Test hook: kHandoffAfter replaced (negative: not replaced).
std::atomic<std::int64_t> g_handoff_after_ns{-1};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::int64_t handoff_after_ns() {
  const std::int64_t t = g_handoff_after_ns.load(std::memory_order_relaxed);
  return t >= 0 ? t : std::chrono::duration_cast<std::chrono::nanoseconds>(RangeLock::kHandoffAfter).count();
}

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
  Request* first_conflict = nullptr;
  lock_.lock();
  for (Request* p = head_; p != nullptr; p = p->next_) {
    if (!p->conflicts_with(req)) continue;
    if (first_conflict == nullptr) first_conflict = p;
    ++blocked_by;
  }
  if (blocked_by == 0) {
    enqueue(req, 0);
    lock_.unlock();
    // Granted on arrival: lock_'s acquire above ordered us after every
    // conflicting holder's unlink.
    return;
  }
  const std::int64_t now = now_ns();  // contended path only
  if (req.mode_ == Mode::write && may_steal(req, first_conflict, now)) {
    steal(req, first_conflict);
    steals_.fetch_add(1, std::memory_order_relaxed);
    lock_.unlock();
    return;
  }
  enqueue(req, blocked_by);
  req.since_ns_ = now;
  lock_.unlock();
  wait_granted(req);
}

// Sleep until req (queued, blocked) is granted, then claim it.  A grant is
// claimed under lock_, and only once the word says the grant's wake-up
// has been delivered (kGranted): a stealer may revoke an unclaimed grant
// (steal()), and the waker of the latest grant must be done with req
// before its owner may return and reuse or destroy it.
void RangeLock::wait_granted(Request& req) {
  int spins = 0;
  for (;;) {
    // Acquire pairs with the release exchange in wake().
    std::uint32_t w = req.granted_.load(std::memory_order_acquire);
    if (w == kGranted) {
      lock_.lock();
      // Under lock_: a revocation (steal) sets the word back to kWaiting
      // and blocked_by_ above 0, both under lock_.  blocked_by_ 0 with
      // the word kGranted: the latest grant's wake-up is delivered.
      // Acquire pairs with that waker's release exchange: its read of
      // wake_next_ happens before we return and reuse the request.
      const bool mine = req.blocked_by_ == 0 && req.granted_.load(std::memory_order_acquire) == kGranted;
      if (mine) req.claimed_ = true;
      lock_.unlock();
      if (mine) return;
      spins = 0;
      continue;
    }
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

// May the write request req, arriving, be granted ahead of every queued
// request it conflicts with (from `first` on)?  Only if none of them runs
// with its grant (claimed_): each is waiting, or granted but its owner not
// yet back on a CPU to claim it (the hand-off that makes a convoy when
// threads outnumber CPUs); none has waited kHandoffAfter; and the grant a
// woken one holds has been delivered (its word is kGranted: its waker is
// done with it).  Requires lock_.
bool RangeLock::may_steal(const Request& req, const Request* first, std::int64_t now) const {
  const std::int64_t handoff = handoff_after_ns();
  for (const Request* q = first; q != nullptr; q = q->next_) {
    if (!q->conflicts_with(req)) continue;
    if (q->claimed_) return false;
    if (now - q->since_ns_ >= handoff) return false;
    // Acquire pairs with the waker's release exchange: its read of
    // q->wake_next_ happens before our release of q writes it again.
    if (q->blocked_by_ == 0 && q->granted_.load(std::memory_order_acquire) != kGranted) return false;
  }
  return true;
}

// Queue req, granted, just before `first` (the first request it conflicts
// with), so that every request it conflicts with is after it and counts
// it (invariant Q in queue order).  A grant not yet claimed is revoked:
// its owner, when it runs, finds blocked_by_ above 0 and waits again; the
// releaser of req will grant it again.  Requires lock_ and may_steal().
void RangeLock::steal(Request& req, Request* first) {
  lock_.assert_locked();
  for (Request* q = first; q != nullptr; q = q->next_) {
    if (!q->conflicts_with(req)) continue;
    if (q->blocked_by_++ == 0) q->granted_.store(kWaiting, std::memory_order_relaxed);
  }
  req.blocked_by_ = 0;
  req.claimed_ = true;
  req.granted_.store(kGranted, std::memory_order_relaxed);
  req.wake_next_ = nullptr;
  req.next_ = first;
  req.prev_ = first->prev_;
  if (first->prev_ != nullptr)
    first->prev_->next_ = &req;
  else
    head_ = &req;
  first->prev_ = &req;
  req.queued_on_ = this;
}

// Append req with its count of earlier conflicting requests.  Requires
// lock_.  req is not visible to other threads before this.
void RangeLock::enqueue(Request& req, std::uint32_t blocked_by) {
  lock_.assert_locked();
  req.blocked_by_ = blocked_by;
  req.claimed_ = blocked_by == 0;
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
  req.claimed_ = false;
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

void RangeLock::set_handoff_after_for_test(std::chrono::nanoseconds d) {
  g_handoff_after_ns.store(d.count() < 0 ? -1 : d.count(), std::memory_order_relaxed);
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
