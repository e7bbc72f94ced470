// SPDX-License-Identifier: MIT
// truncate.h - changing a file's size and punching holes into it, with the
// unmapping that goes with them (Linux's mm/truncate.c,
// unmap_mapping_range, and shmem's setattr and hole punch).
//
// Faults on a file take a page from its cache without the PTE lock and
// install it only if, under the PTE lock, the cache still holds it (see
// fault.cpp); a page past the size is never added to the cache once a
// smaller size is set (shmem_get_page).  So each operation here first
// changes the size / drops the pages from the cache and then unmaps: a
// fault either sees the page gone (and retries, finding SIGBUS or a fresh
// page), or installed its PTE before the unmap, which then removes it.
//
// Locks: i_mmap_rwsem for read (the VMAs mapping the file and their
// ranges stay as they are; their page tables are not freed: munmap takes a
// VMA out of i_mmap before freeing tables), then each PTE table's lock.
// No mmap_lock or VMA lock is needed, so one call covers the mappings of
// the file in every address space.
#pragma once

#include <cstdint>

#include "mem/file.h"

namespace vmspace::mm {

// Remove the PTEs that map pages [first, last) of `file` from every
// mapping of it; with even_cows, private copies of those pages too
// (truncate), else only the file's own pages (a hole punch).
void unmap_mapping_pages(mem::File* file, std::uint64_t first, std::uint64_t last, bool even_cows);

// ftruncate(2): the new size in bytes.  A file with a backing has it
// truncated first (its error, -EFBIG, -EIO..., changes nothing here).  Shrinking drops
// the pages past it from the cache and from every mapping (private copies
// included, as Linux does), and zeroes the tail of the partial last page;
// growing only moves the size (the new range reads as zeros).  Returns 0,
// -EINVAL for a size above MAX_LFS_FILESIZE (a negative loff_t), or the
// backing's error.  Caller holds size_lock.
int shmem_truncate(mem::File* file, std::uint64_t size);

// MADV_REMOVE / fallocate(PUNCH_HOLE) on whole pages [first, last) of a
// file: the backing (if any) deallocates the range, then the pages leave
// the cache and every shared mapping; private copies stay.  0, or the
// backing's error (-EOPNOTSUPP), with nothing changed.
int shmem_punch_hole(mem::File* file, std::uint64_t first, std::uint64_t last);

// ---- test hooks (deterministic tests; not called in release builds) ----
struct TruncateHooks {
  // unmap_mapping_pages: i_mmap_rwsem is held for read, nothing is zapped
  // yet.
  void (*i_mmap_locked)(mem::File* file, void* arg) = nullptr;
  void* arg = nullptr;
};
// Install hooks for the calling thread only (nullptr to remove).
void set_truncate_hooks(const TruncateHooks* hooks);

}  // namespace vmspace::mm
