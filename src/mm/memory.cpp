// SPDX-License-Identifier: MIT
// memory.cpp - zapping and re-protecting the pages of a VMA range.
//
// Frames mapped by PTEs carry one reference per PTE (plus the page cache's
// reference for shmem pages) and a mapcount.  Both are dropped under the
// PTE's lock, right after the PTE is cleared; the frame is reused only
// after an RCU grace period (PhysMem::put), so a lockless reader that read
// the old PTE just before the zap can finish its access safely — and any
// access that starts after the zap returned sees no PTE.
#include "mm/memory.h"

namespace vmspace::mm {

void zap_vma_range(Vma* vma, std::uint64_t start, std::uint64_t end) {
  MmStruct* mm = vma->vm_mm;
  mem::PhysMem* phys = mm->phys;
  const bool shmem = vma->vm_file != nullptr;
  mm->pgtables.zap_range(start, end, [&](std::uint64_t, mem::pte_t old) {
    const mem::pfn_t pfn = mem::pte_pfn(old);
    if (pfn == phys->zero_pfn()) return;
    phys->frame(pfn).mapcount.fetch_sub(1, std::memory_order_relaxed);
    (shmem ? mm->rss_shmem : mm->rss_anon).fetch_sub(1, std::memory_order_relaxed);
    phys->put(pfn);
  });
}

void change_protection(Vma* vma, std::uint64_t start, std::uint64_t end) {
  MmStruct* mm = vma->vm_mm;
  const bool accessible = vma_data_accessible(vma);
  const bool shared_writable = (vma->vm_flags & VM_WRITE) && (vma->vm_flags & VM_SHARED);
  const bool writable = (vma->vm_flags & VM_WRITE) != 0;
  mm->pgtables.for_each_present(start, end, [&](std::uint64_t, std::atomic<mem::pte_t>& slot, mem::pte_t old) {
    mem::pte_t pte = old;
    pte = accessible ? (pte | mem::kPteUser) : (pte & ~(mem::kPteUser | mem::kPteWrite));
    if (!writable) pte = mem::pte_wrprotect(pte);
    if (accessible && shared_writable && mem::pte_pfn(pte) != mm->phys->zero_pfn()) pte = mem::pte_mkwrite(pte);
    // Release: pairs with the acquire of lockless walkers.
    if (pte != old) slot.store(pte, std::memory_order_release);
  });
}

}  // namespace vmspace::mm
