// SPDX-License-Identifier: MIT
// page_table.cpp - 4-level page tables with split PTE locks and RCU-freed
// table pages.
//
// Correctness argument
// --------------------
// Writers of upper-level entries: pte_alloc() (installs, under
// page_table_lock, after re-checking the slot is still empty) and
// free_pgtables() (clears, under page_table_lock).  Writers of leaf entries:
// callers of pte_slot() and for_each_present()/zap_range(), always under the
// table's pte_lock; the one exception is the hardware dirty bit (rule I),
// which lockless writers set with a compare-exchange on a writable clean
// entry, and which lock holders therefore replace with an exchange
// (ptep_get_and_set: zap, guard markers, the old entry of a move) or a
// compare-exchange (ptep_modify): by the single modification order of the
// entry, either the writer's compare-exchange comes first and the lock
// holder's exchange returns the dirty bit, or the lock holder's store comes
// first and the writer's compare-exchange fails and re-checks.  Every entry
// is one std::atomic<uint64_t>, so no access is a data race and no reader
// sees a torn value (guarantee C).
//
// Publication (B, D): a new table is constructed (all entries zero, lock
// initialized) by the allocating thread, then published with a release store
// into its parent entry; every walker loads entries with acquire, so the
// table's initialization happens-before any use through that pointer.  The
// same release/acquire pair on leaf entries carries the contents of a frame
// written before its PTE was installed.
//
// Lifetime (A): a table is freed only by free_pgtables() (through rcu::call
// after it has been unlinked by a release store of 0) or by ~PageTables (no
// readers by contract).  A lockless walker only follows pointers it loaded
// inside its read section; if it loaded a pointer to table T, it did so
// before T was unlinked (the unlink happens-before nothing the walker did)
// or, in coherence order, the walker read the old entry value - either way
// its read section began before the grace period that precedes T's free
// ended, so T is still allocated while the walker uses it.  Subtrees are
// freed as a unit by one callback: a walker that reached a child through an
// unlinked parent is covered by the same grace period.
//
// Freshness (E): zap_range() clears entries with stores under pte_lock
// before returning; a walk ordered after the return reads the cleared value
// (or a later one) by coherence.  free_pgtables() likewise clears the parent
// entry before returning, so later walks stop at the parent.
//
// Concurrent pte_alloc() vs free_pgtables(): the caller contract of
// free_pgtables() (mmap_lock held for write, VMAs in [floor, ceiling)
// detached) guarantees no one allocates, locks or modifies tables that lie
// inside [floor, ceiling).  Tables that straddle floor or ceiling are never
// freed, so faults in neighbouring VMAs (which may run concurrently under
// per-VMA locks) only touch surviving tables; the slots they install in a
// shared upper table are different slots from the ones being cleared, and
// both writers hold page_table_lock anyway.
//
// Lock order: page_table_lock is taken only around single upper-entry
// installs/clears, with no pte_lock held and nothing else taken inside;
// pte_lock is taken in for_each_present() only (and by callers), one table
// at a time.  Allocation (operator new) happens with no page-table lock held.
#include "mem/page_table.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <new>

#include "sync/fail_nth.h"

