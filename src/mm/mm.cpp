// SPDX-License-Identifier: MIT
// mm.cpp - MmStruct lifetime and validation.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

#include "mm/mm.h"
#include "mm/memory.h"
#include "mm/mmap_lock.h"
#include "mm/rmap.h"
#include "mm/vma.h"

namespace vmspace::mm {

MmStruct::MmStruct(const MmConfig& c, mem::PhysMem* p)
    : mode(c.mode),
      cfg(c),
      task_size(c.task_size),
      max_map_count(c.max_map_count),
      mmap_base(c.mmap_base != 0 ? c.mmap_base : mmap_base_for(c)),
      phys(p) {
  // At exec the break is at its start and there is no heap VMA yet.
  start_brk = brk = c.start_brk;
  // per_vma_range: writers of disjoint ranges store into the tree at once
  // (their key ranges are disjoint: each changes only entries inside its
  // range, range-writers.md section 10, R2).
  if (mode == LockMode::per_vma_range) mm_mt.set_concurrent_writers(true);
}

std::uint64_t mmap_base_for(const MmConfig& cfg) {
  // The gap below the top is the stack limit plus the guard gap (no
  // randomization pad), at least 128 MiB and at most 5/6 of the top.  The
  // top is the default map window, not TASK_SIZE: with five-level paging
  // the stack and mmap_base stay below 47 bits (Linux's mmap_base() is
  // given task_size_64bit(0)); an ia32 guest's is its TASK_SIZE.
  constexpr std::uint64_t kGapMin = std::uint64_t{128} << 20;
  const std::uint64_t top = map_window(cfg.task_size);
  const std::uint64_t gap_max = top / 6 * 5;
  std::uint64_t gap = cfg.rlimit_stack;
  if (gap + cfg.stack_guard_gap > gap) gap += cfg.stack_guard_gap;  // RLIM_INFINITY must not wrap
  gap = std::clamp(gap, kGapMin, gap_max);
  return page_align(top - gap);
}

std::uint64_t task_size_from_option(std::uint64_t option) {
  switch (option) {
    case 0:
    case kTaskSize47: return kTaskSize47;
    case kTaskSize57: return kTaskSize57;
    case kTaskSize32: return kTaskSize32;
    default: throw std::invalid_argument("vmspace: task_size must be 0, kTaskSize47, kTaskSize57 or kTaskSize32");
  }
}

MmStruct::~MmStruct() {
  // No reader can remain (the owner is destroying the space), so pages,
  // VMAs and tree nodes are freed directly (exit_mmap).
  std::vector<Vma*> vmas;
  mm_mt.for_each(0, tree::kMaxAddr, [&](const tree::Entry& e) { vmas.push_back(e.as<Vma>()); });
  for (Vma* v : vmas) zap_vma_range(v, v->vm_start, v->vm_end);
  // Give back the commit charge (it may be shared with forked spaces).
  std::uint64_t accounted = 0;
  for (Vma* v : vmas)
    if (v->vm_flags & VM_ACCOUNT) accounted += v->pages();
  if (accounted != 0) vm_unacct_memory(this, accounted);
  for (Vma* v : vmas) {
    vma_unlink_file(v);
    unlink_anon_vmas(v);
    delete v;
  }
}

namespace {

bool fail(std::string* why, const std::string& msg) {
  if (why != nullptr) *why = msg;
  return false;
}

std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

bool mm_validate(MmStruct* mm, std::string* why) {
  std::string tree_why;
  if (!mm->mm_mt.validate(&tree_why)) return fail(why, "range tree: " + tree_why);
  std::uint64_t prev_end = 0;
  int count = 0;
  bool ok = true;
  std::string msg;
  mm->mm_mt.for_each(0, tree::kMaxAddr, [&](const tree::Entry& e) {
    const Vma* v = e.as<Vma>();
    std::ostringstream o;
    if (v == nullptr) o << "null VMA in tree at " << hex(e.start);
    else if (v->vm_mm != mm) o << "VMA at " << hex(e.start) << " belongs to another mm";
    else if (e.start != v->vm_start || e.end != v->vm_end)
      o << "tree entry " << hex(e.start) << "-" << hex(e.end) << " != VMA " << hex(v->vm_start) << "-"
        << hex(v->vm_end);
    else if (!page_aligned(v->vm_start) || !page_aligned(v->vm_end) || v->vm_start >= v->vm_end)
      o << "bad VMA range " << hex(v->vm_start) << "-" << hex(v->vm_end);
    else if (v->vm_start < prev_end) o << "VMAs overlap at " << hex(v->vm_start);
    else if (v->vm_end > mm->task_size) o << "VMA beyond TASK_SIZE at " << hex(v->vm_start);
    else if (vma_is_detached(v)) o << "detached VMA in tree at " << hex(v->vm_start);
    else if ((v->vm_flags & VM_SHARED) && !(v->vm_flags & VM_MAYSHARE))
      o << "VM_SHARED without VM_MAYSHARE at " << hex(v->vm_start);
    else if ((v->vm_flags & VM_MAYSHARE) && v->vm_file == nullptr)
      o << "shared VMA without a file at " << hex(v->vm_start);
    else if (v->anon_name != nullptr && v->vm_file != nullptr && !v->vm_file->anon_shmem)
      o << "a file VMA with an anonymous name at " << hex(v->vm_start);
    if (!o.str().empty()) {
      ok = false;
      msg = o.str();
      return false;
    }
    prev_end = v->vm_end;
    ++count;
    return true;
  });
  if (!ok) return fail(why, msg);
  if (count != mm->map_count)
    return fail(why, "map_count " + std::to_string(mm->map_count.load()) + " but " +
                         std::to_string(count) + " VMAs in the tree");
  if (static_cast<std::size_t>(count) != mm->mm_mt.size())
    return fail(why, "tree size " + std::to_string(mm->mm_mt.size()) + " != VMA count");
  return true;
}

bool mm_validate_rmap(MmStruct* mm, std::string* why) {
  std::vector<Vma*> vmas;
  mm->mm_mt.for_each(0, tree::kMaxAddr, [&](const tree::Entry& e) { vmas.push_back(e.as<Vma>()); });
  mem::PhysMem* phys = mm->phys;
  std::string msg;
  for (Vma* v : vmas) {
    AnonVma* own = v->anon_vma.load(std::memory_order_acquire);
    if (own != nullptr && std::find(v->anon_vma_chain.begin(), v->anon_vma_chain.end(), own) == v->anon_vma_chain.end())
      return fail(why, "VMA at " + hex(v->vm_start) + ": its anon_vma is not in its chain");
    std::vector<std::pair<std::uint64_t, AnonVma*>> anon;
    mm->pgtables.for_each_present(v->vm_start, v->vm_end, [&](std::uint64_t va, std::atomic<mem::pte_t>&, mem::pte_t pte) {
      if (!msg.empty()) return;
      const mem::pfn_t pfn = mem::pte_pfn(pte);
      if (pfn == phys->zero_pfn()) return;
      const mem::Frame& fr = phys->frame(pfn);
      // Both at least 1 (this PTE).  Not refs >= maps: a fork or unmap in
      // another space of the family changes the two one after the other.
      const std::int32_t maps = fr.mapcount.load(std::memory_order_acquire);
      const std::int32_t refs = fr.refcount.load(std::memory_order_acquire);
      if (maps < 1 || refs < 1) {
        msg = "page at " + hex(va) + ": refcount " + std::to_string(refs) + ", mapcount " + std::to_string(maps);
        return;
      }
      const std::uintptr_t mapping = fr.mapping.load(std::memory_order_acquire);
      if (!(mapping & mem::kMappingAnon)) return;
      auto* av = reinterpret_cast<AnonVma*>(mapping & ~mem::kMappingAnon);
      if (std::find(v->anon_vma_chain.begin(), v->anon_vma_chain.end(), av) == v->anon_vma_chain.end()) {
        msg = "anonymous page at " + hex(va) + ": its anon_vma is not in the VMA's chain";
        return;
      }
      if (fr.index.load(std::memory_order_relaxed) != linear_page_index(v, va)) {
        msg = "anonymous page at " + hex(va) + ": index " + std::to_string(fr.index.load()) + " != " +
              std::to_string(linear_page_index(v, va));
        return;
      }
      anon.push_back({va, av});  // checked below: the anon_vma lock ranks above pte_lock
    });
    for (const auto& [va, av] : anon) {
      if (!msg.empty()) break;
      anon_vma_lock_read(av);
      const bool linked = av->vmas.contains(v);
      anon_vma_unlock_read(av);
      if (!linked) msg = "anonymous page at " + hex(va) + ": the VMA is not linked to its anon_vma";
    }
    if (!msg.empty()) return fail(why, msg);
  }
  return true;
}

#if defined(VMSPACE_DEBUG_CHECKS)
namespace {

// per_vma_range, a ranged writer: what it may read is the VMAs meeting its
// range (the rest may be changing under other writers): each entry is its
// VMA's range, attached, of this space, in order.
bool validate_range(MmStruct* mm, RangeLock::Interval l, std::string* why) {
  rcu::ReadGuard rcu;
  bool ok = true;
  std::uint64_t last_end = 0;
  mm->mm_mt.for_each(l.lo, l.hi, [&](const tree::Entry& e) {
    const Vma* v = e.as<Vma>();
    if (v->vm_mm != mm || v->vm_start != e.start || v->vm_end != e.end || vma_is_detached(v) ||
        e.start < last_end) {
      ok = fail(why, "the VMA at " + std::to_string(e.start) + " does not match its tree entry");
      return false;
    }
    last_end = e.end;
    return true;
  });
  return ok;
}

}  // namespace
#endif

void mm_debug_validate(MmStruct* mm) {
#if defined(VMSPACE_DEBUG_CHECKS)
  std::string why;
  const RangeHold* h = mm->mode == LockMode::per_vma_range ? range_hold(mm) : nullptr;
  if (h != nullptr && !h->whole()) {
    if (!validate_range(mm, h->range(), &why)) {
      std::fprintf(stderr, "vmspace: address space %p failed validation in its range: %s\n",
                   static_cast<void*>(mm), why.c_str());
      std::abort();
    }
    return;
  }
  if (!mm_validate(mm, &why)) {
    std::fprintf(stderr, "vmspace: address space %p failed validation: %s\n%s",
                 static_cast<void*>(mm), why.c_str(), show_maps_locked(mm).c_str());
    std::abort();
  }
#else
  (void)mm;
#endif
}

}  // namespace vmspace::mm
