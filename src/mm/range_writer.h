// SPDX-License-Identifier: MIT
// range_writer.h - the per_vma_range mode's side of the mmap_lock: what a
// thread holds of an mm's RangeLock (docs/range-writers.md sections 2-4).
//
// In per_vma_range the mmap_lock functions of mmap_lock.h take requests on
// mm->range_lock instead of mm->mmap_lock: mmap_read_lock / mmap_write_lock
// ask for the whole space (exactly the mmap_lock, with FIFO fairness).  A
// thread holds at most one request per mm (fork: the parent's and the
// child's), recorded in a thread-local RangeHold.
//
// A write request is a WRITER: it draws its own odd sequence S (from its
// thread's block of a process-wide counter), stamps every VMA it
// write-locks with S (vma_start_write) and remembers them; when it ends
// (unlock or downgrade) it stores kVmaUnlockedSeq into each of them with
// release ordering - before the range is released, so that the next
// writer of the range cannot have its stamp erased by a late store - and
// only then frees the VMAs it removed.
// So a VMA is write-locked exactly when vm_lock_seq != kVmaUnlockedSeq,
// and two writers never share a stamp value that matters (invariant R1 of
// docs/range-writers.md section 4).
#pragma once

#include <cstdint>

#include "mm/mm_types.h"

namespace vmspace::mm {

// One thread's request on one mm's range_lock.  Thread-local: only the
// owning thread reads or writes it.
struct RangeHold {
  MmStruct* mm = nullptr;  // null: a free slot
  RangeLock::Request req{RangeLock::kWhole, RangeLock::Mode::read};
  // S while a write request is held; kVmaUnlockedSeq otherwise.
  std::uint64_t seq = kVmaUnlockedSeq;
  // VMAs stamped with S (each once), linked through Vma::list_next, to
  // unlock when the writer ends; those it removed meanwhile
  // (Vma::writer_free) are freed right after their unlock store, which
  // still writes to them.  Intrusive: neither stamping nor a free
  // allocates, so an out-of-memory condition cannot stop a change between
  // two VMAs.
  Vma* locked = nullptr;
  // A ranged writer (range_write_lock): kRangedMapSlack of
  // mm->map_count_reserved is ours until the writer ends.
  bool reserved = false;
  // A ranged writer: the change [lo, hi) whose neighbourhood's hull was
  // checked to lie inside L once granted (empty otherwise).  Stable while
  // held (no other writer changes what meets L), and the hull only grows
  // with the change, so a change inside it needs no second look
  // (range_covers_change).
  RangeLock::Interval checked{0, 0};

  // The locked interval L (the whole space for mmap_read/write_lock).
  RangeLock::Interval range() const { return req.interval(0); }
  bool whole() const { return req.interval(0).lo == 0 && req.interval(0).hi == RangeLock::kWhole.hi; }
};

// The most a ranged layout change (mmap, munmap, mprotect) raises
// map_count above its value when the change began, at any moment of it
// (MAP_FIXED inside one VMA: two splits and the new VMA before the middle
// goes), plus one.
inline constexpr int kRangedMapSlack = 4;

// This thread's hold on mm's range_lock, or nullptr.
RangeHold* range_hold(const MmStruct* mm);
// The write hold of this thread on mm; aborts if there is none.
RangeHold* range_writer(const MmStruct* mm);

// Whole-space requests (the mmap_lock's functions in this mode).
void range_lock_whole(MmStruct* mm, RangeLock::Mode mode, unsigned subclass = 0);
[[nodiscard]] bool range_trylock_whole(MmStruct* mm, RangeLock::Mode mode);
// End this thread's request: a writer first unlocks its VMAs and frees
// the ones it removed.
void range_unlock(MmStruct* mm);
// Write -> read: the VMA write locks end as in range_unlock.
void range_downgrade(MmStruct* mm);

// per_vma_range: lock for write what a change of [start, end) needs
// (docs/range-writers.md 3.2-3.3): L = the hull of the neighbourhood
// N(start, end) (padded by the stack guard gap and a page, rounded out to
// 2 MiB), widened to the whole extent of every VMA it meets, re-checked
// once granted and retried (wider) when a writer changed it meanwhile;
// after three tries, the whole space.  It also reserves map_count slack
// (kRangedMapSlack); when that would come within reach of
// max_map_count, it takes the whole space instead, where checks are exact
// as in the other modes.  Returns false when it took the whole space.
// The caller may give up a ranged hold with range_unlock() and take the
// whole space (mmap_write_lock) when what it finds under the lock needs
// more than the range (a locked VMA, a placement outside L).
bool range_write_lock(MmStruct* mm, std::uint64_t start, std::uint64_t end);

// per_vma_range: try to read-lock what a reader of the VMAs meeting
// [start, end) and their neighbours needs (the fault's anon_vma_prepare,
// which may reuse a neighbour's anon_vma), as a VMA read-lock holder may:
// never waits.
[[nodiscard]] bool range_trylock_read(MmStruct* mm, std::uint64_t start, std::uint64_t end);

// Trade this thread's ranged write hold for the whole space (the change
// found it needs more).  Everything the writer did so far is released
// first: call it before changing anything.
void range_write_widen(MmStruct* mm);

// Is the neighbourhood a change of [start, end) needs inside the range
// this thread holds (true for whole-space holds and other modes)?  A
// placement decided under a ranged hold checks its result with it.
bool range_covers_change(MmStruct* mm, std::uint64_t start, std::uint64_t end);

// Has a VMA meeting [start, end) any of `flags`?  Requires mmap W (a
// ranged hold covering the range).  VM_LOCKED alone is answered from
// mm->locked_vm when it is 0 (no VM_LOCKED VMA anywhere: only
// whole-space writers change it).
bool range_has_vma_with(MmStruct* mm, std::uint64_t start, std::uint64_t end, vm_flags_t flags);

// The interval a layout change of [start, end) must hold: the hull of its
// neighbourhood in the current tree (read under RCU).
RangeLock::Interval range_needed(MmStruct* mm, std::uint64_t start, std::uint64_t end);

// Does this thread's hold on mm (if any) cover [start, end)?  Always true
// outside per_vma_range and for whole-space holds.
bool range_held_covers(const MmStruct* mm, std::uint64_t start, std::uint64_t end);

// Debug builds: abort unless this thread holds a request on mm (for
// write).  Release builds: nothing.
void range_assert_locked(const MmStruct* mm);
void range_assert_write_locked(const MmStruct* mm);

}  // namespace vmspace::mm
