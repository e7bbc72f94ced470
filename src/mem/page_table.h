// SPDX-License-Identifier: MIT
// page_table.h - x86-64-style 4-level page tables (Linux: mm->pgd and the
// pgd/pud/pmd/pte levels) with split PTE locks and lockless RCU walks.
//
// Layout: 48-bit virtual addresses, 4 KiB pages, 4 levels of 512 entries:
//   level 3 (PGD) va[47:39], level 2 (PUD) va[38:30], level 1 (PMD) va[29:21],
//   PTE table va[20:12].
// A space with a 57-bit task size (LA57) has a fifth level on top, level 4
// va[56:48]; the walks start at the top table's level either way.
// Leaf entries (pte_t) use the x86 bits below and hold the frame number in
// bits 12..51.  UPPER-LEVEL entries hold a pointer-derived value: the host
// address of the next-level table (tables are 64-byte aligned, so bits 0..5
// of the address are zero) OR-ed with kPtePresent.  Their "pfn" field is
// therefore NOT a frame number; use only PageTables' own accessors on them.
// No huge pages: every present PMD entry points to a PteTable.
//
// Table pages come from the host heap (aligned new), not from PhysMem.
//
// Locks:
//   - page_table_lock (the AddressSpace's, class page_table_lock) serializes
//     installing and removing upper-level entries.
//   - each PteTable has its own pte_lock (class pte_lock): leaf entries are
//     modified only under it (atomic stores).
//   Order: page_table_lock before pte_lock, never the reverse; no pte_lock
//   is held while a table is allocated (pte_alloc takes none).
//
// Guarantees for lockless walkers (code inside an rcu::ReadGuard calling
// lookup()):
//   (A) A walker never dereferences freed table memory: tables are unlinked
//       (release store of 0 into the parent entry) before they are freed,
//       and freed only through rcu::call() after that, i.e. after every
//       read section that could have loaded the old parent entry has ended.
//   (B) A walker that sees a table sees it fully initialized (all entries
//       zero, lock constructed): tables are zero-filled before being
//       published with a release store; walkers load entries with acquire.
//   (C) Entries are single 64-bit atomics: a walker sees either the old or
//       the new value of an entry, never a mix.
//   (D) What a writer stored into a frame before storing its PTE (release)
//       is visible to a walker that loaded that PTE (acquire), e.g. the
//       zero fill of a freshly faulted frame.
//   (E) After zap_range()/free_pgtables() (or any store under the pte_lock)
//       returns, a walk that starts afterwards (ordered after the return by
//       program order or other synchronization) sees the new value, i.e. 0
//       for a zapped range.  A walk already running may still return the
//       old PTE; it may use it until its read section ends.
//   (F) The frame named by a PTE a walker obtained is not reused before the
//       walker's read section ends, PROVIDED the frame's reference is
//       dropped (PhysMem::put, RCU-deferred) only after the PTE was
//       cleared - the zap_range() callback is the place to do it.
//   (G) lookup() never blocks, never allocates, never takes a lock.
//   (H) lookup() may return a PTE marker (kPteMarkerGuard): it is not
//       present and names no frame; a walker treats it as "no page" and
//       lets the fault path decide (it faults SEGV_MAPERR).
//   (I) The one lockless change: the hardware dirty bit.  A walker about
//       to write through a PTE that is present, user-accessible, writable
//       and clean (pte_hw_dirtyable) sets kPteDirty on it with a
//       compare-exchange, without the pte_lock, as an x86 MMU does on the
//       first write through a clean TLB entry (pte_mkdirty_hw).  Nothing
//       else about any entry changes without the lock.  So a pte_lock
//       holder that replaces such an entry must do it with one atomic
//       read-modify-write (ptep_get_and_set, ptep_modify; Linux's
//       ptep_get_and_clear and ptep_modify_prot_start/commit), or a dirty
//       bit set between its load and its store would be lost: the page
//       would read as clean (smaps; a later write-back would skip it).
//       Every other entry (not present, a marker, not user-accessible,
//       read-only, dirty already) may be stored plainly.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "mem/phys_mem.h"
#include "sync/rcu.h"
#include "sync/spinlock.h"

