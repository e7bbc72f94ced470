// SPDX-License-Identifier: MIT
// mremap.cpp - mremap(2), as Linux 6.18's mm/mremap.c decides it
// (docs/research/linux-anon-surface.md section 1 has the rules, their
// order and the host-verified cases).
//
// Shape of a call (do_mremap):
//   check_mremap_params          argument checks, no lock
//   mmap_write_lock
//   FIXED with old_len == new_len: remap_move (every VMA of the range,
//       holes kept as gaps at the destination, 6.17+)
//   else: the VMA at addr, check_prep_vma, then
//       mremap_to (FIXED or DONTUNMAP): unmap the destination, move
//       mremap_at: shrink (munmap of the tail), grow in place (a merge that
//                  extends the VMA), or move to a new place (MAYMOVE)
//   a VMA_LOCKED mapping that grew is populated under the lock downgraded
//   to read (seed 003: never after dropping it).
//
// A move (move_vma) write-locks the source, makes the destination VMA
// (copy_vma: merged into a neighbour or a copy, write-locked as every new
// VMA is), moves the page tables with the rmap locks held (pages and
// their frames move, nothing is copied), then unmaps the source range
// (splitting the source VMA at its ends as munmap does) or, with
// MREMAP_DONTUNMAP, leaves the source VMA in place without its pages.
#include <sys/mman.h>

#include <cerrno>

#include "vmspace/mman.h"
#include "mm/memory.h"
#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/rmap.h"
#include "mm/vma.h"
#include "vmspace/address_space.h"

namespace vmspace::mm {

namespace {

// Linux's vma_remap_struct: one request, or one VMA's piece of it.
struct Remap {
  std::uint64_t addr;
  std::uint64_t old_len;
  std::uint64_t new_len;
  int flags;
  std::uint64_t new_addr;
  // Set by the work: where a locked mapping grew (populate after).
  std::uint64_t populate_start = 0, populate_len = 0;

