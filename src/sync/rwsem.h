// SPDX-License-Identifier: MIT
// rwsem.h - RwSemaphore: the reader/writer semaphore behind the mmap_lock
// (and the per-VMA lock in per_vma_rwsem mode).
//
// Semantics (the kernel rwsem's since Linux 5.3's lock stealing):
//   - Writer-preferring: once anybody waits, new readers queue behind, so
//     a stream of page faults cannot starve mmap/munmap.
//   - Lock stealing: a release does not hand the lock to the head of the
//     queue; it wakes the head, which then tries to take it.  Until it
//     does, an arriving (or the releasing) writer may take the free lock
//     first.  A thread that releases and re-takes the lock in a loop thus
//     keeps its CPU instead of paying a context switch per operation (the
//     hand-off convoy: with strict hand-off, mmap/munmap from 4 threads ran
//     10x slower than from 1).  Readers never steal.
//   - Bounded unfairness (hand-off): a head that has waited kHandoffAfter
//     and still loses sets the hand-off bit; from then on nobody steals and
//     the next release grants the lock to it (a writer, or every queued
//     reader at once), as the kernel's RWSEM_FLAG_HANDOFF does.  The
//     queue is served from its head: a writer alone, or a reader with
//     every queued reader.
//   - downgrade(): write -> read atomically; no writer can get in between,
//     and readers at the head of the queue are admitted with us.
//   - try_lock()/try_lock_shared() fail whenever anybody is queued.
//   - Sleeping: a short bounded spin, then a futex wait on the waiter's own
//     word.
//
// Misuse (unlocking what this thread does not hold, downgrading without the
// write side) is undefined behaviour in release builds; debug builds abort
// with a message naming the lock, its class and the thread.
// A read lock must be released by the thread that took it.
//
// Lifetime: a releasing thread may still touch the semaphore (its wait
// queue) after other threads have taken it since, and even released it
// again: unlock() lets the lock go before it wakes the queue, so that a
// stealer need not wait.  So taking and releasing the lock is no barrier
// before freeing it: memory holding a semaphore may be freed only once
// every thread that may be inside unlock()/unlock_shared()/downgrade() on
// it has returned.  The users guarantee it: per-VMA locks keep their VMA
// alive with RCU across the release (vma_end_read) and free VMAs after a
// grace period; an anon_vma's and a file's locks are released by threads
// holding a reference to the object; the mmap_lock lives as long as its
// space.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "sync/lockdep.h"
#include "sync/spinlock.h"

namespace vmspace {

class RwSemaphore {
 public:
  explicit RwSemaphore(LockClass cls = LockClass::none) : cls_(cls) {}
  RwSemaphore(const RwSemaphore&) = delete;
  RwSemaphore& operator=(const RwSemaphore&) = delete;
  ~RwSemaphore() = default;

  // --- write side ---------------------------------------------------------
  void lock(unsigned subclass = 0) {
    lockdep::acquire(this, cls_, lockdep::Mode::exclusive, subclass, /*trylock=*/false);
    std::uint64_t expected = 0;
    // Acquire pairs with the release in unlock()/unlock_shared()/grant().
    if (!state_.compare_exchange_strong(expected, kWriter, std::memory_order_acquire,
                                        std::memory_order_relaxed))
      lock_slow();
    set_owner();
  }

  [[nodiscard]] bool try_lock() {
    std::uint64_t expected = 0;
    if (state_.load(std::memory_order_relaxed) != 0 ||
        !state_.compare_exchange_strong(expected, kWriter, std::memory_order_acquire,
                                        std::memory_order_relaxed))
      return false;
    lockdep::acquire(this, cls_, lockdep::Mode::exclusive, 0, /*trylock=*/true);
    set_owner();
    return true;
  }

  void unlock() {
    check_unlock();
    lockdep::release(this);
    std::uint64_t expected = kWriter;
    // Release pairs with the acquire of the next holder.
    if (!state_.compare_exchange_strong(expected, 0, std::memory_order_release,
                                        std::memory_order_relaxed))
      unlock_slow();
  }

  // Write -> read, admitting the readers at the head of the queue but no
  // writer.  The caller then holds the lock for read.
  void downgrade();

  // --- read side ----------------------------------------------------------
  void lock_shared(unsigned subclass = 0) {
    lockdep::acquire(this, cls_, lockdep::Mode::shared, subclass, /*trylock=*/false);
    if (!read_fast()) lock_shared_slow();
  }

  [[nodiscard]] bool try_lock_shared() {
    if (!read_fast()) return false;
    lockdep::acquire(this, cls_, lockdep::Mode::shared, 0, /*trylock=*/true);
    return true;
  }