namespace vmspace::mem {

using pte_t = std::uint64_t;

// ---- entry bits ----
inline constexpr pte_t kPtePresent = pte_t{1} << 0;
inline constexpr pte_t kPteWrite = pte_t{1} << 1;
inline constexpr pte_t kPteUser = pte_t{1} << 2;
inline constexpr pte_t kPteAccessed = pte_t{1} << 5;
inline constexpr pte_t kPteDirty = pte_t{1} << 6;
// Software bit of a present PTE (an x86 "available" bit): the page was
// given up with MADV_FREE and may be discarded instead of kept while it
// stays clean (Linux's lazyfree folios: folio_mark_lazyfree).  A write
// makes it dirty again (the PTE is write-protected, so the write faults).
inline constexpr pte_t kPteLazyFree = pte_t{1} << 9;
// PTE markers (Linux's pte_marker swap entries): NOT present, not zero.
// The only one is the guard marker of MADV_GUARD_INSTALL: an access faults
// with SIGSEGV (SEGV_MAPERR), zap_range() keeps it unless asked to drop
// markers (munmap does, MADV_DONTNEED does not), and move_range() moves it
// like any other entry.  It names no frame: pte_pfn() of it is 0 and it must
// never be taken for a mapping (lockless walkers test pte_present()).
inline constexpr pte_t kPteMarkerGuard = pte_t{1} << 10;
// No-execute (x86's _PAGE_NX, bit 63): an instruction fetch through the
// entry faults.  Set on every PTE of a VMA without VM_EXEC (mm/memory.h
// pte_apply_vma_prot, Linux's vm_get_page_prot) and kept in step with it
// by mprotect, so that a lockless walker decides a fetch from the entry
// alone, as the CPU does.  kPteUser is the data-access bit: an entry may
// allow fetches without data reads (execute-only, under a protection key).
inline constexpr pte_t kPteNx = pte_t{1} << 63;
inline constexpr unsigned kPtePfnShift = 12;
inline constexpr pte_t kPtePfnMask = ((pte_t{1} << 40) - 1) << kPtePfnShift;  // bits 12..51
inline constexpr pte_t kPteFlagsMask = ~kPtePfnMask;

// ---- geometry ----
inline constexpr unsigned kPageShift = 12;
inline constexpr std::uint64_t kPageSize = std::uint64_t{1} << kPageShift;
inline constexpr unsigned kEntriesPerTable = 512;
inline constexpr unsigned kVaBits = 48;
inline constexpr std::uint64_t kVaLimit = std::uint64_t{1} << kVaBits;  // first invalid address
// Five-level paging (LA57, a space whose task size is 57-bit): one more
// level above the PGD (Linux's P4D folded the other way round: vmspace
// calls the top table the PGD either way), va[56:48].
inline constexpr unsigned kVaBits57 = 57;
inline constexpr std::uint64_t kVaLimit57 = std::uint64_t{1} << kVaBits57;
inline constexpr unsigned kPmdShift = 21;  // span of one PteTable: 2 MiB
inline constexpr unsigned kPudShift = 30;  // span of one PMD table: 1 GiB
inline constexpr unsigned kPgdShift = 39;  // span of one PUD table: 512 GiB
inline constexpr std::uint64_t kPteTableSpan = std::uint64_t{1} << kPmdShift;

constexpr unsigned pte_index(std::uint64_t va) { return (va >> kPageShift) & 511; }
constexpr unsigned pmd_index(std::uint64_t va) { return (va >> kPmdShift) & 511; }
constexpr unsigned pud_index(std::uint64_t va) { return (va >> kPudShift) & 511; }
constexpr unsigned pgd_index(std::uint64_t va) { return (va >> kPgdShift) & 511; }

// ---- PTE helpers (leaf entries only) ----
constexpr bool pte_none(pte_t p) { return p == 0; }
constexpr bool pte_present(pte_t p) { return (p & kPtePresent) != 0; }
// A guard marker (kPteMarkerGuard): not present and maps nothing.
constexpr bool pte_is_guard(pte_t p) { return p == kPteMarkerGuard; }
// Nothing mapped there: an empty entry or a marker (Linux pte_none_mostly).
constexpr bool pte_none_mostly(pte_t p) { return p == 0 || pte_is_guard(p); }
constexpr bool pte_lazyfree(pte_t p) { return (p & kPteLazyFree) != 0; }
constexpr bool pte_write(pte_t p) { return (p & kPteWrite) != 0; }
constexpr bool pte_user(pte_t p) { return (p & kPteUser) != 0; }
// May an instruction be fetched through this entry (present, not NX)?
constexpr bool pte_exec(pte_t p) { return (p & (kPtePresent | kPteNx)) == kPtePresent; }
constexpr bool pte_young(pte_t p) { return (p & kPteAccessed) != 0; }
constexpr bool pte_dirty(pte_t p) { return (p & kPteDirty) != 0; }
constexpr pfn_t pte_pfn(pte_t p) { return (p & kPtePfnMask) >> kPtePfnShift; }
constexpr pte_t pte_flags(pte_t p) { return p & kPteFlagsMask; }
// Present, user, optionally writable, executable; not accessed, not
// dirty.  A PTE of a VMA gets its VMA's access bits with
// mm::pte_apply_vma_prot (NX for a VMA without VM_EXEC).
constexpr pte_t make_pte(pfn_t pfn, bool writable) {
  return ((pfn << kPtePfnShift) & kPtePfnMask) | kPtePresent | kPteUser |
         (writable ? kPteWrite : 0);
}
constexpr pte_t pte_mkwrite(pte_t p) { return p | kPteWrite; }
constexpr pte_t pte_wrprotect(pte_t p) { return p & ~kPteWrite; }
constexpr pte_t pte_mkdirty(pte_t p) { return p | kPteDirty; }
constexpr pte_t pte_mkclean(pte_t p) { return p & ~kPteDirty; }
constexpr pte_t pte_mkyoung(pte_t p) { return p | kPteAccessed; }
constexpr pte_t pte_mkold(pte_t p) { return p & ~kPteAccessed; }
constexpr pte_t pte_mkexec(pte_t p) { return p & ~kPteNx; }
constexpr pte_t pte_mknexec(pte_t p) { return p | kPteNx; }
constexpr pte_t pte_modify_pfn(pte_t p, pfn_t pfn) {
  return (p & kPteFlagsMask) | ((pfn << kPtePfnShift) & kPtePfnMask);
}
// May a lockless writer still set kPteDirty on this entry (rule I)?
constexpr bool pte_hw_dirtyable(pte_t p) {
  return (p & (kPtePresent | kPteUser | kPteWrite | kPteDirty)) == (kPtePresent | kPteUser | kPteWrite);
}

// ---- replacing an entry under its pte_lock (rule I) ----
// `old` is the value the lock holder loaded under the lock.  Store `pte`
// (release: pairs with the walkers' acquire) and return the value it
// replaced: `old`, or `old` with the dirty bit a lockless writer set after
// it was loaded.  Costs one atomic exchange only where that can happen.
inline pte_t ptep_get_and_set(std::atomic<pte_t>& slot, pte_t old, pte_t pte) {
  if (!pte_hw_dirtyable(old)) {
    slot.store(pte, std::memory_order_release);
    return old;
  }
  return slot.exchange(pte, std::memory_order_release);
}
inline pte_t ptep_get_and_clear(std::atomic<pte_t>& slot, pte_t old) { return ptep_get_and_set(slot, old, 0); }
// Store fn(current value) unless that is the current value; the result of
// fn for a value that gained the dirty bit meanwhile is stored instead, so
// fn decides what happens to that bit (change_protection keeps it).
// Returns the value replaced (or left).
template <class Fn>
inline pte_t ptep_modify(std::atomic<pte_t>& slot, pte_t old, Fn&& fn) {
  pte_t pte = fn(old);
  if (pte == old) return old;  // nothing stored, nothing to lose
  if (!pte_hw_dirtyable(old)) {
    slot.store(pte, std::memory_order_release);
    return old;
  }
  // Only the dirty bit can appear meanwhile (rule I): a failure reloads
  // `old` with it, fn is applied again, and the next try stores that.
  while (!slot.compare_exchange_weak(old, pte, std::memory_order_release, std::memory_order_relaxed)) pte = fn(old);
  return old;
}

// ---- the hardware dirty bit (rule I), for lockless walkers ----
// Before writing through `slot` (from lookup_slot(), inside the walker's
// read section), whose value `pte` the walker loaded with acquire and found
// clean (the caller's test, the whole cost when the bit is set already):
// set the dirty bit if the entry allows the write.  Returns the PTE to use
// (dirty), or the entry as it is when it does not allow the write (the
// caller checks it and faults).  A failed compare-exchange means a
// pte_lock holder replaced the entry; its new value is checked instead,
// loaded with acquire as any walker's load (it may name a new frame).
inline pte_t pte_mkdirty_hw(std::atomic<pte_t>& slot, pte_t pte) {
  while (pte_hw_dirtyable(pte)) {
    if (slot.compare_exchange_weak(pte, pte_mkdirty(pte), std::memory_order_acquire, std::memory_order_acquire))
      return pte_mkdirty(pte);
  }
  return pte;
}

// A last-level table: 512 leaf entries, its own split lock, and the RCU head
// used to free it.  Entries: modified only under `lock` (atomic stores with
// release; the dirty bit also without it, rule I); read anywhere with
// acquire loads.
struct alignas(64) PteTable {
  std::atomic<pte_t> e[kEntriesPerTable];
  SpinLock lock{LockClass::pte_lock};
  rcu::Head rcu{};
  PteTable() {
    for (auto& x : e) x.store(0, std::memory_order_relaxed);
  }
};

struct UpperTable;  // page_table.cpp

class PageTables {
 public:
  // `page_table_lock`: the AddressSpace's lock of class page_table_lock; it
  // must outlive this object.  Allocates the top-level table (throws
  // std::bad_alloc if that fails).  `levels`: 4 (48-bit addresses,
  // kVaLimit) or 5 (57-bit, kVaLimit57).
  explicit PageTables(SpinLock& page_table_lock, unsigned levels = 4);
  // Frees every table directly (no readers may remain); does NOT touch
  // frames (zap first if frames must be released).
  ~PageTables();
  PageTables(const PageTables&) = delete;
  PageTables& operator=(const PageTables&) = delete;

