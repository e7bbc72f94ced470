// SPDX-License-Identifier: MIT
// brk.cpp - brk(2), as Linux 6.18's mm/mmap.c (sys_brk, check_brk_limits,
// do_brk_flags) decides it (docs/research/linux-anon-surface.md section 6:
// the order of the checks and the host-verified cases).
//
// The program break starts at MmConfig::start_brk (page aligned) with no
// heap VMA; growing it maps [old break, new break) (page aligned) as
// private anonymous read-write memory that merges only with the VMA ending
// at the old break (an "expand only" merge); shrinking it is a munmap of
// [new break, old break), whatever is mapped there.  Every failure returns
// the old break and changes nothing the caller could not see Linux change
// too (a shrink over a sealed page leaves munmap's head split behind).
#include <sys/mman.h>

#include <cerrno>

#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"

namespace vmspace::mm {

namespace {

// Linux VM_DATA_DEFAULT_FLAGS on x86-64 (no READ_IMPLIES_EXEC).
constexpr vm_flags_t kDataDefaultFlags = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;

// Linux vm_start_gap(): a MAP_GROWSDOWN VMA keeps the stack guard gap free
// below it.
std::uint64_t vm_start_gap(const MmStruct* mm, const Vma* vma) {
  std::uint64_t start = vma->vm_start;
  if (vma->vm_flags & VM_GROWSDOWN) {
    start -= mm->cfg.stack_guard_gap;
    if (start > vma->vm_start) start = 0;  // underflow
  }
  return start;
}

// Linux is_data_mapping(): private, writable, not a stack.
bool is_data_mapping(vm_flags_t f) { return (f & (VM_WRITE | VM_SHARED | VM_GROWSDOWN)) == VM_WRITE; }

// Linux may_expand_vm() for RLIMIT_DATA (RLIMIT_AS is not modelled): the
// pages of private writable mappings (mm->data_vm, counted here from the
// VMAs) plus `pages` must fit.  Requires mmap W.
bool may_expand_data(MmStruct* mm, vm_flags_t flags, std::uint64_t pages) {
  const std::uint64_t limit = mm->cfg.rlimit_data;
  if (limit == UINT64_MAX || !is_data_mapping(flags)) return true;
  std::uint64_t data_vm = 0;
  mm->mm_mt.for_each(0, tree::kMaxAddr, [&](const tree::Entry& e) {
    const Vma* v = e.as<Vma>();
    if (is_data_mapping(v->vm_flags)) data_vm += v->pages();
    return true;
  });
  return data_vm + pages <= (limit >> kPageShift);
}

// Linux do_brk_flags(): map [addr, addr + len) as heap, extending `brkvma`
// when it ends at addr and is compatible.  0 or -ENOMEM (nothing changed).
// Requires mmap W.
int do_brk_flags(MmStruct* mm, Vma* brkvma, std::uint64_t addr, std::uint64_t len, vm_flags_t flags) {
  const std::uint64_t pages = len >> kPageShift;
  flags |= kDataDefaultFlags | VM_ACCOUNT | mm->def_flags;
  if (!may_expand_data(mm, flags, pages)) return -ENOMEM;
  if (mm->map_count > mm->max_map_count) return -ENOMEM;
  if (!vm_enough_memory(mm, pages)) return -ENOMEM;
  Vma* vma = nullptr;
  // Expand only: a merge with the VMA ending at addr, never with the VMA
  // after the new range (Linux's vmg.just_expand).  vma_merge_new_range
  // returns nullptr for "no merge" and for "no memory for it"; Linux fails
  // on the latter, vmspace then tries a new VMA, which fails the same way
  // when memory is really short.
  if (brkvma != nullptr && brkvma->vm_end == addr)
    vma = vma_merge_new_range(mm, brkvma, nullptr, addr, addr + len, flags, nullptr, addr >> kPageShift);
  if (vma == nullptr) {
    vma = vm_area_alloc(mm, addr, addr + len, flags, addr >> kPageShift);
    if (vma == nullptr || !vma_link(mm, vma)) {
      delete vma;  // never attached nor linked
      vm_unacct_memory(mm, pages);
      return -ENOMEM;
    }
  }
  if (flags & VM_LOCKED) mm->locked_vm += pages;
  return 0;
}

}  // namespace

std::uint64_t do_brk(MmStruct* mm, std::uint64_t brk) {
  mmap_write_lock(mm);
  const std::uint64_t origbrk = mm->brk;
  auto fail = [&]() {
    mm->brk = origbrk;
    mm_debug_validate(mm);
    mmap_write_unlock(mm);
    return origbrk;
  };
  // A space without a heap (start_brk 0) has a break of 0 for good.
  if (mm->start_brk == 0) return fail();
  // Below the heap's start (brk(0) queries the break this way).
  if (brk < mm->start_brk) return fail();
  // check_data_rlimit(): the heap (there is no ELF data segment) must fit
  // RLIMIT_DATA; checked before shrinking too.
  if (mm->cfg.rlimit_data != UINT64_MAX && brk - mm->start_brk > mm->cfg.rlimit_data) return fail();

  const std::uint64_t newbrk = page_align(brk);
  const std::uint64_t oldbrk = page_align(mm->brk);
  if (newbrk == oldbrk) {  // within the same page: no VMA changes
    mm->brk = brk;
    mmap_write_unlock(mm);
    return brk;
  }

  if (brk <= mm->brk) {
    // Shrink: there must be something mapped in [newbrk, oldbrk); then it
    // is a plain munmap of that range (foreign mappings included; sealed
    // VMAs refuse it with the head split left behind, as in Linux).
    if (find_vma_intersection(mm, newbrk, oldbrk) == nullptr) return fail();
    mm->brk = brk;
    if (do_vmi_munmap_locked(mm, newbrk, oldbrk) != 0) return fail();
    mm_debug_validate(mm);
    mmap_write_unlock(mm);
    return brk;
  }

  // Grow.  check_brk_limits(): the range must be placeable (TASK_SIZE) and
  // lockable under RLIMIT_MEMLOCK if mlockall(MCL_FUTURE) is in force.
  const std::uint64_t len = newbrk - oldbrk;
  if (get_unmapped_area(mm, oldbrk, len, MAP_FIXED) < 0) return fail();
  if (!mlock_future_ok(mm, mm->def_flags, len)) return fail();
  // One free page must stay between the heap and the next VMA (plus the
  // stack guard gap below a MAP_GROWSDOWN one).
  if (Vma* next = find_vma_intersection(mm, oldbrk, newbrk + kPageSize + mm->cfg.stack_guard_gap);
      next != nullptr && newbrk + kPageSize > vm_start_gap(mm, next))
    return fail();
  // The VMA the heap may extend: the last one below oldbrk that is still
  // above start_brk (Linux vma_prev_limit()).
  Vma* brkvma = nullptr;
  if (auto prev = mm->mm_mt.find_prev(oldbrk); prev && prev->end > mm->start_brk) brkvma = prev->as<Vma>();
  if (do_brk_flags(mm, brkvma, oldbrk, len, 0) != 0) return fail();
  mm->brk = brk;
  mm_debug_validate(mm);
  if (mm->def_flags & VM_LOCKED) {
    // mlockall(MCL_FUTURE): fault the new part in (errors ignored;
    // VM_LOCKONFAULT is left to faults), with the lock downgraded (seed 003).
    mmap_write_downgrade(mm);
    if (mm->populate != nullptr) mm->populate(mm, oldbrk, newbrk);
    mmap_read_unlock(mm);
  } else {
    mmap_write_unlock(mm);
  }
  return brk;
}

}  // namespace vmspace::mm
