// SPDX-License-Identifier: MIT
// memory.cpp - zapping and re-protecting the pages of a VMA range.
//
// Frames mapped by PTEs carry one reference per PTE (plus the page cache's
// reference for shmem pages) and a mapcount.  Both are dropped under the
// PTE's lock, right after the PTE is cleared; the frame is reused only
// after an RCU grace period (PhysMem::put), so a lockless reader that read
// the old PTE just before the zap can finish its access safely — and any
// access that starts after the zap returned sees no PTE.  An anonymous
// frame that a fork relative maps too is not freed but may be reused in
// place by the relative: its mapping and reference go through an
// MmuGather (tlb.h), dropped only once no lockless reader of this space
// can still use the old translation.
#include "mm/memory.h"

#include <cstring>
#include <new>
#include <utility>
#include <vector>

#include "mm/mmu_notifier.h"
#include "mm/rmap.h"
#include "vmspace/address_space.h"
#include "mm/tlb.h"

namespace vmspace::mm {

namespace {

// Drop what a just-cleared present PTE of `vma` held: the RSS count, the
// frame's mapcount and the PTE's reference (put: the frame is reused only
// after a grace period; a frame a fork relative maps too goes to `tlb`
// instead).  Under the PTE's lock.  `old` is the value the clearing
// replaced (ptep_get_and_clear: with a dirty bit a lockless writer set up
// to that moment).
void unmap_pte(Vma* vma, mem::pte_t old, MmuGather& tlb) {
  MmStruct* mm = vma->vm_mm;
  mem::PhysMem* phys = mm->phys;
  const mem::pfn_t pfn = mem::pte_pfn(old);
  if (pfn == phys->zero_pfn()) return;
  mem::Frame& fr = phys->frame(pfn);
  // A file's page, or an anonymous one (private mappings of files have
  // both: their copies on write).
  const bool anon = (fr.mapping.load(std::memory_order_relaxed) & mem::kMappingAnon) != 0;
  // A file page written through this PTE stays dirty without it (Linux
  // zap_present_folio_ptes: folio_mark_dirty); an anonymous page's dirt
  // goes with its last mapping.
  if (!anon && mem::pte_dirty(old)) fr.flags.fetch_or(mem::kPgDirty, std::memory_order_relaxed);
  (anon ? mm->rss_anon : mm->rss_shmem).fetch_sub(1, std::memory_order_relaxed);
  if (frame_shared_anon(fr)) {
    tlb.add(pfn);
    return;
  }
  fr.mapcount.fetch_sub(1, std::memory_order_relaxed);
  phys->put(pfn);
}

// A private anonymous frame that only this PTE maps and nobody pins.
bool exclusive_anon(mem::PhysMem* phys, mem::pfn_t pfn) {
  const mem::Frame& fr = phys->frame(pfn);
  return (fr.mapping.load(std::memory_order_relaxed) & mem::kMappingAnon) &&
         fr.mapcount.load(std::memory_order_relaxed) == 1 && fr.refcount.load(std::memory_order_acquire) == 1;
}

}  // namespace

void zap_vma_range(Vma* vma, std::uint64_t start, std::uint64_t end, ZapMarkers markers) {
  MmuGather tlb(vma->vm_mm);
  vma->vm_mm->pgtables.zap_range(
      start, end, [&](std::uint64_t, mem::pte_t old) { unmap_pte(vma, old, tlb); }, markers == ZapMarkers::drop);
}

void zap_file_pages(Vma* vma, std::uint64_t start, std::uint64_t end) {
  mem::PhysMem* phys = vma->vm_mm->phys;
  MmuGather tlb(vma->vm_mm);  // (only file pages here: it stays empty)
  vma->vm_mm->pgtables.for_each_present(start, end, [&](std::uint64_t, std::atomic<mem::pte_t>& slot, mem::pte_t old) {
    const mem::pfn_t pfn = mem::pte_pfn(old);
    if (pfn == phys->zero_pfn() || (phys->frame(pfn).mapping.load(std::memory_order_relaxed) & mem::kMappingAnon))
      return;  // a private copy: stays
    unmap_pte(vma, mem::ptep_get_and_clear(slot, old), tlb);
  });
}

bool install_guard_range(Vma* vma, std::uint64_t start, std::uint64_t end) {
  MmuGather tlb(vma->vm_mm);
  return vma->vm_mm->pgtables.install_guard_markers(start, end,
                                                    [&](std::uint64_t, mem::pte_t old) { unmap_pte(vma, old, tlb); });
}

void mark_lazyfree_range(Vma* vma, std::uint64_t start, std::uint64_t end) {
  MmStruct* mm = vma->vm_mm;
  mem::PhysMem* phys = mm->phys;
  mm->pgtables.for_each_present(start, end, [&](std::uint64_t, std::atomic<mem::pte_t>& slot, mem::pte_t old) {
    // Only anonymous pages (not the zero page, not a file's page).  Pages
    // shared with a fork relative are marked too: Linux 6.18's
    // madvise_free_pte_range wants a page exclusive only when the folio is
    // dirty or in the swap cache, which an anonymous page in vmspace never
    // is (no swap; the dirt is in the PTE).  Only this PTE becomes lazily
    // freeable; MADV_PAGEOUT discards the page once no one else maps it.
    const mem::pfn_t pfn = mem::pte_pfn(old);
    if (pfn == phys->zero_pfn() || !(phys->frame(pfn).mapping.load(std::memory_order_relaxed) & mem::kMappingAnon))
      return;
    // A plain store (rule I of page_table.h does not apply): a writable
    // private anonymous PTE is dirty from the fault that made it writable,
    // and this makes it clean on purpose.
    const mem::pte_t pte = mem::pte_wrprotect(mem::pte_mkclean(mem::pte_mkold(old))) | mem::kPteLazyFree;
    if (pte != old) slot.store(pte, std::memory_order_release);
  });
}

void pageout_range(Vma* vma, std::uint64_t start, std::uint64_t end) {
  MmStruct* mm = vma->vm_mm;
  mem::PhysMem* phys = mm->phys;
  MmuGather tlb(mm);  // (only exclusive pages here: it stays empty)
  mm->pgtables.for_each_present(start, end, [&](std::uint64_t, std::atomic<mem::pte_t>& slot, mem::pte_t old) {
    // Would need swap: stays.  (A lazily freeable PTE is read-only until a
    // write fault makes it dirty: no lockless writer can dirty it, rule I.)
    if (!mem::pte_lazyfree(old) || mem::pte_dirty(old)) return;
    const mem::pfn_t pfn = mem::pte_pfn(old);
    if (pfn == phys->zero_pfn() || !exclusive_anon(phys, pfn)) return;
    slot.store(0, std::memory_order_release);
    unmap_pte(vma, old, tlb);
  });
}

namespace {

// Linux is_cow_mapping(): private and possibly writable.
bool is_cow_mapping(vm_flags_t flags) { return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE; }

// Per-table RSS deltas, added to the child's counters once per table
// (Linux's rss[] / add_mm_rss_vec) rather than once per page.
struct RssDelta {
  std::int64_t anon = 0, shmem = 0;
};

// Linux copy_present_pte(), for one PTE under both tables' locks.  With
// `copy_writable`, a writable private anonymous page is copied for the
// child at once instead of shared (Linux's copy_present_page for pages
// that may be pinned): the parent keeps its frame writable.  False only
// when that copy cannot get a frame.
bool copy_present_pte(Vma* dst, Vma* src, std::uint64_t va, std::atomic<mem::pte_t>& src_slot,
                      std::atomic<mem::pte_t>& dst_slot, mem::pte_t pte, bool copy_writable, RssDelta& rss) {
  MmStruct* dst_mm = dst->vm_mm;
  mem::PhysMem* phys = dst_mm->phys;
  const mem::pfn_t pfn = mem::pte_pfn(pte);
  const bool cow = is_cow_mapping(src->vm_flags);
  if (pfn != phys->zero_pfn()) {
    mem::Frame& fr = phys->frame(pfn);
    const bool anon = (fr.mapping.load(std::memory_order_relaxed) & mem::kMappingAnon) != 0;
    if (copy_writable && cow && anon && mem::pte_write(pte)) {
      const mem::pfn_t fresh = phys->alloc();
      if (fresh == mem::kNoFrame) return false;
      // The parent's writers may store meanwhile: the child gets the
      // contents as of some moment during fork, as on Linux.
      std::memcpy(phys->addr(fresh), phys->addr(pfn), mem::kFrameSize);
      folio_add_new_anon_rmap(phys->frame(fresh), dst, va);  // (a copy of a VMA with an anon_vma has one)
      ++rss.anon;
      dst_slot.store(mem::pte_mkold(mem::pte_modify_pfn(pte, fresh)), std::memory_order_release);
      return true;
    }
    // One more reference and mapping (PhysMem::get, inline: the frame is
    // mapped by the parent's PTE, whose lock we hold).
    fr.refcount.fetch_add(1, std::memory_order_relaxed);
    fr.mapcount.fetch_add(1, std::memory_order_relaxed);
    ++(anon ? rss.anon : rss.shmem);
  }
  if (cow && mem::pte_write(pte)) {
    // Both sides read-only from now on.  ptep_modify: a lockless writer of
    // the parent may set the dirty bit until the new value is in (rule I
    // of page_table.h); the bit is kept (and copied below).
    pte = mem::ptep_modify(src_slot, pte, [](mem::pte_t p) { return mem::pte_wrprotect(p); });
    pte = mem::pte_wrprotect(pte);
  }
  if (src->vm_flags & VM_SHARED) {
    pte = mem::pte_mkclean(pte);
    // Under write-notify a clean PTE must not be writable (the write would
    // not mark the page dirty); the child's first write faults instead.
    if (vma_wants_writenotify(dst)) pte = mem::pte_wrprotect(pte);
  }
  dst_slot.store(mem::pte_mkold(pte), std::memory_order_release);
  return true;
}

}  // namespace

bool copy_page_range(Vma* dst, Vma* src, bool copy_writable) {
  MmStruct* src_mm = src->vm_mm;
  MmStruct* dst_mm = dst->vm_mm;
  // A copy-on-write mapping's writable PTEs are write-protected in the
  // parent: one start/end pair for the VMA (Linux's copy_page_range does
  // the same, for is_cow_mapping only), under both spaces' mmap W.  The
  // child has no notifiers yet.
  MmuNotifierRange inv(src_mm, src->vm_start, src->vm_end, InvalidateReason::fork_wrprotect,
                       /*lazy=*/!is_cow_mapping(src->vm_flags));
  const std::uint64_t end = src->vm_end;
  std::uint64_t va = src->vm_start;
  bool ok = true;
  while (va < end && ok) {
    const std::uint64_t table_end = (va & ~(mem::kPteTableSpan - 1)) + mem::kPteTableSpan;
    const std::uint64_t stop = std::min(table_end, end);
    // The parent's tables cannot come or go meanwhile (mmap W; its faults
    // are shut out by the VMA write lock), nor can non-empty entries
    // appear: the scan below needs no lock.
    mem::PteTable* st = src_mm->pgtables.pte_table(va);
    bool any = false;
    if (st != nullptr)
      for (std::uint64_t a = va; a < stop && !any; a += kPageSize)
        any = !mem::pte_none(mem::PageTables::pte_slot(st, a).load(std::memory_order_relaxed));
    if (!any) {
      va = stop;
      continue;
    }
    mem::PteTable* dt = dst_mm->pgtables.pte_alloc(va);  // no pte_lock held
    if (dt == nullptr) return false;
    RssDelta rss;
    st->lock.lock();
    dt->lock.lock(/*subclass=*/1);
    for (; va < stop; va += kPageSize) {
      std::atomic<mem::pte_t>& src_slot = mem::PageTables::pte_slot(st, va);
      std::atomic<mem::pte_t>& dst_slot = mem::PageTables::pte_slot(dt, va);
      const mem::pte_t pte = src_slot.load(std::memory_order_relaxed);
      if (mem::pte_none(pte)) continue;
      if (mem::pte_is_guard(pte)) {  // Linux copy_pte_marker: guards survive fork
        dst_slot.store(pte, std::memory_order_release);
        continue;
      }
      if (mem::pte_present(pte) && !copy_present_pte(dst, src, va, src_slot, dst_slot, pte, copy_writable, rss)) {
        ok = false;
        break;
      }
    }
    dt->lock.unlock();
    st->lock.unlock();
    if (rss.anon != 0) dst_mm->rss_anon.fetch_add(rss.anon, std::memory_order_relaxed);
    if (rss.shmem != 0) dst_mm->rss_shmem.fetch_add(rss.shmem, std::memory_order_relaxed);
  }
  return ok;
}

void change_protection(Vma* vma, std::uint64_t start, std::uint64_t end) {
  MmStruct* mm = vma->vm_mm;
  const bool accessible = vma_data_accessible(vma);
  const bool shared_writable = (vma->vm_flags & VM_WRITE) && (vma->vm_flags & VM_SHARED);
  const bool writenotify = vma_wants_writenotify(vma);
  const bool writable = (vma->vm_flags & VM_WRITE) != 0;
  // Write-watched pages (armed, or being reported) stay read-only: their
  // next write must fault and report first (write_watch.h).  Collected
  // before the PTE locks are taken (the set's mutex is not taken under a
  // spinlock); they cannot grow meanwhile: arming needs mmap W, ours.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> watched;
  bool all_watched = false;
  if (shared_writable) {
    try {
      all_watched = !ww_protected_ranges(mm, start, end, &watched);
    } catch (const std::bad_alloc&) {
      all_watched = true;
    }
  }
  auto is_watched = [&](std::uint64_t va) {
    if (all_watched) return true;
    for (const auto& [s, e] : watched)
      if (va >= s && va < e) return true;
    return false;
  };
  mm->pgtables.for_each_present(start, end, [&](std::uint64_t va, std::atomic<mem::pte_t>& slot, mem::pte_t old) {
    const bool may_write = !is_watched(va);
    // ptep_modify: a write may dirty a writable clean PTE until the new
    // value is in (page_table.h rule I); the dirty bit is kept.
    mem::ptep_modify(slot, old, [&](mem::pte_t pte) {
      // The data-access and no-execute bits follow the new flags (adding
      // PROT_EXEC clears NX at once: the lockless path fetches without a
      // fault; removing it sets NX before mprotect returns).
      pte = pte_apply_vma_prot(pte, vma);
      if (!writable) pte = mem::pte_wrprotect(pte);
      // Under write-notify only dirty pages are writable again (Linux's
      // can_change_pte_writable): a clean one must fault to be dirtied.
      if (accessible && shared_writable && may_write && mem::pte_pfn(pte) != mm->phys->zero_pfn() &&
          (!writenotify || mem::pte_dirty(pte)))
        pte = mem::pte_mkwrite(pte);
      return pte;
    });
  });
}

}  // namespace vmspace::mm
