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

namespace vmspace::mm {

// mmap(2).  `fd` is ignored for MAP_ANONYMOUS; file mappings are not
// supported yet (-EBADF, as for a descriptor that is not open).
// When the mapping must be populated (MAP_POPULATE, MAP_LOCKED), returns
// with *populate = its length and the mmap_lock DOWNGRADED TO READ: the
// caller populates [result, result + *populate) and then unlocks it.
// Otherwise *populate = 0 and no lock is held.
long vm_mmap(MmStruct* mm, std::uint64_t addr, std::uint64_t len, int prot, int flags, int fd,
             std::uint64_t off, std::uint64_t* populate);
// munmap(2)
int vm_munmap(MmStruct* mm, std::uint64_t start, std::uint64_t len);
// mprotect(2)
int do_mprotect(MmStruct* mm, std::uint64_t start, std::uint64_t len, int prot);
// madvise(2)
int do_madvise(MmStruct* mm, std::uint64_t start, std::uint64_t len, int behavior);
// mremap(2).  When a locked mapping grew, returns with *populate_len != 0
// and the mmap_lock DOWNGRADED TO READ: the caller populates
// [*populate_start, + *populate_len) and then unlocks it (as vm_mmap).
// Otherwise no lock is held.
long do_mremap(MmStruct* mm, std::uint64_t addr, std::uint64_t old_len, std::uint64_t new_len, int flags,
               std::uint64_t new_addr, std::uint64_t* populate_start, std::uint64_t* populate_len);

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
// Requires mmap W.  Returns 0 or -ENOMEM (map_count limit on a split).
int do_vmi_munmap_locked(MmStruct* mm, std::uint64_t start, std::uint64_t end);

// /proc/self/maps text for the whole space (show_maps takes mmap R;
// show_maps_locked requires it).
std::string show_maps(MmStruct* mm);
std::string show_maps_locked(MmStruct* mm);

// Every structural invariant (requires mmap R, or no concurrent writer).
// Returns false and describes the first violation in *why.
bool mm_validate(MmStruct* mm, std::string* why);
// Debug builds: validate and abort on failure; release builds: nothing.
void mm_debug_validate(MmStruct* mm);

}  // namespace vmspace::mm
