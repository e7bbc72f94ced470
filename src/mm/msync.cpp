// SPDX-License-Identifier: MIT
// msync.cpp - msync(2), as Linux 6.18's mm/msync.c decides each case.
//
// MS_SYNC on a shared mapping of a file with a backing writes the dirty
// pages of the range back and syncs the backing (vfs_fsync_range), with
// the mmap_lock dropped meanwhile, as Linux does.  MS_ASYNC writes them
// back without the sync: Linux only leaves them to its flusher threads,
// which vmspace does not have.  A shmem file (memfd, shared anonymous
// memory) has nothing to write: its page cache is its storage.
// MS_INVALIDATE changes nothing but the -EBUSY check, as in Linux: every
// mapping of a file sees the one page cache.
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>

#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"
#include "mm/writeback.h"

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
    mem::File* file = vma->vm_file;
    if ((flags & (MS_SYNC | MS_ASYNC)) && file != nullptr && file->can_writeback() &&
        (vma->vm_flags & VM_SHARED)) {
      // The file pages [start, min(end, vm_end)) map.
      const std::uint64_t first = vma->vm_pgoff + ((start - vma->vm_start) >> kPageShift);
      const std::uint64_t last = first + ((std::min(end, vma->vm_end) - start) >> kPageShift);
      start = vma->vm_end;
      mem::get_file(file);
      mmap_read_unlock(mm);
      error = (flags & MS_SYNC) ? vfs_fsync_range(file, first, last) : filemap_write_range(file, first, last);
      mem::fput(file);
      if (error != 0 || start >= end) return error != 0 ? error : unmapped_error;
      mmap_read_lock(mm);
      vma = find_vma(mm, start);
      continue;
    }
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
