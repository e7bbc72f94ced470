// SPDX-License-Identifier: MIT
// rcu.h - read-copy-update on liburcu's membarrier ("memb") flavor.
//
// What vmspace needs from RCU, and nothing more:
//
//   rcu::ReadGuard g;          read-side critical section (nests; cheap)
//   rcu::synchronize();        wait until every pre-existing reader has left
//   rcu::call(head, fn);       run fn(head) after a grace period
//   rcu::defer_delete(p);      delete p after a grace period
//   rcu::barrier();            wait until every queued callback has run
//
// Threads register with liburcu on first use and unregister at thread exit,
// so library users never call rcu_register_thread() themselves.
//
// Rules (liburcu's, restated):
//   - synchronize() and barrier() must not be called inside a read-side
//     section (they would wait for themselves); debug builds abort if so.
//   - Callbacks run on liburcu's call_rcu worker thread, in no particular
//     order relative to other threads; they must not block for long.
//   - A pointer read under a ReadGuard stays valid until the guard ends if
//     every free of its target goes through call()/defer_delete()/
//     synchronize().
//
// ThreadSanitizer cannot see liburcu's grace-period machinery (membarrier
// and uninstrumented library code), so tsan builds add explicit
// happens-before edges: every read_unlock() releases a global sync object
// and every grace-period wait (synchronize, callback invocation) acquires
// it.  This is an over-approximation (it also orders readers that started
// after the grace period) but it never hides a use-after-free of memory
// freed before its readers ended, which is the race RCU exists to prevent.
#pragma once

#include <cstddef>
#include <utility>

#include "sync/tls.h"

// Inline read-side fast paths from the liburcu headers, except under tsan:
// liburcu's inline uatomic code is invisible to tsan's atomics model and
// would be reported as racing with itself, so tsan builds call the
// (uninstrumented) library functions instead.
#if !defined(_LGPL_SOURCE) && !defined(__SANITIZE_THREAD__)
#define _LGPL_SOURCE 1
#endif
#include <urcu/urcu-memb.h>

namespace vmspace::rcu {

namespace detail {
// Per-thread state.  `registered` is a trivially-destructible thread_local
// so the fast path costs one TLS load; the unregistering destructor lives in
// a separate object created on the slow path (rcu.cpp).
VMSPACE_TLS_FAST extern thread_local bool registered;
VMSPACE_TLS_FAST extern thread_local unsigned nesting;
void register_slow();
#if defined(__SANITIZE_THREAD__)
void tsan_reader_exit();  // the happens-before edge described above
#else
inline void tsan_reader_exit() {}
#endif
}  // namespace detail

inline void ensure_registered() {
  if (__builtin_expect(!detail::registered, 0)) detail::register_slow();
}

inline void read_lock() {
  ensure_registered();
  ++detail::nesting;
  urcu_memb_read_lock();
}

inline void read_unlock() {
  detail::tsan_reader_exit();
  urcu_memb_read_unlock();
  --detail::nesting;
}

// True while this thread is inside a read-side section.  For assertions.
inline bool in_read_section() { return detail::nesting != 0; }

// RAII read-side critical section.
class ReadGuard {
 public:
  ReadGuard() { read_lock(); }
  ~ReadGuard() { read_unlock(); }
  ReadGuard(const ReadGuard&) = delete;
  ReadGuard& operator=(const ReadGuard&) = delete;
};

// Embed a Head in any object that is freed through call().
struct Head {
  rcu_head head;
  void (*func)(Head*);
};

// Wait for a full grace period.  Not inside a read-side section.
void synchronize();

// Queue fn(h) to run after a grace period.  Callable inside a read-side
// section.  `h` must stay valid until fn runs.
void call(Head* h, void (*fn)(Head*));

// Wait until every callback queued (by any thread) before this call has
// run.  Not inside a read-side section.  Use before process exit / in tests
// to drain deferred frees.
void barrier();

// delete p after a grace period.  Allocates one small node per call; hot
// paths embed a Head and use call() instead.
template <class T>
void defer_delete(T* p) {
  struct Node {
    Head h;
    T* obj;
  };
  if (p == nullptr) return;
  auto* n = new Node{{}, p};
  call(&n->h, [](Head* h) {
    auto* node = reinterpret_cast<Node*>(h);
    delete node->obj;
    delete node;
  });
}

}  // namespace vmspace::rcu
