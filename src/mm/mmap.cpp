// SPDX-License-Identifier: MIT
// mmap.cpp - mmap(2) and address selection, decided as Linux's mm/mmap.c
// and arch/x86 decide (see docs/research/linux-vma-semantics.md, sections
// 1 and 2, for the rules and their order).
#include <sys/mman.h>

#include <cerrno>
#include <climits>
#include <optional>

#include "vmspace/mman.h"
#include "mm/memory.h"
#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"

namespace vmspace::mm {

namespace {

constexpr std::uint64_t kPmdSize = std::uint64_t{2} << 20;

std::uint64_t vm_start_gap(const MmStruct* mm, const Vma* vma) {
  std::uint64_t start = vma->vm_start;
  if (vma->vm_flags & VM_GROWSDOWN) {
    start -= mm->cfg.stack_guard_gap;
    if (start > vma->vm_start) start = 0;  // underflow
  }
  return start;
}

// Linux round_hint_to_min().
std::uint64_t round_hint_to_min(const MmStruct* mm, std::uint64_t hint) {
  hint &= kPageMask;
  if (hint != 0 && hint < mm->cfg.mmap_min_addr) return page_align(mm->cfg.mmap_min_addr);
  return hint;
}

// Highest start s (page aligned) with [s, s + len) free, low <= s,
// s + len <= high, and s + len <= vm_start_gap(next) when the VMA above
// grows down (unmapped_area_topdown's guard-gap retry).
std::optional<std::uint64_t> unmapped_area_topdown(MmStruct* mm, std::uint64_t len, std::uint64_t low,
                                                   std::uint64_t high) {
  for (;;) {
    auto s = mm->mm_mt.gap_top_down(len, kPageSize, low, high);
    if (!s) return std::nullopt;
    Vma* next = find_vma(mm, *s + len);
    if (next != nullptr && (next->vm_flags & VM_GROWSDOWN) && *s + len > vm_start_gap(mm, next)) {
      high = vm_start_gap(mm, next);
      continue;
    }
    return s;
  }
}

// Lowest start with the symmetric guard-gap rule (unmapped_area).
std::optional<std::uint64_t> unmapped_area(MmStruct* mm, std::uint64_t len, std::uint64_t low,
                                           std::uint64_t high) {
  for (;;) {
    auto s = mm->mm_mt.gap_bottom_up(len, kPageSize, low, high);
    if (!s) return std::nullopt;
    Vma* next = find_vma(mm, *s + len);
    if (next != nullptr && (next->vm_flags & VM_GROWSDOWN) && *s + len > vm_start_gap(mm, next)) {
      low = next->vm_end;
      continue;
    }
    return s;
  }
}

// x86 mmap_address_hint_valid(): a hint is taken only when the mapping
// fits below TASK_SIZE and lies wholly on one side of the default map
// window's end (a five-level space does not straddle 47 bits by accident).
bool mmap_address_hint_valid(const MmStruct* mm, std::uint64_t addr, std::uint64_t len) {
  if (mm->task_size - len < addr) return false;
  return (addr > kDefaultMapWindow) == (addr + len > kDefaultMapWindow);
}

// x86 arch_get_unmapped_area_topdown() for a non-fixed request.  The
// search stays below mmap_base (inside the default map window) unless the
// hint lies above the window, which lifts the limit by the rest of the
// task size (five-level paging only; an ia32 guest never goes above its
// TASK_SIZE).
long arch_get_unmapped_area_topdown(MmStruct* mm, std::uint64_t addr, std::uint64_t len,
                                    bool thp_align) {
  const std::uint64_t task_size = mm->task_size;
  const bool compat = task_size_is_compat(task_size);
  if (len > task_size) return -ENOMEM;
  if (addr != 0 && mmap_address_hint_valid(mm, addr, len)) {
    Vma* vma = find_vma(mm, addr);
    if (vma == nullptr || addr + len <= vm_start_gap(mm, vma)) return static_cast<long>(addr);
  }
  const std::uint64_t low = std::max(kPageSize, mm->cfg.mmap_min_addr);
  const bool high_hint = !compat && addr > kDefaultMapWindow;
  const std::uint64_t high = mm->mmap_base + (high_hint ? task_size - map_window(task_size) : 0);
  if (thp_align && len + kPmdSize > len) {
    // __thp_get_unmapped_area: search with 2 MiB of slack, then align down.
    if (auto s = unmapped_area_topdown(mm, len + kPmdSize, low, high))
      return static_cast<long>((*s + kPmdSize) & ~(kPmdSize - 1));
  }
  if (auto s = unmapped_area_topdown(mm, len, low, high)) return static_cast<long>(*s);
  // Bottom-up fallback (arch_get_unmapped_area, find_start_end): from the
  // legacy base to the window's end, or to TASK_SIZE for a high hint.
  const std::uint64_t top = high_hint ? task_size : map_window(task_size);
  if (auto s = unmapped_area(mm, len, mm->cfg.mmap_legacy_base, top)) return static_cast<long>(*s);
  return -ENOMEM;
}

// x86 arch_get_unmapped_area() for MAP_32BIT, where the top-down search
// sends it: bottom-up in [1 GiB, 2 GiB) (find_start_end, without
// randomization); a hint is taken wherever the mapping ends below 2 GiB.
long arch_get_unmapped_area_32bit(MmStruct* mm, std::uint64_t addr, std::uint64_t len, bool thp_align) {
  constexpr std::uint64_t begin = 0x40000000, end = 0x80000000;
  if (len > end) return -ENOMEM;
  if (addr != 0) {
    addr = page_align(addr);
    Vma* vma = find_vma(mm, addr);
    if (end - len >= addr && (vma == nullptr || addr + len <= vm_start_gap(mm, vma))) return static_cast<long>(addr);
  }
  if (thp_align && len + kPmdSize > len) {
    if (auto s = unmapped_area(mm, len + kPmdSize, begin, end))
      return static_cast<long>((*s + kPmdSize) & ~(kPmdSize - 1));
  }
  if (auto s = unmapped_area(mm, len, begin, end)) return static_cast<long>(*s);
  return -ENOMEM;
}

vm_flags_t calc_vm_flag_bits(int flags) {
  vm_flags_t f = 0;
  if (flags & MAP_GROWSDOWN) f |= VM_GROWSDOWN;
  if (flags & MAP_LOCKED) f |= VM_LOCKED;
  if (flags & MAP_SYNC) f |= VM_SYNC;  // even where it means nothing (anonymous memory): no merging
  if (flags & MAP_STACK) f |= VM_NOHUGEPAGE;  // transparent huge pages are compiled in
  return f;
}

// Linux __mmap_region(): anonymous memory, or `file` (a reference the
// caller keeps) at page offset pgoff.  Requires mmap W.
long mmap_region(MmStruct* mm, std::uint64_t addr, std::uint64_t len, vm_flags_t vm_flags,
                 std::uint64_t pgoff, mem::File* file_in) {
  const std::uint64_t end = addr + len;
  const std::uint64_t pglen = len >> kPageShift;
  // MAP_FIXED over existing mappings: split the edges and collect what is
  // replaced.  The old VMAs stay in the tree (write-locked) until the new
  // mapping is stored over them in one step, so no address that is mapped
  // before and after is ever seen unmapped.
  std::vector<Vma*> replaced;
  if (find_vma_intersection(mm, addr, end) != nullptr) {
    int err = vms_gather_munmap_vmas(mm, addr, end, &replaced);
    if (err) return err;
  }
  // What the replaced mappings had committed: the new mapping inherits it
  // if it is accountable itself, else it is given back with them.
  std::uint64_t replaced_accounted = 0;
  for (const Vma* v : replaced)
    if (v->vm_flags & VM_ACCOUNT) replaced_accounted += v->pages();
  std::uint64_t charged = 0;
  if ((vm_flags & (VM_NORESERVE | VM_SHARED | VM_WRITE)) == VM_WRITE) {
    // Charge the commit, less what the replaced mappings already had.  On
    // failure the edge splits stay, as in Linux (vms_abort_munmap_vmas).
    charged = pglen - replaced_accounted;
    if (charged != 0 && !vm_enough_memory(mm, charged)) return -ENOMEM;
    replaced_accounted = 0;
    vm_flags |= VM_ACCOUNT;
  }
  // A shared anonymous mapping's shmem object charges its whole size
  // unless MAP_NORESERVE (shmem_acct_size), until the object goes away.
  const bool shmem_acct = file_in == nullptr && (vm_flags & VM_SHARED) && !(vm_flags & VM_NORESERVE);
  if (shmem_acct && !vm_enough_memory(mm, pglen)) {
    if (charged != 0) vm_unacct_memory(mm, charged);
    return -ENOMEM;
  }

  Vma* prev = find_vma_prev_of(mm, addr);
  Vma* next = find_vma(mm, end);

  // Out of memory from here on: give the charges back (a shmem object
  // gives its own back when freed) and leave the old mappings (with their
  // edge splits) in place, as Linux's vms_abort_munmap_vmas does.
  mem::File* file = mem::get_file(file_in);  // our reference, until the VMA has its own
  auto nomem = [&]() -> long {
    if (charged != 0) vm_unacct_memory(mm, charged);
    if (shmem_acct && file == nullptr) vm_unacct_memory(mm, pglen);
    mem::fput(file);
    return -ENOMEM;
  };
  if (file == nullptr && (vm_flags & VM_SHARED)) {
    file = mem::shmem_zero_setup(mm->phys, pglen);
    if (file == nullptr) return nomem();
    if (shmem_acct) {
      file->acct = mm->vm_committed;  // the object owns the charge from now on
      file->acct_pages = pglen;
    }
  }
  // A new shmem object (shared anonymous memory) merges with nothing; a
  // file's mapping may extend a neighbour mapping it at the adjoining
  // offsets.
  Vma* vma = file == nullptr || file_in != nullptr
                 ? vma_merge_new_range(mm, prev, next, addr, end, vm_flags, file, pgoff)
                 : nullptr;
  if (vma != nullptr) mem::fput(file);  // the merged VMA has its own
  if (vma == nullptr) {
    vma = vm_area_alloc(mm, addr, end, vm_flags, pgoff);
    if (vma == nullptr) return nomem();
    vma->vm_file = mem::get_file(file);
    if (!vma_link(mm, vma)) {
      delete vma;  // never attached nor linked; drops its file reference
      return nomem();
    }
    mem::fput(file);  // the VMA holds the object now
  }
  if (vm_flags & VM_LOCKED) {
    // A droppable mapping is never locked, even under mlockall(MCL_FUTURE):
    // the flags it merged (or failed to merge) with still had VM_LOCKED,
    // and it is still populated (Linux 6.18, checked on the host).
    if (vm_flags & VM_DROPPABLE) {
      vma_start_write(vma);
      vma->vm_flags &= ~VM_LOCKED_MASK;
    } else {
      mm->locked_vm += pglen;
    }
  }
  vms_complete_munmap_vmas(mm, replaced, /*free_tables=*/false);
  if (replaced_accounted != 0) vm_unacct_memory(mm, replaced_accounted);
  return static_cast<long>(addr);
}

}  // namespace

bool vm_enough_memory(MmStruct* mm, std::uint64_t pages) {
  const std::uint64_t limit = mm->cfg.overcommit_limit_pages;
  switch (mm->cfg.overcommit) {
    case Overcommit::always:
      break;
    case Overcommit::guess:
      if (limit != 0 && pages > limit) return false;
      break;
    case Overcommit::never: {
      // Charge first, then check the total (Linux __vm_enough_memory).
      const std::int64_t total =
          mm->vm_committed->fetch_add(static_cast<std::int64_t>(pages), std::memory_order_relaxed) +
          static_cast<std::int64_t>(pages);
      if (limit != 0 && static_cast<std::uint64_t>(total) > limit) {
        vm_unacct_memory(mm, pages);
        return false;
      }
      return true;
    }
  }
  mm->vm_committed->fetch_add(static_cast<std::int64_t>(pages), std::memory_order_relaxed);
  return true;
}

void vm_acct_memory(MmStruct* mm, std::uint64_t pages) {
  mm->vm_committed->fetch_add(static_cast<std::int64_t>(pages), std::memory_order_relaxed);
}

void vm_unacct_memory(MmStruct* mm, std::uint64_t pages) {
  mm->vm_committed->fetch_sub(static_cast<std::int64_t>(pages), std::memory_order_relaxed);
}

bool mlock_future_ok(const MmStruct* mm, vm_flags_t flags, std::uint64_t bytes) {
  if (!(flags & VM_LOCKED) || mm->cfg.cap_ipc_lock) return true;
  const std::uint64_t limit = mm->cfg.rlimit_memlock >> kPageShift;
  const std::uint64_t locked = (bytes >> kPageShift) + mm->locked_vm;
  return locked <= limit;
}

long get_unmapped_area(MmStruct* mm, std::uint64_t addr, std::uint64_t len, int flags) {
  if (len > mm->task_size) return -ENOMEM;
  // per_vma_range: the gap search walks tree nodes that other writers
  // retire meanwhile.
  std::optional<rcu::ReadGuard> rcu;
  if (mm->mode == LockMode::per_vma_range) rcu.emplace();
  if (!(flags & MAP_FIXED)) {
    // Private anonymous requests with no hint and a 2 MiB-multiple length
    // are placed 2 MiB aligned (thp_get_unmapped_area).
    // Neither applies to an ia32 guest's compat calls: THP alignment is
    // 64-bit only (__thp_get_unmapped_area) and MAP_32BIT is ignored.
    const bool compat = task_size_is_compat(mm->task_size);
    bool thp = mm->cfg.thp_align && !compat && addr == 0 && (flags & MAP_TYPE) == MAP_PRIVATE &&
               len % kPmdSize == 0;
    long r = (flags & MAP_32BIT) && !compat ? arch_get_unmapped_area_32bit(mm, addr, len, thp)
                                            : arch_get_unmapped_area_topdown(mm, addr, len, thp);
    if (r < 0) return r;
    addr = static_cast<std::uint64_t>(r);
  }
  // A fixed address in the last 4095 is taken for an error value
  // (IS_ERR_VALUE): Linux fails with it as the errno (~0: -EPERM).
  if (addr > UINT64_MAX - 4095) return static_cast<long>(addr);
  if (addr > mm->task_size - len) return -ENOMEM;
  if (!page_aligned(addr)) return -EINVAL;
  if (addr < mm->cfg.dac_mmap_min_addr && !mm->cfg.cap_sys_rawio) return -EPERM;  // cap_mmap_addr
  return static_cast<long>(addr);
}

namespace {

// do_mmap under a ranged hold that does not cover the mapping's place.
constexpr long kNeedWholeSpace = LONG_MIN;

// The MAP_* flags Linux's mmap of a file knows without asking the file
// (LEGACY_MAP_MASK): MAP_SHARED drops the others, MAP_SHARED_VALIDATE
// refuses them.
constexpr int kLegacyMapMask = MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_DENYWRITE |
                               MAP_EXECUTABLE | 0x4000000 /* MAP_UNINITIALIZED */ | MAP_GROWSDOWN | MAP_LOCKED |
                               MAP_NORESERVE | MAP_POPULATE | MAP_NONBLOCK | MAP_STACK | MAP_HUGETLB;

// Linux do_mmap(): anonymous memory, or `file` opened with `f_mode`
// (mem::kFmodeRead/Write; no file here is on a noexec mount) at byte
// offset `off`.  Requires mmap W.
long do_mmap(MmStruct* mm, mem::File* file, unsigned f_mode, std::uint64_t addr, std::uint64_t len, int prot,
             int flags, std::uint64_t off, std::uint64_t* populate) {
  *populate = 0;
  if (len == 0) return -EINVAL;
  if (flags & MAP_FIXED_NOREPLACE) flags |= MAP_FIXED;
  if (!(flags & MAP_FIXED)) addr = round_hint_to_min(mm, addr);
  len = page_align(len);
  if (len == 0) return -ENOMEM;
  const std::uint64_t file_pgoff = off >> kPageShift;
  if (file_pgoff + (len >> kPageShift) < file_pgoff) return -EOVERFLOW;  // offset overflow (anonymous too)
  if (mm->map_count > mm->max_map_count) return -ENOMEM;

  vm_flags_t vm_flags = calc_vm_prot_bits(prot) | pkey_flags_for(mm, prot) | calc_vm_flag_bits(flags) |
                        mm->def_flags | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
  long r = get_unmapped_area(mm, addr, len, flags);
  if (r < 0) return r;
  addr = static_cast<std::uint64_t>(r);
  // per_vma_range: a hint taken or a placement decided under a ranged
  // hold may lie outside it.  Nothing is changed yet: the caller retries
  // with the whole space.
  if (!range_covers_change(mm, addr, addr + len)) return kNeedWholeSpace;

  if ((flags & MAP_FIXED_NOREPLACE) && find_vma_intersection(mm, addr, addr + len) != nullptr)
    return -EEXIST;
  // can_do_mlock(), then mlock_future_ok() against RLIMIT_MEMLOCK.
  if ((flags & MAP_LOCKED) && mm->cfg.rlimit_memlock == 0 && !mm->cfg.cap_ipc_lock) return -EPERM;
  if (!mlock_future_ok(mm, vm_flags, len)) return -EAGAIN;

  std::uint64_t pgoff;
  if (file != nullptr) {
    // file_mmap_ok(): the mapping must end within MAX_LFS_FILESIZE.
    constexpr std::uint64_t kMaxLfs = static_cast<std::uint64_t>(INT64_MAX);
    if (len > kMaxLfs || file_pgoff > ((kMaxLfs - len) >> kPageShift)) return -EOVERFLOW;
    switch (flags & MAP_TYPE) {
      case MAP_SHARED:
        flags &= kLegacyMapMask;
        [[fallthrough]];
      case MAP_SHARED_VALIDATE:
        if (flags & ~kLegacyMapMask) return -EOPNOTSUPP;
        if ((prot & PROT_WRITE) && !(f_mode & mem::kFmodeWrite)) return -EACCES;
        vm_flags |= VM_SHARED | VM_MAYSHARE;
        // A read-only descriptor: never writable, and (no VM_SHARED) its
        // pages fault as a private mapping's would; maps still says 's'.
        if (!(f_mode & mem::kFmodeWrite)) vm_flags &= ~(VM_MAYWRITE | VM_SHARED);
        [[fallthrough]];
      case MAP_PRIVATE:
        if (!(f_mode & mem::kFmodeRead)) return -EACCES;
        if (vm_flags & VM_GROWSDOWN) return -EINVAL;
        break;
      default:
        return -EINVAL;
    }
    pgoff = file_pgoff;
    if ((flags & MAP_NORESERVE) && mm->cfg.overcommit != Overcommit::never) vm_flags |= VM_NORESERVE;
    r = mmap_region(mm, addr, len, vm_flags, pgoff, file);
    if (r >= 0 && ((vm_flags & VM_LOCKED) || (flags & (MAP_POPULATE | MAP_NONBLOCK)) == MAP_POPULATE))
      *populate = len;
    return r;
  }
  switch (flags & MAP_TYPE) {
    case MAP_SHARED:
      if (vm_flags & VM_GROWSDOWN) return -EINVAL;
      pgoff = 0;
      vm_flags |= VM_SHARED | VM_MAYSHARE;
      break;
    case MAP_DROPPABLE:
      // Pages the kernel may drop under pressure (6.11): never locked, no
      // stack; not reserved, not inherited by fork, not dumped.
      if ((flags & MAP_LOCKED) || (vm_flags & VM_GROWSDOWN)) return -EINVAL;
      vm_flags |= VM_DROPPABLE | VM_NORESERVE | VM_WIPEONFORK | VM_DONTDUMP;
      pgoff = addr >> kPageShift;
      break;
    case MAP_PRIVATE:
      pgoff = addr >> kPageShift;
      break;
    default:  // MAP_SHARED_VALIDATE: not for anonymous memory
      return -EINVAL;
  }
  if ((flags & MAP_NORESERVE) && mm->cfg.overcommit != Overcommit::never) vm_flags |= VM_NORESERVE;

  r = mmap_region(mm, addr, len, vm_flags, pgoff, nullptr);
  if (r >= 0 && ((vm_flags & VM_LOCKED) || (flags & (MAP_POPULATE | MAP_NONBLOCK)) == MAP_POPULATE))
    *populate = len;
  return r;
}

// per_vma_range: may this mmap lock only a range, and which?  Not when it
// populates (MAP_POPULATE, MAP_LOCKED: the populate walk reads VMAs and
// anon_vmas beyond any small range, and locked_vm is exact only under the
// whole space), for stacks (their guard gaps), under overcommit never
// (vm_committed's charge-then-check is exact only alone), for MAP_32BIT,
// nor for requests the checks will refuse anyway, nor for placements
// without a hint.  A hint is locked where it asks; do_mmap checks where
// the mapping really goes under the lock (range_covers_change).
bool mmap_range_wanted(MmStruct* mm, std::uint64_t addr, std::uint64_t len, int flags, std::uint64_t* lo,
                       std::uint64_t* hi) {
  if (flags & (MAP_LOCKED | MAP_POPULATE | MAP_GROWSDOWN | MAP_32BIT)) return false;
  if (mm->cfg.overcommit == Overcommit::never) return false;
  const std::uint64_t plen = page_align(len);
  if (len == 0 || plen == 0 || plen > mm->task_size) return false;
  std::uint64_t start;
  const std::uint64_t span = plen;
  if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
    start = addr;
  } else if (addr != 0) {
    start = round_hint_to_min(mm, addr);
  } else {
    // Placement: every such request starts its search at the same gap
    // below mmap_base, so concurrent ones collide there anyway; guessing
    // it from a snapshot only added retries (measured: mmap1 at 2
    // threads, 72K ops/s against 361K under the whole space).
    return false;
  }
  if (!page_aligned(start) || start > mm->task_size - span) return false;
  *lo = start;
  *hi = start + span;
  return true;
}

}  // namespace

