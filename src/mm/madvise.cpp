// SPDX-License-Identifier: MIT
// madvise.cpp - madvise(2), as Linux 6.18's mm/madvise.c decides it
// (docs/research/linux-vma-semantics.md section 5 and
// docs/research/linux-anon-surface.md sections 3.4 and 4: the checks,
// their order and the host-verified cases).
//
// Three kinds of advice:
//   - flag advice (NORMAL, RANDOM, ..., WIPEONFORK, HUGEPAGE, ...) changes
//     vm_flags through vma_modify_flags, so it splits and merges;
//   - content advice (DONTNEED, DONTNEED_LOCKED, FREE, REMOVE, COLD,
//     PAGEOUT, WILLNEED) acts on the pages of each VMA in the range;
//   - guard advice (GUARD_INSTALL, GUARD_REMOVE, Linux 6.13+) puts guard
//     markers into the page tables or takes them out, never splitting;
// all three walk the VMAs with Linux's madvise_walk_vmas (every mapped
// part is advised; a hole makes the call return -ENOMEM at the end, a real
// error at once).  POPULATE_READ/WRITE have their own walk, which stops at
// the first problem.  Before any advice-specific check each VMA passes the
// seal check (can_madvise_modify, mseal.cpp).
//
// Locks (Linux 6.18 get_lock_mode / madvise_lock):
//   - DONTNEED, DONTNEED_LOCKED and FREE on a range inside one VMA run
//     under that VMA's read lock only (lock_vma_under_rcu) in the per-VMA
//     lock modes, as Linux 6.16/6.17+ do; otherwise, and in mmap_lock
//     mode, under the mmap_lock read side.  VmEvent::madvise_vma_lock /
//     madvise_mmap_lock count which way each such call went.
//   - REMOVE, WILLNEED, COLD, PAGEOUT, POPULATE_*, GUARD_REMOVE: mmap R.
//   - flag advice: mmap W (it changes VMAs).
//   - GUARD_INSTALL: Linux 6.18 takes mmap R and sets VM_MAYBE_GUARD with
//     an atomic bit operation; vmspace's vm_flags is a plain field that
//     faults read under a VMA read lock, so it takes mmap W and writes the
//     flag under the VMA's write lock (only when it is not set yet).  The
//     markers go in under the PTE locks either way; what can be observed
//     is the same.  (Linux 6.19 moves both guard advice to the per-VMA
//     lock; 6.18, which vmspace models, does not.)
//
// Zapping under only a VMA read lock is safe because every other party
// that touches the same PTEs, page tables or VMA is either excluded by the
// read lock or synchronizes on the PTE locks:
//   - the VMA cannot change (range, flags, file, anon_vma pointer) or go
//     away: every such change write-locks it first (vma_start_write waits
//     for our read lock; mprotect, munmap, mremap, merges, splits, mlock,
//     mseal, stack growth all do), so the checks made on its flags stay
//     true and [start, end) stays inside it;
//   - its page tables stay allocated: free_pgtables() only frees tables
//     that map nothing outside [floor, ceiling) of VMAs that are detached
//     under mmap W, and a table covering our range maps addresses of our
//     VMA, which is attached and read-locked; mremap's whole-table relink
//     moves only tables of write-locked VMAs;
//   - faults on the same VMA (under its read lock or mmap R), other
//     DONTNEED/FREE calls (VMA read lock or mmap R), GUARD_* and
//     MADV_REMOVE (mmap R/W without write-locking this VMA), shmem hole
//     punching and rmap walks all change PTEs only under the PTE table's
//     lock and re-check the PTE under it: a fault that read the PTE before
//     our zap finds it changed and retries or gives up its page; a zap
//     after a fault's install removes that page;
//   - frames are put() after their PTE is cleared, under the PTE lock,
//     and reused only after an RCU grace period, so lockless walkers that
//     loaded the old PTE finish safely (page_table.h, guarantee F);
//   - the RSS counters and frame mapcounts are atomics;
//   - nothing here waits for the mmap_lock (lock order: a VMA reader may
//     only try it), allocates page tables, or waits for a grace period.
#include <sys/mman.h>

