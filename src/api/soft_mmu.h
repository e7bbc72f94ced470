// SPDX-License-Identifier: MIT
// soft_mmu.h - the soft MMU's translation step, shared by the copying
// accessors (address_space.cpp) and the atomics and futex keys
// (guest_access.cpp): internal to the api layer.
#pragma once

#include <atomic>
#include <cstdint>

#include "fault/fault.h"
#include "mem/page_table.h"
#include "mem/phys_mem.h"
#include "mm/mm.h"
#include "vmspace/address_space.h"

namespace vmspace::api {

inline Fault to_fault(fault::FaultResult r) {
  switch (r) {
    case fault::FaultResult::ok: return Fault::none;
    case fault::FaultResult::segv_maperr: return Fault::segv_maperr;
    case fault::FaultResult::segv_accerr: return Fault::segv_accerr;
    case fault::FaultResult::sigbus: return Fault::sigbus;
    case fault::FaultResult::oom: return Fault::oom;
  }
  return Fault::oom;
}

inline fault::Access to_access(AccessKind k) {
  switch (k) {
    case AccessKind::read: return fault::Access::read;
    case AccessKind::write: return fault::Access::write;
    case AccessKind::exec: return fault::Access::exec;
  }
  return fault::Access::read;
}

// The host address of va if its PTE allows the access now, else nullptr
// (the caller faults and retries).  Inside an RCU read-side section: the
// frame is not reused before the section ends.  Decided from the PTE
// alone, as the CPU's page walk: a read needs the data-access bit
// (kPteUser), a write that and kPteWrite, a fetch a present entry without
// kPteNx (an execute-only page has no kPteUser and is still fetchable;
// mprotect keeps both bits in step with the VMA, mm/memory.h).
// A write sets the PTE's dirty bit first, as the MMU does on the first
// write through a clean entry (page_table.h rule I: a lockless
// compare-exchange; PTE-lock holders replace such entries atomically, so
// the bit is never lost).  When the entry changed meanwhile, its new value
// is checked instead.
inline void* usable(const mm::MmStruct* mm, std::uint64_t va, AccessKind kind) {
  std::atomic<mem::pte_t>* slot = mm->pgtables.lookup_slot(va);
  if (slot == nullptr) return nullptr;
  // seq_cst: the holder's half of the soft MMU's Dekker pair (mm/tlb.h).
  mem::pte_t pte = slot->load(std::memory_order_seq_cst);
  bool ok = false;
  switch (kind) {
    case AccessKind::read: ok = mem::pte_present(pte) && mem::pte_user(pte); break;
    case AccessKind::write:
      if (!mem::pte_dirty(pte)) pte = mem::pte_mkdirty_hw(*slot, pte);
      ok = mem::pte_present(pte) && mem::pte_user(pte) && mem::pte_write(pte);
      break;
    case AccessKind::exec: ok = mem::pte_exec(pte); break;
  }
  if (!ok) return nullptr;
  return static_cast<char*>(mm->phys->addr(mem::pte_pfn(pte))) + (va & (mm::kPageSize - 1));
}

}  // namespace vmspace::api