long vm_mmap(MmStruct* mm, std::uint64_t addr, std::uint64_t len, int prot, int flags, mem::File* file,
             unsigned f_mode, std::uint64_t off, std::uint64_t* populate) {
  *populate = 0;
  if (!page_aligned(off)) return -EINVAL;
  if (flags & MAP_ANONYMOUS) file = nullptr;  // the descriptor is ignored
  else if (file == nullptr) return -EBADF;
  if (flags & MAP_HUGETLB) return -EINVAL;  // hugetlbfs is not modelled
  long r = kNeedWholeSpace;
  if (mm->mode == LockMode::per_vma_range) {
    std::uint64_t lo = 0, hi = 0;
    if (mmap_range_wanted(mm, addr, len, flags, &lo, &hi)) {
      range_write_lock(mm, lo, hi);
      // mlockall(MCL_FUTURE) (def_flags: only a whole-space writer
      // changes it, so it is stable under any range) locks and populates;
      // MAP_FIXED over locked memory changes locked_vm.
      if (!(mm->def_flags & VM_LOCKED) &&
          !((flags & MAP_FIXED) && range_has_vma_with(mm, lo, lo + page_align(len), VM_LOCKED)))
        r = do_mmap(mm, file, f_mode, addr, len, prot, flags, off, populate);
      if (r == kNeedWholeSpace) range_write_widen(mm);
    } else {
      mmap_write_lock(mm);
      mm->events.count(VmEvent::range_write_whole);
    }
  } else {
    mmap_write_lock(mm);
  }
  if (r == kNeedWholeSpace) r = do_mmap(mm, file, f_mode, addr, len, prot, flags, off, populate);
  mm_debug_validate(mm);
  if (r >= 0 && *populate != 0) {
    // MAP_POPULATE / MAP_LOCKED: the caller faults the pages in under the
    // mmap_lock downgraded to read, never after dropping it (seed 003: a
    // VMA found before the drop could be gone by then).
    mmap_write_downgrade(mm);
    return r;
  }
  *populate = 0;
  mmap_write_unlock(mm);
  return r;
}

}  // namespace vmspace::mm
