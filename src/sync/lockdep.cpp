// SPDX-License-Identifier: MIT
#include "sync/lockdep.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace vmspace::lockdep {

int thread_id() {
  static thread_local int tid = static_cast<int>(::syscall(SYS_gettid));
  return tid;
}

#if defined(VMSPACE_DEBUG_CHECKS)
namespace {

struct Held {
  const void* lock;
  LockClass cls;
  Mode mode;
  unsigned subclass;
  bool trylock;
};

// Deep enough for any legal chain in lock_order.h plus same-class subclass
// nesting (fork, mremap); overflowing it is itself a bug worth reporting.
constexpr unsigned kMaxHeld = 48;

struct HeldStack {
  Held entries[kMaxHeld];
  unsigned n = 0;
};

thread_local HeldStack held_locks;

const char* mode_name(Mode m) { return m == Mode::exclusive ? "write" : "read"; }

void print_held() {
  const HeldStack& hs = held_locks;
  std::fprintf(stderr, "  thread %d holds %u lock(s):\n", thread_id(), hs.n);
  for (unsigned i = 0; i < hs.n; ++i) {
    const Held& h = hs.entries[i];
    std::fprintf(stderr, "    #%u %s/%u %p (%s%s)\n", i, lock_class_name(h.cls), h.subclass,
                 h.lock, mode_name(h.mode), h.trylock ? ", trylock" : "");
  }
}

[[noreturn]] void report(const char* kind, const void* lock, LockClass cls, unsigned subclass,
                         const Held* other) {
  std::fprintf(stderr, "vmspace lockdep: %s\n", kind);
  std::fprintf(stderr, "  thread %d acquiring %s/%u %p", thread_id(), lock_class_name(cls),
               subclass, lock);
  if (other != nullptr)
    std::fprintf(stderr, " while holding %s/%u %p", lock_class_name(other->cls), other->subclass,
                 other->lock);
  std::fputc('\n', stderr);
  print_held();
  std::fflush(stderr);
  std::abort();
}

int find(const void* lock) {
  const HeldStack& hs = held_locks;
  for (int i = static_cast<int>(hs.n) - 1; i >= 0; --i)
    if (hs.entries[i].lock == lock) return i;
  return -1;
}

}  // namespace

void acquire(const void* lock, LockClass cls, Mode mode, unsigned subclass, bool trylock) {
  HeldStack& hs = held_locks;
  if (cls != LockClass::none) {
    for (unsigned i = 0; i < hs.n; ++i) {
      const Held& h = hs.entries[i];
      if (h.lock == lock)
        report("recursive locking: this thread already holds the lock", lock, cls, subclass, &h);
      if (trylock || h.cls == LockClass::none) continue;
      if (h.cls == cls && h.subclass == subclass)
        report("recursive locking of one lock class (name a subclass to nest)", lock, cls,
               subclass, &h);
      if (h.cls > cls) report("lock order inversion (see src/sync/lock_order.h)", lock, cls,
                              subclass, &h);
    }
  } else if (find(lock) >= 0) {
    report("recursive locking: this thread already holds the lock", lock, cls, subclass,
           &hs.entries[find(lock)]);
  }
  if (hs.n == kMaxHeld) report("too many locks held", lock, cls, subclass, nullptr);
  hs.entries[hs.n++] = Held{lock, cls, mode, subclass, trylock};
}

void release(const void* lock) {
  HeldStack& hs = held_locks;
  int i = find(lock);
  if (i < 0) fail(lock, LockClass::none, "release of a lock this thread does not hold");
  for (unsigned j = static_cast<unsigned>(i); j + 1 < hs.n; ++j) hs.entries[j] = hs.entries[j + 1];
  --hs.n;
}

void downgrade(const void* lock) {
  int i = find(lock);
  if (i < 0 || held_locks.entries[i].mode != Mode::exclusive)
    fail(lock, i < 0 ? LockClass::none : held_locks.entries[i].cls,
         "downgrade of a lock this thread does not hold for write");
  held_locks.entries[i].mode = Mode::shared;
}

bool held(const void* lock) { return find(lock) >= 0; }

bool held_exclusive(const void* lock) {
  int i = find(lock);
  return i >= 0 && held_locks.entries[i].mode == Mode::exclusive;
}

unsigned depth() { return held_locks.n; }
#endif

void fail(const void* lock, LockClass cls, const char* msg) {
  std::fprintf(stderr, "vmspace lockdep: %s\n  lock %s %p, thread %d\n", msg, lock_class_name(cls),
               lock, thread_id());
#if defined(VMSPACE_DEBUG_CHECKS)
  print_held();
#endif
  std::fflush(stderr);
  std::abort();
}

}  // namespace vmspace::lockdep
