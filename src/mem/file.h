// SPDX-License-Identifier: MIT
// file.h - the identity of a file a VMA maps (Linux's struct file plus the
// inode numbers /proc/self/maps shows), and its page cache.  Shared
// anonymous mappings get a fresh shmem object per mmap() call (Linux's
// shmem_zero_setup), which is why two of them never merge while the pieces
// of one split mapping can; their pages live in the object's page cache,
// so every mapping of it (and every fault) sees the same frames.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "mem/phys_mem.h"
#include "sync/rwsem.h"
#include "sync/spinlock.h"

namespace vmspace::mm {
struct Vma;  // the mm layer's VMA; the file only keeps pointers (i_mmap)
}

namespace vmspace::mem {

struct File {
  File(std::uint64_t ino_, unsigned major, unsigned minor, std::string name_, bool shmem_, PhysMem* phys_)
      : ino(ino_), dev_major(major), dev_minor(minor), name(std::move(name_)), shmem(shmem_), phys(phys_) {}
  ~File();  // drops the page cache's frame references
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  // Immutable after creation.
  const std::uint64_t ino;
  const unsigned dev_major, dev_minor;
  const std::string name;  // as /proc/self/maps prints it
  const bool shmem;
  PhysMem* const phys;
  // The object's size in pages (i_size): a fault at or past it is SIGBUS.
  // A shmem object behind MAP_SHARED|MAP_ANONYMOUS has the size of the
  // mmap that made it; a mapping grown by mremap extends past it.
  std::uint64_t size_pages = 0;

  // References: one per VMA mapping the file.  get/put are atomic; the
  // last put frees the File (VMAs are freed after an RCU grace period, so
  // no reader can still reach it).
  std::atomic<long> refs{1};

  // Commit charge of a shmem object (shmem_acct_size): `acct_pages` pages
  // charged to the counter `acct` points to, given back when the object is
  // freed.  Set once at creation, before the object is shared.
  std::shared_ptr<std::atomic<std::int64_t>> acct;
  std::uint64_t acct_pages = 0;

  // The page cache: page index -> frame (holding one reference).  Guarded
  // by i_pages (class frame_lock: innermost; never allocate or free frames
  // while holding it, PhysMem's own lock is of the same class).
  SpinLock i_pages{LockClass::frame_lock};
  std::unordered_map<std::uint64_t, pfn_t> pages;

  // The VMAs that map this file (Linux's address_space->i_mmap), for the
  // reverse map of file pages.  Write: linking and unlinking VMAs, and
  // every change of a linked VMA's vm_start/vm_end/vm_pgoff, with
  // i_mmap_rwsem held for write (vma_prepare/vma_complete, vma_link,
  // munmap).  Read: under i_mmap_rwsem for read (rmap_walk_file), which
  // then also keeps those VMAs' ranges stable.  A list: a shmem object has
  // few VMAs (the pieces of one mapping).
  RwSemaphore i_mmap_rwsem{LockClass::i_mmap_rwsem};
  std::vector<mm::Vma*> i_mmap;
};

// A new shmem object of `pages` pages for one MAP_SHARED|MAP_ANONYMOUS
// mmap(); nullptr when out of memory.
File* shmem_zero_setup(PhysMem* phys, std::uint64_t pages);

// The frame caching page `index` of `f`, allocated zero-filled on first
// use, with one extra reference for the caller.  kNoFrame when out of
// memory (it never waits for frames a grace period would free: callers
// hold mm locks).
pfn_t shmem_get_page(File* f, std::uint64_t index);
// Does `f` still cache `pfn` as page `index`?  (A fault re-checks this
// under the PTE lock before mapping a frame it took from the cache.)
bool shmem_page_cached(File* f, std::uint64_t index, pfn_t pfn);
// Drop the cached pages in [first, last) (MADV_REMOVE punches a hole).
void shmem_truncate_range(File* f, std::uint64_t first, std::uint64_t last);

inline File* get_file(File* f) {
  if (f != nullptr) f->refs.fetch_add(1, std::memory_order_relaxed);
  return f;
}

inline void fput(File* f) {
  // acq_rel: the last put sees every other holder's accesses.
  if (f != nullptr && f->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete f;
}

}  // namespace vmspace::mem