#include <cerrno>

#include "vmspace/mman.h"
#include "mm/memory.h"
#include "mm/truncate.h"
#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/mmu_notifier.h"
#include "vmspace/address_space.h"
#include "mm/rmap.h"
#include "mm/vma.h"

namespace vmspace::mm {

namespace {

// The advice values Linux 6.18 accepts (with KSM and THP, without
// CONFIG_MEMORY_FAILURE): 0-4, 8-25, 102, 103.
bool madvise_behavior_valid(int b) {
  return (b >= 0 && b <= 4) || (b >= 8 && b <= 25) || b == MADV_GUARD_INSTALL ||
         b == MADV_GUARD_REMOVE;
}

// Advice that changes vm_flags only.
bool is_flag_advice(int b) {
  switch (b) {
    case MADV_NORMAL: case MADV_RANDOM: case MADV_SEQUENTIAL:
    case MADV_DONTFORK: case MADV_DOFORK: case MADV_WIPEONFORK: case MADV_KEEPONFORK:
    case MADV_DONTDUMP: case MADV_DODUMP: case MADV_HUGEPAGE: case MADV_NOHUGEPAGE:
    case MADV_MERGEABLE: case MADV_UNMERGEABLE:
      return true;
    default:
      return false;
  }
}

// Advice Linux 6.18 tries under a per-VMA read lock (try_vma_read_lock).
bool vma_lock_advice(int b) { return b == MADV_DONTNEED || b == MADV_DONTNEED_LOCKED || b == MADV_FREE; }

enum class LockKind { read, write };

// Linux get_lock_mode(), with GUARD_INSTALL taking the write side (see the
// top of the file).
LockKind lock_kind(int b) {
  switch (b) {
    case MADV_REMOVE: case MADV_WILLNEED: case MADV_DONTNEED: case MADV_DONTNEED_LOCKED:
    case MADV_COLD: case MADV_PAGEOUT: case MADV_FREE: case MADV_POPULATE_READ:
    case MADV_POPULATE_WRITE: case MADV_COLLAPSE: case MADV_GUARD_REMOVE:
      return LockKind::read;
    default:
      return LockKind::write;
  }
}

// Linux madvise_update_vma(): *prev becomes the VMA covering [start, end).
int madvise_update_vma(MmStruct* mm, Vma* vma, Vma** prev, std::uint64_t start, std::uint64_t end,
                       vm_flags_t new_flags) {
  if (new_flags == vma->vm_flags) {
    *prev = vma;
    return 0;
  }
  int err = 0;
  vm_flags_t flags = new_flags;
  Vma* v = vma_modify_flags(mm, vma, start, end, new_flags, &err, &flags);
  if (v == nullptr) return err;
  *prev = v;
  vma_start_write(v);
  v->vm_flags = flags;  // with the sticky flags a merge brought in
  return 0;
}

// Linux madvise_vma_behavior() for flag advice.
int madvise_flags(MmStruct* mm, Vma* vma, Vma** prev, std::uint64_t start, std::uint64_t end,
                  int behavior) {
  vm_flags_t f = vma->vm_flags;
  switch (behavior) {
    case MADV_NORMAL: f &= ~(VM_RAND_READ | VM_SEQ_READ); break;
    case MADV_RANDOM: f = (f & ~VM_SEQ_READ) | VM_RAND_READ; break;
    case MADV_SEQUENTIAL: f = (f & ~VM_RAND_READ) | VM_SEQ_READ; break;
    case MADV_DONTFORK: f |= VM_DONTCOPY; break;
    case MADV_DOFORK:
      if (f & VM_IO) return -EINVAL;
      f &= ~VM_DONTCOPY;
      break;
    case MADV_WIPEONFORK:
      if (vma->vm_file != nullptr || (f & VM_SHARED)) return -EINVAL;
      f |= VM_WIPEONFORK;
      break;
    case MADV_KEEPONFORK:
      if (f & VM_DROPPABLE) return -EINVAL;  // droppable memory is always wiped
      f &= ~VM_WIPEONFORK;
      break;
    case MADV_DONTDUMP: f |= VM_DONTDUMP; break;
    case MADV_DODUMP:
      if ((f & VM_SPECIAL) || (f & VM_DROPPABLE)) return -EINVAL;
      f &= ~VM_DONTDUMP;
      break;
    case MADV_HUGEPAGE: f = (f & ~VM_NOHUGEPAGE) | VM_HUGEPAGE; break;
    case MADV_NOHUGEPAGE: f = (f & ~VM_HUGEPAGE) | VM_NOHUGEPAGE; break;
    case MADV_MERGEABLE:
      // KSM refuses (silently) what it cannot merge.
      if (!(f & (VM_MERGEABLE | VM_SHARED | VM_MAYSHARE | VM_PFNMAP | VM_IO | VM_DONTEXPAND |
                 VM_HUGETLB | VM_MIXEDMAP)))
        f |= VM_MERGEABLE;
      break;
    case MADV_UNMERGEABLE: f &= ~VM_MERGEABLE; break;
  }
  int err = madvise_update_vma(mm, vma, prev, start, end, f);
  // A failed split is reported as "try again" by madvise (Linux
  // madvise_vma_behavior), unlike mprotect's -ENOMEM.
  return err == -ENOMEM ? -EAGAIN : err;
}

// Linux madvise_dontneed_free_valid_vma().
bool dontneed_free_valid_vma(const Vma* vma, int behavior) {
  vm_flags_t forbidden = VM_PFNMAP;
  if (behavior != MADV_DONTNEED_LOCKED) forbidden |= VM_LOCKED;
  return (vma->vm_flags & forbidden) == 0;
}

// DONTNEED, DONTNEED_LOCKED and FREE on [start, end) of `vma`: the part of
// the advice that may run under only the VMA's read lock (see the top of
// the file for why that is enough).
int madvise_dontneed_free(Vma* vma, std::uint64_t start, std::uint64_t end, int behavior) {
  if (!dontneed_free_valid_vma(vma, behavior)) return -EINVAL;
  if (behavior == MADV_FREE) {
    if (!vma->is_anonymous()) return -EINVAL;
    // Lazy free: the pages stay (and keep their data) until reclaim finds
    // them still clean (MADV_PAGEOUT here); a write keeps them.  Their
    // PTEs become read-only: writable translations die.
    MmuNotifierRange inv(vma->vm_mm, start, end, InvalidateReason::discard);
    mark_lazyfree_range(vma, start, end);
    return 0;
  }
  // Private memory reads back zero-filled; shared memory is re-faulted
  // from its shmem object.  Guard markers stay.  Notifiers are called
  // under this VMA's read lock or mmap R (no spinlock).
  MmuNotifierRange inv(vma->vm_mm, start, end, InvalidateReason::discard);
  zap_vma_range(vma, start, end, ZapMarkers::keep);
  return 0;
}

// Linux is_valid_guard_vma() (6.15-6.18): not VM_SPECIAL or hugetlb
// memory; installing refuses locked memory too (VM_LOCKONFAULT VMAs carry
// VM_LOCKED).
bool valid_guard_vma(const Vma* vma, bool allow_locked) {
  vm_flags_t forbidden = VM_SPECIAL | VM_HUGETLB;
  if (!allow_locked) forbidden |= VM_LOCKED;
  return (vma->vm_flags & forbidden) == 0;
}

// Linux madvise_guard_install() (6.18.37+).  Requires mmap W.
int madvise_guard_install(Vma* vma, std::uint64_t start, std::uint64_t end) {
  if (!valid_guard_vma(vma, /*allow_locked=*/false)) return -EINVAL;
  // The whole VMA may have guards from now on (never cleared).
  if (!(vma->vm_flags & VM_MAYBE_GUARD)) {
    vma_start_write(vma);
    vma->vm_flags |= VM_MAYBE_GUARD;
  }
  // Private anonymous memory gets its anon_vma, as on a first write: the
  // VMA counts as faulted from now on (later merges, mprotect's
  // VM_ACCOUNT rule, mremap's pgoff).
  if (vma->is_anonymous() && !anon_vma_prepare(vma)) return -ENOMEM;
  // Markers over the range; whatever was mapped there is discarded.
  MmuNotifierRange inv(vma->vm_mm, start, end, InvalidateReason::discard);
  if (!install_guard_range(vma, start, end)) return -ENOMEM;
  return 0;
}

// Advice acting on page contents, and the guard advice, for one VMA:
// Linux's per-VMA checks, then the work on [start, end).
int madvise_content(Vma* vma, Vma** prev, std::uint64_t start, std::uint64_t end, int behavior) {
  *prev = vma;
  const vm_flags_t f = vma->vm_flags;
  switch (behavior) {
    case MADV_DONTNEED:
    case MADV_DONTNEED_LOCKED:
    case MADV_FREE:
      return madvise_dontneed_free(vma, start, end, behavior);
    case MADV_REMOVE:
      if (f & VM_LOCKED) return -EINVAL;
      if (vma->vm_file == nullptr) return -EINVAL;
      if (!((f & VM_SHARED) && (f & VM_MAYWRITE))) return -EACCES;
    {
      // Punch a hole in the file: its pages leave the cache (and the
      // backing's range is deallocated, -EOPNOTSUPP where it cannot be)
      // and every mapping of it (private copies and guard markers stay).
      // As Linux's madvise_remove: with the mmap_lock dropped (the backing
      // may block; the punch needs only i_mmap_rwsem), so the walk looks
      // the next VMA up again (*prev = nullptr).
      *prev = nullptr;
      MmStruct* mm = vma->vm_mm;
      mem::File* file = mem::get_file(vma->vm_file);
      const std::uint64_t first = linear_page_index(vma, start), last = linear_page_index(vma, end);
      mmap_read_unlock(mm);
      const int r = shmem_punch_hole(file, first, last);
      mem::fput(file);
      mmap_read_lock(mm);
      return r;
    }
    case MADV_COLD:
      if (f & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB)) return -EINVAL;
      return 0;  // deactivation: nothing to see without reclaim
    case MADV_PAGEOUT:
      if (f & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB)) return -EINVAL;
    {
      // Discards the clean lazily freed pages of the range.
      MmuNotifierRange inv(vma->vm_mm, start, end, InvalidateReason::discard);
      pageout_range(vma, start, end);
      return 0;
    }
    case MADV_WILLNEED:
      return 0;  // anonymous: swap-in readahead, nothing to do without swap
    case MADV_GUARD_INSTALL:
      return madvise_guard_install(vma, start, end);
    case MADV_GUARD_REMOVE:
      if (!valid_guard_vma(vma, /*allow_locked=*/true)) return -EINVAL;
      vma->vm_mm->pgtables.remove_guard_markers(start, end);
      return 0;
  }
  return 0;
}