  void unlock_shared() {
    if constexpr (lockdep::enabled) {
      if (!lockdep::held(this) || lockdep::held_exclusive(this))
        lockdep::fail(this, cls_, "RwSemaphore::unlock_shared: this thread does not hold it for read");
      lockdep::release(this);
    }
    // Release pairs with the acquire of the next holder (a stealer's CAS
    // or grant()'s).
    std::uint64_t old = state_.fetch_sub(kReader, std::memory_order_release);
    // The last holder leaving a queue behind wakes (or grants to) its head.
    if (__builtin_expect(((old - kReader) & ~kHandoff) == kWaiters, 0)) release_wake();
  }

  // --- assertions (real checks in debug builds, no-ops in release) --------
  void assert_write_locked() const;
  void assert_locked() const;  // read or write, by this thread

  // --- introspection (racy; for tests, statistics, assertions) ------------
  bool is_write_locked() const { return state_.load(std::memory_order_relaxed) & kWriter; }
  bool is_locked() const { return state_.load(std::memory_order_relaxed) & kHolders; }
  // A waiter has waited kHandoffAfter: nobody may steal (racy; for tests).
  bool handoff_pending() const { return state_.load(std::memory_order_relaxed) & kHandoff; }
  bool has_waiters() const { return state_.load(std::memory_order_relaxed) & kWaiters; }
  std::uint64_t reader_count() const { return state_.load(std::memory_order_relaxed) / kReader; }
  LockClass lock_class() const { return cls_; }
  // Number of queued threads (takes the internal wait lock; for tests).
  std::size_t waiter_count();

  // How long the head of a queue waits before it may set the hand-off bit
  // (every RwSemaphore; the kernel's RWSEM_WAIT_TIMEOUT is 4 ms).
  static constexpr std::chrono::nanoseconds kHandoffAfter = std::chrono::milliseconds(1);
  // --- test hooks (process-wide; not for production use) ------------------
  // Replace kHandoffAfter (negative: restore it).
  static void set_handoff_after_for_test(std::chrono::nanoseconds d);
  // Called by a woken head, on its own thread, just before it retries to
  // take the lock (nullptr: none).  Lets a test stop it there.
  static void set_retry_hook_for_test(void (*hook)(RwSemaphore*));

 private:
  // state_ bit layout.  All legal values:
  //   0                      free, nobody queued
  //   kWriter                write-locked
  //   n * kReader            read-locked by n threads
  //   ... | kWaiters         same, with a non-empty wait queue
  //   ... | kWaiters | kHandoff
  //                          same, and the head has waited too long: no
  //                          stealing, the next release grants to it
  //   kWaiters [| kHandoff]  free but queued: between a release and the
  //                          woken head's retry (a writer in lock()'s
  //                          slow path may steal it), or the grant (with
  //                          kHandoff)
  static constexpr std::uint64_t kWriter = 1;
  static constexpr std::uint64_t kWaiters = 2;  // set iff wait queue non-empty
  static constexpr std::uint64_t kHandoff = 4;  // only with kWaiters
  static constexpr std::uint64_t kReader = 1u << 8;
  static constexpr std::uint64_t kHolders = ~(kWaiters | kHandoff);

  struct Waiter;

  bool read_fast() {
    std::uint64_t s = state_.load(std::memory_order_relaxed);
    while (!(s & (kWriter | kWaiters))) {
      // Acquire pairs with the release in unlock()/downgrade().
      if (state_.compare_exchange_weak(s, s + kReader, std::memory_order_acquire,
                                       std::memory_order_relaxed))
        return true;
    }
    return false;
  }

  void lock_slow();
  void lock_shared_slow();
  void unlock_slow();
  void release_wake();
  Waiter* grant();  // requires wait_lock_; returns the new owners for wake()
  static void wake(Waiter* chain, const Waiter* self = nullptr);  // without wait_lock_
  void enqueue_and_wait(Waiter* w);
  bool retry(Waiter* w);
  void check_unlock() const;
  void set_owner();

  // Lock word; see the table above.  Changed only by atomic RMW.  kWaiters
  // and kHandoff are set and cleared only under wait_lock_.
  std::atomic<std::uint64_t> state_{0};
  // Protects head_/tail_.  Internal leaf lock, not order-checked.
  SpinLock wait_lock_{LockClass::none};
  Waiter* head_ = nullptr;  // wait_lock_
  Waiter* tail_ = nullptr;  // wait_lock_
  LockClass cls_;
#if defined(VMSPACE_DEBUG_CHECKS)
  // Thread id of the write-side holder, 0 if none.  Written by the holder
  // only; read (relaxed) by assertions and error messages.
  std::atomic<int> owner_{0};
#endif
};

}  // namespace vmspace
