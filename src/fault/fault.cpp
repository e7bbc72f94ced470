// SPDX-License-Identifier: MIT
// fault.cpp - the page-fault path (DESIGN.md "The fault path"):
//
//   handle_fault(addr, access):
//     vma = lock_vma_under_rcu(addr)                 per-VMA modes only
//     if vma: access check (SEGV_ACCERR) or handle_mm_fault(VMA-locked);
//             done unless it asked to RETRY (then count vma_lock_retry)
//     mmap_read_lock; find_vma; grow a MAP_GROWSDOWN stack below it (needs
//     the write side); SEGV_MAPERR / SEGV_ACCERR; handle_mm_fault
//
// Under only a VMA read lock a fault may not wait for the mmap_lock (a
// writer holding it may be waiting for our VMA lock): the first anonymous
// write fault of a VMA needs an anon_vma, which requires the mmap_lock, so
// it only try-locks it and returns RETRY on failure (vmf_anon_prepare).
//
// PTEs are installed and changed only under their table's pte_lock and
// re-checked there: faults on one VMA run concurrently with each other and
// with MADV_DONTNEED (which zaps under the mmap_lock read side).  A frame
// that is used while no lock is held (the source of a copy-on-write copy)
// is pinned with a reference first.
#include "fault/fault.h"
#include "sync/tls.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "mem/file.h"
#include "mm/memory.h"
#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/rmap.h"
#include "mm/tlb.h"
#include "mm/vma.h"
#include "mm/write_watch.h"
#include "vmspace/address_space.h"

