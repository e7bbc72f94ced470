// SPDX-License-Identifier: MIT
// memory.h - page-level work on a VMA's range (Linux's mm/memory.c and the
// page-table half of mm/mprotect.c): zapping pages, changing PTE
// protections, and the rules that map VMA flags to PTE bits.
#pragma once

#include <algorithm>
#include <cstdint>

#include "mem/file.h"
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
// The key lives in vm_flags (VM_PKEY_*): it was given when the mapping was
// made or mprotected with exactly PROT_EXEC (arch_override_mprotect_pkey),
// so it also decides merges and anon_vma sharing as in Linux.
inline bool vma_is_exec_only(const Vma* vma) { return (vma->vm_flags & VM_PKEY_MASK) == VM_PKEY_EXEC_ONLY; }

// The protection-key bits for a mapping made or changed with `prot`: the
// execute-only key for exactly PROT_EXEC on a host with keys, else none.
inline vm_flags_t pkey_flags_for(const MmStruct* mm, int prot) {
  return mm->cfg.exec_only_pkey && prot == PROT_EXEC ? VM_PKEY_EXEC_ONLY : 0;
}
// May the VMA's pages be read as data (the soft MMU's kPteUser bit)?
inline bool vma_data_accessible(const Vma* vma) { return vma_is_accessible(vma) && !vma_is_exec_only(vma); }

// Linux vm_get_page_prot() for the bits the soft MMU checks: give `pte`
// (a PTE of `vma`) the VMA's data-access bit (kPteUser; without it, no
// write either) and its no-execute bit (kPteNx unless VM_EXEC, as x86's
// protection_map sets _PAGE_NX).  Whether the entry is writable is the
// caller's business otherwise (copy on write, write-notify).  Every PTE
// installed for a VMA goes through this, and change_protection() keeps
// the bits in step with mprotect, so a lockless walker (the soft MMU's
// translate) can decide an access from the entry alone.
inline mem::pte_t pte_apply_vma_prot(mem::pte_t pte, const Vma* vma) {
  pte = vma_data_accessible(vma) ? (pte | mem::kPteUser) : (pte & ~(mem::kPteUser | mem::kPteWrite));
  return (vma->vm_flags & VM_EXEC) ? mem::pte_mkexec(pte) : mem::pte_mknexec(pte);
}

// What a zap does to PTE markers (guard regions): munmap and exit drop
// them with the mapping; the zaps of madvise (DONTNEED, DONTNEED_LOCKED,
// REMOVE) keep them (Linux: ZAP_FLAG_DROP_MARKER or not).
enum class ZapMarkers { drop, keep };

// Remove the PTEs of [start, end) inside `vma` and drop the pages they
// mapped (MADV_DONTNEED, munmap).  Requires the VMA to stay as it is and
// its page tables to stay allocated: mmap W; or mmap R; or a read lock of
// `vma` itself (MADV_DONTNEED on one VMA, madvise.cpp says why that is
// enough).  PTEs change only under their table's lock, so this races
// safely with faults, which re-check the PTE under that lock.
void zap_vma_range(Vma* vma, std::uint64_t start, std::uint64_t end,
                   ZapMarkers markers = ZapMarkers::drop);

// Remove the PTEs of [start, end) inside `vma` that map a file's pages,
// leaving private copies (anonymous pages) and markers: a hole punched
// into the file (Linux unmap_mapping_range without even_cows).  Needs the
// VMA's range stable (mmap_lock, a VMA lock, or i_mmap_rwsem read for a
// VMA found in the file's i_mmap).
void zap_file_pages(Vma* vma, std::uint64_t start, std::uint64_t end);

// MADV_GUARD_INSTALL's page-table work: guard markers over [start, end),
// discarding the pages mapped there.  Same locking as zap_vma_range.
// False when a page table could not be allocated.
bool install_guard_range(Vma* vma, std::uint64_t start, std::uint64_t end);