  bool fixed() const { return (flags & MREMAP_FIXED) != 0; }
  bool dontunmap() const { return (flags & MREMAP_DONTUNMAP) != 0; }
  bool maymove() const { return (flags & MREMAP_MAYMOVE) != 0; }
  std::uint64_t delta() const { return new_len > old_len ? new_len - old_len : old_len - new_len; }
};

// Linux check_mremap_params(), in its order; no lock held.
int check_mremap_params(const MmStruct* mm, const Remap& r) {
  if (r.flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP)) return -EINVAL;
  if (!page_aligned(r.addr)) return -EINVAL;
  if (r.new_len == 0) return -EINVAL;
  if (r.new_len > mm->task_size) return -EINVAL;
  if (!r.fixed() && !r.dontunmap()) return 0;
  if (r.new_addr > mm->task_size - r.new_len) return -EINVAL;
  if (!page_aligned(r.new_addr)) return -EINVAL;
  if (!r.maymove()) return -EINVAL;
  if (r.dontunmap() && r.old_len != r.new_len) return -EINVAL;
  if (r.addr + r.old_len > r.new_addr && r.new_addr + r.new_len > r.addr) return -EINVAL;  // overlap
  // A move may need two more VMAs (the destination, a split source), and
  // Linux keeps a margin of three (unlocked read in Linux; here mmap W).
  if (mm->map_count + 2 >= mm->max_map_count - 3) return -ENOMEM;
  return 0;
}

// Linux check_prep_vma() for the VMA containing r.addr.  Returns 0 to go
// on, 1 when the call is complete (nothing to map: a shrink or same-size
// call without FIXED/DONTUNMAP), or -errno.
int check_prep_vma(MmStruct* mm, Vma* vma, Remap& r) {
  if (vma == nullptr) return -EFAULT;
  if (vma->vm_flags & VM_SEALED) return -EPERM;
  if (!r.fixed() && !r.dontunmap()) r.new_addr = r.addr;
  const bool expand = r.new_len > r.old_len;
  if (!expand && !r.fixed() && !r.dontunmap()) return 1;
  if (r.old_len == 0 && !(vma->vm_flags & (VM_SHARED | VM_MAYSHARE))) return -EINVAL;
  if (r.dontunmap() && (vma->vm_flags & (VM_DONTEXPAND | VM_PFNMAP))) return -EINVAL;
  // Only the kept part of a shrink must lie inside the VMA.
  const std::uint64_t bound = r.new_len < r.old_len ? r.new_len : r.old_len;
  if (bound > vma->vm_end - r.addr) return -EFAULT;
  if (r.new_len == r.old_len) return 0;
  if (vma->vm_flags & (VM_DONTEXPAND | VM_PFNMAP)) return -EFAULT;
  if (expand && !mlock_future_ok(mm, vma->vm_flags, r.delta())) return -EAGAIN;
  return 0;  // may_expand_vm: RLIMIT_AS / RLIMIT_DATA are unlimited here
}

// Linux copy_vma(): the destination VMA for [new_addr, new_addr + len)
// with `vma`'s attributes and `pgoff`, merged into a destination
// neighbour where Linux would, else a new VMA (write-locked).  nullptr
// when out of memory (nothing changed).
Vma* copy_vma(MmStruct* mm, Vma* vma, std::uint64_t new_addr, std::uint64_t len, std::uint64_t pgoff) {
  auto prev_e = mm->mm_mt.find_prev(new_addr);
  Vma* prev = prev_e ? prev_e->as<Vma>() : nullptr;
  Vma* next = find_vma(mm, new_addr + len);
  if (Vma* merged = vma_merge_new_range(mm, prev, next, new_addr, new_addr + len, vma->vm_flags, vma->vm_file,
                                        pgoff, vma, /*copied_from=*/vma, vma->anon_name))
    return merged;
  Vma* nv = vm_area_dup(vma);
  if (nv == nullptr) return nullptr;
  nv->vm_start = new_addr;
  nv->vm_end = new_addr + len;
  nv->vm_pgoff = pgoff;
  if (!anon_vma_clone(nv, vma)) {
    delete nv;
    return nullptr;
  }
  if (!vma_link(mm, nv)) {
    unlink_anon_vmas(nv);
    delete nv;
    return nullptr;
  }
  return nv;
}

// Move the page tables of [from, from + len) to [to, to + len) with the
// reverse-map locks of the VMA held (walkers must see each page at its old
// or its new address, never at neither).  Returns the bytes moved.
std::uint64_t move_pages(MmStruct* mm, const Vma* vma, std::uint64_t from, std::uint64_t to, std::uint64_t len) {
  mem::File* file = vma->vm_file;
  AnonVma* av = vma->anon_vma.load(std::memory_order_relaxed);
  // The source's translations die (the pages appear at `to`): notified
  // under mmap W, outside the rmap locks.
  MmuNotifierRange inv(mm, from, from + len, InvalidateReason::remap);
  if (file != nullptr) file->i_mmap_rwsem.lock();
  if (av != nullptr) anon_vma_lock_write(av);
  const std::uint64_t moved = mm->pgtables.move_range(from, to, len);
  if (av != nullptr) anon_vma_unlock_write(av);
  if (file != nullptr) file->i_mmap_rwsem.unlock();
  return moved;
}

// Linux move_vma(): move [r.addr, r.addr + r.old_len) of `vma` to
// [r.new_addr, r.new_addr + r.new_len).  Returns the new address or
// -errno.
long move_vma(MmStruct* mm, Vma* vma, Remap& r) {
  if (mm->map_count >= mm->max_map_count - 3) return -ENOMEM;
  // Charge what the move adds (the destination inherits the source's).
  std::uint64_t charged = 0;
  if (vma->vm_flags & VM_ACCOUNT) {
    charged = r.dontunmap() ? r.new_len >> kPageShift
                            : (r.new_len > r.old_len ? (r.new_len - r.old_len) >> kPageShift : 0);
    if (charged != 0 && !vm_enough_memory(mm, charged)) return -ENOMEM;
  }
  vma_start_write(vma);  // no fault may run on the source while it moves
  // Tree nodes for the destination and, should the page-table move fail,
  // for removing it again: that undo must not itself run out of memory.
  if (!mm->mm_mt.preallocate(2)) {
    if (charged != 0) vm_unacct_memory(mm, charged);
    return -ENOMEM;
  }

  // An anonymous VMA that never had a page keeps "pgoff = address".
  std::uint64_t pgoff = vma->vm_pgoff + ((r.addr - vma->vm_start) >> kPageShift);
  if (vma->is_anonymous() && vma->anon_vma.load(std::memory_order_relaxed) == nullptr)
    pgoff = r.new_addr >> kPageShift;
  Vma* nv = copy_vma(mm, vma, r.new_addr, r.new_len, pgoff);
  if (nv == nullptr) {
    if (charged != 0) vm_unacct_memory(mm, charged);
    return -ENOMEM;
  }
  // A source that never had a page moves with "pgoff = address", so the
  // destination can merge with the source itself (a move next to where
  // it was): the merged VMA is the source from now on (Linux copy_vma's
  // *vmap), and the old one may be gone.  DONTUNMAP then unlocks all of
  // it, as Linux does.
  if (r.addr >= nv->vm_start && r.addr < nv->vm_end) vma = nv;
  const vm_flags_t flags = vma->vm_flags;
  const std::uint64_t moved = move_pages(mm, vma, r.addr, r.new_addr, r.old_len);
  if (moved < r.old_len) {
    // A page table for the destination could not be had: move back what
    // moved, and unmap the destination instead (Linux does the same).  The
    // destination has no charge of its own: charge it for the munmap to
    // give back (and if even that munmap fails, it stays, charged).
    // Likewise locked_vm: the munmap of a locked destination takes its
    // pages off, so they are counted in first (as Linux, which adds
    // new_len before it unmaps either side).
    move_pages(mm, vma, r.new_addr, r.addr, moved);
    if (charged != 0) vm_unacct_memory(mm, charged);
    if (flags & VM_ACCOUNT) vm_acct_memory(mm, r.new_len >> kPageShift);
    if (flags & VM_LOCKED) mm->locked_vm += r.new_len >> kPageShift;
    (void)do_vmi_munmap_locked(mm, r.new_addr, r.new_addr + r.new_len);
    return -ENOMEM;
  }
  if (flags & VM_LOCKED) {
    mm->locked_vm += r.new_len >> kPageShift;
    if (r.new_len > r.old_len) {
      r.populate_start = r.new_addr + r.old_len;
      r.populate_len = r.new_len - r.old_len;
    }
  }

  if (r.dontunmap()) {
    // Linux dontunmap_complete(): the source VMA stays, unlocked (all of
    // it, unsplit; locked_vm keeps counting it, as in Linux), without
    // pages; if the whole VMA moved to another VMA, it forgets its
    // anon_vma and is "never faulted" again (its pgoff stays).
    vma->vm_flags &= ~VM_LOCKED_MASK;
    if (nv != vma && vma->vm_start == r.addr && vma->vm_end == r.addr + r.old_len &&
        vma->anon_vma.load(std::memory_order_relaxed) != nullptr) {
      unlink_anon_vmas(vma);
      vma->anon_vma.store(nullptr, std::memory_order_release);
    }
    return static_cast<long>(r.new_addr);
  }

  // Duplicating a shared mapping (old_len 0) leaves the source as it is
  // (Linux's munmap of an empty range fails and changes nothing).
  if (r.old_len == 0) return static_cast<long>(r.new_addr);

  // Linux unmap_source_vma(): the munmap must not give back the charge the
  // destination inherited, so VM_ACCOUNT is cleared on the source for it
  // and set again on the pieces the munmap leaves.
  const bool accountable = (flags & VM_ACCOUNT) != 0;
  const std::uint64_t src_start = vma->vm_start, src_end = vma->vm_end;
  const bool account_start = accountable && src_start < r.addr;
  const bool account_end = accountable && src_end > r.addr + r.old_len;
  if (accountable) vma->vm_flags &= ~VM_ACCOUNT;
  if (do_vmi_munmap_locked(mm, r.addr, r.addr + r.old_len) != 0) {
    // Could not split the source: it stays mapped (perhaps split at its
    // start), and charged again; the move itself stands (as in Linux).
    if (accountable) {
      for (Vma* v = find_vma(mm, src_start); v != nullptr && v->vm_start < src_end; v = vma_next(mm, v)) {
        vma_start_write(v);
        v->vm_flags |= VM_ACCOUNT;
      }
      vm_acct_memory(mm, r.old_len >> kPageShift);
    }
    return static_cast<long>(r.new_addr);
  }
  if (account_start) {
    Vma* before = vma_lookup(mm, r.addr - kPageSize);
    vma_start_write(before);
    before->vm_flags |= VM_ACCOUNT;
  }
  if (account_end) {
    Vma* after = vma_lookup(mm, r.addr + r.old_len);
    vma_start_write(after);
    after->vm_flags |= VM_ACCOUNT;
  }
  return static_cast<long>(r.new_addr);
}

// Linux mremap_to(): FIXED or DONTUNMAP.
long mremap_to(MmStruct* mm, Remap& r) {
  if (r.fixed()) {
    if (int err = do_vmi_munmap_locked(mm, r.new_addr, r.new_addr + r.new_len)) return err;
  }
  Vma* vma = vma_lookup(mm, r.addr);
  if (vma == nullptr) return -EFAULT;
  if (r.new_len < r.old_len) {
    if (int err = do_vmi_munmap_locked(mm, r.addr + r.new_len, r.addr + r.old_len)) return err;
    r.old_len = r.new_len;
    vma = vma_lookup(mm, r.addr);
    if (vma == nullptr) return -EFAULT;
  }
  int map_flags = (vma->vm_flags & VM_MAYSHARE) ? MAP_SHARED : MAP_PRIVATE;
  if (r.fixed()) map_flags |= MAP_FIXED;
  long where = get_unmapped_area(mm, r.new_addr, r.new_len, map_flags);
  if (where < 0) return where;
  r.new_addr = static_cast<std::uint64_t>(where);
  return move_vma(mm, vma, r);
}

// Linux vma_expandable(): may `vma` grow in place by `delta`?
bool vma_expandable(MmStruct* mm, const Vma* vma, std::uint64_t delta) {
  const std::uint64_t end = vma->vm_end + delta;
  if (end < vma->vm_end) return false;
  if (find_vma_intersection(mm, vma->vm_end, end) != nullptr) return false;
  return get_unmapped_area(mm, vma->vm_start, end - vma->vm_start, MAP_FIXED) >= 0;
}

// Linux mremap_at(): neither FIXED nor DONTUNMAP.
long mremap_at(MmStruct* mm, Vma* vma, Remap& r) {
  if (r.new_len == r.old_len) return static_cast<long>(r.addr);
  if (r.new_len < r.old_len) {
    // A plain munmap of the tail: it may cross into other VMAs and holes.
    if (int err = do_vmi_munmap_locked(mm, r.addr + r.new_len, r.addr + r.old_len)) return err;
    return static_cast<long>(r.addr);
  }
  const std::uint64_t delta = r.new_len - r.old_len;
  if (r.addr + r.old_len == vma->vm_end && vma_expandable(mm, vma, delta)) {
    const std::uint64_t pages = delta >> kPageShift;
    if ((vma->vm_flags & VM_ACCOUNT) && !vm_enough_memory(mm, pages)) return -ENOMEM;
    // Linux vma_merge_extend(): a new range [vm_end, vm_end + delta) with
    // the VMA's own attributes, merged into it (and into the next VMA when
    // that now touches it and is compatible).
    const std::uint64_t old_end = vma->vm_end;
    Vma* grown = vma_merge_new_range(mm, vma, find_vma(mm, old_end + delta), old_end, old_end + delta,
                                     vma->vm_flags, vma->vm_file,
                                     vma->vm_pgoff + ((old_end - vma->vm_start) >> kPageShift), vma,
                                     /*copied_from=*/nullptr, vma->anon_name);
    if (grown == nullptr) {
      if (vma->vm_flags & VM_ACCOUNT) vm_unacct_memory(mm, pages);
      return -ENOMEM;
    }
    if (grown->vm_flags & VM_LOCKED) {
      mm->locked_vm += pages;
      r.populate_start = old_end;
      r.populate_len = delta;
    }
    return static_cast<long>(r.addr);
  }
  if (!r.maymove()) return -ENOMEM;
  const int map_flags = (vma->vm_flags & VM_MAYSHARE) ? MAP_SHARED : MAP_PRIVATE;
  long where = get_unmapped_area(mm, 0, r.new_len, map_flags);
  if (where < 0) return where;
  r.new_addr = static_cast<std::uint64_t>(where);
  return move_vma(mm, vma, r);
}

// Linux remap_move() (6.17+): MREMAP_FIXED with old_len == new_len moves
// every VMA piece of [addr, addr + len), keeping the holes between them as
// gaps at the destination.  Not atomic: pieces moved before an error stay
// moved.  Returns the destination of the first piece.
long remap_move(MmStruct* mm, Remap& r) {
  const std::uint64_t start = r.addr, end = r.addr + r.old_len;
  long res = -EFAULT;
  bool seen = false;
  std::uint64_t target = r.new_addr, prev_end = 0;
  for (std::uint64_t at = start; at < end;) {
    Vma* v = find_vma(mm, at);
    if (v == nullptr || v->vm_start >= end) break;
    if (!seen && start < v->vm_start) return -EFAULT;  // may not start in a hole
    const std::uint64_t piece_start = std::max(v->vm_start, start);
    const std::uint64_t piece_end = std::min(v->vm_end, end);
    const std::uint64_t dst = target + (seen ? v->vm_start - prev_end : 0);
    Remap piece = r;
    piece.addr = piece_start;
    piece.old_len = piece.new_len = piece_end - piece_start;
    piece.new_addr = dst;
    const std::uint64_t v_end = v->vm_end;
    int err = check_prep_vma(mm, v, piece);
    if (err < 0) return err;
    long moved = mremap_to(mm, piece);
    if (moved < 0) return moved;
    if (piece.populate_len != 0) {
      r.populate_start = piece.populate_start;
      r.populate_len = piece.populate_len;
    }
    if (!seen) res = moved;
    seen = true;
    target = static_cast<std::uint64_t>(moved) + (piece_end - piece_start);
    prev_end = v_end;
    at = piece_end;
  }
  return res;
}

}  // namespace