namespace vmspace::mem {

// An upper-level table (PGD, PUD or PMD).  Entries: pointer to the child
// table | kPtePresent, or 0.  level: 3 = PGD (children: level-2 tables),
// 2 = PUD (children: level-1 tables), 1 = PMD (children: PteTables).
struct alignas(64) UpperTable {
  std::atomic<std::uint64_t> e[kEntriesPerTable];
  rcu::Head rcu{};
  unsigned level;
  explicit UpperTable(unsigned lvl) : level(lvl) {
    for (auto& x : e) x.store(0, std::memory_order_relaxed);
  }
};

namespace {

constexpr std::uint64_t kPtrMask = ~std::uint64_t{63};

inline UpperTable* to_upper(std::uint64_t e) {
  return reinterpret_cast<UpperTable*>(static_cast<std::uintptr_t>(e & kPtrMask));
}
inline PteTable* to_pte(std::uint64_t e) {
  return reinterpret_cast<PteTable*>(static_cast<std::uintptr_t>(e & kPtrMask));
}
inline std::uint64_t entry_for(const void* table) {
  return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(table)) | kPtePresent;
}
// Span of one entry of a table at `level` (4: 256 TiB, 3: 512 GiB, 2: 1 GiB,
// 1: 2 MiB).
constexpr std::uint64_t entry_span(unsigned level) {
  return std::uint64_t{1} << (kPageShift + 9 * level);
}
inline unsigned index_at(unsigned level, std::uint64_t va) {
  return static_cast<unsigned>((va >> (kPageShift + 9 * level)) & 511);
}

// Free t and everything below it (no concurrent access).
void delete_subtree(UpperTable* t) {
  for (auto& slot : t->e) {
    std::uint64_t e = slot.load(std::memory_order_relaxed);
    if ((e & kPtePresent) == 0) continue;
    if (t->level == 1)
      delete to_pte(e);
    else
      delete_subtree(to_upper(e));
  }
  delete t;
}

void free_pte_cb(rcu::Head* h) {
  delete reinterpret_cast<PteTable*>(reinterpret_cast<char*>(h) - offsetof(PteTable, rcu));
}

void free_upper_cb(rcu::Head* h) {
  delete_subtree(
      reinterpret_cast<UpperTable*>(reinterpret_cast<char*>(h) - offsetof(UpperTable, rcu)));
}

}  // namespace

PageTables::PageTables(SpinLock& page_table_lock, unsigned levels)
    : ptl_(page_table_lock),
      top_level_(levels == 5 ? 4 : 3),
      va_limit_(levels == 5 ? kVaLimit57 : kVaLimit),
      pgd_(new UpperTable(top_level_)) {
  n_upper_.store(1, std::memory_order_relaxed);
}

PageTables::~PageTables() { delete_subtree(pgd_); }

std::atomic<pte_t>* PageTables::lookup_slot(std::uint64_t va) const {
#ifdef VMSPACE_DEBUG_CHECKS
  if (!rcu::in_read_section()) {
    std::fprintf(stderr, "vmspace: PageTables::lookup outside an RCU read section\n");
    std::abort();
  }
#endif
  if (va >= va_limit_) return nullptr;
  const UpperTable* top = pgd_;
  if (top_level_ == 4) {  // five-level paging: one more step
    const std::uint64_t e4 = top->e[index_at(4, va)].load(std::memory_order_acquire);
    if ((e4 & kPtePresent) == 0) return nullptr;
    top = to_upper(e4);
  }
  std::uint64_t e = top->e[pgd_index(va)].load(std::memory_order_acquire);
  if ((e & kPtePresent) == 0) return nullptr;
  e = to_upper(e)->e[pud_index(va)].load(std::memory_order_acquire);
  if ((e & kPtePresent) == 0) return nullptr;
  e = to_upper(e)->e[pmd_index(va)].load(std::memory_order_acquire);
  if ((e & kPtePresent) == 0) return nullptr;
  return &to_pte(e)->e[pte_index(va)];
}

pte_t PageTables::lookup(std::uint64_t va) const {
  const std::atomic<pte_t>* slot = lookup_slot(va);
  return slot != nullptr ? slot->load(std::memory_order_acquire) : 0;
}

PteTable* PageTables::pte_table(std::uint64_t va) const {
  if (va >= va_limit_) return nullptr;
  const UpperTable* t = pgd_;
  for (unsigned level = top_level_; level >= 1; --level) {
    std::uint64_t e = t->e[index_at(level, va)].load(std::memory_order_acquire);
    if ((e & kPtePresent) == 0) return nullptr;
    if (level == 1) return to_pte(e);
    t = to_upper(e);
  }
  return nullptr;  // not reached
}