// Linux madvise_populate() / faultin_page_range() for MADV_POPULATE_READ
// and _WRITE: no VMA walk with hole tolerance; the first problem ends it,
// with the pages before it faulted in.  Requires mmap R; may drop and
// retake it (after running out of memory), as Linux's GUP may.
int madvise_populate(MmStruct* mm, std::uint64_t start, std::uint64_t end, bool write) {
  bool drained = false;
  for (std::uint64_t a = start; a < end;) {
    Vma* vma = vma_lookup(mm, a);
    if (vma == nullptr) return -ENOMEM;  // a hole: "no VMA"
    // GUP's check_vma_flags() without FOLL_FORCE: a write needs VM_WRITE,
    // a read VM_READ (so write-only and execute-only memory refuse
    // POPULATE_READ although a CPU could read them).
    if ((vma->vm_flags & (VM_IO | VM_PFNMAP)) || !(vma->vm_flags & (write ? VM_WRITE : VM_READ))) return -EINVAL;
    const std::uint64_t stop = std::min(end, vma->vm_end);
    for (; a < stop; a += kPageSize) {
      const int r = mm->faultin_page(mm, vma, a, write);
      if (r == 0) continue;
      if (r != -ENOMEM || drained || rcu::in_read_section()) return r;
      // Out of frames: freed ones may wait for a grace period.  Wait for
      // them with the lock dropped (never under an mm lock), then look the
      // VMA up again and go on from this page.
      drained = true;
      mmap_read_unlock(mm);
      mm->phys->drain_deferred();
      mmap_read_lock(mm);
      break;
    }
    if (a < stop) continue;  // re-look-up after the drain
  }
  return 0;
}

}  // namespace

