// SPDX-License-Identifier: MIT
// lock_order.h - THE lock order of vmspace.  This is the one canonical copy;
// docs/locking.md quotes it and defers to it.
//
// A lock may be acquired (blocking) only while every lock the thread already
// holds belongs to a class listed ABOVE it.  Try-locks may be taken out of
// order (they cannot deadlock) and are then treated as held.
//
//   File::size_lock        per file (Linux's inode lock); std::mutex, not
//                          checked by lockdep: ftruncate and a pwrite that
//                          extends the file, never with an mm lock held
//   File::wb_claim         per file, std::mutex: one write-back (msync,
//                          fsync) of the file at a time, held across an RCU
//                          grace period, so never inside a read section;
//                          never with an mm lock held (msync drops it)
//   mmap_lock              RwSemaphore, one per AddressSpace
//   range_lock             RangeLock (sync/range_lock.h), per_vma_range
//                          mode's mmap_lock (mm/range_writer.h): one
//                          request (one or two intervals, read or write)
//                          per thread per mm; the whole space is the
//                          mmap_lock; fork nests the child's as subclass
//                          1.  Its internal SpinLock is a leaf
//     vma_lock             per-VMA lock.  Write side (vma_start_write) only
//                          with mmap_lock held for write (per_vma_range:
//                          a write range containing the VMA); read side
//                          (lock_vma_under_rcu) only with NO mm lock held,
//                          after which mmap_lock may only be try-locked
//       i_mmap_rwsem       per file mapping (address_space)
//         MmuNotifiers::lock  per AddressSpace, std::shared_mutex, not
//                          checked by lockdep: held shared across
//                          invalidation callbacks (under the mmap_lock, a
//                          VMA lock or i_mmap_rwsem; never under a
//                          spinlock), exclusive by register/unregister
//                          under no mm lock; nothing is taken under it
//         WriteWatch::lock per AddressSpace, std::mutex, not checked by
//                          lockdep: a leaf under the mmap_lock or a VMA
//                          lock; never under a spinlock or across a callback
//         anon_vma_rwsem   the root anon_vma's
//           page_table_lock  per AddressSpace, upper page-table levels
//             pte_lock       per PTE table (split page-table locks)
//               File::wb_io  per file, std::mutex: a page's write to the
//                            backing, the backing's truncate / punch_hole
//                            (MADV_REMOVE: under mmap_lock; write-back,
//                            ftruncate: under no mm lock)
//               frame_lock   frame allocator / page-cache internals
//   RangeTree's commit lock  per_vma_range: one store/erase of the VMA tree
//                          (tree/range_tree.h); a leaf under any of the
//                          above, nothing but the node pool under it
//
// Same-class nesting (two locks of one class at once) is a deadlock unless
// the caller names a distinct subclass (fork: parent then child mmap_lock,
// parent then child PTE table; mremap: old then new PTE table), like
// Linux's SINGLE_DEPTH_NESTING.
#pragma once

#include <cstdint>

namespace vmspace {

enum class LockClass : std::uint8_t {
  mmap_lock = 0,
  range_lock,
  vma_lock,
  i_mmap_rwsem,
  anon_vma_rwsem,
  page_table_lock,
  pte_lock,
  frame_lock,
  none,  // not order-checked (internal leaf locks, test-only locks)
};

constexpr const char* lock_class_name(LockClass c) {
  switch (c) {
    case LockClass::mmap_lock: return "mmap_lock";
    case LockClass::range_lock: return "range_lock";
    case LockClass::vma_lock: return "vma_lock";
    case LockClass::i_mmap_rwsem: return "i_mmap_rwsem";
    case LockClass::anon_vma_rwsem: return "anon_vma_rwsem";
    case LockClass::page_table_lock: return "page_table_lock";
    case LockClass::pte_lock: return "pte_lock";
    case LockClass::frame_lock: return "frame_lock";
    case LockClass::none: return "unclassified";
  }
  return "?";
}

}  // namespace vmspace