PteTable* PageTables::pte_alloc(std::uint64_t va) {
  if (va >= va_limit_) return nullptr;
  UpperTable* t = pgd_;
  for (unsigned level = top_level_; level >= 1; --level) {
    std::atomic<std::uint64_t>& slot = t->e[index_at(level, va)];
    std::uint64_t e = slot.load(std::memory_order_acquire);
    if ((e & kPtePresent) == 0) {
      // Allocate with no lock held, install under page_table_lock if the
      // slot is still empty, else discard ours.
      if (fail_nth::should_fail(fail_nth::Site::page_table)) return nullptr;  // injected (tests)
      void* fresh = level == 1 ? static_cast<void*>(new (std::nothrow) PteTable())
                               : static_cast<void*>(new (std::nothrow) UpperTable(level - 1));
      if (fresh == nullptr) return nullptr;
      bool installed = false;
      ptl_.lock();
      e = slot.load(std::memory_order_acquire);
      if ((e & kPtePresent) == 0) {
        e = entry_for(fresh);
        slot.store(e, std::memory_order_release);  // publish the zeroed table
        installed = true;
      }
      ptl_.unlock();
      if (installed) {
        (level == 1 ? n_pte_ : n_upper_).fetch_add(1, std::memory_order_relaxed);
      } else if (level == 1) {
        delete static_cast<PteTable*>(fresh);
      } else {
        delete static_cast<UpperTable*>(fresh);
      }
    }
    if (level == 1) return to_pte(e);
    t = to_upper(e);
  }
  return nullptr;  // not reached
}

std::atomic<std::uint64_t>* PageTables::pmd_slot(std::uint64_t va, bool alloc) {
  if (va >= va_limit_) return nullptr;
  UpperTable* t = pgd_;
  for (unsigned level = top_level_; level >= 2; --level) {
    std::atomic<std::uint64_t>& slot = t->e[index_at(level, va)];
    std::uint64_t e = slot.load(std::memory_order_acquire);
    if ((e & kPtePresent) == 0) {
      if (!alloc) return nullptr;
      if (fail_nth::should_fail(fail_nth::Site::page_table)) return nullptr;  // injected (tests)
      auto* fresh = new (std::nothrow) UpperTable(level - 1);
      if (fresh == nullptr) return nullptr;
      ptl_.lock();
      e = slot.load(std::memory_order_acquire);
      const bool installed = (e & kPtePresent) == 0;
      if (installed) {
        e = entry_for(fresh);
        slot.store(e, std::memory_order_release);
      }
      ptl_.unlock();
      if (installed)
        n_upper_.fetch_add(1, std::memory_order_relaxed);
      else
        delete fresh;
    }
    t = to_upper(e);
  }
  return &t->e[index_at(1, va)];
}

