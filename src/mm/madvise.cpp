// SPDX-License-Identifier: MIT
// madvise.cpp - madvise(2), as Linux's mm/madvise.c decides it
// (docs/research/linux-vma-semantics.md section 5).
//
// Advice that only changes VMA flags is complete here.  Advice that acts
// on page contents (DONTNEED, FREE, REMOVE, COLD, PAGEOUT, WILLNEED) walks
// the VMAs with Linux's checks and errors; the pages it acts on arrive with
// the page-fault layer, and until then no VMA has pages to act on.
#include <sys/mman.h>

#include <cerrno>

#include "mm/mm.h"
#include "mm/memory.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"

#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_REMOVE 103
#endif

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

// Linux madvise_update_vma(): *prev becomes the VMA covering [start, end).
int madvise_update_vma(MmStruct* mm, Vma* vma, Vma** prev, std::uint64_t start, std::uint64_t end,
                       vm_flags_t new_flags) {
  if (new_flags == vma->vm_flags) {
    *prev = vma;
    return 0;
  }
  int err = 0;
  Vma* v = vma_modify_flags(mm, vma, start, end, new_flags, &err);
  if (v == nullptr) return err;
  *prev = v;
  vma_start_write(v);
  v->vm_flags = new_flags;
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
    case MADV_KEEPONFORK: f &= ~VM_WIPEONFORK; break;
    case MADV_DONTDUMP: f |= VM_DONTDUMP; break;
    case MADV_DODUMP:
      if (f & VM_SPECIAL) return -EINVAL;
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

// Advice acting on page contents: Linux's per-VMA checks, then the work on
// [start, end).  Runs under the mmap_lock read side; zapping PTEs races
// only with faults, which re-check every PTE under its lock.
int madvise_content(Vma* vma, Vma** prev, std::uint64_t start, std::uint64_t end, int behavior) {
  *prev = vma;
  const vm_flags_t f = vma->vm_flags;
  switch (behavior) {
    case MADV_DONTNEED:
      if (f & (VM_LOCKED | VM_PFNMAP)) return -EINVAL;
      zap_vma_range(vma, start, end);  // private: reads back zero; shmem: re-faulted
      return 0;
    case MADV_DONTNEED_LOCKED:
      if (f & VM_PFNMAP) return -EINVAL;
      zap_vma_range(vma, start, end);
      return 0;
    case MADV_FREE:
      // Lazy free: pages may be reclaimed later or keep their data; without
      // memory pressure they keep it, which is what the kernel shows too.
      if (f & (VM_LOCKED | VM_PFNMAP)) return -EINVAL;
      return vma->is_anonymous() ? 0 : -EINVAL;
    case MADV_REMOVE:
      if (f & VM_LOCKED) return -EINVAL;
      if (vma->vm_file == nullptr) return -EINVAL;
      if (!((f & VM_SHARED) && (f & VM_MAYWRITE))) return -EACCES;
      // Punch a hole in the shmem object, then drop the mappings of it.
      mem::shmem_truncate_range(vma->vm_file, linear_page_index(vma, start), linear_page_index(vma, end));
      zap_vma_range(vma, start, end);
      return 0;
    case MADV_COLD:
    case MADV_PAGEOUT:
      if (f & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB)) return -EINVAL;
      return 0;
    case MADV_WILLNEED:
      return 0;  // anonymous: swap-in readahead, nothing to do without swap
  }
  return 0;
}

bool needs_write_lock(int behavior) {
  switch (behavior) {
    case MADV_REMOVE: case MADV_WILLNEED: case MADV_DONTNEED: case MADV_DONTNEED_LOCKED:
    case MADV_COLD: case MADV_PAGEOUT: case MADV_FREE: case MADV_POPULATE_READ:
    case MADV_POPULATE_WRITE: case MADV_COLLAPSE:
      return false;
    default:
      return true;
  }
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
  // Not modelled yet: faulting pages in (POPULATE_*), huge-page collapse
  // and guard regions.  Refused rather than pretended.
  if (behavior == MADV_POPULATE_READ || behavior == MADV_POPULATE_WRITE ||
      behavior == MADV_COLLAPSE || behavior == MADV_GUARD_INSTALL || behavior == MADV_GUARD_REMOVE)
    return -EOPNOTSUPP;

  const bool write = needs_write_lock(behavior);
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
    err = is_flag_advice(behavior) ? madvise_flags(mm, vma, &prev, s, tmp, behavior)
                                   : madvise_content(vma, &prev, s, tmp, behavior);
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