long do_mremap(MmStruct* mm, std::uint64_t addr, std::uint64_t old_len, std::uint64_t new_len, int flags,
               std::uint64_t new_addr, std::uint64_t* populate_start, std::uint64_t* populate_len) {
  *populate_start = *populate_len = 0;
  // Linux aligns both lengths first (a length that wraps becomes 0).
  Remap r{addr, page_align(old_len), page_align(new_len), flags, new_addr};
  if (int err = check_mremap_params(mm, r)) return err;
  mmap_write_lock(mm);
  long res;
  if (r.fixed() && r.old_len == r.new_len) {
    res = remap_move(mm, r);
  } else {
    Vma* vma = vma_lookup(mm, r.addr);
    int err = check_prep_vma(mm, vma, r);
    if (err < 0) {
      res = err;
    } else if (err == 1) {  // nothing to map: same size, or a shrink
      res = r.new_len < r.old_len ? mremap_at(mm, vma, r) : static_cast<long>(r.addr);
    } else if (r.fixed() || r.dontunmap()) {
      res = mremap_to(mm, r);
    } else {
      res = mremap_at(mm, vma, r);
    }
  }
  mm_debug_validate(mm);
  if (res >= 0 && r.populate_len != 0) {
    // A locked mapping grew: the caller populates under the lock
    // downgraded to read (seed 003), as for mmap.
    mmap_write_downgrade(mm);
    *populate_start = r.populate_start;
    *populate_len = r.populate_len;
    return res;
  }
  mmap_write_unlock(mm);
  return res;
}

}  // namespace vmspace::mm