int do_madvise(MmStruct* mm, std::uint64_t start, std::uint64_t len_in, int behavior) {
  if (!madvise_behavior_valid(behavior)) return -EINVAL;
  if (!page_aligned(start)) return -EINVAL;
  const std::uint64_t len = page_align(len_in);
  if (len_in != 0 && len == 0) return -EINVAL;
  const std::uint64_t end = start + len;
  if (end < start) return -EINVAL;
  if (end == start) return 0;
  // Not modelled: huge-page collapse (vmspace maps 4 KiB pages only).
  // Refused rather than pretended.
  if (behavior == MADV_COLLAPSE) return -EOPNOTSUPP;

  if (behavior == MADV_POPULATE_READ || behavior == MADV_POPULATE_WRITE) {
    mmap_read_lock(mm);
    const int err = madvise_populate(mm, start, end, behavior == MADV_POPULATE_WRITE);
    mmap_read_unlock(mm);
    return err;
  }

  if (vma_lock_advice(behavior)) {
    // Linux try_vma_read_lock(): only when [start, end) lies inside the one
    // VMA that holds start.  Holes, several VMAs, and a VMA that cannot be
    // read-locked now go the mmap_lock way.
    if (mm->per_vma_locks()) {
      if (Vma* vma = lock_vma_under_rcu(mm, start)) {
        if (end <= vma->vm_end) {
          int err = can_madvise_modify(vma, behavior) ? madvise_dontneed_free(vma, start, end, behavior) : -EPERM;
          vma_end_read(vma);
          mm->events.count(VmEvent::madvise_vma_lock);
          return err;
        }
        vma_end_read(vma);
      }
    }
    mm->events.count(VmEvent::madvise_mmap_lock);
  }

  const bool write = lock_kind(behavior) == LockKind::write;
  if (write)
    mmap_write_lock(mm);
  else
    mmap_read_lock(mm);

  // Linux madvise_walk_vmas(): apply to every mapped part; remember holes.
  int unmapped_error = 0;
  int err = 0;
  std::uint64_t s = start;
  Vma* prev = nullptr;
  Vma* vma = find_vma(mm, s);
  for (;;) {
    if (vma == nullptr) {
      err = -ENOMEM;
      break;
    }
    if (s < vma->vm_start) {
      unmapped_error = -ENOMEM;
      s = vma->vm_start;
      if (s >= end) break;
    }
    const std::uint64_t tmp = std::min(vma->vm_end, end);
    if (!can_madvise_modify(vma, behavior))
      err = -EPERM;  // sealed: before any advice-specific check
    else if (is_flag_advice(behavior))
      err = madvise_flags(mm, vma, &prev, s, tmp, behavior);
    else
      err = madvise_content(vma, &prev, s, tmp, behavior);
    if (err) break;
    s = tmp;
    if (prev != nullptr && s < prev->vm_end) s = prev->vm_end;
    if (s >= end) break;
    vma = find_vma(mm, prev != nullptr ? prev->vm_end : s);
  }
  if (err == 0) err = unmapped_error;

  if (write) {
    mm_debug_validate(mm);
    mmap_write_unlock(mm);
  } else {
    mmap_read_unlock(mm);
  }
  return err;
}

}  // namespace vmspace::mm
