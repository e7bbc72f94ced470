// SPDX-License-Identifier: MIT
#include "sync/rcu.h"

#include <cstdio>
#include <cstdlib>

#include <urcu/call-rcu.h>

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define VMSPACE_TSAN 1
#endif

namespace vmspace::rcu {
namespace detail {

VMSPACE_TLS_FAST thread_local bool registered = false;
VMSPACE_TLS_FAST thread_local unsigned nesting = 0;

namespace {

// Unregisters the thread from liburcu when the thread exits.  Created only
// on the registration slow path, so the read-side fast path never pays for
// a thread_local with a destructor.
struct Registration {
  ~Registration() {
    if (registered) {
      // Pending callbacks queued by this thread live on liburcu's shared
      // call_rcu worker, not on this thread, so unregistering is safe.
      urcu_memb_unregister_thread();
      registered = false;
    }
  }
};

#ifdef VMSPACE_TSAN
// The happens-before anchor described in rcu.h.
char tsan_grace_period;
// Every callback releases this when it has run; barrier() acquires it, so
// what callbacks did (frees) happens before the code after barrier().
char tsan_callbacks_done;
#endif

}  // namespace

void register_slow() {
  static thread_local Registration reg;
  (void)&reg;  // odr-use: constructs reg, schedules its destructor
  urcu_memb_register_thread();
  registered = true;
}

#ifdef VMSPACE_TSAN
void tsan_reader_exit() { __tsan_release(&tsan_grace_period); }
#endif

namespace {

void tsan_grace_period_ended() {
#ifdef VMSPACE_TSAN
  __tsan_acquire(&tsan_grace_period);
#endif
}

void die_in_read_section(const char* what) {
  std::fprintf(stderr, "vmspace: rcu::%s() called inside an RCU read-side section\n", what);
  std::abort();
}

void trampoline(rcu_head* rh) {
  // Callbacks run on liburcu's call_rcu worker, which liburcu registered
  // itself; tell our fast path so a callback that uses RCU (rcu::call, a
  // read-side section) does not register the thread a second time.  (It
  // must not call synchronize() or barrier(): they would wait for the
  // worker itself.)
  registered = true;
  Head* h = caa_container_of(rh, Head, head);
#ifdef VMSPACE_TSAN
  __tsan_acquire(h);  // pairs with the release in call()
#endif
  tsan_grace_period_ended();
  h->func(h);
#ifdef VMSPACE_TSAN
  __tsan_release(&tsan_callbacks_done);  // pairs with the acquire in barrier()
#endif
}

}  // namespace
}  // namespace detail

void synchronize() {
  if (detail::nesting != 0) detail::die_in_read_section("synchronize");
  ensure_registered();
  urcu_memb_synchronize_rcu();
  detail::tsan_grace_period_ended();
}

void call(Head* h, void (*fn)(Head*)) {
  ensure_registered();  // liburcu's call_rcu() uses a read-side section
  h->func = fn;
#ifdef VMSPACE_TSAN
  __tsan_release(h);  // pairs with the acquire in trampoline()
#endif
  urcu_memb_call_rcu(&h->head, detail::trampoline);
}

void barrier() {
  if (detail::nesting != 0) detail::die_in_read_section("barrier");
  ensure_registered();
  urcu_memb_barrier();
  detail::tsan_grace_period_ended();
#ifdef VMSPACE_TSAN
  __tsan_acquire(&detail::tsan_callbacks_done);  // pairs with the release in trampoline()
#endif
}

}  // namespace vmspace::rcu