  // Lockless walk (like hardware / GUP-fast): the caller is inside an
  // rcu::ReadGuard (debug builds check).  The current PTE value for va, or
  // 0 if any level is absent (or va >= va_limit()).
  pte_t lookup(std::uint64_t va) const;
  // The same walk, giving the leaf entry itself (nullptr if any level is
  // absent), for a walker that sets the hardware dirty bit (rule I).  The
  // slot stays valid memory until the read section ends (A); its table may
  // be unlinked meanwhile, then its entries are 0 (zapped first).
  std::atomic<pte_t>* lookup_slot(std::uint64_t va) const;

  // The PTE table covering va, allocating missing levels.  Upper levels are
  // installed under page_table_lock (re-checked after locking; the loser of
  // a race frees its table).  nullptr only if allocation failed or
  // va >= va_limit().  Caller holds the mmap_lock (read) or a VMA read lock,
  // and no pte_lock.
  PteTable* pte_alloc(std::uint64_t va);

  // The PTE table covering va if present (no allocation), else nullptr.
  // Same caller rules as pte_alloc (or inside a ReadGuard, for peeking).
  PteTable* pte_table(std::uint64_t va) const;

  static SpinLock& pte_lock(PteTable* t) { return t->lock; }
  // The slot for va in t (t must cover va).  Modify only under pte_lock(t).
  static std::atomic<pte_t>& pte_slot(PteTable* t, std::uint64_t va) {
    return t->e[pte_index(va)];
  }

