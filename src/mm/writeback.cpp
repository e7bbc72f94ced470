// SPDX-License-Identifier: MIT
#include "mm/writeback.h"

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "mm/memory.h"
#include "mm/mmu_notifier.h"
#include "vmspace/address_space.h"
#include "mm/vma.h"
#include "sync/rcu.h"

namespace vmspace::mm {

void mapping_mkclean(mem::File* file, std::uint64_t first, std::uint64_t last) {
  if (first >= last) return;
  // i_mmap_rwsem keeps the VMAs' ranges and their page tables (munmap
  // unlinks a file VMA before it frees tables), as for truncate.
  file->i_mmap_rwsem.lock_shared();
  for (Vma* v : file->i_mmap) {
    std::uint64_t start, end;
    if (!vma_file_range(v, first, last, &start, &end)) continue;
    mem::PhysMem* phys = v->vm_mm->phys;
    // Writable translations of the range die (under i_mmap_rwsem read).
    MmuNotifierRange inv(v->vm_mm, start, end, InvalidateReason::other);
    v->vm_mm->pgtables.for_each_present(start, end, [&](std::uint64_t, std::atomic<mem::pte_t>& slot, mem::pte_t old) {
      if ((old & (mem::kPteWrite | mem::kPteDirty)) == 0) return;
      const mem::pfn_t pfn = mem::pte_pfn(old);
      if (pfn == phys->zero_pfn() || phys->frame(pfn).mapping.load(std::memory_order_relaxed) !=
                                         reinterpret_cast<std::uintptr_t>(file))
        return;  // a private copy: not the file's page
      // Release: pairs with the acquire of lockless walkers, which from
      // now on find the page read-only and fault to write.  ptep_modify
      // (page_table.h rule I): a soft-MMU write may dirty a writable clean
      // entry meanwhile; it is cleaned all the same (the page's kPgDirty
      // was cleared before, and that write ends within the grace period
      // that comes before the copy-out).
      mem::ptep_modify(slot, old, [](mem::pte_t pte) { return mem::pte_mkclean(mem::pte_wrprotect(pte)); });
    });
  }
  file->i_mmap_rwsem.unlock_shared();
}

int filemap_write_range(mem::File* file, std::uint64_t first, std::uint64_t last) {
  if (!file->can_writeback() || first >= last) return 0;
  mem::PhysMem* phys = file->phys;
  const bool in_read_section = rcu::in_read_section();
  std::unique_lock<std::mutex> claim(file->wb_claim, std::defer_lock);
  if (!in_read_section) claim.lock();

  // The dirty pages of the range, each pinned.  The vector is allocated
  // outside the spin lock; if pages were added meanwhile and it fills up,
  // again with more room.
  std::vector<std::pair<std::uint64_t, mem::pfn_t>> dirty;
  std::size_t room = 64;
  for (;;) {
    try {
      dirty.reserve(room);
    } catch (const std::bad_alloc&) {
      return -ENOMEM;
    }
    bool full = false;
    std::size_t cached = 0;
    file->i_pages.lock();
    file->pages.for_each_in(first, last, [&](std::uint64_t index, mem::pfn_t pfn) {
      ++cached;
      // Inside a read section also the pages another write-back claimed
      // (cleaned, not written yet): they may hold writes older than us.
      const std::uint32_t want = in_read_section ? (mem::kPgDirty | mem::kPgWriteback) : mem::kPgDirty;
      if (full || !(phys->frame(pfn).flags.load(std::memory_order_acquire) & want)) return;
      if (dirty.size() == dirty.capacity()) {
        full = true;
        return;
      }
      phys->get(pfn);
      dirty.emplace_back(index, pfn);  // within capacity: does not allocate
    });
    file->i_pages.unlock();
    if (!full) break;
    for (const auto& e : dirty) phys->put(e.second);
    dirty.clear();
    room = cached + 64;
  }
  if (dirty.empty()) return 0;

  if (!in_read_section) {
    // 1. clear, 2. write-protect, 3. let old translations finish.
    std::uint64_t lo = UINT64_MAX, hi = 0;
    for (const auto& [index, pfn] : dirty) {
      phys->frame(pfn).flags.fetch_or(mem::kPgWriteback, std::memory_order_acq_rel);
      phys->frame(pfn).flags.fetch_and(~mem::kPgDirty, std::memory_order_acq_rel);
      lo = std::min(lo, index);
      hi = std::max(hi, index + 1);
    }
    mapping_mkclean(file, lo, hi);
    rcu::synchronize();
  }
  // 4. copy out.  A page that failed is dirty again (it was not written).
  int error = 0;
  for (const auto& [index, pfn] : dirty) {
    const int r = mem::file_write_page(file, index, pfn);
    if (!in_read_section) phys->frame(pfn).flags.fetch_and(~mem::kPgWriteback, std::memory_order_release);
    if (r < 0) {
      phys->frame(pfn).flags.fetch_or(mem::kPgDirty, std::memory_order_release);
      if (error == 0) error = r;
    }
    phys->put(pfn);
  }
  return error;
}

int vfs_fsync_range(mem::File* file, std::uint64_t first, std::uint64_t last) {
  const int r = filemap_write_range(file, first, last);
  if (r != 0 || !file->can_writeback()) return r;
  return file->backing->sync();
}

}  // namespace vmspace::mm
