// SPDX-License-Identifier: MIT
// layout_query.cpp - AddressSpace's layout queries and anonymous names
// (issue 17): find_vma, vmas, set_anon_name.  The locking is the mm
// layer's (mm/vma_query.cpp); this file turns its copies into VmaInfo.
#include <sys/mman.h>

#include "mm/vma_query.h"
#include "vmspace/address_space.h"

namespace vmspace {

static_assert(kTaskSize47 == mm::kTaskSize47 && kTaskSize57 == mm::kTaskSize57 && kTaskSize32 == mm::kTaskSize32,
              "the public task sizes are the mm layer's");
static_assert(kGuestPageSize == mm::kPageSize);

namespace {

VmaInfo to_info(mm::VmaSnapshot&& s) {
  VmaInfo i;
  i.start = s.start;
  i.end = s.end;
  i.prot = ((s.flags & mm::VM_READ) ? PROT_READ : 0) | ((s.flags & mm::VM_WRITE) ? PROT_WRITE : 0) |
           ((s.flags & mm::VM_EXEC) ? PROT_EXEC : 0);
  // 's' in maps is VM_MAYSHARE (a shared mapping of a read-only
  // descriptor has no VM_SHARED but is still MAP_SHARED).
  i.flags = (s.flags & mm::VM_MAYSHARE) ? MAP_SHARED : MAP_PRIVATE;
  if (s.flags & mm::VM_GROWSDOWN) i.flags |= MAP_GROWSDOWN;
  if (s.flags & mm::VM_LOCKED) i.flags |= MAP_LOCKED;
  i.vm_flags = s.flags;
  i.offset = s.has_file ? s.pgoff << mm::kPageShift : 0;  // maps' offset column
  i.name = std::move(s.name);
  return i;
}

}  // namespace

bool AddressSpace::find_vma(std::uint64_t addr, VmaInfo* out) const {
  mm::VmaSnapshot s;
  // The first VMA ending above addr holds addr exactly when it starts at
  // or below it.
  if (!mm::vma_query_next(mm_.get(), addr, &s) || s.start > addr) return false;
  if (out != nullptr) *out = to_info(std::move(s));
  return true;
}

std::vector<VmaInfo> AddressSpace::vmas(std::uint64_t start, std::uint64_t end) const {
  std::vector<mm::VmaSnapshot> snaps = mm::vma_query_range(mm_.get(), start, end);
  std::vector<VmaInfo> out;
  out.reserve(snaps.size());
  for (mm::VmaSnapshot& s : snaps) out.push_back(to_info(std::move(s)));
  return out;
}

int AddressSpace::set_anon_name(std::uint64_t addr, std::uint64_t len, const char* name) {
  return mm::set_anon_vma_name(mm_.get(), addr, len, name);
}

}  // namespace vmspace
