// SPDX-License-Identifier: MIT
// rwsem.cpp - RwSemaphore slow paths.
//
// Correctness argument.
//
// Holders are counted in state_ (kWriter, n * kReader).  The fast paths
// (rwsem.h) succeed only when kWaiters is clear: a reader CASes n*kReader
// -> (n+1)*kReader, a writer CASes 0 -> kWriter.  Slow-path writers may
// also take a free lock while others are queued (stealing: CAS s ->
// s | kWriter when s has no holders and no kHandoff); readers never do.
//
// kWaiters mirrors "queue non-empty"; kWaiters, kHandoff and the queue
// change only under wait_lock_.  A waiter sets kWaiters with a CAS that
// re-validates the state it decided on ("the lock is unavailable to me"),
// so a holder that released before the flag was set made the lock
// available and the CAS fails and the waiter retries.
//
// No lost wake-ups.  Claim: whenever the lock has no holders and the queue
// is non-empty, somebody will run an acquisition attempt for the head.
// A release that leaves no holders while kWaiters is set sees kWaiters in
// its own RMW and runs release_wake() under wait_lock_ after it.  There,
// if the lock still has no holders: with kHandoff (or a head that has
// waited its bound) it grants to the head itself; otherwise it marks the
// head kWoken (unless it already is) and wakes it; the head, under
// wait_lock_, resets its word and tries (grant() for itself).  If somebody
// took the lock first (a stealer), the release that frees it again (the
// stealer's, or after a downgrade the last reader's) runs release_wake()
// again.  Both sides decide under wait_lock_ on a state read there, so a
// release is either seen by the head's attempt (which then finds the lock
// free) or its release_wake() comes after the attempt (and finds the head
// kQueued again and re-wakes it).
//
// Only the head is ever woken to retry; grant() serves the head (one
// writer, or every queued reader) and runs in the head's retry, in a
// release (hand-off) and in downgrade() (readers only).
// Hand-off: once the head has waited kHandoffAfter, the first of its own
// failed retry or a release_wake() that finds the lock taken sets
// kHandoff, and a release_wake() that finds it free grants to it at once.
// With kHandoff set no stealer and no fast path can take the lock
// (stealers check it, fast paths see kWaiters), so the next release grants
// to the head, which clears kHandoff as it dequeues it.  So once a head
// has waited kHandoffAfter, at most the critical section of whoever holds
// the lock then passes before it is granted (plus the wake-up latency);
// a waiter further back waits for the heads ahead of it too.
//
// Memory ordering: a holder's release RMW -> the next holder's acquire
// CAS (a stealer's) or grant()'s acq_rel CAS on the same word -> for a
// granted waiter, its word (release store in wake(), acquire load by the
// waiter).  So the next owner observes everything the previous owner
// wrote.
//
// grant() only decides (under wait_lock_); wake() tells the new owners
// after wait_lock_ is dropped, so that no thread is ever preempted by the
// thread it wakes while holding wait_lock_.  Between the two, the granted
// waiters are owners in state_ but off the queue (queued == false), on the
// granter's list: nobody else can reach them, and a granted head that was
// also woken to retry sees queued == false and just waits for its word.
//
// A Waiter lives on its thread's stack.  wake() reads w->next before it
// publishes w->word, and every waker touches only the futex address after
// the store that lets the waiter return (a stale futex wake-up is a
// harmless spurious one: waiters re-check their word).
#include "sync/rwsem.h"

#include <cstdio>
#include <cstdlib>

#include "sync/futex.h"