namespace vmspace::fault {

using mem::pfn_t;
using mem::pte_t;
using mm::MmStruct;
using mm::Vma;

const char* fault_result_name(FaultResult r) {
  switch (r) {
    case FaultResult::ok: return "ok";
    case FaultResult::segv_maperr: return "SEGV_MAPERR";
    case FaultResult::segv_accerr: return "SEGV_ACCERR";
    case FaultResult::sigbus: return "SIGBUS";
    case FaultResult::oom: return "OOM";
  }
  return "?";
}

namespace {

// Linux's VM_FAULT_* subset.
enum VmFault : unsigned {
  kFaultDone = 0,
  kFaultRetry = 1u << 0,
  kFaultOom = 1u << 1,
  kFaultSigbus = 1u << 2,
  kFaultSigsegv = 1u << 3,  // a guard marker (SEGV_MAPERR)
  // Write-watch (mm/write_watch.h): this fault claimed an armed page and
  // must report it with every lock dropped, then retry; or another fault
  // is reporting it: wait (no lock held), then retry.
  kFaultWatchReport = 1u << 4,
  kFaultWatchWait = 1u << 5,
};

struct Vmf {
  MmStruct* mm;
  Vma* vma;
  std::uint64_t addr;  // page aligned
  bool write;
  bool vma_locked;  // FAULT_FLAG_VMA_LOCK: only a VMA read lock is held
  // The caller can drop its locks to report a write-watched page
  // (handle_fault).  Populating (mmap_lock held by its caller) cannot: a
  // write there maps an armed page read-only and leaves the write (and
  // its report) to the next real one.
  bool can_report = false;
};

// Linux x86 access_error(), before the fault is handled.  A fetch is
// checked as a read of a not-present page, minus the protection key
// (pkeys never apply to instruction fetches: arch_vma_access_permitted
// with execute).  NX is checked after (exec_denied), as the CPU does on
// the retried fetch.
bool access_error(const Vma* vma, Access a) {
  switch (a) {
    case Access::write: return !(vma->vm_flags & mm::VM_WRITE);
    case Access::read: return !mm::vma_data_accessible(vma);  // execute-only: the pkey denies reads
    case Access::exec: return !mm::vma_is_accessible(vma);
  }
  return true;
}

// The fetch that follows a successful fault on a VMA without VM_EXEC
// finds the PTE present with NX set: x86 reports a protection fault on an
// instruction fetch, which access_error() refuses ("read, present").
bool exec_denied(const Vma* vma, Access a) { return a == Access::exec && !(vma->vm_flags & mm::VM_EXEC); }

VMSPACE_TLS_FAST thread_local const FaultHooks* tls_fault_hooks = nullptr;

// Test hook points: compiled out of release builds.
#if defined(VMSPACE_DEBUG_CHECKS)
#define FAULT_HOOK(name)                                                      \
  do {                                                                        \
    if (const FaultHooks* h_ = tls_fault_hooks; h_ != nullptr && h_->name) \
      h_->name(h_->arg);                                                      \
  } while (0)
#else
#define FAULT_HOOK(name) \
  do {                   \
  } while (0)
#endif

// A frame, or kNoFrame.  Never waits for a grace period: the fault holds a
// VMA read lock or the mmap_lock, and a thread inside an RCU read section
// may be waiting for either (munmap -> vma_start_write), so waiting here
// for its section to end would deadlock.  handle_fault() drains after
// dropping its locks and retries.
pfn_t alloc_page(MmStruct* mm, bool zeroed) {
  mem::PhysMem* phys = mm->phys;
  return zeroed ? phys->alloc_zeroed() : phys->alloc();
}

// Linux vmf_anon_prepare().
unsigned vmf_anon_prepare(Vmf& f) {
  if (f.vma->anon_vma.load(std::memory_order_acquire) != nullptr) return kFaultDone;
  FAULT_HOOK(anon_prepare);
  // Under the VMA read lock its range is stable.
  if (f.vma_locked && !mm::mmap_read_trylock_vma(f.mm, f.vma->vm_start, f.vma->vm_end)) return kFaultRetry;
  unsigned r = mm::anon_vma_prepare(f.vma) ? kFaultDone : kFaultOom;
  if (f.vma_locked) mm::mmap_read_unlock(f.mm);
  return r;
}

// First touch of private anonymous memory.
unsigned do_anonymous_page(Vmf& f, mem::PteTable* table) {
  MmStruct* mm = f.mm;
  std::atomic<pte_t>& slot = mem::PageTables::pte_slot(table, f.addr);
  SpinLock& ptl = mem::PageTables::pte_lock(table);
  if (!f.write && mm->cfg.zero_page) {
    // Read: map the shared zero frame read-only; the first write replaces
    // it.  (Without a zero page a read allocates, as a write does, and the
    // PTE is writable where the VMA is.)
    ptl.lock();
    if (mem::pte_none(slot.load(std::memory_order_relaxed)))
      slot.store(mm::pte_apply_vma_prot(mem::make_pte(mm->phys->zero_pfn(), false), f.vma), std::memory_order_release);
    ptl.unlock();
    return kFaultDone;
  }
  if (unsigned r = vmf_anon_prepare(f)) return r;
  pfn_t pfn = alloc_page(mm, /*zeroed=*/true);
  if (pfn == mem::kNoFrame) return kFaultOom;
  mm::folio_add_new_anon_rmap(mm->phys->frame(pfn), f.vma, f.addr);
  // A read of a write-watched page maps it read-only (write_watch.h);
  // asked before the PTE lock (the set's mutex is never taken under it).
  const bool read_only_for_watch = !f.write && mm::ww_protected(mm, f.addr);
  bool installed = false;
  ptl.lock();
  if (mem::pte_none(slot.load(std::memory_order_relaxed))) {
    // Release: the zeroed contents and the frame's rmap fields are visible
    // to whoever reads the PTE with acquire.  Linux makes the PTE writable
    // and dirty when the VMA is writable (a read fault on a host without
    // the zero page may install one into a read-only VMA).
    const bool writable = (f.vma->vm_flags & mm::VM_WRITE) != 0 && (f.write || !read_only_for_watch);
    const pte_t pte = mm::pte_apply_vma_prot(mem::make_pte(pfn, writable), f.vma);
    slot.store(mem::pte_mkyoung(writable ? mem::pte_mkdirty(pte) : pte), std::memory_order_release);
    mm->rss_anon.fetch_add(1, std::memory_order_relaxed);
    installed = true;
  }
  ptl.unlock();
  if (!installed) {  // another fault won the race
    mm->phys->frame(pfn).mapcount.store(0, std::memory_order_relaxed);
    mm->phys->put(pfn);
  }
  return kFaultDone;
}

// fork's window (MmStruct::fork_child, fork.cpp step 5): the parent is
// about to copy anonymous frame `old`, mapped at f.addr, while a store
// through a translation taken before fork may still be on its way to it.
// If the pending child maps `old` there, give the child a copy instead and
// drop its mapping of `old`, so that the parent can keep it (the caller
// re-checks exclusivity).  Under the parent's PTE lock; takes the child's
// (subclass 1, the order fork itself uses).  The child is not running
// yet: only faults of the parent in this window touch its page tables.
void fork_window_give_copy(Vmf& f, pfn_t old) {
  MmStruct* mm = f.mm;
  mm->fork_window_users.fetch_add(1, std::memory_order_seq_cst);
  MmStruct* child = mm->fork_child.load(std::memory_order_seq_cst);
  if (child != nullptr) {
    mem::PhysMem* phys = mm->phys;
    rcu::ReadGuard g;  // the child's tables and tree: stable, read as a walker would
    if (mem::PteTable* ct = child->pgtables.pte_table(f.addr)) {
      SpinLock& cptl = mem::PageTables::pte_lock(ct);
      cptl.lock(/*subclass=*/1);
      std::atomic<pte_t>& cslot = mem::PageTables::pte_slot(ct, f.addr);
      const pte_t cpte = cslot.load(std::memory_order_relaxed);
      mm::Vma* cvma = nullptr;
      if (mem::pte_present(cpte) && mem::pte_pfn(cpte) == old) cvma = mm::vma_lookup(child, f.addr);
      const pfn_t fresh = cvma != nullptr ? phys->alloc() : mem::kNoFrame;
      if (fresh != mem::kNoFrame) {  // (no frame: the page stays shared, as before the window)
        std::memcpy(phys->addr(fresh), phys->addr(old), mem::kFrameSize);
        mm::folio_add_new_anon_rmap(phys->frame(fresh), cvma, f.addr);
        cslot.store(mem::pte_modify_pfn(cpte, fresh), std::memory_order_release);
        phys->frame(old).mapcount.fetch_sub(1, std::memory_order_relaxed);
        phys->put(old);  // the child's reference
      }
      cptl.unlock();
    }
  }
  mm->fork_window_users.fetch_sub(1, std::memory_order_seq_cst);
}

// Write to a write-protected private page: reuse it if we own it
// exclusively, else copy it (copy-on-write; the zero frame is always
// copied).
unsigned do_wp_page(Vmf& f, mem::PteTable* table, pte_t orig) {
  MmStruct* mm = f.mm;
  mem::PhysMem* phys = mm->phys;
  std::atomic<pte_t>& slot = mem::PageTables::pte_slot(table, f.addr);
  SpinLock& ptl = mem::PageTables::pte_lock(table);
  const pfn_t old = mem::pte_pfn(orig);
  const bool zero = old == phys->zero_pfn();

  ptl.lock();
  if (slot.load(std::memory_order_relaxed) != orig) {
    ptl.unlock();
    return kFaultDone;  // changed meanwhile: retry the access
  }
  if (!zero) {
    mem::Frame& fr = phys->frame(old);
    if ((fr.mapping.load(std::memory_order_relaxed) & mem::kMappingAnon) &&
        mm->fork_child.load(std::memory_order_relaxed) != nullptr)
      fork_window_give_copy(f, old);
    // Linux 5.19+ wp_can_reuse_anon_folio(): reuse decided by references
    // alone.  The PTE we hold is the only one (after fork the other side
    // unmapped it, exited or copied it) and nobody pins the frame; the
    // reference count cannot grow meanwhile (a new mapping of an anonymous
    // frame needs this PTE: fork copies it under this lock).
    if (fr.refcount.load(std::memory_order_acquire) == 1 && fr.mapcount.load(std::memory_order_relaxed) == 1 &&
        (fr.mapping.load(std::memory_order_relaxed) & mem::kMappingAnon)) {
      // folio_move_anon_rmap(): a frame faulted in an ancestor space now
      // belongs to this VMA's own anon_vma (shorter rmap walks; the
      // ancestor's anon_vma may go away).  The VMA has one: the frame is
      // anonymous and mapped here, so the VMA was prepared or forked with it.
      if (mm::AnonVma* av = f.vma->anon_vma.load(std::memory_order_acquire))
        fr.mapping.store(reinterpret_cast<std::uintptr_t>(av) | mem::kMappingAnon, std::memory_order_release);
      slot.store(mem::pte_mkdirty(mem::pte_mkyoung(mem::pte_mkwrite(orig))), std::memory_order_release);
      ptl.unlock();
      return kFaultDone;
    }
    phys->get(old);  // pin the source of the copy while unlocked
  }
  ptl.unlock();

  unsigned r = vmf_anon_prepare(f);
  pfn_t fresh = r == kFaultDone ? alloc_page(mm, zero) : mem::kNoFrame;
  if (r == kFaultDone && fresh == mem::kNoFrame) r = kFaultOom;
  if (r != kFaultDone) {
    if (!zero) phys->put(old);
    return r;
  }
  if (!zero) std::memcpy(phys->addr(fresh), phys->addr(old), mem::kFrameSize);
  mm::folio_add_new_anon_rmap(mm->phys->frame(fresh), f.vma, f.addr);
  bool installed = false;
  // The old page's translation dies: notifiers before the PTE lock is
  // taken (callbacks may block), under this fault's VMA read lock or
  // mmap R; end after the PTE changed (or turned out changed already).
  mm::MmuNotifierRange inv(mm, f.addr, f.addr + mm::kPageSize, InvalidateReason::cow);
  mm::MmuGather tlb(mm);
  ptl.lock();
  if (slot.load(std::memory_order_relaxed) == orig) {
    slot.store(mem::pte_mkdirty(mem::pte_mkyoung(mm::pte_apply_vma_prot(mem::make_pte(fresh, true), f.vma))),
               std::memory_order_release);
    if (zero) {
      mm->rss_anon.fetch_add(1, std::memory_order_relaxed);
    } else {
      mem::Frame& ofr = phys->frame(old);
      if (!(ofr.mapping.load(std::memory_order_relaxed) & mem::kMappingAnon)) {
        // A file page of a private mapping gives way to its copy.
        mm->rss_shmem.fetch_sub(1, std::memory_order_relaxed);
        mm->rss_anon.fetch_add(1, std::memory_order_relaxed);
      }
      if (mm::frame_shared_anon(ofr)) {
        // The other space may reuse it in place once this mapping is
        // gone, while a lockless reader here still reads it through the
        // old translation: released after them (Linux: ptep_clear_flush
        // before the old page's mapping is dropped).
        tlb.add(old);
      } else {
        ofr.mapcount.fetch_sub(1, std::memory_order_relaxed);
        phys->put(old);  // the old PTE's reference
      }
    }
    installed = true;
  }
  ptl.unlock();
  tlb.finish();
  if (!zero) phys->put(old);  // our pin
  if (!installed) {
    phys->frame(fresh).mapcount.store(0, std::memory_order_relaxed);
    phys->put(fresh);
  }
  return kFaultDone;
}

// Linux do_fault_around() / filemap_map_pages(): after a read fault on a
// file, map the pages around it that the file already caches, so that
// touching them does not fault (fault_around_bytes, 64 KiB: the aligned
// 16-page window around the address, clamped to the VMA and the PTE
// table).  Only empty PTEs are filled, only with cached pages inside the
// file's size, each under the PTE lock after the cache still holds it (as
// a truncate drops pages from the cache before it unmaps under this lock,
// it unmaps what we map here).  Shared mappings map them as the faulting
// page is mapped; private ones read-only (a write copies).
constexpr std::uint64_t kFaultAroundPages = 16;

void do_fault_around(Vmf& f, mem::PteTable* table) {
  MmStruct* mm = f.mm;
  mem::PhysMem* phys = mm->phys;
  const Vma* vma = f.vma;
  const std::uint64_t pte_off = (f.addr >> mem::kPageShift) & (mem::kEntriesPerTable - 1);
  const std::uint64_t vma_off = (f.addr - vma->vm_start) >> mem::kPageShift;
  const std::uint64_t from = std::max(pte_off & ~(kFaultAroundPages - 1), pte_off - std::min(pte_off, vma_off));
  const std::uint64_t to = std::min({from + kFaultAroundPages, std::uint64_t{mem::kEntriesPerTable},
                                     pte_off + vma->pages() - vma_off});
  const std::uint64_t table_base = f.addr & ~(mem::kPteTableSpan - 1);
  // Write-notify mappings map read-only: a write must fault to dirty.
  // Write-watched pages too (write_watch.h): the whole window then.
  const bool writable = (vma->vm_flags & mm::VM_SHARED) && (vma->vm_flags & mm::VM_WRITE) &&
                        !mm::vma_wants_writenotify(vma) &&
                        !mm::ww_protected_any(mm, table_base + (from << mem::kPageShift),
                                              table_base + (to << mem::kPageShift));
  mem::File* file = vma->vm_file;
  SpinLock& ptl = mem::PageTables::pte_lock(table);
  std::int64_t mapped = 0;
  ptl.lock();
  file->i_pages.lock();  // once for the window (inside the PTE lock, as always)
  const std::uint64_t size_pages = file->size_pages();
  const pfn_t* chunk = nullptr;  // the cache's entries around `index`
  std::uint64_t chunk_no = UINT64_MAX;
  for (std::uint64_t i = from; i < to; ++i) {
    const std::uint64_t va = table_base + (i << mem::kPageShift);
    std::atomic<pte_t>& slot = mem::PageTables::pte_slot(table, va);
    if (i == pte_off || !mem::pte_none(slot.load(std::memory_order_relaxed))) continue;
    const std::uint64_t index = mm::linear_page_index(vma, va);
    if (index >= size_pages) break;
    if (index / mem::PageCache::kChunk != chunk_no) {
      chunk_no = index / mem::PageCache::kChunk;
      chunk = file->pages.chunk_entries(index);
    }
    const pfn_t pfn = chunk != nullptr ? chunk[index % mem::PageCache::kChunk] : mem::kNoFrame;
    if (pfn == mem::kNoFrame) continue;
    phys->get(pfn);  // the PTE's reference
    // Release: as for every PTE install.
    slot.store(mem::pte_mkyoung(mm::pte_apply_vma_prot(mem::make_pte(pfn, writable), vma)), std::memory_order_release);
    phys->frame(pfn).mapcount.fetch_add(1, std::memory_order_relaxed);
    ++mapped;
  }
  file->i_pages.unlock();
  // Under the PTE lock, as every path counts: a zap after the unlock
  // subtracts what was added.
  if (mapped != 0) mm->rss_shmem.fetch_add(mapped, std::memory_order_relaxed);
  ptl.unlock();
}

// Pages of a file (shmem: shared anonymous memory, memfds): they come from
// the file's page cache.
//
// The frame is taken from the cache without the PTE lock, so a hole punched
// or a truncate meanwhile (MADV_REMOVE, ftruncate: the cache drops the page,
// then a zap that finds no PTE yet) would leave us mapping a frame the file
// no longer has: stale data after the call returned, later writes lost,
// or a page past EOF.  Linux closes this with the folio lock and the
// truncate-time unmap; here the PTE is installed only if, under the PTE
// lock, the cache still holds that frame (the truncation removes it first
// and zaps under this PTE lock after, so either we see it gone, or its zap
// sees our PTE).  Otherwise: again; a page the size no longer covers is
// SIGBUS (shmem_get_page checks the size under the cache's lock).
//
// Shared mappings map the cache's frame (writable where the VMA is, but
// read-only on a read fault under write-notify: a file with a backing,
// whose pages a write must dirty first, memory.h); private ones map it
// read-only on a read fault (do_read_fault) and copy it into an anonymous
// page on a write (do_cow_fault).
unsigned do_read_fault(Vmf& f, mem::PteTable* table) {
  MmStruct* mm = f.mm;
  mem::PhysMem* phys = mm->phys;
  std::atomic<pte_t>& slot = mem::PageTables::pte_slot(table, f.addr);
  SpinLock& ptl = mem::PageTables::pte_lock(table);
  mem::File* file = f.vma->vm_file;
  const std::uint64_t index = mm::linear_page_index(f.vma, f.addr);
  // A read of a write-watched page maps it read-only (write_watch.h);
  // asked before the PTE lock (the set's mutex is never taken under it).
  const bool watched = !f.write && mm::ww_protected(mm, f.addr);
  pfn_t pfn;
  for (;;) {
    pfn = mem::shmem_get_page(file, index);
    // Past the file's end (shmem_fault), or the backing failed to read
    // (filemap_fault's VM_FAULT_SIGBUS).
    if (pfn == mem::kBeyondEof || pfn == mem::kIoError) return kFaultSigbus;
    if (pfn == mem::kNoFrame) return kFaultOom;
    FAULT_HOOK(shared_page_taken);
    ptl.lock();
    if (!mem::pte_none(slot.load(std::memory_order_relaxed)) || mem::shmem_page_cached(file, index, pfn)) break;
    ptl.unlock();
    phys->put(pfn);  // truncated while we were not looking
  }
  const bool shared = (f.vma->vm_flags & mm::VM_SHARED) != 0;
  const bool writable = shared && (f.vma->vm_flags & mm::VM_WRITE) != 0;
  // A read fault under write-notify maps read-only (see do_fault_around).
  // So does a read of a write-watched page.
  const bool map_writable = writable && (f.write || (!mm::vma_wants_writenotify(f.vma) && !watched));
  bool keep = false;
  // A write fault on a shared mapping dirties the PTE and the page (Linux
  // do_shared_fault / wp_page_shared: fault_dirty_shared_page); a read
  // maps it clean, writable where the VMA is unless under write-notify
  // (the MMU dirties the PTE on the first write through it).
  pte_t cur = slot.load(std::memory_order_relaxed);
  const bool fresh = mem::pte_none(cur);
  const bool upgrade =
      !fresh && f.write && writable && mem::pte_present(cur) && !mem::pte_write(cur) && mem::pte_pfn(cur) == pfn;
  // A write makes the page dirty (Linux's page_mkwrite / folio_mark_dirty)
  // BEFORE its PTE becomes writable, under the PTE lock: a store through
  // that PTE followed by an msync must find the page dirty; and a
  // write-back that clears the bit after this write-protects the PTE after
  // we publish it (mapping_mkclean takes this lock), so the next write
  // faults here again (writeback.h).
  if ((fresh || upgrade) && f.write && writable) phys->frame(pfn).flags.fetch_or(mem::kPgDirty, std::memory_order_release);
  if (fresh) {
    const pte_t pte = mem::pte_mkyoung(mm::pte_apply_vma_prot(mem::make_pte(pfn, map_writable), f.vma));
    slot.store(f.write && writable ? mem::pte_mkdirty(pte) : pte, std::memory_order_release);
    phys->frame(pfn).mapcount.fetch_add(1, std::memory_order_relaxed);
    mm->rss_shmem.fetch_add(1, std::memory_order_relaxed);
    keep = true;  // our reference now belongs to the PTE
  } else if (upgrade) {
    slot.store(mem::pte_mkdirty(mem::pte_mkwrite(cur)), std::memory_order_release);
  }
  if ((fresh || upgrade) && f.write && writable) FAULT_HOOK(shared_write_mapped);
  ptl.unlock();
  if (!keep) phys->put(pfn);
  if (!f.write) do_fault_around(f, table);  // Linux faults around on read faults only
  return kFaultDone;
}

// A write to a private file mapping where no page is mapped: copy the
// file's page into a new anonymous page (Linux do_cow_fault).
unsigned do_cow_fault(Vmf& f, mem::PteTable* table) {
  MmStruct* mm = f.mm;
  mem::PhysMem* phys = mm->phys;
  std::atomic<pte_t>& slot = mem::PageTables::pte_slot(table, f.addr);
  SpinLock& ptl = mem::PageTables::pte_lock(table);
  mem::File* file = f.vma->vm_file;
  const std::uint64_t index = mm::linear_page_index(f.vma, f.addr);
  if (unsigned r = vmf_anon_prepare(f)) return r;
  for (;;) {
    const pfn_t src = mem::shmem_get_page(file, index);
    if (src == mem::kBeyondEof || src == mem::kIoError) return kFaultSigbus;
    if (src == mem::kNoFrame) return kFaultOom;
    const pfn_t fresh = alloc_page(mm, /*zeroed=*/false);
    if (fresh == mem::kNoFrame) {
      phys->put(src);
      return kFaultOom;
    }
    std::memcpy(phys->addr(fresh), phys->addr(src), mem::kFrameSize);
    FAULT_HOOK(shared_page_taken);
    mm::folio_add_new_anon_rmap(mm->phys->frame(fresh), f.vma, f.addr);
    bool installed = false, again = false;
    ptl.lock();
    if (mem::pte_none(slot.load(std::memory_order_relaxed))) {
      // A copy of a page the cache no longer holds (truncated or punched
      // meanwhile) must not appear after that call returned: again.
      if (mem::shmem_page_cached(file, index, src)) {
        slot.store(mem::pte_mkdirty(mem::pte_mkyoung(mm::pte_apply_vma_prot(mem::make_pte(fresh, true), f.vma))),
                   std::memory_order_release);
        mm->rss_anon.fetch_add(1, std::memory_order_relaxed);
        installed = true;
      } else {
        again = true;
      }
    }
    ptl.unlock();
    phys->put(src);
    if (!installed) {
      phys->frame(fresh).mapcount.store(0, std::memory_order_relaxed);
      phys->put(fresh);
    }
    if (!again) return kFaultDone;
  }
}

// Would Linux take the huge-page (PMD) fault path here, given that no page
// table lies below that PMD yet (pmd_none: the caller found none)?
// Private anonymous VMA that THP applies to (the THP mode, MADV_HUGEPAGE /
// MADV_NOHUGEPAGE), and a whole aligned 2 MiB around the address inside
// the VMA.
bool thp_fault_path(const Vmf& f) {
  const MmStruct* mm = f.mm;
  const Vma* vma = f.vma;
  if (!vma->is_anonymous() || (vma->vm_flags & mm::VM_NOHUGEPAGE)) return false;
  switch (mm->cfg.thp) {
    case ThpMode::always: break;
    case ThpMode::madvise:
      if (!(vma->vm_flags & mm::VM_HUGEPAGE)) return false;
      break;
    case ThpMode::never: return false;
  }
  const std::uint64_t haddr = f.addr & ~(mem::kPteTableSpan - 1);
  return haddr >= vma->vm_start && haddr + mem::kPteTableSpan <= vma->vm_end;
}

// Linux handle_mm_fault() for one page, under a VMA read lock or mmap R.
unsigned handle_mm_fault(Vmf& f) {
  MmStruct* mm = f.mm;
  // The huge-page path prepares the anon_vma first, even for a read that
  // then maps the huge zero page (do_huge_pmd_anonymous_page).  vmspace
  // maps 4 KiB pages only; what Linux's choice changes for the VMA (its
  // anon_vma, hence later merges and VM_ACCOUNT) is reproduced here.
  // One walk when the PTE table exists (nearly every fault); only a
  // missing one (pmd_none) can mean the huge-page path, and is allocated.
  mem::PteTable* table = mm->pgtables.pte_table(f.addr);
  if (table == nullptr) {
    if (thp_fault_path(f))
      if (unsigned r = vmf_anon_prepare(f)) return r;
    table = mm->pgtables.pte_alloc(f.addr);
    if (table == nullptr) return kFaultOom;
  }
  std::atomic<pte_t>& slot = mem::PageTables::pte_slot(table, f.addr);
  const pte_t orig = slot.load(std::memory_order_acquire);
  // A guard region (MADV_GUARD_INSTALL): SIGSEGV before anything else, a
  // file's size included (Linux handle_pte_marker).  The VMA's protection
  // was checked by the caller first.  A marker installed after this load
  // is found by the re-check under the PTE lock (it is not pte_none), and
  // the retried access faults here.
  if (mem::pte_is_guard(orig)) return kFaultSigsegv;
  // Write-watch next (write_watch.h): an armed page reports before any
  // write work (before a copy on write, too), but not for a write a guard
  // refuses (it never lands).  Holding our VMA lock or the mmap_lock, no
  // arming can happen meanwhile.
  // A page wholly past a file's end is SIGBUS first, as Linux's missing
  // page fault (shmem_fault / filemap_fault) comes before its uffd-wp
  // handling: a write that cannot land is not reported.  The size is
  // re-checked by the fault proper (a truncation after this check makes
  // the retried write SIGBUS after its report, as under Linux).
  if (f.write && mm->ww.active.load(std::memory_order_relaxed) &&
      !(f.vma->vm_file != nullptr && !mem::pte_present(orig) &&
        mm::linear_page_index(f.vma, f.addr) >= f.vma->vm_file->size_pages())) {
    if (!f.can_report) {
      if (mm::ww_protected(mm, f.addr)) f.write = false;  // populate: map it, read-only
    } else {
      switch (mm::ww_claim_write(mm, f.addr)) {
        case mm::WwClaim::report: return kFaultWatchReport;
        case mm::WwClaim::wait: return kFaultWatchWait;
        case mm::WwClaim::none: break;
      }
    }
  }
  const bool file = f.vma->vm_file != nullptr;
  const bool shared = (f.vma->vm_flags & mm::VM_SHARED) != 0;
  if (!mem::pte_present(orig)) {
    if (!file) return do_anonymous_page(f, table);
    return f.write && !shared ? do_cow_fault(f, table) : do_read_fault(f, table);
  }
  if (!mem::pte_user(orig) || (f.write && !mem::pte_write(orig))) {
    if (file && shared) return do_read_fault(f, table);
    if (f.write) return do_wp_page(f, table, orig);
    // A readable page whose PTE lost its access bit: bring it back.  Not
    // for an execute-only VMA (a fetch gets here: the PTE is present and
    // not NX, nothing to do; it must stay unreadable as data).
    if (mm::vma_data_accessible(f.vma)) {
      SpinLock& ptl = mem::PageTables::pte_lock(table);
      ptl.lock();
      if (slot.load(std::memory_order_relaxed) == orig) slot.store(orig | mem::kPteUser, std::memory_order_release);
      ptl.unlock();
    }
  }
  return kFaultDone;  // present and usable: a spurious fault (another thread won)
}

FaultResult to_result(unsigned r) {
  if (r & kFaultOom) return FaultResult::oom;
  if (r & kFaultSigbus) return FaultResult::sigbus;
  if (r & kFaultSigsegv) return FaultResult::segv_maperr;
  return FaultResult::ok;
}

// Linux expand_downwards() + acct_stack_growth().  Requires mmap W.
// Returns false if the stack may not grow to `addr`.
bool expand_downwards(MmStruct* mm, Vma* vma, std::uint64_t addr) {
  if (addr < mm->cfg.mmap_min_addr) return false;
  if (Vma* prev = mm::vma_prev(mm, vma)) {
    if (!(prev->vm_flags & mm::VM_GROWSDOWN) && mm::vma_is_accessible(prev) &&
        addr - prev->vm_end < mm->cfg.stack_guard_gap)
      return false;
  }
  if (!mm::anon_vma_prepare(vma)) return false;
  const std::uint64_t grow = (vma->vm_start - addr) >> mm::kPageShift;
  if (grow > vma->vm_pgoff) return false;  // pgoff would wrap
  // acct_stack_growth(): RLIMIT_STACK, RLIMIT_MEMLOCK, the commit charge.
  if (vma->vm_end - addr > mm->cfg.rlimit_stack) return false;
  if (!mm::mlock_future_ok(mm, vma->vm_flags, grow << mm::kPageShift)) return false;
  if (!mm->mm_mt.preallocate()) return false;
  if (!mm::vm_enough_memory(mm, grow)) return false;
  mm::vma_start_write(vma);
  FAULT_HOOK(stack_write_locked);
  if (vma->vm_flags & mm::VM_LOCKED) mm->locked_vm += grow;
  // The range changes under the anon_vma lock: rmap walkers hold only it.
  mm::AnonVma* av = vma->anon_vma.load(std::memory_order_relaxed);
  mm::anon_vma_lock_write(av);
  vma->vm_pgoff -= grow;
  vma->vm_start = addr;
  mm->mm_mt.store(vma->vm_start, vma->vm_end, vma);
  mm::anon_vma_unlock_write(av);
  return true;
}

}  // namespace

void set_fault_hooks(const FaultHooks* hooks) { tls_fault_hooks = hooks; }

namespace {

// One attempt at a fault; on OOM the caller may drain and try again.
// *watch: kFaultWatchReport / kFaultWatchWait when a write-watched page
// must be reported first (every lock is dropped by then), else 0.
FaultResult fault_once(MmStruct* mm, std::uint64_t addr, Access access, unsigned* watch) {
  constexpr unsigned kWatch = kFaultWatchReport | kFaultWatchWait;
  if (Vma* vma = mm::lock_vma_under_rcu(mm, addr)) {
    if (access_error(vma, access)) {
      mm::vma_end_read(vma);
      mm->events.count(mm::VmEvent::vma_lock_success);
      return FaultResult::segv_accerr;
    }
    Vmf f{mm, vma, addr, access == Access::write, /*vma_locked=*/true, /*can_report=*/true};
    FAULT_HOOK(fault_locked);
    unsigned r = handle_mm_fault(f);
    const bool nx = exec_denied(vma, access);  // (vm_flags: still under the VMA lock)
    mm::vma_end_read(vma);
    if (r & kWatch) {
      mm->events.count(mm::VmEvent::vma_lock_success);
      *watch = r & kWatch;
      return FaultResult::ok;
    }
    if (!(r & kFaultRetry)) {
      mm->events.count(mm::VmEvent::vma_lock_success);
      const FaultResult res = to_result(r);
      return res == FaultResult::ok && nx ? FaultResult::segv_accerr : res;
    }
    mm->events.count(mm::VmEvent::vma_lock_retry);
  }

  mm::mmap_read_lock(mm);
  Vma* vma = mm::find_vma(mm, addr);
  if (vma != nullptr && vma->vm_start > addr) {
    if (!(vma->vm_flags & mm::VM_GROWSDOWN)) {
      vma = nullptr;
    } else {
      // Growing the stack changes the VMA: it needs the write side, and
      // the VMA must be looked up again after re-locking.
      mm::mmap_read_unlock(mm);
      FAULT_HOOK(stack_relock);
      mm::mmap_write_lock(mm);
      vma = mm::find_vma(mm, addr);
      if (vma != nullptr && vma->vm_start > addr &&
          (!(vma->vm_flags & mm::VM_GROWSDOWN) || !expand_downwards(mm, vma, addr)))
        vma = nullptr;
      mm::mmap_write_downgrade(mm);
    }
  }
  if (vma == nullptr) {
    mm::mmap_read_unlock(mm);
    return FaultResult::segv_maperr;
  }
  if (access_error(vma, access)) {
    mm::mmap_read_unlock(mm);
    return FaultResult::segv_accerr;
  }
  Vmf f{mm, vma, addr, access == Access::write, /*vma_locked=*/false, /*can_report=*/true};
  FAULT_HOOK(fault_locked);
  unsigned r = handle_mm_fault(f);
  const bool nx = exec_denied(vma, access);
  mm::mmap_read_unlock(mm);
  *watch = r & kWatch;
  // A watched page reports on a write fault only: never with a refused fetch.
  const FaultResult res = to_result(r & ~kWatch);
  return res == FaultResult::ok && nx ? FaultResult::segv_accerr : res;
}

}  // namespace

FaultResult handle_fault(MmStruct* mm, std::uint64_t addr, Access access) {
  mm->events.count(mm::VmEvent::pgfault);
  addr &= mm::kPageMask;
  bool drained = false;
  for (;;) {
    unsigned watch = 0;
    FaultResult r = fault_once(mm, addr, access, &watch);
    // A write-watched page: report it (or wait for the report another
    // fault makes) with NO lock held, then fault again: the page is no
    // longer armed and the write takes the ordinary path.
    if (watch & kFaultWatchReport) {
      mm::ww_report(mm, addr);
      continue;
    }
    if (watch & kFaultWatchWait) {
      mm::ww_wait(mm, addr);
      continue;
    }
    if (r != FaultResult::oom || rcu::in_read_section() || drained) return r;
    // Out of frames.  Freed frames may still wait for a grace period (or
    // sit in another thread's batch): with every mm lock dropped, wait for
    // them and try once more.  Not inside an RCU read section (an
    // AccessScope): there the grace period would wait for us, so the fault
    // reports OOM.
    FAULT_HOOK(before_drain);
    mm->phys->drain_deferred();
    drained = true;
  }
}

int mm_populate_locked(MmStruct* mm, std::uint64_t start, std::uint64_t end, bool ignore_errors) {
  mm::mmap_assert_locked(mm);
  for (std::uint64_t a = start; a < end;) {
    Vma* vma = mm::find_vma(mm, a);
    if (vma == nullptr || vma->vm_start >= end) return 0;  // holes are skipped
    if (a < vma->vm_start) a = vma->vm_start;
    const std::uint64_t stop = std::min(end, vma->vm_end);
    // Linux populate_vma_page_range: a VM_LOCKONFAULT VMA is left to its
    // faults (MAP_POPULATE and MAP_LOCKED under mlockall(MCL_FUTURE |
    // MCL_ONFAULT) too); GUP refuses inaccessible VMAs, and execute-only
    // ones by their key (-EFAULT).
    int err = 0;
    if (vma->vm_flags & mm::VM_LOCKONFAULT) {
      a = stop;
      continue;
    }
    if (!mm::vma_data_accessible(vma)) {
      err = -EFAULT;
    } else {
      // Private writable memory is populated with write faults (FOLL_WRITE),
      // everything else with reads (FOLL_FORCE).
      const bool write = (vma->vm_flags & (mm::VM_WRITE | mm::VM_SHARED)) == mm::VM_WRITE;
      for (; a < stop; a += mm::kPageSize) {
        FAULT_HOOK(populate_page);
        Vmf f{mm, vma, a, write, /*vma_locked=*/false};
        if (const unsigned r = handle_mm_fault(f); r != kFaultDone) {
          err = (r & kFaultOom) ? -ENOMEM : -EFAULT;  // GUP's vm_fault_to_errno
          break;
        }
      }
    }
    if (err != 0) {
      if (!ignore_errors) return err;
      a = stop;  // __mm_populate(ignore_errors): on with the next VMA
    }
  }
  return 0;
}

int faultin_page_locked(MmStruct* mm, Vma* vma, std::uint64_t addr, bool write) {
  mm::mmap_assert_locked(mm);
  addr &= mm::kPageMask;
  // MADV_POPULATE_WRITE cannot report a write-watched page (the mmap_lock
  // is held): it populates it read-only, as handle_mm_fault does, and the
  // next real write reports.
  if (write && mm::ww_protected(mm, addr)) write = false;
  // Fault until the PTE allows the access (GUP's follow_page / faultin_page
  // loop): a racing zap can undo a fault, which then simply runs again.
  for (;;) {
    {
      rcu::ReadGuard rcu;
      const pte_t pte = mm->pgtables.lookup(addr);
      if (mem::pte_present(pte) && mem::pte_user(pte) && (!write || mem::pte_write(pte))) {
        // GUP's FOLL_WRITE|FOLL_TOUCH on a writable clean PTE dirties the
        // page, not the PTE (Linux follow_page_pte: folio_mark_dirty).
        if (write && !mem::pte_dirty(pte) && mem::pte_pfn(pte) != mm->phys->zero_pfn())
          mm->phys->frame(mem::pte_pfn(pte)).flags.fetch_or(mem::kPgDirty, std::memory_order_relaxed);
        return 0;
      }
    }
    Vmf f{mm, vma, addr, write, /*vma_locked=*/false};
    const unsigned r = handle_mm_fault(f);
    if (r & kFaultOom) return -ENOMEM;
    if (r & (kFaultSigbus | kFaultSigsegv)) return -EFAULT;
  }
}

void populate_range_locked(MmStruct* mm, std::uint64_t start, std::uint64_t end) {
  (void)mm_populate_locked(mm, start, end, /*ignore_errors=*/true);
}

}  // namespace vmspace::fault
