// SPDX-License-Identifier: MIT
// mlock.cpp - mlock(2), mlock2(2), munlock(2), mlockall(2), munlockall(2),
// as Linux 6.18's mm/mlock.c decides them (docs/research/
// linux-anon-surface.md section 2 has the rules, their order and the
// host-verified cases).
//
// Locking a range sets VM_LOCKED (mlock2 MLOCK_ONFAULT / MCL_ONFAULT: also
// VM_LOCKONFAULT) on the VMAs through vma_modify_flags, so it splits and
// merges exactly as mprotect does: locked and unlocked (or on-fault and
// plain locked) neighbours never merge.  mm->locked_vm counts the pages of
// VM_LOCKED VMAs whatever is resident (RLIMIT_MEMLOCK is checked against
// it).  Faulting the pages in is the caller's (the fault layer's
// populate), with the mmap_lock downgraded to read, never dropped and
// taken again (seed 003).  vmspace has no reclaim, so "locked" pages
// differ from others only in what is counted and shown (smaps Locked:,
// VmFlags lo/lf) and in the madvise advice refused on them.
#include <sys/mman.h>

#include <cerrno>

#include "vmspace/mman.h"
#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"

#ifndef MCL_CURRENT
#define MCL_CURRENT 1
#endif
#ifndef MCL_FUTURE
#define MCL_FUTURE 2
#endif

