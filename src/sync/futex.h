// SPDX-License-Identifier: MIT
// futex.h - the two futex calls the sleeping locks need, and cpu_relax().
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstdint>

namespace vmspace {

inline void cpu_relax() { __builtin_ia32_pause(); }

// Debug builds: how many SpinLocks this thread holds (spinlock.h keeps the
// count).  futex_wake() refuses to run while it is not 0: a wake-up may
// hand this CPU to the woken thread at once (the scheduler's wake-up
// preemption), and a thread preempted inside a spinlock stalls every
// other thread spinning on it until its next time slice.
#if defined(VMSPACE_DEBUG_CHECKS)
inline thread_local unsigned spinlocks_held = 0;
#endif

// Sleep while *word == expected.  Returns on wake-up, on a value mismatch,
// or spuriously: callers always re-check their condition in a loop.
inline void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected) {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected,
            nullptr, nullptr, 0);
}

// Wake up to n sleepers on `word`.  Only the address is used: calling this
// after the word's owner may already have returned (and reused the memory)
// is harmless; at worst it causes a spurious wake-up elsewhere.
inline void futex_wake(std::atomic<std::uint32_t>* word, int n = INT_MAX) {
#if defined(VMSPACE_DEBUG_CHECKS)
  if (spinlocks_held != 0) {
    std::fputs("vmspace: futex_wake() while holding a SpinLock (wake after unlocking)\n", stderr);
    std::abort();
  }
#endif
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE_PRIVATE, n, nullptr,
            nullptr, 0);
}

}  // namespace vmspace
