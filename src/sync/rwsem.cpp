// SPDX-License-Identifier: MIT
// rwsem.cpp - RwSemaphore slow paths.
//
// Correctness argument.
//
// The fast paths (rwsem.h) only ever succeed when kWaiters is clear: a
// reader CASes n*kReader -> (n+1)*kReader, a writer CASes 0 -> kWriter.  So
// once a waiter is queued, every newcomer goes through the slow path and
// queues behind it (writer preference, FIFO).
//
// kWaiters mirrors "queue non-empty" and both change only under wait_lock_.
// A waiter sets kWaiters with a CAS that re-validates the state it decided
// on ("the lock is unavailable to me"), so a holder that releases before
// the flag is set has already made the lock available and the waiter's CAS
// fails and it retries (acquiring instead); a holder that releases after
// the flag is set sees it (its release is an RMW on the same word) and runs
// the hand-off under wait_lock_, which it can only take after the waiter
// has finished enqueueing.  Hence no lost wake-ups.
//
// Exactly one thread performs each hand-off: the thread whose release left
// the word at "no holders, waiters queued" (kWaiters alone).  While the word
// is in that state nobody else can acquire, so the grant under wait_lock_
// sees a stable "free" lock; grant() is also safe to call when the lock is
// not free (it re-checks and does nothing).
//
// Memory ordering: a holder's release RMW -> grant()'s acq_rel CAS on the
// same word -> the granted waiter flag (release store in wake(), acquire
// load by the waiter).  So the next owner observes everything the previous
// owner wrote.
//
// grant() only decides (under wait_lock_); wake() tells the new owners
// after wait_lock_ is dropped, so that no thread is ever preempted by the
// thread it wakes while holding wait_lock_.  Between the two, the granted
// waiters are owners in state_ but off the queue, on the granter's list:
// nobody else can reach them.
//
// A Waiter lives on its thread's stack.  wake() reads w->next before it
// publishes w->granted, and touches only the futex address afterwards (a
// stale futex wake-up is harmless: waiters re-check their own flag).
#include "sync/rwsem.h"

#include <cstdio>
#include <cstdlib>

#include "sync/futex.h"

namespace vmspace {

struct RwSemaphore::Waiter {
  Waiter* next = nullptr;
  bool writer = false;
  // 0 while queued; 1 once grant() has made this thread the (co-)owner and
  // wake() has told it.
  std::atomic<std::uint32_t> granted{0};
};

namespace {
// Spin this many times before queueing: long enough to ride out a short
// critical section on another CPU, short enough not to matter when the
// holder is preempted.
constexpr int kSpinBeforeSleep = 128;
constexpr int kSpinBeforeFutex = 64;
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

void RwSemaphore::lock_slow() {
  for (int i = 0; i < kSpinBeforeSleep; ++i) {
    cpu_relax();
    std::uint64_t s = state_.load(std::memory_order_relaxed);
    if (s == 0 && state_.compare_exchange_weak(s, kWriter, std::memory_order_acquire,
                                               std::memory_order_relaxed))
      return;
  }
  Waiter w;
  w.writer = true;
  wait_lock_.lock();
  std::uint64_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (s == 0) {  // free and nobody queued
      if (state_.compare_exchange_weak(s, kWriter, std::memory_order_acquire,
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
  enqueue_and_wait(&w, s);
}

void RwSemaphore::lock_shared_slow() {
  for (int i = 0; i < kSpinBeforeSleep; ++i) {
    cpu_relax();
    if (read_fast()) return;
  }
  Waiter w;
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
  enqueue_and_wait(&w, s);
}

// Called with wait_lock_ held and kWaiters set; releases wait_lock_ and
// sleeps until grant() hands us the lock.
void RwSemaphore::enqueue_and_wait(Waiter* w, std::uint64_t s) {
  if (tail_ != nullptr)
    tail_->next = w;
  else
    head_ = w;
  tail_ = w;
  // The lock may have become free between our CAS and here only if the
  // releaser then saw kWaiters and is now spinning on wait_lock_ to grant;
  // if nobody holds it at all (s was just kWaiters) hand it out ourselves.
  Waiter* woken = (s & ~kWaiters) == 0 ? grant() : nullptr;
  wait_lock_.unlock();
  wake(woken);

  int spins = 0;
  // Acquire pairs with the release store in wake().
  while (w->granted.load(std::memory_order_acquire) == 0) {
    if (++spins < kSpinBeforeFutex)
      cpu_relax();
    else
      futex_wait(&w->granted, 0);
  }
}

void RwSemaphore::unlock_slow() {
  // Write-locked with waiters queued: drop the write bit and hand off.
  wait_lock_.lock();
  state_.fetch_sub(kWriter, std::memory_order_release);  // pairs with grant()'s acquire
  Waiter* woken = grant();
  wait_lock_.unlock();
  wake(woken);
}

void RwSemaphore::wake_waiters() {
  wait_lock_.lock();
  Waiter* woken = grant();
  wait_lock_.unlock();
  wake(woken);
}

// Tell the waiters grant() made owners, after wait_lock_ is dropped: a
// futex wake-up may switch this CPU to the woken thread at once (the
// scheduler's wake-up preemption), and a thread preempted while holding
// wait_lock_ would stall every other locker, spinning, until its next
// time slice.  (With more runnable threads than CPUs, mmap/munmap from 4
// threads on 2 CPUs ran 30x slower than from 2 for exactly that.)
void RwSemaphore::wake(Waiter* chain) {
  while (chain != nullptr) {
    Waiter* w = chain;
    chain = w->next;  // read before w can return
    // Release pairs with the acquire load in enqueue_and_wait(); w may
    // return (and its stack frame go) as soon as it sees the flag, so
    // only the futex address is used after it: a stale wake-up is a
    // harmless spurious one.
    w->granted.store(1, std::memory_order_release);
    futex_wake(&w->granted, 1);
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
  if (old & kWaiters) wake_waiters();
}

// Hand the lock to the head of the queue if it can have it now: a writer
// when nobody holds the lock; readers (every queued reader, as the kernel
// does) when no writer holds it.  The new owners are counted in state_
// and unlinked from the queue here; the caller tells them with wake()
// after dropping wait_lock_.  Returns them, linked through next (nullptr:
// none).  Requires wait_lock_.
RwSemaphore::Waiter* RwSemaphore::grant() {
  wait_lock_.assert_locked();
  std::uint64_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (head_ == nullptr) return nullptr;  // kWaiters is clear too
    if (head_->writer) {
      if (s & ~kWaiters) return nullptr;  // still held; the last holder will call us
      std::uint64_t next = kWriter | (head_->next != nullptr ? kWaiters : 0);
      if (!state_.compare_exchange_weak(s, next, std::memory_order_acq_rel,
                                        std::memory_order_relaxed))
        continue;
      Waiter* w = head_;
      head_ = w->next;
      if (head_ == nullptr) tail_ = nullptr;
      w->next = nullptr;
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
    std::uint64_t next = s + readers * kReader;
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
        granted = w;
      }
    }
    return granted;
  }
}

}  // namespace vmspace
