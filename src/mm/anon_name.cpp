// SPDX-License-Identifier: MIT
// anon_name.cpp - prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME): names for
// anonymous memory, as Linux 6.18 sets them (mm/madvise.c
// set_anon_vma_name, madvise_set_anon_name, and the madvise walk with
// madvise_update_vma / vma_modify_name).
//
// The checks, in Linux's order:
//   1. the name (when given): at most 79 bytes before its NUL
//      (strndup_user with ANON_VMA_NAME_MAX_LEN = 80), each byte printable
//      ASCII other than \ ` $ [ ]: else -EINVAL; memory for it: -ENOMEM;
//   2. the range: start page aligned, the length rounded up to pages not
//      wrapping to 0, start + len not wrapping: else -EINVAL; len 0: 0;
//   3. under mmap W, VMA by VMA as madvise walks: a file mapping other
//      than shared anonymous memory fails the call with -EBADF (the VMAs
//      before it keep their new name); each other VMA part whose name
//      differs is split off at the range's edges or merged with a
//      neighbour that has the new name and is otherwise compatible
//      (vma_modify_name), and takes the name; a split refused by the map
//      count limit or memory fails with -EAGAIN (madvise's rule); holes
//      are skipped and make the result -ENOMEM once the walk is done.
// The empty name "" is a name like any other ("[anon:]" in maps), as in
// Linux; only nullptr removes a name.  Sealed VMAs may be named (naming
// does not discard: can_madvise_modify allows it).
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"
#include "mm/vma_query.h"

namespace vmspace::mm {

namespace {

// Linux ANON_VMA_NAME_MAX_LEN: the longest name, with its NUL.
constexpr std::size_t kAnonNameMaxLen = 80;

// Linux is_valid_name_char(): printable ASCII, except the characters
// that would make maps ambiguous or shell-unsafe.
bool is_valid_name_char(char ch) {
  return ch > 0x1f && ch < 0x7f && std::strchr("\\`$[]", ch) == nullptr;
}

// One VMA's part [start, end) takes `name` (Linux madvise_vma_behavior
// for __MADV_SET_ANON_VMA_NAME, then madvise_update_vma).  *covering: the
// VMA now covering the part (for the walk to go on after it).  Requires
// mmap W.
int name_vma_part(MmStruct* mm, Vma* vma, std::uint64_t start, std::uint64_t end, const AnonName& name,
                  Vma** covering) {
  if (vma->vm_file != nullptr && !vma->vm_file->anon_shmem) return -EBADF;
  *covering = vma;
  if (anon_name_eq(vma->anon_name, name)) return 0;  // nothing to change: no split
  int err = 0;
  Vma* v = vma_modify_name(mm, vma, start, end, name, &err);
  if (v == nullptr) return err == -ENOMEM ? -EAGAIN : err;
  // vma_modify_name returned v write-locked; a merge target has the name
  // (text) already and keeps its own copy.
  vma_assert_write_locked(v);
  if (!anon_name_eq(v->anon_name, name)) v->anon_name = name;
  *covering = v;
  return 0;
}

}  // namespace

int set_anon_vma_name(MmStruct* mm, std::uint64_t start, std::uint64_t len_in, const char* uname) {
  AnonName name;
  if (uname != nullptr) {
    const std::size_t n = strnlen(uname, kAnonNameMaxLen);  // reads at most 80 bytes
    if (n >= kAnonNameMaxLen) return -EINVAL;
    if (!std::all_of(uname, uname + n, is_valid_name_char)) return -EINVAL;
    try {
      name = std::make_shared<const std::string>(uname, n);  // one copy, shared by every VMA named now
    } catch (const std::bad_alloc&) {
      return -ENOMEM;
    }
  }
  if (!page_aligned(start)) return -EINVAL;
  const std::uint64_t len = page_align(len_in);
  if (len_in != 0 && len == 0) return -EINVAL;  // rounded up from a "negative" length
  const std::uint64_t end = start + len;
  if (end < start) return -EINVAL;
  if (end == start) return 0;

  mmap_write_lock(mm);
  // Linux madvise_walk_vmas().
  int unmapped_error = 0;
  int err = 0;
  std::uint64_t s = start;
  Vma* vma = find_vma(mm, s);
  for (;;) {
    if (vma == nullptr) {
      err = -ENOMEM;
      break;
    }
    if (s < vma->vm_start) {  // a hole: go on, report it at the end
      unmapped_error = -ENOMEM;
      s = vma->vm_start;
      if (s >= end) break;
    }
    const std::uint64_t part_end = std::min(vma->vm_end, end);
    Vma* covering = nullptr;
    err = name_vma_part(mm, vma, s, part_end, name, &covering);
    if (err != 0) break;
    // A merge with the next VMA may have covered more than the part: that
    // VMA had the name already.
    s = std::max(part_end, covering->vm_end);
    if (s >= end) break;
    vma = find_vma(mm, s);
  }
  if (err == 0) err = unmapped_error;
  mm_debug_validate(mm);
  mmap_write_unlock(mm);
  return err;
}

}  // namespace vmspace::mm
