// SPDX-License-Identifier: MIT
// vma_query.h - reading the layout from outside the mm (issue 17): one
// VMA, or every VMA of a range, each copied while it is locked, the way
// Linux 6.17+ reads /proc/pid/maps (lock_next_vma); and the anonymous
// names of prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mm/mm_types.h"

namespace vmspace::mm {

// What a query reports of one VMA: a copy, taken while the VMA was locked,
// so its fields belong to one version of the VMA.
struct VmaSnapshot {
  std::uint64_t start = 0, end = 0;
  vm_flags_t flags = 0;
  std::uint64_t pgoff = 0;
  bool has_file = false;  // a file or a shmem object (offset = pgoff pages)
  std::string name;       // as maps prints it: vma_display_name()
};

// The name column of maps for `vma` ("" = none): the file's path,
// "[anon_shmem:NAME]", "[heap]", "[anon:NAME]".  Requires mmap R or the
// VMA's read lock.
std::string vma_display_name(const Vma* vma);

// The first VMA that ends above `from` (Linux find_vma), copied into *out;
// false when there is none.  Takes its own locks; the caller holds none
// (it may be inside an RCU read section).  In the per-VMA lock modes the
// VMA is found under RCU and read-locked (vma_start_read), falling back to
// mmap R only when that fails (the VMA is being changed) or when the VMA
// found no longer proves that nothing lies between `from` and it; in
// mmap_lock mode under mmap R.
bool vma_query_next(MmStruct* mm, std::uint64_t from, VmaSnapshot* out);

// Calls visit(vma) for every VMA that intersects [start, end), in address
// order, each while it is locked (its read lock in the per-VMA lock modes,
// falling back to mmap R for a VMA being changed; mmap R for the whole
// walk in mmap_lock mode): the visitor sees one version of each VMA and
// must not take mm locks.  A VMA changed after the walk passed it is not
// seen again.  The caller holds no mm lock.
using VmaVisitor = std::function<void(const Vma*)>;
void vma_walk(MmStruct* mm, std::uint64_t start, std::uint64_t end, const VmaVisitor& visit);

// Every VMA that intersects [start, end), in address order, each a
// consistent copy of that VMA (not of the whole list: a VMA changed after
// the walk passed it is not seen again).  Same locking as vma_query_next;
// mmap_lock mode holds mmap R for the whole walk.
std::vector<VmaSnapshot> vma_query_range(MmStruct* mm, std::uint64_t start, std::uint64_t end);

// prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, start, len, name), Linux 6.18
// (set_anon_vma_name, then madvise_set_anon_name's walk): 0, -EINVAL,
// -EBADF, -ENOMEM (a hole), -EAGAIN (a split the map-count limit or memory
// refused).  anon_name.cpp says in what order.  Takes mmap W.
int set_anon_vma_name(MmStruct* mm, std::uint64_t start, std::uint64_t len, const char* name);

}  // namespace vmspace::mm