std::uint64_t PageTables::move_range(std::uint64_t old_addr, std::uint64_t new_addr, std::uint64_t len,
                                     std::uint64_t* relinked) {
  std::uint64_t moved = 0;
  if (relinked != nullptr) *relinked = 0;
  while (moved < len) {
    const std::uint64_t from = old_addr + moved, to = new_addr + moved;
    const std::uint64_t table_end = (from & ~(kPteTableSpan - 1)) + kPteTableSpan;
    const std::uint64_t chunk = std::min(len - moved, table_end - from);
    std::atomic<std::uint64_t>* src = pmd_slot(from, /*alloc=*/false);
    const std::uint64_t se = src != nullptr ? src->load(std::memory_order_acquire) : 0;
    if ((se & kPtePresent) == 0) {  // nothing mapped in this 2 MiB
      moved += chunk;
      continue;
    }
    // A whole table, and the same place in the destination's 2 MiB:
    // relink it (Linux move_normal_pmd).
    if (chunk == kPteTableSpan && (to & (kPteTableSpan - 1)) == 0) {
      std::atomic<std::uint64_t>* dst = pmd_slot(to, /*alloc=*/true);
      if (dst == nullptr) return moved;
      if ((dst->load(std::memory_order_acquire) & kPtePresent) == 0) {
        // Walkers see the table at the old place or at the new one (or
        // neither, for a moment): both ranges are write-locked, so only a
        // lockless reader can look, and it finds no PTE or a valid one.
        ptl_.lock();
        dst->store(se, std::memory_order_release);
        src->store(0, std::memory_order_release);
        ptl_.unlock();
        if (relinked != nullptr) ++*relinked;
        moved += chunk;
        continue;
      }
    }
    // Entry by entry (Linux move_ptes).  Tables are allocated with no PTE
    // lock held; the destination may span two tables.
    PteTable* st = to_pte(se);
    std::uint64_t done = 0;
    while (done < chunk) {
      const std::uint64_t t_from = from + done, t_to = to + done;
      const std::uint64_t dst_end = (t_to & ~(kPteTableSpan - 1)) + kPteTableSpan;
      const std::uint64_t piece = std::min(chunk - done, dst_end - t_to);
      PteTable* dt = pte_alloc(t_to);
      if (dt == nullptr) return moved + done;
      st->lock.lock();
      if (dt != st) dt->lock.lock(/*subclass=*/1);
      for (std::uint64_t off = 0; off < piece; off += kPageSize) {
        std::atomic<pte_t>& s = st->e[pte_index(t_from + off)];
        const pte_t p = s.load(std::memory_order_relaxed);
        if (p == 0) continue;
        // The new PTE first, then clear the old one: a lockless reader of
        // the new address never finds a PTE missing that the move made.
        // A writer may set the dirty bit on the old one in between (rule
        // I): carry it over (the new one may have it already).
        std::atomic<pte_t>& d = dt->e[pte_index(t_to + off)];
        d.store(p, std::memory_order_release);
        if (pte_dirty(ptep_get_and_clear(s, p)) && !pte_dirty(p)) d.fetch_or(kPteDirty, std::memory_order_release);
      }
      if (dt != st) dt->lock.unlock();
      st->lock.unlock();
      done += piece;
    }
    moved += chunk;
  }
  return moved;
}

PteTable* PageTables::next_pte_table(std::uint64_t& va, std::uint64_t end) const {
  while (va < end) {
    const UpperTable* t = pgd_;
    PteTable* found = nullptr;
    for (unsigned level = top_level_; level >= 1; --level) {
      std::uint64_t e = t->e[index_at(level, va)].load(std::memory_order_acquire);
      if ((e & kPtePresent) == 0) {
        va = (va | (entry_span(level) - 1)) + 1;  // skip the absent entry's span
        break;
      }
      if (level == 1) {
        found = to_pte(e);
        break;
      }
      t = to_upper(e);
    }
    if (found != nullptr) return found;
  }
  return nullptr;
}

std::uint64_t PageTables::zap_range(std::uint64_t start, std::uint64_t end,
                                    const std::function<void(std::uint64_t, pte_t)>& on_unmap,
                                    bool drop_markers) {
  std::uint64_t n = 0;
  for_each_entry(start, end, [&](std::uint64_t va, std::atomic<pte_t>& slot, pte_t old) {
    if (!pte_present(old)) {
      // A marker: kept, or dropped (it holds no frame).
      if (drop_markers) slot.store(0, std::memory_order_release);
      return;
    }
    const pte_t last = ptep_get_and_clear(slot, old);  // with a dirty bit set meanwhile (rule I)
    ++n;
    if (on_unmap) on_unmap(va, last);
  });
  return n;
}

