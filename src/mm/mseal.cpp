// SPDX-License-Identifier: MIT
// mseal.cpp - mseal(2) (Linux 6.10+), as Linux 6.17+'s mm/mseal.c decides
// it, and the checks other calls make against sealed VMAs
// (docs/research/linux-anon-surface.md section 3).
//
// Sealing sets VM_SEALED, which nothing clears, through vma_modify_flags:
// sealing part of a VMA splits it, and sealed pieces with otherwise equal
// flags merge.  A sealed VMA refuses (with -EPERM, each call checking VMA
// by VMA, so earlier VMAs may already have changed): munmap, MAP_FIXED over
// it, mprotect (even to its own protection), mremap of it or onto it, a
// brk shrink over it (all through can_modify_vma), and discarding advice
// on read-only private anonymous memory (can_madvise_modify).  It does not
// refuse mlock/munlock, other advice, faults or populating.
#include <sys/mman.h>

#include <cerrno>

#include "vmspace/mman.h"
#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"

namespace vmspace::mm {

namespace {

// Linux range_contains_unmapped(): is any page of [start, end) outside
// every VMA?  Requires mmap R.
bool range_contains_unmapped(MmStruct* mm, std::uint64_t start, std::uint64_t end) {
  std::uint64_t prev_end = start;
  for (Vma* v = find_vma(mm, start); v != nullptr && v->vm_start < end; v = vma_next(mm, v)) {
    if (v->vm_start > prev_end) return true;
    prev_end = v->vm_end;
  }
  return prev_end < end;
}

// Linux mseal_apply(): seal every piece of [start, end), which has no
// holes.  A split that fails (map_count limit, no memory) stops it with
// the pieces before already sealed.  Requires mmap W.
int mseal_apply(MmStruct* mm, std::uint64_t start, std::uint64_t end) {
  std::uint64_t cur = start;
  for (Vma* vma = find_vma(mm, start); vma != nullptr && vma->vm_start < end;) {
    const std::uint64_t cur_end = std::min(vma->vm_end, end);
    if (!(vma->vm_flags & VM_SEALED)) {
      int err = 0;
      Vma* v = vma_modify_flags(mm, vma, std::max(cur, vma->vm_start), cur_end, vma->vm_flags | VM_SEALED, &err);
      if (v == nullptr) return err;
      vma_start_write(v);
      v->vm_flags |= VM_SEALED;
      vma = v;  // merged pieces may reach past cur_end
    }
    cur = cur_end;
    vma = find_vma(mm, std::max(vma->vm_end, cur));
  }
  return 0;
}

// The advice whose effect a seal protects read-only anonymous memory
// from (Linux is_discard(), 6.17+).
bool is_discard(int behavior) {
  switch (behavior) {
    case MADV_FREE: case MADV_DONTNEED: case MADV_DONTNEED_LOCKED: case MADV_REMOVE:
    case MADV_DONTFORK: case MADV_WIPEONFORK: case MADV_GUARD_INSTALL:
      return true;
    default:
      return false;
  }
}

}  // namespace

int do_mseal(MmStruct* mm, std::uint64_t start, std::uint64_t len_in, unsigned long flags) {
  if (flags != 0) return -EINVAL;
  if (!page_aligned(start)) return -EINVAL;
  const std::uint64_t len = page_align(len_in);
  if (len_in != 0 && len == 0) return -EINVAL;  // rounded up from a small negative
  const std::uint64_t end = start + len;
  if (end < start) return -EINVAL;
  if (end == start) return 0;

  mmap_write_lock(mm);
  // Every page must be mapped, checked before anything is sealed.
  const int err = range_contains_unmapped(mm, start, end) ? -ENOMEM : mseal_apply(mm, start, end);
  mm_debug_validate(mm);
  mmap_write_unlock(mm);
  return err;
}

bool vma_range_sealed(MmStruct* mm, std::uint64_t start, std::uint64_t end) {
  for (Vma* v = find_vma(mm, start); v != nullptr && v->vm_start < end; v = vma_next(mm, v))
    if (!can_modify_vma(v)) return true;
  return false;
}

bool can_madvise_modify(const Vma* vma, int behavior) {
  if (can_modify_vma(vma)) return true;
  if (!is_discard(behavior)) return true;
  // File-backed and shared anonymous (shmem) memory is not protected.
  if (!vma->is_anonymous()) return true;
  // Nor is memory the caller could overwrite anyway.  (vmspace's only
  // protection key is the execute-only one, which never has VM_WRITE.)
  return (vma->vm_flags & VM_WRITE) != 0;
}

}  // namespace vmspace::mm
