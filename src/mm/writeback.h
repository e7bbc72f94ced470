// SPDX-License-Identifier: MIT
// writeback.h - writing a file's dirty pages back to its backing (Linux's
// mm/page-writeback.c and folio_mkclean in mm/rmap.c), for msync, fsync.
//
// A page of a file with a backing is dirty (kPgDirty) once pwrite or a
// write fault on a shared mapping changed it.  Writable shared mappings
// of such a file map pages read-only until a write faults
// (vma_wants_writenotify), and that fault sets kPgDirty before it makes
// the PTE writable, under the PTE lock (a store through that PTE always
// finds the page dirty).  Write-back of a page, one write-back of a file
// at a time (wb_claim):
//   1. sets kPgWriteback and clears kPgDirty;
//   2. write-protects and cleans every PTE mapping it (folio_mkclean:
//      under i_mmap_rwsem for read, each PTE table's lock), so the next
//      write faults and sets kPgDirty again;
//   3. waits for an RCU grace period: writes that went through a
//      translation made before step 2 (AddressSpace::write, AccessScope
//      pointers) have finished, as Linux's TLB flush ends them;
//   4. copies the page to the backing (under wb_io), clears kPgWriteback.
// Whatever is written after step 2 dirties the page again, so a later
// write-back writes it: nothing written before a write-back began is left
// only in memory once it ends.
//
// A thread inside an RCU read section (an AccessScope) cannot wait for a
// grace period, nor for another write-back that waits for one: its
// write-back copies the pages that are dirty or under write-back, and
// clears nothing (they stay dirty; a later write-back writes them again).
#pragma once

#include <cstdint>

#include "mem/file.h"

namespace vmspace::mm {

// Write the dirty pages of `file` with indices in [first, last) back.
// 0 (also for a file without a backing), or the first -errno of the
// backing (those pages stay dirty).  Holds no mm lock; takes wb_claim
// (outside a read section), i_mmap_rwsem, PTE locks, wb_io.
int filemap_write_range(mem::File* file, std::uint64_t first, std::uint64_t last);

// fsync(2) for a range: write back, then the backing's sync().
int vfs_fsync_range(mem::File* file, std::uint64_t first, std::uint64_t last);

// Write-protect and clean the PTEs that map the file's own pages (not
// private copies) with indices in [first, last) in every mapping of it.
void mapping_mkclean(mem::File* file, std::uint64_t first, std::uint64_t last);

}  // namespace vmspace::mm
