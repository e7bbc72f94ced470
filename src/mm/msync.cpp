// SPDX-License-Identifier: MIT
// msync.cpp - msync(2), as Linux 6.18's mm/msync.c decides each case.
//
// Every file vmspace has is a shmem file (memfd or shared anonymous
// memory): its page cache is its storage, so there is nothing to write
// back (Linux's shmem fsync is a no-op too) and MS_INVALIDATE leaves the
// pages as they are.  What remains is the walk and its errors, which
// programs see: holes, locked memory with MS_INVALIDATE, flags.
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>

#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"

namespace vmspace::mm {

int do_msync(MmStruct* mm, std::uint64_t start, std::uint64_t len, int flags) {
  if (flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC)) return -EINVAL;
  if (!page_aligned(start)) return -EINVAL;
  if ((flags & MS_ASYNC) && (flags & MS_SYNC)) return -EINVAL;
  len = (len + kPageSize - 1) & ~(kPageSize - 1);  // may wrap to 0: nothing to do
  const std::uint64_t end = start + len;
  if (end < start) return -ENOMEM;
  if (end == start) return 0;
  // Holes are skipped, but the call then fails with -ENOMEM at the end
  // (MS_ASYNC alone gives up at the first one: nothing else to do).
  int unmapped_error = 0, error = 0;
  mmap_read_lock(mm);
  Vma* vma = find_vma(mm, start);
  for (;;) {
    error = -ENOMEM;
    if (vma == nullptr) break;
    if (start < vma->vm_start) {
      if (flags == MS_ASYNC) break;
      start = vma->vm_start;
      if (start >= end) break;
      unmapped_error = -ENOMEM;
    }
    if ((flags & MS_INVALIDATE) && (vma->vm_flags & VM_LOCKED)) {
      error = -EBUSY;
      break;
    }
    // MS_SYNC on a shared file mapping would write [start, min(end,
    // vm_end)) back here (vfs_fsync_range): a shmem file has nothing to
    // write.
    start = vma->vm_end;
    if (start >= end) {
      error = 0;
      break;
    }
    vma = find_vma(mm, start);
  }
  mmap_read_unlock(mm);
  return error != 0 ? error : unmapped_error;
}

}  // namespace vmspace::mm
