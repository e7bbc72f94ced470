// SPDX-License-Identifier: MIT
// vma_query.cpp - copying VMAs out for the layout queries (issue 17), as
// Linux 6.17+ walks /proc/pid/maps under per-VMA locks (lock_next_vma).
//
// WHY A COPY IS ONE VERSION OF ITS VMA
//
// Every field copied (range, flags, pgoff, file, anon_name) is written
// only under mmap W plus that VMA's write lock (mm_types.h).  The copy is
// made while the VMA is read-locked (vma_start_read succeeded, so no
// writer holds or waits for it until vma_end_read) or under mmap R.
// Either excludes every writer of those fields for the whole copy.  The
// "[heap]" name also reads mm->brk, see MmStruct::brk.
//
// WHY NO VMA IS SKIPPED AND NO GAP IS INVENTED
//
// A step asks for the first VMA ending above `from`.  Under RCU the tree
// gives a snapshot answer V (range_tree.h D: an entry present at some
// moment of the step).  After V is read-locked its range is stable, and:
//   - from >= V.end: V shrank or moved below `from` after the lookup; it
//     says nothing about what lies above `from`: fall back.
//   - V.start > from: the copy claims [from, V.start) is unmapped.  That
//     held in the lookup's snapshot.  If no mmap W session began since
//     just before the lookup (mm_lock_seq even and unchanged:
//     Linux's mmap_lock_speculate_try_begin/retry), nothing changed since
//     then either.  Otherwise look `from` up again now, with V locked: if
//     the answer is V, the gap was real at that moment; if not, fall back.
//     (The acquire loads of mm_lock_seq pair with vma_end_write_all's
//     release, and a writer's tree store follows its write_begin, so a
//     lookup that saw a newer tree makes the second load see the change.)
//     per_vma_range has no space-wide session count: it always looks
//     again.
//   - a VMA found detached was replaced after the lookup: look again.
//   - any other failure to read-lock (the VMA is write-locked, a writer
//     waits for it): fall back to mmap R, look `from` up again, copy.
// The fallback waits for the mmap_lock only after every VMA lock and the
// RCU section of this step are gone (lock_order.h: a VMA reader never
// waits for the mmap_lock).
#include "mm/vma_query.h"

#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"

namespace vmspace::mm {

namespace {

// Requires mmap R or `vma`'s read lock.
void snapshot(const Vma* vma, VmaSnapshot* out) {
  out->start = vma->vm_start;
  out->end = vma->vm_end;
  out->flags = vma->vm_flags;
  out->pgoff = vma->vm_pgoff;
  out->has_file = vma->vm_file != nullptr;
  out->name = vma_display_name(vma);
}

enum class Step { found, none, fallback };

// Lookups that find a VMA detached under them retry at once (Linux does,
// without a bound); after this many in a row the step takes the mmap_lock
// instead, so a VMA replaced over and over cannot hold a query back.
constexpr int kDetachedRetries = 16;

// One step under RCU and the VMA's read lock (per-VMA lock modes): calls
// visit(vma) with the VMA read-locked and returns its end in *next.
Step visit_next_vma_locked(MmStruct* mm, std::uint64_t from, const VmaVisitor& visit, std::uint64_t* next) {
  rcu::ReadGuard rcu;  // Vma objects are freed only after a grace period
  for (int tries = 0; tries < kDetachedRetries; ++tries) {
    const std::uint64_t seq = mm->mm_lock_seq.raw_read();  // acquire
    const auto e = mm->mm_mt.find_vma(from);
    if (!e) return Step::none;
    Vma* vma = e->as<Vma>();
    const VmaReadResult r = vma_start_read(mm, vma);
    if (r == VmaReadResult::detached) continue;
    if (r != VmaReadResult::locked) return Step::fallback;
    bool ok = from < vma->vm_end;
    if (ok && from < vma->vm_start &&
        (mm->mode == LockMode::per_vma_range || (seq & 1) != 0 || mm->mm_lock_seq.raw_read() != seq)) {
      const auto again = mm->mm_mt.find_vma(from);
      ok = again && again->ptr == vma;
    }
    if (ok) {
      try {
        visit(vma);  // may throw (maps() grows its text): never keep the lock
      } catch (...) {
        vma_end_read(vma);
        throw;
      }
      *next = vma->vm_end;
    }
    vma_end_read(vma);
    return ok ? Step::found : Step::fallback;
  }
  return Step::fallback;
}

// Requires mmap R.
bool visit_next_mmap_locked(MmStruct* mm, std::uint64_t from, const VmaVisitor& visit, std::uint64_t* next) {
  const Vma* vma = find_vma(mm, from);
  if (vma == nullptr) return false;
  visit(vma);
  *next = vma->vm_end;
  return true;
}

bool visit_next(MmStruct* mm, std::uint64_t from, const VmaVisitor& visit, std::uint64_t* next) {
  if (mm->per_vma_locks()) {
    switch (visit_next_vma_locked(mm, from, visit, next)) {
      case Step::found: return true;
      case Step::none: return false;
      case Step::fallback: break;
    }
  }
  mmap_read_lock(mm);
  bool found;
  try {
    found = visit_next_mmap_locked(mm, from, visit, next);
  } catch (...) {
    mmap_read_unlock(mm);
    throw;
  }
  mmap_read_unlock(mm);
  return found;
}

}  // namespace

bool vma_query_next(MmStruct* mm, std::uint64_t from, VmaSnapshot* out) {
  std::uint64_t next = 0;
  return visit_next(mm, from, [&](const Vma* vma) { snapshot(vma, out); }, &next);
}

void vma_walk(MmStruct* mm, std::uint64_t start, std::uint64_t end, const VmaVisitor& visit) {
  if (start >= end) return;
  const bool whole_walk_locked = !mm->per_vma_locks();
  if (whole_walk_locked) mmap_read_lock(mm);
  // A visitor that throws (out of memory) must not leave mmap R held.
  struct Unlock {
    MmStruct* mm;
    bool held;
    ~Unlock() {
      if (held) mmap_read_unlock(mm);
    }
  } unlock{mm, whole_walk_locked};
  std::uint64_t from = start;
  for (;;) {
    bool in_range = true;
    // The VMA is reported only when it starts below `end`; the check runs
    // inside the visit, while the VMA is still locked.
    auto bounded = [&](const Vma* vma) {
      in_range = vma->vm_start < end;
      if (in_range) visit(vma);
    };
    std::uint64_t next = 0;
    const bool found = whole_walk_locked ? visit_next_mmap_locked(mm, from, bounded, &next)
                                         : visit_next(mm, from, bounded, &next);
    if (!found || !in_range) break;
    // The next step starts where this VMA ended, so ends ascend and the walk
    // progresses; a VMA merged meanwhile with one already reported may
    // start below `from` (Linux's maps walk shows the same).
    from = next;
    if (from >= end) break;
  }
}

std::vector<VmaSnapshot> vma_query_range(MmStruct* mm, std::uint64_t start, std::uint64_t end) {
  std::vector<VmaSnapshot> out;
  vma_walk(mm, start, end, [&](const Vma* vma) {
    out.emplace_back();
    snapshot(vma, &out.back());
  });
  return out;
}

}  // namespace vmspace::mm