  // Visit every present PTE in [start, end) (page-aligned) under its
  // table's pte_lock; fn(va, std::atomic<pte_t>& slot, pte_t old) may
  // store a new value into slot (clear = zap, wrprotect, ...).  Tables are
  // locked one at a time, in address order.  Caller holds the mmap_lock or
  // the VMA locks covering the range, and no pte_lock.
  template <class Fn>
  void for_each_present(std::uint64_t start, std::uint64_t end, Fn&& fn) {
    if (end > va_limit_) end = va_limit_;
    std::uint64_t va = start;
    while (va < end) {
      PteTable* t = next_pte_table(va, end);  // advances va past absent levels
      if (t == nullptr) break;
      const std::uint64_t table_end = (va & ~(kPteTableSpan - 1)) + kPteTableSpan;
      const std::uint64_t stop = table_end < end ? table_end : end;
      t->lock.lock();
      for (; va < stop; va += kPageSize) {
        std::atomic<pte_t>& slot = t->e[pte_index(va)];
        const pte_t old = slot.load(std::memory_order_relaxed);
        if (pte_present(old)) fn(va, slot, old);
      }
      t->lock.unlock();
    }
  }

  // Visit every entry in [start, end) that is not empty (present PTEs and
  // markers) under its table's pte_lock, as for_each_present does.
  template <class Fn>
  void for_each_entry(std::uint64_t start, std::uint64_t end, Fn&& fn) {
    if (end > va_limit_) end = va_limit_;
    std::uint64_t va = start;
    while (va < end) {
      PteTable* t = next_pte_table(va, end);
      if (t == nullptr) break;
      const std::uint64_t table_end = (va & ~(kPteTableSpan - 1)) + kPteTableSpan;
      const std::uint64_t stop = table_end < end ? table_end : end;
      t->lock.lock();
      for (; va < stop; va += kPageSize) {
        std::atomic<pte_t>& slot = t->e[pte_index(va)];
        const pte_t old = slot.load(std::memory_order_relaxed);
        if (!pte_none(old)) fn(va, slot, old);
      }
      t->lock.unlock();
    }
  }