bool PageTables::install_guard_markers(std::uint64_t start, std::uint64_t end,
                                       const std::function<void(std::uint64_t, pte_t)>& on_unmap) {
  if (end > va_limit_) end = va_limit_;
  std::uint64_t va = start;
  while (va < end) {
    // pte_alloc takes no pte_lock (and page_table_lock only inside).
    PteTable* t = pte_alloc(va);
    if (t == nullptr) return false;
    const std::uint64_t table_end = (va & ~(kPteTableSpan - 1)) + kPteTableSpan;
    const std::uint64_t stop = table_end < end ? table_end : end;
    t->lock.lock();
    for (; va < stop; va += kPageSize) {
      std::atomic<pte_t>& slot = t->e[pte_index(va)];
      const pte_t old = slot.load(std::memory_order_relaxed);
      if (pte_is_guard(old)) continue;
      // Release: a walker that sees the marker sees nothing older.
      const pte_t last = ptep_get_and_set(slot, old, kPteMarkerGuard);
      if (pte_present(old) && on_unmap) on_unmap(va, last);
    }
    t->lock.unlock();
  }
  return true;
}

std::uint64_t PageTables::remove_guard_markers(std::uint64_t start, std::uint64_t end) {
  std::uint64_t n = 0;
  for_each_entry(start, end, [&](std::uint64_t, std::atomic<pte_t>& slot, pte_t old) {
    if (!pte_is_guard(old)) return;
    slot.store(0, std::memory_order_release);
    ++n;
  });
  return n;
}

void PageTables::uncount_subtree(UpperTable* t, unsigned level) {
  n_upper_.fetch_sub(1, std::memory_order_relaxed);
  for (auto& slot : t->e) {
    std::uint64_t e = slot.load(std::memory_order_acquire);
    if ((e & kPtePresent) == 0) continue;
    if (level == 1)
      n_pte_.fetch_sub(1, std::memory_order_relaxed);
    else
      uncount_subtree(to_upper(e), level - 1);
  }
}

void PageTables::free_level(UpperTable* t, unsigned level, std::uint64_t base,
                            std::uint64_t start, std::uint64_t end, std::uint64_t floor,
                            std::uint64_t ceiling) {
  const std::uint64_t span = entry_span(level);
  const std::uint64_t lo = start > base ? start : base;
  const std::uint64_t table_end = base + span * kEntriesPerTable;
  const std::uint64_t hi = end < table_end ? end : table_end;
  if (lo >= hi) return;
  for (std::uint64_t i = (lo - base) / span, last = (hi - 1 - base) / span; i <= last; ++i) {
    const std::uint64_t cb = base + i * span;  // child's base address
    std::atomic<std::uint64_t>& slot = t->e[i];
    const std::uint64_t e = slot.load(std::memory_order_acquire);
    if ((e & kPtePresent) == 0) continue;
    if (cb >= floor && cb + span <= ceiling) {
      // The child maps only addresses inside [floor, ceiling): unlink it,
      // free it (with its subtree) after a grace period.
      ptl_.lock();
      slot.store(0, std::memory_order_release);
      ptl_.unlock();
      if (level == 1) {
        PteTable* pt = to_pte(e);
        n_pte_.fetch_sub(1, std::memory_order_relaxed);
        rcu::call(&pt->rcu, free_pte_cb);
      } else {
        UpperTable* child = to_upper(e);
        uncount_subtree(child, level - 1);
        rcu::call(&child->rcu, free_upper_cb);
      }
    } else if (level > 1) {
      free_level(to_upper(e), level - 1, cb, start, end, floor, ceiling);
    }
  }
}

void PageTables::free_pgtables(std::uint64_t start, std::uint64_t end, std::uint64_t floor,
                               std::uint64_t ceiling) {
  if (ceiling == 0 || ceiling > va_limit_) ceiling = va_limit_;
  if (end > va_limit_) end = va_limit_;
  if (start >= end) return;
  free_level(pgd_, top_level_, 0, start, end, floor, ceiling);
}

PageTables::Stats PageTables::stats() const {
  Stats s;
  s.pte_tables = n_pte_.load(std::memory_order_relaxed);
  s.upper_tables = n_upper_.load(std::memory_order_relaxed);
  s.bytes = s.pte_tables * sizeof(PteTable) + s.upper_tables * sizeof(UpperTable);
  return s;
}

}  // namespace vmspace::mem