namespace vmspace::mm {

namespace {

// Linux vma_supports_mlock() for what vmspace can map: special mappings
// (none here), hugetlb (not modelled) and MAP_DROPPABLE memory are never
// locked; mlock leaves them alone (no split, not counted) and still
// populates them.
bool vma_supports_mlock(const Vma* vma) {
  return (vma->vm_flags & (VM_SPECIAL | VM_DROPPABLE | VM_HUGETLB)) == 0;
}

// Linux mlock_fixup(): give [start, end) of `vma` the lock flags of
// `newflags`.  *out is the VMA now covering [start, end) (merged, split, or
// `vma` itself when nothing changed).  Requires mmap W.
int mlock_fixup(MmStruct* mm, Vma* vma, std::uint64_t start, std::uint64_t end, vm_flags_t newflags,
                Vma** out) {
  *out = vma;
  const vm_flags_t oldflags = vma->vm_flags;
  if (newflags == oldflags || !vma_supports_mlock(vma)) return 0;
  int err = 0;
  vm_flags_t flags = newflags;  // plus the sticky flags a merge brings in
  Vma* v = vma_modify_flags(mm, vma, start, end, newflags, &err, &flags);
  if (v == nullptr) return err;
  // locked_vm follows VM_LOCKED only: switching between on-fault and plain
  // locking counts nothing.
  const std::uint64_t pages = (end - start) >> kPageShift;
  if (!(newflags & VM_LOCKED))
    mm->locked_vm -= pages;
  else if (!(oldflags & VM_LOCKED))
    mm->locked_vm += pages;
  vma_start_write(v);
  v->vm_flags = flags;
  *out = v;
  return 0;
}

// Linux apply_vma_lock_flags(): replace the lock flags of every VMA in
// [start, start + len) by `flags` (0, VM_LOCKED, or VM_LOCKED |
// VM_LOCKONFAULT).  A range starting in a hole changes nothing (-ENOMEM);
// a hole later in the range is found after the VMAs before it changed
// (-ENOMEM).  Requires mmap W.
int apply_vma_lock_flags(MmStruct* mm, std::uint64_t start, std::uint64_t len, vm_flags_t flags) {
  const std::uint64_t end = start + len;
  if (end < start) return -EINVAL;
  if (end == start) return 0;
  Vma* vma = vma_lookup(mm, start);
  if (vma == nullptr) return -ENOMEM;
  std::uint64_t nstart = start;
  std::uint64_t tmp = vma->vm_start;
  while (vma != nullptr && vma->vm_start < end) {
    if (vma->vm_start != tmp) return -ENOMEM;  // a hole between VMAs
    const vm_flags_t newflags = (vma->vm_flags & ~VM_LOCKED_MASK) | flags;
    tmp = std::min(vma->vm_end, end);
    Vma* done = nullptr;
    if (int err = mlock_fixup(mm, vma, nstart, tmp, newflags, &done)) return err;
    tmp = done->vm_end;  // a merge may reach further than [nstart, tmp)
    nstart = tmp;
    vma = find_vma(mm, tmp);
  }
  return tmp < end ? -ENOMEM : 0;  // the range ends in a hole
}

// Linux count_mm_mlocked_page_nr(): pages of [start, start + len) that lie
// in VM_LOCKED VMAs already.
std::uint64_t count_mm_mlocked_page_nr(MmStruct* mm, std::uint64_t start, std::uint64_t len) {
  const std::uint64_t end = UINT64_MAX - len < start ? UINT64_MAX : start + len;
  std::uint64_t count = 0;
  for (Vma* v = find_vma(mm, start); v != nullptr && v->vm_start < end; v = vma_next(mm, v)) {
    if (!(v->vm_flags & VM_LOCKED)) continue;
    count += std::min(v->vm_end, end) - std::max(v->vm_start, start);
  }
  return count >> kPageShift;
}

// Linux apply_mlockall_flags(): def_flags for MCL_FUTURE, then (MCL_CURRENT,
// or 0 for munlockall) the lock flags of every VMA.  Whole VMAs change, so
// nothing splits; a merge that cannot get its memory is ignored, as Linux
// ignores every error here.  Requires mmap W.
void apply_mlockall_flags(MmStruct* mm, int flags) {
  mm->def_flags &= ~VM_LOCKED_MASK;
  if (flags & MCL_FUTURE) {
    mm->def_flags |= VM_LOCKED;
    if (flags & MCL_ONFAULT) mm->def_flags |= VM_LOCKONFAULT;
    if (!(flags & MCL_CURRENT)) return;
  }
  vm_flags_t to_add = 0;
  if (flags & MCL_CURRENT) {
    to_add = VM_LOCKED;
    if (flags & MCL_ONFAULT) to_add |= VM_LOCKONFAULT;
  }
  for (Vma* vma = find_vma(mm, 0); vma != nullptr;) {
    const vm_flags_t newflags = (vma->vm_flags & ~VM_LOCKED_MASK) | to_add;
    Vma* done = nullptr;
    if (mlock_fixup(mm, vma, vma->vm_start, vma->vm_end, newflags, &done) != 0) done = vma;
    vma = find_vma(mm, done->vm_end);
  }
}

// Linux's mm->total_vm: the pages of every VMA.
std::uint64_t total_vm(MmStruct* mm) {
  std::uint64_t pages = 0;
  for (Vma* v = find_vma(mm, 0); v != nullptr; v = vma_next(mm, v)) pages += v->pages();
  return pages;
}

}  // namespace

int do_mlock(MmStruct* mm, std::uint64_t start, std::uint64_t len, unsigned flags,
             std::uint64_t* populate_start, std::uint64_t* populate_len) {
  *populate_start = *populate_len = 0;
  if (flags & ~static_cast<unsigned>(MLOCK_ONFAULT)) return -EINVAL;  // mlock2 only
  const vm_flags_t vm_flags = (flags & MLOCK_ONFAULT) ? VM_LOCKED | VM_LOCKONFAULT : VM_LOCKED;
  if (!can_do_mlock(mm)) return -EPERM;  // even for len 0
  // No alignment check: the range grows to whole pages (and a length that
  // wraps to 0 asks for nothing).
  len = page_align(len + (start & (kPageSize - 1)));
  start &= kPageMask;

  mmap_write_lock(mm);
  // RLIMIT_MEMLOCK, before anything else is looked at (so an over-limit
  // request on unmapped memory is -ENOMEM too).  Pages of the range that
  // are locked already are discounted only when the plain sum is over.
  const bool cap = mm->cfg.cap_ipc_lock;
  const std::uint64_t lock_limit = mm->cfg.rlimit_memlock >> kPageShift;
  std::uint64_t locked = (len >> kPageShift) + mm->locked_vm;
  if (locked > lock_limit && !cap) locked -= count_mm_mlocked_page_nr(mm, start, len);
  const int err = (locked <= lock_limit || cap) ? apply_vma_lock_flags(mm, start, len, vm_flags) : -ENOMEM;
  mm_debug_validate(mm);
  if (err != 0 || len == 0) {
    mmap_write_unlock(mm);
    return err;
  }
  // The pages are faulted in under the lock downgraded to read (seed 003).
  mmap_write_downgrade(mm);
  *populate_start = start;
  *populate_len = len;
  return 0;
}

int mlock_populate_error(int err) {
  if (err == -EFAULT) return -ENOMEM;
  if (err == -ENOMEM) return -EAGAIN;
  return err;
}

int do_munlock(MmStruct* mm, std::uint64_t start, std::uint64_t len) {
  // No can_do_mlock() check: unlocking is always allowed.
  len = page_align(len + (start & (kPageSize - 1)));
  start &= kPageMask;
  mmap_write_lock(mm);
  const int err = apply_vma_lock_flags(mm, start, len, 0);
  mm_debug_validate(mm);
  mmap_write_unlock(mm);
  return err;
}

int do_mlockall(MmStruct* mm, int flags, bool* populate) {
  *populate = false;
  if (flags == 0 || (flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)) || flags == MCL_ONFAULT) return -EINVAL;
  if (!can_do_mlock(mm)) return -EPERM;
  const std::uint64_t lock_limit = mm->cfg.rlimit_memlock >> kPageShift;
  mmap_write_lock(mm);
  // MCL_CURRENT compares the size of the whole address space, not what is
  // locked already, with RLIMIT_MEMLOCK.
  int err = -ENOMEM;
  if (!(flags & MCL_CURRENT) || mm->cfg.cap_ipc_lock || total_vm(mm) <= lock_limit) {
    apply_mlockall_flags(mm, flags);
    err = 0;
  }
  mm_debug_validate(mm);
  if (err == 0 && (flags & MCL_CURRENT)) {
    mmap_write_downgrade(mm);  // populate [0, TASK_SIZE) under mmap R (seed 003)
    *populate = true;
    return 0;
  }
  mmap_write_unlock(mm);
  return err;
}

int do_munlockall(MmStruct* mm) {
  // No can_do_mlock() check, as munlock.
  mmap_write_lock(mm);
  apply_mlockall_flags(mm, 0);
  mm_debug_validate(mm);
  mmap_write_unlock(mm);
  return 0;
}

}  // namespace vmspace::mm
