// SPDX-License-Identifier: MIT
// memory.h - page-level work on a VMA's range (Linux's mm/memory.c and the
// page-table half of mm/mprotect.c): zapping pages, changing PTE
// protections, and the rules that map VMA flags to PTE bits.
#pragma once

#include <cstdint>

#include "mm/mm_types.h"

namespace vmspace::mm {

// The PTE an access to `vma` may use.  x86 has no write-only or exec-only
// pages: any of VM_READ/VM_WRITE/VM_EXEC makes a page readable
// (vma_is_accessible); kPteUser is our "accessible" bit, so PROT_NONE pages
// keep their frame but no access bit.
inline bool vma_is_accessible(const Vma* vma) { return (vma->vm_flags & VM_ACCESS_FLAGS) != 0; }

// An execute-only VMA on a host whose kernel backs PROT_EXEC-only mappings
// with an execute-only protection key (MmConfig::exec_only_pkey): data
// accesses fault (SEGV_PKUERR) and its PTEs carry no data-access bit.
inline bool vma_is_exec_only(const Vma* vma) {
  return vma->vm_mm->cfg.exec_only_pkey && (vma->vm_flags & VM_ACCESS_FLAGS) == VM_EXEC;
}
// May the VMA's pages be read as data (the soft MMU's kPteUser bit)?
inline bool vma_data_accessible(const Vma* vma) { return vma_is_accessible(vma) && !vma_is_exec_only(vma); }

// Remove the PTEs of [start, end) inside `vma` and drop the pages they
// mapped (MADV_DONTNEED, munmap).  Requires mmap R with the range's VMA
// write-locked or detached, or mmap W.
void zap_vma_range(Vma* vma, std::uint64_t start, std::uint64_t end);

// Bring the PTEs of [start, end) in line with vma->vm_flags (mprotect):
// clear the write bit where writing is no longer allowed (private pages
// are made writable again lazily, by the write-protect fault), clear or set
// the access bit, and make shared pages writable where allowed.  Requires
// mmap W and the VMA write-locked.
void change_protection(Vma* vma, std::uint64_t start, std::uint64_t end);

// The page index of `addr` in `vma` (Linux linear_page_index).
inline std::uint64_t linear_page_index(const Vma* vma, std::uint64_t addr) {
  return vma->vm_pgoff + ((addr - vma->vm_start) >> kPageShift);
}

}  // namespace vmspace::mm
