// SPDX-License-Identifier: MIT
// mmap_lock.h - the mmap_lock and the per-VMA locks (names as in Linux's
// include/linux/mmap_lock.h).  The protocol and its correctness argument
// are at the top of mmap_lock.cpp; the lock-state table is in
// docs/locking.md.
//
//   mmap_read_lock / mmap_read_unlock / mmap_read_trylock
//   mmap_write_lock / mmap_write_unlock / mmap_write_downgrade
//   mmap_assert_locked / mmap_assert_write_locked
//   vma_start_write          (mmap W; no-op if already write-locked; blocks
//                             until the VMA's readers have left)
//   vma_assert_write_locked
//   vma_start_read / vma_end_read
//   vma_mark_attached / vma_mark_detached
//   lock_vma_under_rcu       (no mm lock held on entry)
//
// There is deliberately no vma_end_write(): every VMA write lock of an mm
// ends at once when the mmap_lock write side is released or downgraded
// (vma_end_write_all bumps mm_lock_seq; in per_vma_range, the writer's
// own list of VMAs is unlocked: range_writer.h).
#pragma once

#include "mm/mm_types.h"
#include "mm/range_writer.h"

namespace vmspace::mm {

// ---- mmap_lock ---------------------------------------------------------

// In per_vma_range these take a whole-space request on mm->range_lock
// (range_writer.h), which behaves exactly as the mmap_lock, FIFO.
inline void mmap_read_lock(MmStruct* mm) {
  if (mm->mode == LockMode::per_vma_range) return range_lock_whole(mm, RangeLock::Mode::read);
  mm->mmap_lock.lock_shared();
}
inline void mmap_read_unlock(MmStruct* mm) {
  if (mm->mode == LockMode::per_vma_range) return range_unlock(mm);
  mm->mmap_lock.unlock_shared();
}
[[nodiscard]] inline bool mmap_read_trylock(MmStruct* mm) {
  if (mm->mode == LockMode::per_vma_range) return range_trylock_whole(mm, RangeLock::Mode::read);
  return mm->mmap_lock.try_lock_shared();
}

// mmap_read_trylock for a holder of `vma`'s read lock that is about to read
// its neighbours (anon_vma_prepare): in per_vma_range, a read request on
// the VMA's neighbourhood only (docs/range-writers.md section 6), so that
// layout changes elsewhere do not make it fail.  Release with
// mmap_read_unlock.
[[nodiscard]] inline bool mmap_read_trylock_vma(MmStruct* mm, std::uint64_t vm_start, std::uint64_t vm_end) {
  if (mm->mode == LockMode::per_vma_range) return range_trylock_read(mm, vm_start, vm_end);
  return mm->mmap_lock.try_lock_shared();
}

// Write side.  Every VMA write lock taken under it ends when it ends.
void mmap_write_lock(MmStruct* mm, unsigned subclass = 0);
[[nodiscard]] bool mmap_write_trylock(MmStruct* mm);
void mmap_write_unlock(MmStruct* mm);     // ends all VMA write locks
void mmap_write_downgrade(MmStruct* mm);  // ends all VMA write locks; keeps mmap R

inline void mmap_assert_locked(const MmStruct* mm) {
  if (mm->mode == LockMode::per_vma_range) return range_assert_locked(mm);
  mm->mmap_lock.assert_locked();
}
inline void mmap_assert_write_locked(const MmStruct* mm) {
  if (mm->mode == LockMode::per_vma_range) return range_assert_write_locked(mm);
  mm->mmap_lock.assert_write_locked();
}

// Threads waiting for the mmap_lock (the range lock's waiting requests in
// per_vma_range).  Racy: for tests and diagnostics.
std::size_t mmap_lock_waiter_count(MmStruct* mm);
inline bool mmap_lock_has_waiters(MmStruct* mm) { return mmap_lock_waiter_count(mm) != 0; }

// ---- per-VMA locks -----------------------------------------------------

// Is `vma` write-locked in the current mmap_lock write session (by any
// writer, in per_vma_range)?
inline bool vma_is_write_locked(const Vma* vma) {
  const std::uint64_t seq = vma->vm_lock_seq.load(std::memory_order_relaxed);
  if (vma->vm_mm->mode == LockMode::per_vma_range) return seq != kVmaUnlockedSeq;
  return seq == vma->vm_mm->mm_lock_seq.raw_read_relaxed();
}

// Write-lock `vma` for the rest of this mmap_lock write session.  Requires
// mmap W.  Waits for the VMA's current readers to leave.
void vma_start_write(Vma* vma);
void vma_assert_write_locked(const Vma* vma);
// Requires mmap R, or vma R held by this thread (debug builds check what
// they can: the mmap_lock side).
void vma_assert_locked(const Vma* vma);

// Attach: the VMA becomes visible to lock_vma_under_rcu.  Call before (or
// while) storing it in the tree, on a VMA nobody else can see yet.
void vma_mark_attached(Vma* vma);
// Detach: requires vma W.  After it returns no reader holds or can take
// the VMA's read lock (per_vma_refcount: waits out transient readers).
void vma_mark_detached(Vma* vma);
bool vma_is_detached(const Vma* vma);

// Why vma_start_read() failed.
enum class VmaReadResult { locked, write_locked, detached };

// Try to read-lock `vma` without the mmap_lock; the caller is inside an RCU
// read-side section that found `vma` in the tree.  Never blocks.
VmaReadResult vma_start_read(MmStruct* mm, Vma* vma);
// Release a read lock from vma_start_read()/lock_vma_under_rcu().
void vma_end_read(Vma* vma);

// Find the VMA containing `addr` under RCU and read-lock it.  Returns
// nullptr when there is no such VMA or it could not be locked (the caller
// falls back to the mmap_lock).  Counts vma_lock_miss (the VMA was detached
// after the lookup: walk again) and vma_lock_abort (any other failure).
// Requires: the caller holds no mm lock (it may then only *try* mmap_lock).
Vma* lock_vma_under_rcu(MmStruct* mm, std::uint64_t addr);

// ---- test hooks (deterministic tests of the lock protocol) -------------
struct VmaLockHooks {
  // Called by lock_vma_under_rcu between the tree lookup and
  // vma_start_read, inside the RCU read-side section.
  void (*after_lookup)(MmStruct* mm, Vma* vma, void* arg) = nullptr;
  void* arg = nullptr;
};
// Install hooks for the calling thread only (nullptr to remove).
void set_vma_lock_hooks(const VmaLockHooks* hooks);

}  // namespace vmspace::mm