// MADV_FREE on private anonymous memory: the anonymous pages of [start,
// end) become lazily freeable through this VMA's PTEs (clean,
// write-protected so that a write makes them dirty again through a fault,
// kPteLazyFree), also those a fork relative maps too.
// Same locking as zap_vma_range.
void mark_lazyfree_range(Vma* vma, std::uint64_t start, std::uint64_t end);
// MADV_PAGEOUT: reclaim what can be reclaimed without swap (vmspace has
// none): lazily freeable pages that are still clean are discarded (they
// read back as zero-fill); everything else stays.  Same locking.
void pageout_range(Vma* vma, std::uint64_t start, std::uint64_t end);

// Linux vma_needs_copy(): must fork copy `src`'s page tables, or can the
// child fault everything in again?  Anonymous pages (the VMA has an
// anon_vma) and guard markers (VM_MAYBE_GUARD, Linux 6.18.37+) exist only
// in the page tables; file pages come back from the page cache.
inline bool vma_needs_copy(const Vma* src) {
  return src->anon_vma.load(std::memory_order_relaxed) != nullptr || (src->vm_flags & VM_MAYBE_GUARD) != 0;
}

// Linux copy_page_range(): fork's copy of `src`'s PTEs into `dst` (the
// child's copy of src: same range, in another space).  Every frame mapped
// gains a reference and a mapcount; in a copy-on-write mapping
// (VM_MAYWRITE without VM_SHARED) writable PTEs are write-protected in
// both spaces, so the first write on either side copies or (if the other
// side has let go) reuses the page; the zero page stays the zero page;
// guard markers are copied; the child's PTEs are old (and clean in shared
// mappings, read-only there under write-notify, so that a write marks the
// page dirty).  With `copy_writable` (fork inside an AccessScope, which
// cannot wait for older translations to end), writable private anonymous
// pages are copied for the child at once instead: a store through a
// translation taken before fork then stays the parent's.  Requires both
// spaces' mmap W and src write-locked; takes each pair of PTE tables'
// locks (src's, then dst's as subclass 1).  False when a page table or a
// frame for dst could not be allocated (what was copied stays, counted:
// tearing dst down releases it).
[[nodiscard]] bool copy_page_range(Vma* dst, Vma* src, bool copy_writable);

// Bring the PTEs of [start, end) in line with vma->vm_flags (mprotect):
// clear the write bit where writing is no longer allowed (private pages
// are made writable again lazily, by the write-protect fault), clear or set
// the access bit, and make shared pages writable where allowed (with
// write-notify only the dirty ones, Linux's can_change_pte_writable).  Requires
// mmap W and the VMA write-locked.
void change_protection(Vma* vma, std::uint64_t start, std::uint64_t end);

// Linux vma_wants_writenotify(): a writable shared mapping of a file whose
// dirty pages are written back maps pages read-only until a write fault
// marks them dirty (kPgDirty), so that write-back can clean them and see
// the next write.  (shmem files do not: their PTEs are writable at once.)
inline bool vma_wants_writenotify(const Vma* vma) {
  return (vma->vm_flags & (VM_SHARED | VM_WRITE)) == (VM_SHARED | VM_WRITE) && vma->vm_file != nullptr &&
         vma->vm_file->can_writeback();
}

// The page index of `addr` in `vma` (Linux linear_page_index).
inline std::uint64_t linear_page_index(const Vma* vma, std::uint64_t addr) {
  return vma->vm_pgoff + ((addr - vma->vm_start) >> kPageShift);
}

// The addresses [*start, *end) at which `vma` maps file pages [first,
// last) (Linux's vma_interval_tree walk with its pgoff clamp); false when
// it maps none of them.  Caller keeps the VMA's range stable (i_mmap_rwsem
// or the mmap_lock).
inline bool vma_file_range(const Vma* vma, std::uint64_t first, std::uint64_t last, std::uint64_t* start,
                           std::uint64_t* end) {
  const std::uint64_t lo = std::max(first, vma->vm_pgoff);
  const std::uint64_t hi = std::min(last, vma->vm_pgoff + vma->pages());
  if (lo >= hi) return false;
  *start = vma->vm_start + ((lo - vma->vm_pgoff) << kPageShift);
  *end = vma->vm_start + ((hi - vma->vm_pgoff) << kPageShift);
  return true;
}

}  // namespace vmspace::mm
