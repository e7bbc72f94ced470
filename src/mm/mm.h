// SPDX-License-Identifier: MIT
// mm.h - the address-space operations, syscall-shaped (Linux's mm/mmap.c,
// mm/vma.c, mm/mprotect.c, mm/madvise.c).  Arguments and errno values are
// Linux's: results are >= 0 on success and -errno on failure.  Each entry
// point takes the mmap_lock itself; functions ending in _locked require it
// held for write.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mm/mm_types.h"

namespace vmspace::mem {
struct File;
}

namespace vmspace::mm {

// mmap(2).  `file` is ignored for MAP_ANONYMOUS; without it, nullptr
// stands for a descriptor that is not open (-EBADF).  The caller keeps
// its reference to `file`; the new VMA takes its own.
// When the mapping must be populated (MAP_POPULATE, MAP_LOCKED), returns
// with *populate = its length and the mmap_lock DOWNGRADED TO READ: the
// caller populates [result, result + *populate) and then unlocks it.
// Otherwise *populate = 0 and no lock is held.
// `f_mode` is how the descriptor was opened (mem::kFmodeRead/Write).
long vm_mmap(MmStruct* mm, std::uint64_t addr, std::uint64_t len, int prot, int flags, mem::File* file,
             unsigned f_mode, std::uint64_t off, std::uint64_t* populate);
// munmap(2)
int vm_munmap(MmStruct* mm, std::uint64_t start, std::uint64_t len);
// mprotect(2)
int do_mprotect(MmStruct* mm, std::uint64_t start, std::uint64_t len, int prot);
// madvise(2)
int do_madvise(MmStruct* mm, std::uint64_t start, std::uint64_t len, int behavior);
// msync(2)
int do_msync(MmStruct* mm, std::uint64_t start, std::uint64_t len, int flags);
// mincore(2): one byte per page of [start, start + len) into vec (1 =
// resident).  vec == nullptr stands for an unwritable user buffer (-EFAULT
// at the first copy, after the VMA lookup, as Linux does for NULL).
int do_mincore(MmStruct* mm, std::uint64_t start, std::uint64_t len, unsigned char* vec);
// brk(2) as the raw syscall: the break after the call (the old one when it
// fails; brk(0) queries).  When mlockall(MCL_FUTURE) makes the heap
// locked, it faults the new part in itself (mm->populate).
std::uint64_t do_brk(MmStruct* mm, std::uint64_t brk);
// mremap(2).  When a locked mapping grew, returns with *populate_len != 0
// and the mmap_lock DOWNGRADED TO READ: the caller populates
// [*populate_start, + *populate_len) and then unlocks it (as vm_mmap).
// Otherwise no lock is held.
long do_mremap(MmStruct* mm, std::uint64_t addr, std::uint64_t old_len, std::uint64_t new_len, int flags,
               std::uint64_t new_addr, std::uint64_t* populate_start, std::uint64_t* populate_len);

// mlock(2) / mlock2(2): `flags` are mlock2's (MLOCK_ONFAULT; mlock passes
// 0).  On success with pages to fault in, returns 0 with
// *populate_len != 0 and the mmap_lock DOWNGRADED TO READ: the caller
// populates [*populate_start, + *populate_len) with
// populate(ignore_errors = false), unlocks, and turns a populate error
// into mlock's with mlock_populate_error().  Otherwise no lock is held.
int do_mlock(MmStruct* mm, std::uint64_t start, std::uint64_t len, unsigned flags,
             std::uint64_t* populate_start, std::uint64_t* populate_len);
// Linux __mlock_posix_error_return(): -EFAULT -> -ENOMEM, -ENOMEM -> -EAGAIN.
int mlock_populate_error(int err);
// munlock(2)
int do_munlock(MmStruct* mm, std::uint64_t start, std::uint64_t len);
// mlockall(2) (MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT).  With MCL_CURRENT,
// returns 0 with *populate = true and the mmap_lock DOWNGRADED TO READ: the
// caller populates [0, task_size) ignoring errors, then unlocks.
int do_mlockall(MmStruct* mm, int flags, bool* populate);
// munlockall(2)
int do_munlockall(MmStruct* mm);
// Linux can_do_mlock(): RLIMIT_MEMLOCK is not 0, or CAP_IPC_LOCK.
inline bool can_do_mlock(const MmStruct* mm) { return mm->cfg.rlimit_memlock != 0 || mm->cfg.cap_ipc_lock; }

// mseal(2) (Linux 6.10+, as 6.17+ does it; flags must be 0).
int do_mseal(MmStruct* mm, std::uint64_t start, std::uint64_t len, unsigned long flags);
// Linux can_modify_vma(): may the VMA's range, protection or existence
// change?  Not if it is sealed: munmap, MAP_FIXED over it, mprotect,
// mremap (source and destination) and a brk shrink over it fail with
// -EPERM.  Requires mmap R (or vma R).
inline bool can_modify_vma(const Vma* vma) { return (vma->vm_flags & VM_SEALED) == 0; }
// Does any VMA intersecting [start, end) refuse changes (can_modify_vma)?
// Requires mmap R.  (munmap, MAP_FIXED and brk get their -EPERM from
// do_vmi_munmap_locked, which checks each VMA as it gathers it.)
bool vma_range_sealed(MmStruct* mm, std::uint64_t start, std::uint64_t end);
// Linux 6.17+ can_madvise_modify(): may madvise `behavior` act on `vma`?
// False (madvise fails with -EPERM, checked on each VMA before any
// advice-specific check) iff the VMA is sealed, the advice discards
// (FREE, DONTNEED, DONTNEED_LOCKED, REMOVE, DONTFORK, WIPEONFORK,
// GUARD_INSTALL), the VMA is private anonymous, and it is not writable.
// Requires mmap R (or vma R).
bool can_madvise_modify(const Vma* vma, int behavior);

// Linux security_vm_enough_memory_mm(): may `pages` more pages be
// committed under the space's overcommit policy?  On true they are charged
// to mm->vm_committed; give them back with vm_unacct_memory().
bool vm_enough_memory(MmStruct* mm, std::uint64_t pages);
void vm_unacct_memory(MmStruct* mm, std::uint64_t pages);
// Charge without checking (Linux vm_acct_memory): for moves of a charge.
void vm_acct_memory(MmStruct* mm, std::uint64_t pages);

// Linux mlock_future_ok(): may `bytes` more of VM_LOCKED memory (when
// `flags` has VM_LOCKED) be locked under RLIMIT_MEMLOCK?  Requires mmap R.
bool mlock_future_ok(const MmStruct* mm, vm_flags_t flags, std::uint64_t bytes);

// Linux get_unmapped_area() for an anonymous mapping (mmap W held).
long get_unmapped_area(MmStruct* mm, std::uint64_t addr, std::uint64_t len, int flags);

// Remove every mapping in [start, end) (page aligned, start < end).
// Requires mmap W.  Returns 0, -ENOMEM (map_count limit on a split) or
// -EPERM (a sealed VMA in the range: splits made before reaching it stay,
// as in Linux).
int do_vmi_munmap_locked(MmStruct* mm, std::uint64_t start, std::uint64_t end);

// Linux dup_mmap(): copy `oldmm` (the parent) into `mm`, a new empty space
// with the same configuration and physical memory (fork.cpp says in what
// order and why).  Takes both mmap_locks.  `copy_writable`: copy
// writable private anonymous pages for the child now instead of sharing
// them (copy_page_range; for a caller that cannot wait for a grace period
// afterwards).  0, or -ENOMEM: the child is then partly copied,
// consistent, and the caller destroys it (which releases everything it
// took).
int dup_mmap(MmStruct* mm, MmStruct* oldmm, bool copy_writable);

// Close the window dup_mmap opened (without copy_writable): after the
// grace period that ends every older translation, before the child is
// handed out (or destroyed, when dup_mmap failed).  MmStruct::fork_child.
void fork_window_close(MmStruct* oldmm);

// ---- test hooks (deterministic fork races; compiled out of release) ----
struct ForkHooks {
  // Every parent VMA is write-locked; nothing is copied yet.
  void (*locked)(MmStruct* oldmm, void* arg) = nullptr;
  // About to copy `vma` (parent's) into the child.
  void (*copying)(MmStruct* oldmm, Vma* vma, void* arg) = nullptr;
  void* arg = nullptr;
};
// Install hooks for the calling thread only (nullptr to remove).
void set_fork_hooks(const ForkHooks* hooks);

// /proc/self/maps text for the whole space (show_maps takes mmap R;
// show_maps_locked requires it).
std::string show_maps(MmStruct* mm);
std::string show_maps_locked(MmStruct* mm);

// Every structural invariant (requires mmap R, or no concurrent writer).
// Returns false and describes the first violation in *why.
bool mm_validate(MmStruct* mm, std::string* why);
// The reverse map is complete: every anonymous frame mapped in the space
// is reachable from its anon_vma (the VMA mapping it is linked to that
// anon_vma, at the frame's index), and its counts cover the mapping.  Costs
// a walk of every PTE: tests call it, not every operation.  Requires mmap
// R and no concurrent fault (a quiescent space).
bool mm_validate_rmap(MmStruct* mm, std::string* why);
// Debug builds: validate and abort on failure; release builds: nothing.
void mm_debug_validate(MmStruct* mm);

}  // namespace vmspace::mm