  // Clear the present PTEs in [start, end) under their locks (release
  // stores of 0), calling on_unmap(va, old_pte) for each right after it is
  // cleared, still under the pte_lock (the caller drops the frame
  // reference there; PhysMem::put is fine under a pte_lock).  Markers are
  // kept unless `drop_markers` (Linux's ZAP_FLAG_DROP_MARKER: munmap and
  // exit drop them; MADV_DONTNEED/FREE/REMOVE keep guard regions).
  // Returns how many present PTEs were cleared.
  std::uint64_t zap_range(std::uint64_t start, std::uint64_t end,
                          const std::function<void(std::uint64_t, pte_t)>& on_unmap,
                          bool drop_markers = false);

  // MADV_GUARD_INSTALL: make every entry of [start, end) a guard marker,
  // allocating page tables as needed.  A present PTE is replaced by the
  // marker under its lock, and on_unmap(va, old_pte) is called for it
  // right after, as zap_range does (its page is discarded); empty entries
  // get the marker; existing markers stay.  Per PTE under its lock, so a
  // racing fault either installed its page first (then it is discarded
  // here) or finds the marker when it re-checks the entry.  Caller: the
  // mmap_lock or a VMA lock covering the range, no pte_lock.  False when a
  // page table could not be allocated (the part before it is done).
  bool install_guard_markers(std::uint64_t start, std::uint64_t end,
                             const std::function<void(std::uint64_t, pte_t)>& on_unmap);
  // MADV_GUARD_REMOVE: clear the guard markers in [start, end) under their
  // locks; nothing else changes.  Returns how many were cleared.
  std::uint64_t remove_guard_markers(std::uint64_t start, std::uint64_t end);

