// SPDX-License-Identifier: MIT
// munmap.cpp - removing mappings (Linux's do_vmi_munmap and the
// vms_gather/complete pair it shares with MAP_FIXED).
#include <cerrno>
#include <new>

#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/memory.h"
#include "mm/mmu_notifier.h"
#include "vmspace/address_space.h"
#include "mm/rmap.h"
#include "mm/vma.h"

namespace vmspace::mm {

int vms_gather_munmap_vmas(MmStruct* mm, std::uint64_t start, std::uint64_t end,
                           std::vector<Vma*>* out) {
  mmap_assert_write_locked(mm);
  Vma* vma = find_vma(mm, start);
  if (vma == nullptr || vma->vm_start >= end) return 0;
  if (start > vma->vm_start) {
    // Unmapping the inside of one VMA leaves one more VMA than before.
    if (end < vma->vm_end && mm->map_count >= mm->max_map_count) return -ENOMEM;
    if (!can_modify_vma(vma)) return -EPERM;  // sealed: not even split
    if (__split_vma(mm, vma, start, /*new_below=*/true) == nullptr) return -ENOMEM;  // vma keeps [start, vm_end)
  }
  for (Vma* v = vma; v != nullptr && v->vm_start < end;) {
    // v keeps [.., end).  On failure the start split stays (Linux's
    // end_split_failed); the VMAs gathered so far are only write-locked.
    if (!can_modify_vma(v)) return -EPERM;
    if (v->vm_end > end && __split_vma(mm, v, end, /*new_below=*/false) == nullptr) return -ENOMEM;
    vma_start_write(v);
    // Linux gathers into a tree it preallocates (munmap_gather_failed:
    // -ENOMEM); here the list may have to grow.  Nothing is changed yet
    // but the splits, which stay, as in Linux.
    try {
      out->push_back(v);
    } catch (const std::bad_alloc&) {
      return -ENOMEM;
    }
    v = vma_next(mm, v);
  }
  return 0;
}

void vms_complete_munmap_vmas(MmStruct* mm, const std::vector<Vma*>& vmas, bool free_tables) {
  if (vmas.empty()) return;
  // The gathered VMAs are out of the tree (replaced, or erased) and
  // write-locked, so no fault can map pages into them any more: free their
  // pages (after this, no new access uses the old translations), then the
  // page tables that no other VMA shares (seed 002's ordering: tables go
  // only after the VMAs are unreachable and the PTEs are zapped).
  const std::uint64_t start = vmas.front()->vm_start, end = vmas.back()->vm_end;
  {
    // One start/end pair for the whole range (munmap, MAP_FIXED over,
    // brk shrinking, mremap's source), under mmap W.
    MmuNotifierRange inv(mm, start, end, InvalidateReason::unmap);
    for (Vma* v : vmas) zap_vma_range(v, v->vm_start, v->vm_end);
  }
  // The range is no longer watched (write_watch.h).
  ww_forget(mm, start, end);
  // Out of the file's reverse map (Linux unlink_file_vma, inside
  // free_pgtables) before any page table goes: a truncate walks the
  // tables of the VMAs it finds there under i_mmap_rwsem alone.
  for (Vma* v : vmas) vma_unlink_file(v);
  if (free_tables) {
    const Vma* prev = find_vma_prev_of(mm, start);
    const Vma* next = find_vma(mm, end);
    std::uint64_t floor = prev != nullptr ? prev->vm_end : 0, ceiling = next != nullptr ? next->vm_start : 0;
    // A ranged writer frees only tables wholly inside its range: another
    // writer's (or its faults') tables may lie beside it (range-writers.md
    // 3.4).
    range_clip_floor_ceiling(mm, &floor, &ceiling);
    mm->pgtables.free_pgtables(start, end, floor, ceiling);
  }
  for (Vma* v : vmas) {
    if (v->vm_flags & VM_LOCKED) mm->locked_vm -= v->pages();
    // Still write-locked; detached before the mmap_lock write side ends.
    vma_mark_detached(v);
    mm->map_count--;
    unlink_anon_vmas(v);
    vm_area_free(v);
  }
}

int do_vmi_munmap_locked(MmStruct* mm, std::uint64_t start, std::uint64_t end) {
  std::vector<Vma*> gathered;
  if (int err = vms_gather_munmap_vmas(mm, start, end, &gathered)) return err;
  if (gathered.empty()) return 0;
  // The tree's nodes for the erase (Linux's vma_iter_clear_gfp): on failure
  // the edge splits stay and the VMAs stay mapped (clear_tree_failed).
  if (!mm->mm_mt.preallocate()) return -ENOMEM;
  std::uint64_t accounted = 0;
  for (const Vma* v : gathered)
    if (v->vm_flags & VM_ACCOUNT) accounted += v->pages();
  // One store: readers see all of [start, end) unmapped at once.
  mm->mm_mt.erase(start, end);
  vms_complete_munmap_vmas(mm, gathered, /*free_tables=*/true);
  if (accounted != 0) vm_unacct_memory(mm, accounted);
  return 0;
}

int vm_munmap(MmStruct* mm, std::uint64_t start, std::uint64_t len) {
  if (!page_aligned(start) || start > mm->task_size || len > mm->task_size - start) return -EINVAL;
  const std::uint64_t end = start + page_align(len);
  if (end == start) return -EINVAL;
  if (mm->mode == LockMode::per_vma_range) {
    // A range, unless a locked VMA is in it (locked_vm is exact only
    // under the whole space).
    if (range_write_lock(mm, start, end) && range_has_vma_with(mm, start, end, VM_LOCKED)) range_write_widen(mm);
  } else {
    mmap_write_lock(mm);
  }
  int err = do_vmi_munmap_locked(mm, start, end);
  mm_debug_validate(mm);
  mmap_write_unlock(mm);
  return err;
}

}  // namespace vmspace::mm
