// SPDX-License-Identifier: MIT
// mprotect.cpp - mprotect(2), as Linux's mm/mprotect.c decides it
// (docs/research/linux-vma-semantics.md section 4).
#include <sys/mman.h>

#include <cerrno>

#ifndef PROT_SEM
#define PROT_SEM 0x8  // <linux/mman.h>; glibc does not define it
#endif

#include "mm/mm.h"
#include "mm/memory.h"
#include "mm/mmap_lock.h"
#include "mm/mmu_notifier.h"
#include "mm/vma.h"
#include "vmspace/address_space.h"

namespace vmspace::mm {

namespace {

// Linux mprotect_fixup(): give [start, end) of `vma` the flags `newflags`.
// On success *out is the VMA now covering [start, end) (merged or split).
// `inv` is the call's notifier range, started before the first PTE change.
int mprotect_fixup(MmStruct* mm, Vma* vma, std::uint64_t start, std::uint64_t end,
                   vm_flags_t newflags, Vma** out, MmuNotifierRange* inv) {
  // A sealed VMA refuses even its own protection.
  if (!can_modify_vma(vma)) return -EPERM;
  const vm_flags_t oldflags = vma->vm_flags;
  if (newflags == oldflags) {
    *out = vma;
    return 0;
  }
  const std::uint64_t nrpages = (end - start) >> kPageShift;
  std::uint64_t charged = 0;
  if (newflags & VM_WRITE) {
    // Private memory becoming writable is charged to the commit limit.
    if (!(oldflags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE))) {
      if (!vm_enough_memory(mm, nrpages)) return -ENOMEM;
      charged = nrpages;
      newflags |= VM_ACCOUNT;
    }
  } else if ((oldflags & VM_ACCOUNT) && vma->is_anonymous() &&
             vma->anon_vma.load(std::memory_order_relaxed) == nullptr) {
    // Never-written anonymous memory gives its commit back.
    newflags &= ~VM_ACCOUNT;
  }
  int err = 0;
  vm_flags_t merged_flags = newflags;  // plus any sticky flag a merge brings in
  Vma* v = vma_modify_flags(mm, vma, start, end, newflags, &err, &merged_flags);
  if (v == nullptr) {
    if (charged != 0) vm_unacct_memory(mm, charged);
    return err;
  }
  if ((oldflags & VM_ACCOUNT) && !(newflags & VM_ACCOUNT)) vm_unacct_memory(mm, nrpages);
  vma_start_write(v);
  v->vm_flags = merged_flags;
  inv->begin();
  change_protection(v, start, end);
  // Private locked memory becoming writable is COW-broken right away (Linux
  // populates it, which also gives the VMA its anon_vma).
  if ((oldflags & (VM_WRITE | VM_SHARED | VM_LOCKED)) == VM_LOCKED && (newflags & VM_WRITE) &&
      mm->populate != nullptr)
    mm->populate(mm, start, end);
  *out = v;
  return 0;
}

}  // namespace

int do_mprotect(MmStruct* mm, std::uint64_t start, std::uint64_t len, int prot) {
  const int grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
  prot &= ~grows;
  if (grows == (PROT_GROWSDOWN | PROT_GROWSUP)) return -EINVAL;
  if (!page_aligned(start)) return -EINVAL;
  if (len == 0) return 0;
  len = page_align(len);
  std::uint64_t end = start + len;
  if (end <= start) return -ENOMEM;
  if (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM)) return -EINVAL;

  if (mm->mode != LockMode::per_vma_range) {
    mmap_write_lock(mm);
  } else if (grows != 0 || mm->cfg.overcommit == Overcommit::never) {
    // Stacks (PROT_GROWSDOWN reaches down to the VMA's start, and merges
    // below it), and vm_committed's charge-then-check: the whole space.
    mmap_write_lock(mm);
    mm->events.count(VmEvent::range_write_whole);
  } else if (range_write_lock(mm, start, end) && range_has_vma_with(mm, start, end, VM_LOCKED)) {
    range_write_widen(mm);  // locked memory made writable is populated
  }
  int err = 0;
  Vma* vma = find_vma(mm, start);
  std::uint64_t tmp = 0;
  if (vma == nullptr || vma->vm_start >= end) {
    err = -ENOMEM;
  } else if (grows & PROT_GROWSDOWN) {
    start = vma->vm_start;
    if (!(vma->vm_flags & VM_GROWSDOWN)) err = -EINVAL;
  } else if (vma->vm_start > start) {
    err = -ENOMEM;  // the range starts in a hole: nothing changes
  } else if (grows & PROT_GROWSUP) {
    err = -EINVAL;  // no VM_GROWSUP on x86
  }
  if (err == 0) {
    std::uint64_t nstart = start;
    tmp = vma->vm_start;
    // The key follows the new protection (Linux arch_override_mprotect_pkey:
    // the execute-only key for exactly PROT_EXEC, else key 0).
    const vm_flags_t want = calc_vm_prot_bits(prot) | pkey_flags_for(mm, prot);
    // One start/end pair for the call, started at the first VMA whose
    // flags change (mprotect to the same protection calls nothing), ended
    // before the mmap_lock is released.  Like Linux (change_protection
    // notifies for every change), a change that only adds rights notifies
    // too: vmspace does not tell the two apart here.
    MmuNotifierRange inv(mm, start, end, InvalidateReason::protection, /*lazy=*/true);
    while (vma != nullptr && vma->vm_start < end) {
      if (vma->vm_start != tmp) {  // a hole between VMAs: stop here
        err = -ENOMEM;
        break;
      }
      vm_flags_t newflags = want | (vma->vm_flags & ~(VM_ACCESS_FLAGS | VM_PKEY_MASK));
      // Asking for an access whose VM_MAY* bit is clear.
      if ((newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS) {
        err = -EACCES;
        break;
      }
      tmp = std::min(vma->vm_end, end);
      Vma* done = nullptr;
      err = mprotect_fixup(mm, vma, nstart, tmp, newflags, &done, &inv);
      if (err) break;
      tmp = done->vm_end;  // a merge may have covered more than [nstart, tmp)
      nstart = tmp;
      vma = find_vma(mm, tmp);
    }
    if (err == 0 && tmp < end) err = -ENOMEM;  // the range ends in a hole
  }
  mm_debug_validate(mm);
  mmap_write_unlock(mm);
  return err;
}

}  // namespace vmspace::mm
