// SPDX-License-Identifier: MIT
// range_writer.cpp - per_vma_range: the thread-local holds of an mm's
// RangeLock, and the end of a writer (range_writer.h).
#include "mm/range_writer.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "mm/vma.h"
#include "sync/lockdep.h"
#include "sync/rcu.h"
#include "sync/tls.h"

namespace vmspace::mm {

namespace {

// A thread holds requests on at most two mms at once (fork: the parent's,
// then the child's); two more slots leave room for embedders that lock two
// spaces of their own (each through its own call, never nested in ours).
constexpr unsigned kHolds = 4;

// Writers' sequences come from one process-wide counter, in blocks of
// kSeqBlock per thread: S only has to be odd, never kVmaUnlockedSeq, and
// differ from every other live writer's S (invariant R1), and a block
// drawn once per kSeqBlock writers keeps the counter's line off the
// per-operation path (two writers on two CPUs used to bounce it on every
// change).  Relaxed: the values are all that matters.
constexpr std::uint64_t kSeqBlock = 64;
std::atomic<std::uint64_t> g_range_seq{1};

// One thread's state: its holds and its block of sequences.  Allocated on
// the thread's first hold: the library's TLS block must stay small
// (sync/tls.h: a process that dlopens libvmspace.so must find room for
// all of it in glibc's static TLS reserve).  Thread-private.
struct ThreadHolds {
  RangeHold holds[kHolds];
  std::uint64_t seq_next = 0;  // next S of this thread's block (odd)
  std::uint64_t seq_end = 0;   // end of the block; empty when equal
};
thread_local std::unique_ptr<ThreadHolds> tls_holds;

[[noreturn]] void die(const MmStruct* mm, const char* msg) {
  std::fprintf(stderr, "vmspace: per_vma_range: %s (mm %p)\n", msg, static_cast<const void*>(mm));
  std::abort();
}

RangeHold* claim(MmStruct* mm) {
  if (tls_holds == nullptr) tls_holds = std::make_unique<ThreadHolds>();
  RangeHold* free = nullptr;
  for (RangeHold& h : tls_holds->holds) {
    if (h.mm == mm) die(mm, "a thread asked twice for the range lock of one space (recursion)");
    if (h.mm == nullptr && free == nullptr) free = &h;
  }
  if (free == nullptr) die(mm, "a thread holds the range locks of too many spaces at once");
  return free;
}

// The writer ends: every VMA it stamped becomes unlocked, and each it
// removed is queued for freeing right after its own unlock store.  Runs
// before the range is released or downgraded (section 4 of
// docs/range-writers.md: a later writer of the range may stamp the same
// VMA, and relink it, as soon as the range is free).
void end_writer(RangeHold* h) {
  for (Vma* v = h->locked; v != nullptr;) {
    // Both read before the store: for a VMA that stays, the store is our
    // last access to it.
    Vma* const next = v->list_next;
    const bool removed = v->writer_free;
    // Release: pairs with the acquire re-check in vma_start_read(): a
    // reader that sees "unlocked" sees every change this writer made.
    v->vm_lock_seq.store(kVmaUnlockedSeq, std::memory_order_release);
    if (removed) vm_area_free_now(v);  // reuses list_next (the batch link)
    v = next;
  }
  h->locked = nullptr;
  h->seq = kVmaUnlockedSeq;
  h->checked = {0, 0};
}

// S: odd, never kVmaUnlockedSeq (UINT64_MAX, odd too), not in use by
// any other writer (each block belongs to one thread, and a thread's
// writers on different mms draw different values from it).
std::uint64_t next_seq() {
  ThreadHolds& t = *tls_holds;  // claim() made it
  for (;;) {
    if (t.seq_next == t.seq_end) {
      t.seq_next = g_range_seq.fetch_add(2 * kSeqBlock, std::memory_order_relaxed);
      t.seq_end = t.seq_next + 2 * kSeqBlock;
    }
    const std::uint64_t s = t.seq_next;
    t.seq_next += 2;
    if (s != kVmaUnlockedSeq) return s;
  }
}

void begin(MmStruct* mm, RangeHold* h, RangeLock::Mode mode) {
  h->mm = mm;
  if (mode == RangeLock::Mode::write) {
    h->seq = next_seq();
  }
}

}  // namespace

RangeHold* range_hold(const MmStruct* mm) {
  ThreadHolds* t = tls_holds.get();
  if (t == nullptr) return nullptr;
  for (RangeHold& h : t->holds)
    if (h.mm == mm) return &h;
  return nullptr;
}

RangeHold* range_writer(const MmStruct* mm) {
  RangeHold* h = range_hold(mm);
  if (h == nullptr || h->seq == kVmaUnlockedSeq) die(mm, "range lock expected to be write-locked by this thread (VMA write locks need it)");
  return h;
}

void range_lock_whole(MmStruct* mm, RangeLock::Mode mode, unsigned subclass) {
  RangeHold* h = claim(mm);
  h->req.set(RangeLock::kWhole, mode);
  mm->range_lock.lock(h->req, subclass);
  begin(mm, h, mode);
}

bool range_trylock_whole(MmStruct* mm, RangeLock::Mode mode) {
  RangeHold* h = claim(mm);
  h->req.set(RangeLock::kWhole, mode);
  if (!mm->range_lock.try_lock(h->req)) return false;
  begin(mm, h, mode);
  return true;
}

void range_unlock(MmStruct* mm) {
  RangeHold* h = range_hold(mm);
  if (h == nullptr) die(mm, "unlock without a range lock held");
  if (h->seq != kVmaUnlockedSeq) end_writer(h);
  if (h->reserved) {
    mm->events.count(h->whole() ? VmEvent::range_write_whole : VmEvent::range_write_ranged);
    // Release: our map_count changes happen before the next admission
    // that reads this reservation gone (pairs with its acq_rel fetch_add).
    mm->map_count_reserved.fetch_sub(kRangedMapSlack, std::memory_order_release);
    h->reserved = false;
  }
  h->mm = nullptr;
  mm->range_lock.unlock(h->req);
}

// ---- ranged writers ------------------------------------------------------
//
// map_count.  A ranged writer's checks against max_map_count must give
// what they would give in some serial order of the writers.  Each ranged
// change raises map_count by less than kRangedMapSlack above its value
// when the change began, at any moment, and its net effect is less than
// that too.  A writer is admitted - once its range is granted, so that
// no whole-space writer (they ignore reservations) can run until it ends -
// only if
//     map_count + (every admitted writer's slack, its own included)
//       <= max_map_count - 1,
// read after its own reservation (an RMW on one word: of two admissions,
// the later one sees the earlier's reservation; acquire: it sees the
// map_count changes of every writer whose reservation is gone).  From one
// admission to the next, map_count + reservations only falls (a writer
// that ends adds less than the slack it gives back), and map_count stays
// below it; so while ranged writers run, map_count <= max_map_count - 1
// and every check they make ("map_count >= max_map_count", "map_count >
// max_map_count") fails, as it fails in every serial order of them.  A
// writer not admitted takes the whole space: it runs alone, and exact.

RangeLock::Interval range_needed(MmStruct* mm, std::uint64_t start, std::uint64_t end) {
  constexpr std::uint64_t kGranule = std::uint64_t{2} << 20;  // a PTE table's span
  const std::uint64_t pad = mm->cfg.stack_guard_gap + kPageSize;
  std::uint64_t lo = start > pad ? (start - pad) & ~(kGranule - 1) : 0;
  std::uint64_t hi = end + pad;
  hi = hi < end || hi + kGranule - 1 < hi ? RangeLock::kWhole.hi : (hi + kGranule - 1) & ~(kGranule - 1);
  // The whole extent of every VMA it meets, from one snapshot (one root
  // load: tree entries only, no VMA field is read without a lock).  Only
  // the first and the last entry meeting [lo, hi) can reach beyond it.
  rcu::ReadGuard rcu;
  if (const auto e = mm->mm_mt.edges(lo, hi)) {
    lo = std::min(lo, e->first.start);
    hi = std::max(hi, e->second.end);
  }
  return {lo, hi};
}

bool range_write_lock(MmStruct* mm, std::uint64_t start, std::uint64_t end) {
  RangeHold* h = claim(mm);
  // Section 3.3: the snapshot's hull, then the hull again under the lock.
  // Granted, nobody else changes a VMA meeting L, so K is stable; if it
  // is not inside L, a writer changed our neighbourhood between the two:
  // retry wider.  Each retry follows a completed change; three, then the
  // whole space.
  //
  // The usual case needs no second look: the snapshot and a try_lock in
  // one read-side section.  If the tree's root is the same after the grant
  // as before the snapshot, no change was published in between (the root
  // cannot be freed and reused inside the section: RangeTree::snapshot),
  // so the hull under the lock is the snapshot's.  A change that could
  // move our hull was made under a range that meets it, released before
  // our grant: the grant (acquire, pairs with that unlock's release)
  // makes its commit visible to the second root load.
  RangeLock::Interval l;
  bool held = false, stable = false;
  {
    rcu::ReadGuard rcu;
    const std::uintptr_t before = mm->mm_mt.snapshot();
    l = range_needed(mm, start, end);
    h->req.set(l, RangeLock::Mode::write);
    held = mm->range_lock.try_lock(h->req);
    stable = held && mm->mm_mt.snapshot() == before;
  }
  for (int tries = 0; !stable; ++tries) {
    if (!held) {
      if (tries == 3) l = RangeLock::kWhole;
      h->req.set(l, RangeLock::Mode::write);
      mm->range_lock.lock(h->req);
    }
    held = false;  // a retry locks again
    if (h->whole()) break;
    const RangeLock::Interval k = range_needed(mm, start, end);
    if (k.lo >= l.lo && k.hi <= l.hi) break;
    mm->range_lock.unlock(h->req);
    mm->events.count(VmEvent::range_lock_retry);
    l = {std::min(l.lo, k.lo), std::max(l.hi, k.hi)};
  }
  if (!h->whole()) {
    // Admission (see "map_count" above), once granted: from here until we
    // end, no whole-space writer runs (they conflict with our range), so
    // only ranged writers, all admitted the same way, change map_count.
    // Acq_rel: see the comment above.
    const int reserved =
        mm->map_count_reserved.fetch_add(kRangedMapSlack, std::memory_order_acq_rel) + kRangedMapSlack;
    if (mm->map_count.load(std::memory_order_relaxed) + reserved > mm->max_map_count - 1) {
      mm->map_count_reserved.fetch_sub(kRangedMapSlack, std::memory_order_release);
      mm->range_lock.unlock(h->req);
      range_lock_whole(mm, RangeLock::Mode::write);
      mm->events.count(VmEvent::range_write_whole);
      return false;
    }
    h->reserved = true;
    h->checked = {start, end};
  } else {
    mm->events.count(VmEvent::range_write_whole);
  }
  begin(mm, h, RangeLock::Mode::write);
  return !h->whole();
}

bool range_trylock_read(MmStruct* mm, std::uint64_t start, std::uint64_t end) {
  RangeHold* h = claim(mm);
  const RangeLock::Interval l = range_needed(mm, start, end);
  h->req.set(l, RangeLock::Mode::read);
  if (!mm->range_lock.try_lock(h->req)) return false;
  // As a writer's: stable once granted; a neighbour that changed between
  // the snapshot and the grant makes the try fail (the caller retries).
  const RangeLock::Interval k = range_needed(mm, start, end);
  if (k.lo < l.lo || k.hi > l.hi) {
    mm->range_lock.unlock(h->req);
    return false;
  }
  begin(mm, h, RangeLock::Mode::read);
  return true;
}

void range_write_widen(MmStruct* mm) {
  RangeHold* h = range_writer(mm);
  if (h->whole()) return;
  if (h->reserved) {
    mm->map_count_reserved.fetch_sub(kRangedMapSlack, std::memory_order_release);
    h->reserved = false;
  }
  range_unlock(mm);
  range_lock_whole(mm, RangeLock::Mode::write);
  mm->events.count(VmEvent::range_write_whole);
}

bool range_covers_change(MmStruct* mm, std::uint64_t start, std::uint64_t end) {
  const RangeHold* h = range_hold(mm);
  if (mm->mode != LockMode::per_vma_range || h == nullptr || h->whole()) return true;
  if (h->checked.lo <= start && end <= h->checked.hi) return true;  // MAP_FIXED: what we locked for
  const RangeLock::Interval need = range_needed(mm, start, end);
  return range_held_covers(mm, need.lo, need.hi);
}

bool range_has_vma_with(MmStruct* mm, std::uint64_t start, std::uint64_t end, vm_flags_t flags) {
  // locked_vm counts the pages of every VM_LOCKED VMA (and may count more:
  // mremap's MREMAP_DONTUNMAP source), and only whole-space writers change
  // it, so under any write hold it is stable and 0 means none.
  if (flags == VM_LOCKED && mm->locked_vm == 0) return false;
  for (const Vma* v = find_vma(mm, start); v != nullptr && v->vm_start < end; v = find_vma(mm, v->vm_end))
    if (v->vm_flags & flags) return true;
  return false;
}

bool range_held_covers(const MmStruct* mm, std::uint64_t start, std::uint64_t end) {
  if (mm->mode != LockMode::per_vma_range) return true;
  const RangeHold* h = range_hold(mm);
  if (h == nullptr) return false;
  const RangeLock::Interval l = h->range();
  return h->whole() || (l.lo <= start && end <= l.hi);
}

void range_downgrade(MmStruct* mm) {
  RangeHold* h = range_writer(mm);
  end_writer(h);
  mm->range_lock.downgrade(h->req);
}

void range_assert_locked(const MmStruct* mm) {
  if constexpr (lockdep::enabled) {
    const RangeHold* h = range_hold(mm);
    if (h == nullptr) die(mm, "range lock expected to be locked by this thread");
    mm->range_lock.assert_locked(h->req);
  }
}

void range_assert_write_locked(const MmStruct* mm) {
  if constexpr (lockdep::enabled) {
    const RangeHold* h = range_hold(mm);
    if (h == nullptr || h->seq == kVmaUnlockedSeq)
      die(mm, "range lock expected to be write-locked by this thread");
    mm->range_lock.assert_write_locked(h->req);
  }
}

}  // namespace vmspace::mm