  // Linux move_page_tables() (mremap): move the PTEs of [old_addr,
  // old_addr + len) to [new_addr, new_addr + len), all page aligned.  A
  // PTE table whose whole 2 MiB lies inside the old range moves by
  // relinking it into the new PMD slot (Linux's move_normal_pmd: O(1) for
  // 512 pages) when new_addr has the same offset within 2 MiB and that slot
  // is empty; everything else moves entry by entry under both tables'
  // locks (the old table's first, the new one's as subclass 1).  Frames
  // and their references move with their PTEs; nothing is copied.
  // Caller: mmap W with both ranges' VMAs write-locked (no fault can touch
  // either range), the rmap locks where a walker could otherwise miss a
  // page, no pte_lock; the new range maps nothing.  Returns how many bytes
  // from the start were moved: len, or less if a table for the new range
  // could not be allocated.  *relinked counts whole tables moved.
  std::uint64_t move_range(std::uint64_t old_addr, std::uint64_t new_addr, std::uint64_t len,
                           std::uint64_t* relinked = nullptr);

  // Linux free_pgtables(): free the page-table pages that intersect
  // [start, end) and map only addresses inside [floor, ceiling)
  // (floor = end of the previous VMA or 0, ceiling = start of the next VMA,
  // 0 meaning "no next VMA" = kVaLimit), so tables shared with neighbouring
  // VMAs survive.  A freed upper table is freed with its whole subtree.
  // The top-level table is never freed.  The caller has zapped [start, end)
  // and holds the mmap_lock for write with the VMAs detached; no one
  // allocates or locks tables inside [floor, ceiling) meanwhile.
  // Unlinking is done under page_table_lock with release stores; the memory
  // is freed after an RCU grace period (rcu::call), so walkers inside may
  // finish.  Callable inside a read section (it never waits).
  void free_pgtables(std::uint64_t start, std::uint64_t end, std::uint64_t floor,
                     std::uint64_t ceiling);

  // Tables currently linked into the tree (unlinked tables waiting for
  // their grace period are not counted).  upper_tables includes the
  // top-level table; bytes = host memory of the counted tables.
  struct Stats {
    std::uint64_t pte_tables, upper_tables, bytes;
  };
  Stats stats() const;
  // The first address these tables cannot map (kVaLimit or kVaLimit57).
  std::uint64_t va_limit() const { return va_limit_; }

 private:
  // First PTE table at or after va that covers some address < end; sets va
  // to max(va, that table's base).  nullptr (va unspecified) if none.
  PteTable* next_pte_table(std::uint64_t& va, std::uint64_t end) const;
  // The PMD-level slot covering va, allocating the PGD/PUD levels above it
  // when `alloc`; nullptr if absent (or allocation failed).
  std::atomic<std::uint64_t>* pmd_slot(std::uint64_t va, bool alloc);
  void free_level(UpperTable* t, unsigned level, std::uint64_t base, std::uint64_t start,
                  std::uint64_t end, std::uint64_t floor, std::uint64_t ceiling);
  void uncount_subtree(UpperTable* t, unsigned level);

  SpinLock& ptl_;
  // The top table's level (3: four-level paging, 4: five-level) and the
  // first address it cannot map.  Static.
  const unsigned top_level_;
  const std::uint64_t va_limit_;
  UpperTable* pgd_;
  std::atomic<std::uint64_t> n_pte_{0};
  std::atomic<std::uint64_t> n_upper_{0};
};

}  // namespace vmspace::mem
