// SPDX-License-Identifier: MIT
// mincore.cpp - mincore(2), as Linux 6.18's mm/mincore.c decides it for
// anonymous memory (docs/research/linux-anon-surface.md section 5: the
// checks in order, the chunked walk, and what each page reports).
//
// Per page (one byte, 0 or 1):
//   - a present PTE: 1 (the shared zero page too, and PROT_NONE pages that
//     still have their frame);
//   - no PTE, or a guard marker: private anonymous memory 0; shared
//     anonymous memory asks its shmem object, so a page that was written
//     reads 1 even after MADV_DONTNEED or under a guard marker.
// vmspace has no swap, so there are no swap entries to look up.
#include <algorithm>
#include <cerrno>
#include <vector>

#include "mm/mm.h"
#include "mm/memory.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"

namespace vmspace::mm {

namespace {

// x86-64 USER_PTR_MAX as access_ok() applies it: a range may end at, but
// not beyond, the top of the kernel's user address space (probed on 6.18
// with four-level paging: start + len == 0x7ffffffff000 passes, one byte
// more is -ENOMEM).  It is the kernel's TASK_SIZE_MAX, not the task's
// TASK_SIZE: an ia32 task on a four-level kernel gets the 47-bit bound
// too (its own mappings end below 4 GiB, so a range above that fails with
// -ENOMEM later, when no VMA holds it); five-level paging raises it.
std::uint64_t user_ptr_max(const MmStruct* mm) {
  return mm->task_size > kTaskSize47 ? mm->task_size : kTaskSize47;
}

// Linux's walk covers at most one page of vec (4096 entries) per mmap_lock
// hold.
constexpr std::uint64_t kChunkPages = 4096;

// Is page `index` of the shmem object cached (mincore_page)?
bool shmem_page_resident(mem::File* file, std::uint64_t index) {
  file->i_pages.lock();
  const bool found = file->pages.find(index) != mem::kNoFrame;
  file->i_pages.unlock();
  return found;
}

// Linux do_mincore(), one round: fill vec for [addr, addr + pages pages),
// stopping at the end of the VMA holding addr.  Returns how many pages
// were filled, or -ENOMEM when no VMA holds addr.  Requires mmap R.
long mincore_round(MmStruct* mm, std::uint64_t addr, std::uint64_t pages, unsigned char* vec) {
  Vma* vma = vma_lookup(mm, addr);
  if (vma == nullptr) return -ENOMEM;
  const std::uint64_t end = std::min(vma->vm_end, addr + (pages << kPageShift));
  rcu::ReadGuard rcu;  // PageTables::lookup is a lockless walk
  std::uint64_t n = 0;
  for (std::uint64_t a = addr; a < end; a += kPageSize, ++n) {
    const mem::pte_t pte = mm->pgtables.lookup(a);
    unsigned char v;
    if (mem::pte_present(pte))
      v = 1;
    else  // none, or a marker: as if nothing were mapped (pte_none_mostly)
      v = vma->vm_file != nullptr && shmem_page_resident(vma->vm_file, linear_page_index(vma, a)) ? 1 : 0;
    vec[n] = v;
  }
  return static_cast<long>(n);
}

}  // namespace

int do_mincore(MmStruct* mm, std::uint64_t start, std::uint64_t len, unsigned char* vec) {
  if (!page_aligned(start)) return -EINVAL;
  // access_ok(start, len): no wrap, nothing above the user address space.
  if (start + len < start || start + len > user_ptr_max(mm)) return -ENOMEM;
  std::uint64_t pages = (len >> kPageShift) + ((len & (kPageSize - 1)) != 0 ? 1 : 0);
  // access_ok(vec, pages) cannot fail for a host buffer; a null vec stands
  // for an unwritable user buffer and fails at the first copy (-EFAULT).
  if (pages == 0) return 0;

  std::vector<unsigned char> tmp(static_cast<std::size_t>(std::min(pages, kChunkPages)));
  while (pages != 0) {
    mmap_read_lock(mm);
    const long filled = mincore_round(mm, start, std::min(pages, kChunkPages), tmp.data());
    mmap_read_unlock(mm);
    // An error leaves the entries of earlier rounds written.
    if (filled < 0) return static_cast<int>(filled);
    if (vec == nullptr) return -EFAULT;  // copy_to_user
    std::copy(tmp.begin(), tmp.begin() + filled, vec);
    vec += filled;
    pages -= static_cast<std::uint64_t>(filled);
    start += static_cast<std::uint64_t>(filled) << kPageShift;
  }
  return 0;
}

}  // namespace vmspace::mm
