// SPDX-License-Identifier: MIT
// rwsem.h - RwSemaphore: the reader/writer semaphore behind the mmap_lock
// (and the per-VMA lock in per_vma_rwsem mode).
//
// Semantics (the kernel rwsem's):
//   - Writer-preferring: once a writer waits, new readers queue behind it,
//     so a stream of page faults cannot starve mmap/munmap.
//   - FIFO hand-off: waiters are served in arrival order, and a releasing
//     holder hands the lock directly to the head of the queue (a writer, or
//     every queued reader at once), so readers are not starved by a stream
//     of writers either.
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
// queue) after the next owner has been handed the lock.  So the next owner
// must not free the memory holding the semaphore while a release may be in
// progress; per-VMA locks keep their VMA alive with RCU across the release
// (vma_end_read).
#pragma once

#include <atomic>
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
    // Release pairs with the acquire of the next writer (via grant()).
    std::uint64_t old = state_.fetch_sub(kReader, std::memory_order_release);
    if (__builtin_expect(old - kReader == kWaiters, 0)) wake_waiters();
  }

  // --- assertions (real checks in debug builds, no-ops in release) --------
  void assert_write_locked() const;
  void assert_locked() const;  // read or write, by this thread

  // --- introspection (racy; for tests, statistics, assertions) ------------
  bool is_write_locked() const { return state_.load(std::memory_order_relaxed) & kWriter; }
  bool is_locked() const { return state_.load(std::memory_order_relaxed) & ~kWaiters; }
  bool has_waiters() const { return state_.load(std::memory_order_relaxed) & kWaiters; }
  std::uint64_t reader_count() const { return state_.load(std::memory_order_relaxed) / kReader; }
  LockClass lock_class() const { return cls_; }
  // Number of queued threads (takes the internal wait lock; for tests).
  std::size_t waiter_count();

 private:
  // state_ bit layout.  All legal values:
  //   0                      free, nobody queued
  //   kWriter                write-locked
  //   n * kReader            read-locked by n threads
  //   ... | kWaiters         same, with a non-empty wait queue
  //   kWaiters               free but queued: transient, between the last
  //                          release and the hand-off (grant) that follows
  static constexpr std::uint64_t kWriter = 1;
  static constexpr std::uint64_t kWaiters = 2;  // set iff wait queue non-empty
  static constexpr std::uint64_t kReader = 1u << 8;

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
  void wake_waiters();
  Waiter* grant();  // requires wait_lock_; returns the new owners for wake()
  static void wake(Waiter* chain);  // without wait_lock_
  void enqueue_and_wait(Waiter* w, std::uint64_t s);
  void check_unlock() const;
  void set_owner();

  // Lock word; see the table above.  Changed only by atomic RMW.  kWaiters
  // is set and cleared only under wait_lock_.
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
