// SPDX-License-Identifier: MIT
// lockdep.h - the lock-order checker and lock-ownership tracking.
//
// Compiled in when VMSPACE_DEBUG_CHECKS is set (debug, asan and tsan
// presets); in release builds every hook is an empty inline function.
//
// Each thread keeps a small stack of the locks it holds: (lock address,
// class, subclass, mode).  On a blocking acquire of class C the checker
// aborts when the thread holds any lock whose class comes after C in
// lock_order.h ("inversion"), or holds a lock of class C with the same
// subclass ("recursion").  Try-locks are never refused (they cannot
// deadlock) but are recorded, so later blocking acquires are checked
// against them.  A release of a lock the thread does not hold aborts.
//
// Messages name both classes, the lock addresses and the thread, and list
// every lock the thread holds.
#pragma once

#include <cstdint>

#include "sync/lock_order.h"

namespace vmspace::lockdep {

enum class Mode : std::uint8_t { shared, exclusive };

#if defined(VMSPACE_DEBUG_CHECKS)
inline constexpr bool enabled = true;

// Record an acquisition that is about to block (checked) or a successful
// try-lock (recorded only).  Call before blocking, so a deadlock is
// reported instead of hanging.
void acquire(const void* lock, LockClass cls, Mode mode, unsigned subclass, bool trylock);
// Record a release.  Aborts if the thread does not hold `lock`.
void release(const void* lock);
// Change the recorded mode of a held lock (rwsem downgrade).  Aborts if
// not held in exclusive mode.
void downgrade(const void* lock);
// Is `lock` held by this thread (in any mode / exclusive)?
bool held(const void* lock);
bool held_exclusive(const void* lock);
// Number of locks this thread holds (tests; asserting "no locks held").
unsigned depth();
#else
inline constexpr bool enabled = false;
inline void acquire(const void*, LockClass, Mode, unsigned, bool) {}
inline void release(const void*) {}
inline void downgrade(const void*) {}
inline bool held(const void*) { return true; }
inline bool held_exclusive(const void*) { return true; }
inline unsigned depth() { return 0; }
#endif

// Abort naming the lock, its class, the thread, and (debug builds) the
// thread's held locks.
[[noreturn]] void fail(const void* lock, LockClass cls, const char* msg);

// Small numeric id of the calling thread (the kernel tid), for messages.
int thread_id();

}  // namespace vmspace::lockdep