namespace vmspace {

struct RwSemaphore::Waiter {
  Waiter* next = nullptr;                         // wait_lock_
  bool writer = false;                            // constant
  bool queued = true;                             // wait_lock_; false once granted
  std::chrono::steady_clock::time_point since{};  // constant once queued
  // kQueued: asleep in the queue; kWoken: the head, told by a release that
  // the lock may be free, about to retry; kGranted: grant() made it a
  // (co-)owner and wake() told it.  The futex word.
  std::atomic<std::uint32_t> word{0};
};

namespace {
constexpr std::uint32_t kQueued = 0;
constexpr std::uint32_t kWoken = 1;
constexpr std::uint32_t kGranted = 2;

// Spin this many times before queueing: long enough to ride out a short
// critical section on another CPU, short enough not to matter when the
// holder is preempted.
constexpr int kSpinBeforeSleep = 128;
constexpr int kSpinBeforeFutex = 64;

// Test hooks (rwsem.h).
std::atomic<std::int64_t> handoff_after_ns{-1};
std::atomic<void (*)(RwSemaphore*)> retry_hook{nullptr};

std::chrono::nanoseconds handoff_after() {
  std::int64_t t = handoff_after_ns.load(std::memory_order_relaxed);
  return t < 0 ? RwSemaphore::kHandoffAfter : std::chrono::nanoseconds(t);
}

// Sleep until *word is no longer `old` (spin first).  Acquire pairs with
// the release store that changed it.
std::uint32_t wait_while(std::atomic<std::uint32_t>* word, std::uint32_t old) {
  int spins = 0;
  std::uint32_t v;
  while ((v = word->load(std::memory_order_acquire)) == old) {
    if (++spins < kSpinBeforeFutex)
      cpu_relax();
    else
      futex_wait(word, old);
  }
  return v;
}
}  // namespace

void RwSemaphore::set_owner() {
#if defined(VMSPACE_DEBUG_CHECKS)
  owner_.store(lockdep::thread_id(), std::memory_order_relaxed);
#endif
}

void RwSemaphore::check_unlock() const {
#if defined(VMSPACE_DEBUG_CHECKS)
  int owner = owner_.load(std::memory_order_relaxed);
  if (owner != lockdep::thread_id() || !lockdep::held_exclusive(this)) {
    std::fprintf(stderr, "vmspace: RwSemaphore %p (%s): write unlock by thread %d, "
                         "which does not hold it for write (write owner: %d)\n",
                 static_cast<const void*>(this), lock_class_name(cls_), lockdep::thread_id(),
                 owner);
    lockdep::fail(this, cls_, "bad RwSemaphore::unlock");
  }
  const_cast<std::atomic<int>&>(owner_).store(0, std::memory_order_relaxed);
#endif
}

void RwSemaphore::assert_write_locked() const {
#if defined(VMSPACE_DEBUG_CHECKS)
  if (owner_.load(std::memory_order_relaxed) != lockdep::thread_id() ||
      !lockdep::held_exclusive(this))
    lockdep::fail(this, cls_, "RwSemaphore: expected to be write-locked by this thread");
#endif
}

void RwSemaphore::assert_locked() const {
#if defined(VMSPACE_DEBUG_CHECKS)
  if (!lockdep::held(this))
    lockdep::fail(this, cls_, "RwSemaphore: expected to be locked by this thread");
#endif
}

std::size_t RwSemaphore::waiter_count() {
  wait_lock_.lock();
  std::size_t n = 0;
  for (Waiter* w = head_; w != nullptr; w = w->next) ++n;
  wait_lock_.unlock();
  return n;
}

void RwSemaphore::set_handoff_after_for_test(std::chrono::nanoseconds d) {
  handoff_after_ns.store(d.count() < 0 ? -1 : d.count(), std::memory_order_relaxed);
}

void RwSemaphore::set_retry_hook_for_test(void (*hook)(RwSemaphore*)) {
  retry_hook.store(hook, std::memory_order_relaxed);
}

void RwSemaphore::lock_slow() {
  for (int i = 0; i < kSpinBeforeSleep; ++i) {
    cpu_relax();
    std::uint64_t s = state_.load(std::memory_order_relaxed);
    // Free, no hand-off pending: take it, even past queued waiters.
    if ((s & ~kWaiters) == 0 &&
        state_.compare_exchange_weak(s, s | kWriter, std::memory_order_acquire,
                                     std::memory_order_relaxed))
      return;
  }
  Waiter w;
  w.writer = true;
  w.since = std::chrono::steady_clock::now();
  wait_lock_.lock();
  std::uint64_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if ((s & ~kWaiters) == 0) {  // free, no hand-off pending
      if (state_.compare_exchange_weak(s, s | kWriter, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        wait_lock_.unlock();
        return;
      }
      continue;
    }
    if (state_.compare_exchange_weak(s, s | kWaiters, std::memory_order_relaxed,
                                     std::memory_order_relaxed))
      break;
  }
  enqueue_and_wait(&w);
}

void RwSemaphore::lock_shared_slow() {
  for (int i = 0; i < kSpinBeforeSleep; ++i) {
    cpu_relax();
    if (read_fast()) return;
  }
  Waiter w;
  w.since = std::chrono::steady_clock::now();
  wait_lock_.lock();
  std::uint64_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (!(s & (kWriter | kWaiters))) {  // no writer and nobody queued
      if (state_.compare_exchange_weak(s, s + kReader, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        wait_lock_.unlock();
        return;
      }
      continue;
    }
    if (state_.compare_exchange_weak(s, s | kWaiters, std::memory_order_relaxed,
                                     std::memory_order_relaxed))
      break;
  }
  enqueue_and_wait(&w);
}

// Called with wait_lock_ held and kWaiters set, the lock unavailable to
// us when we decided (w->since: when we began to wait); releases
// wait_lock_ and returns owning the lock.
// (If the lock has been released since, that release's release_wake()
// is waiting for wait_lock_ and will wake the head.)
void RwSemaphore::enqueue_and_wait(Waiter* w) {
  if (tail_ != nullptr)
    tail_->next = w;
  else
    head_ = w;
  tail_ = w;
  wait_lock_.unlock();
  for (;;) {
    std::uint32_t v = wait_while(&w->word, kQueued);
    if (v == kGranted) return;
    if (retry(w)) return;
  }
}

// The head, woken by a release: try to take the lock; if we still cannot
// (a stealer got in), go back to sleep at the head, setting kHandoff if we
// have waited long enough.  Returns true when we own the lock.
bool RwSemaphore::retry(Waiter* w) {
  if (auto hook = retry_hook.load(std::memory_order_relaxed)) hook(this);
  const auto now = std::chrono::steady_clock::now();  // not under the spinlock
  wait_lock_.lock();
  if (!w->queued) {
    // Granted (by downgrade() or a hand-off) after the release woke us;
    // the granter's wake() is on its way.
    wait_lock_.unlock();
    wait_while(&w->word, kWoken);
    return true;
  }
  w->word.store(kQueued, std::memory_order_relaxed);
  Waiter* granted = grant();  // we are head_: grant() serves us first
  bool mine = !w->queued;
  // Relaxed (here and in release_wake): the bit publishes no data, and
  // every change of state_ is an RMW, so each later CAS (a stealer's)
  // sees it.
  if (!mine && now - w->since >= handoff_after())
    state_.fetch_or(kHandoff, std::memory_order_relaxed);
  wait_lock_.unlock();
  wake(granted, w);
  return mine;
}

void RwSemaphore::unlock_slow() {
  // Write-locked with waiters queued: let the lock go first (so the next
  // stealer need not wait for our wake-up work), then wake the head.
  state_.fetch_sub(kWriter, std::memory_order_release);  // pairs with the next acquire
  release_wake();
}

// After a release that left no holders and the queue non-empty: grant to
// the head if a hand-off is pending or the head has waited its bound, else
// wake it to retry.  If somebody has taken the lock since, their release
// will come here; we only set kHandoff if the head's bound has passed (so
// that a woken head still off its CPU cannot be overtaken for ever).
void RwSemaphore::release_wake() {
  Waiter* granted = nullptr;
  Waiter* woken = nullptr;
  const auto now = std::chrono::steady_clock::now();  // not under the spinlock
  wait_lock_.lock();
  std::uint64_t s = state_.load(std::memory_order_relaxed);
  if (head_ != nullptr) {
    const bool expired = now - head_->since >= handoff_after();
    if (s & kHolders) {
      if (expired && !(s & kHandoff)) state_.fetch_or(kHandoff, std::memory_order_relaxed);
    } else if ((s & kHandoff) || expired) {
      granted = grant();
    } else if (head_->word.load(std::memory_order_relaxed) == kQueued) {
      woken = head_;
      woken->word.store(kWoken, std::memory_order_release);
    }
  }
  wait_lock_.unlock();
  wake(granted);
  // After the store the head may retry, win and return: only the futex
  // address is used (a stale wake-up is harmless).
  if (woken != nullptr) futex_wake(&woken->word, 1);
}

// Tell the waiters grant() made owners, after wait_lock_ is dropped: a
// futex wake-up may switch this CPU to the woken thread at once (the
// scheduler's wake-up preemption), and a thread preempted while holding
// wait_lock_ would stall every other locker, spinning, until its next
// time slice.  (With more runnable threads than CPUs, mmap/munmap from 4
// threads on 2 CPUs ran 30x slower than from 2 for exactly that.)
// `self`, a granted waiter that is the calling thread, needs no telling.
void RwSemaphore::wake(Waiter* chain, const Waiter* self) {
  while (chain != nullptr) {
    Waiter* w = chain;
    chain = w->next;  // read before w can return
    if (w == self) continue;
    // Release pairs with the acquire load in wait_while(); w may return
    // (and its stack frame go) as soon as it sees the word, so only the
    // futex address is used after it: a stale wake-up is a harmless
    // spurious one.
    w->word.store(kGranted, std::memory_order_release);
    futex_wake(&w->word, 1);
  }
}

void RwSemaphore::downgrade() {
#if defined(VMSPACE_DEBUG_CHECKS)
  if (owner_.load(std::memory_order_relaxed) != lockdep::thread_id() ||
      !lockdep::held_exclusive(this)) {
    std::fprintf(stderr, "vmspace: RwSemaphore %p (%s): downgrade by thread %d, which does not "
                         "hold it for write\n",
                 static_cast<const void*>(this), lock_class_name(cls_), lockdep::thread_id());
    lockdep::fail(this, cls_, "bad RwSemaphore::downgrade");
  }
  owner_.store(0, std::memory_order_relaxed);
#endif
  lockdep::downgrade(this);
  // kWriter -> one reader (us).  Release: our writes are visible to the
  // readers admitted below (they acquire through grant()).
  std::uint64_t old = state_.fetch_add(kReader - kWriter, std::memory_order_release);
  if (old & kWaiters) {
    // Admit the readers at the head of the queue (grant() gives a writer
    // nothing: we hold the lock).
    wait_lock_.lock();
    Waiter* granted = grant();
    wait_lock_.unlock();
    wake(granted);
  }
}

// Hand the lock to the head of the queue if it can have it now: a writer
// when nobody holds the lock; readers (every queued reader, as the kernel
// does) when no writer holds it.  The new owners are counted in state_
// (which drops kHandoff: it was the head's) and unlinked from the queue
// here (queued = false); the caller tells them with wake() after dropping
// wait_lock_.  Returns them, linked through next (nullptr: none).
// Requires wait_lock_.
RwSemaphore::Waiter* RwSemaphore::grant() {
  wait_lock_.assert_locked();
  std::uint64_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (head_ == nullptr) return nullptr;  // kWaiters is clear too
    if (head_->writer) {
      if (s & kHolders) return nullptr;  // still held; the last holder will call us
      std::uint64_t next = kWriter | (head_->next != nullptr ? kWaiters : 0);
      if (!state_.compare_exchange_weak(s, next, std::memory_order_acq_rel,
                                        std::memory_order_relaxed))
        continue;
      Waiter* w = head_;
      head_ = w->next;
      if (head_ == nullptr) tail_ = nullptr;
      w->next = nullptr;
      w->queued = false;
      return w;
    }
    if (s & kWriter) return nullptr;
    std::uint64_t readers = 0;
    bool writers_left = false;
    for (Waiter* w = head_; w != nullptr; w = w->next) {
      if (w->writer)
        writers_left = true;
      else
        ++readers;
    }
    std::uint64_t next = (s + readers * kReader) & ~kHandoff;
    if (!writers_left) next &= ~kWaiters;
    if (!state_.compare_exchange_weak(s, next, std::memory_order_acq_rel,
                                      std::memory_order_relaxed))
      continue;
    // Unlink every reader, keeping writers in order, then wake the readers.
    Waiter* granted = nullptr;
    Waiter** link = &head_;
    tail_ = nullptr;
    while (*link != nullptr) {
      Waiter* w = *link;
      if (w->writer) {
        tail_ = w;
        link = &w->next;
      } else {
        *link = w->next;
        w->next = granted;
        w->queued = false;
        granted = w;
      }
    }
    return granted;
  }
}

}  // namespace vmspace
