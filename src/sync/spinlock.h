// SPDX-License-Identifier: MIT
// spinlock.h - test-and-test-and-set spinlock for short critical sections
// (page-table locks).  Never sleeps on a futex; after a bounded spin it
// yields the CPU so that a preempted holder on an oversubscribed machine can
// run.  Not recursive.  Unlocking a lock this thread does not hold is
// undefined in release builds and aborts (naming lock and thread) in debug
// builds.
#pragma once

#include <sched.h>

#include <atomic>

#include "sync/futex.h"
#include "sync/lockdep.h"

namespace vmspace {

class SpinLock {
 public:
  explicit SpinLock(LockClass cls = LockClass::none) : cls_(cls) {}
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void lock(unsigned subclass = 0) {
    lockdep::acquire(this, cls_, lockdep::Mode::exclusive, subclass, /*trylock=*/false);
    // Acquire pairs with the release in unlock() of the previous holder.
    if (__builtin_expect(locked_.exchange(true, std::memory_order_acquire), 0)) lock_slow();
    count_held(1);
  }

  [[nodiscard]] bool try_lock() {
    if (locked_.load(std::memory_order_relaxed) ||
        locked_.exchange(true, std::memory_order_acquire))
      return false;
    lockdep::acquire(this, cls_, lockdep::Mode::exclusive, 0, /*trylock=*/true);
    count_held(1);
    return true;
  }

  void unlock() {
    if constexpr (lockdep::enabled) {
      if (!lockdep::held(this)) lockdep::fail(this, cls_, "SpinLock::unlock: not held by this thread");
      lockdep::release(this);
    }
    count_held(-1);
    locked_.store(false, std::memory_order_release);  // pairs with lock()'s acquire
  }

  // Debug builds: abort unless this thread holds the lock.
  void assert_locked() const {
    if constexpr (lockdep::enabled)
      if (!lockdep::held(this)) lockdep::fail(this, cls_, "SpinLock: expected to be held");
  }

  bool is_locked() const { return locked_.load(std::memory_order_relaxed); }
  LockClass lock_class() const { return cls_; }

 private:
  // Debug builds: futex.h's per-thread count of spinlocks held.
  static void count_held(int delta) {
#if defined(VMSPACE_DEBUG_CHECKS)
    spinlocks_held += static_cast<unsigned>(delta);
#else
    (void)delta;
#endif
  }

  void lock_slow() {
    unsigned spins = 0;
    do {
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins < 1024)
          cpu_relax();
        else
          sched_yield();
      }
    } while (locked_.exchange(true, std::memory_order_acquire));
  }

  std::atomic<bool> locked_{false};
  LockClass cls_;
};

}  // namespace vmspace
