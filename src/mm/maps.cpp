// SPDX-License-Identifier: MIT
// maps.cpp - /proc/self/maps text, in the kernel's exact format
// (fs/proc/task_mmu.c show_map_vma; research doc section 7).  Requires
// mmap R (which also keeps mm->brk stable for the [heap] name).
#include <cstdio>
#include <string>

#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/vma_query.h"

namespace vmspace::mm {

std::string vma_display_name(const Vma* vma) {
  // Linux get_vma_name(), in its order.  A file mapping shows its path,
  // unless it is shared anonymous memory that was named (only those can
  // be: set_anon_name refuses other files).
  const mem::File* file = vma->vm_file;
  const AnonName& anon = vma->anon_name;
  if (file != nullptr) return anon != nullptr ? "[anon_shmem:" + *anon + "]" : file->name;
  // "[heap]" (vma_is_initial_heap: any part of the VMA lies between
  // start_brk and the current break) wins over an anonymous name, as the
  // initial stack would ("[stack]"; vmspace has no initial stack).  The
  // relaxed load: see MmStruct::brk for why it is stable enough here.
  const MmStruct* mm = vma->vm_mm;
  if (vma->vm_start < mm->brk.load(std::memory_order_relaxed) && vma->vm_end > mm->start_brk) return "[heap]";
  if (anon != nullptr) return "[anon:" + *anon + "]";
  return {};
}

namespace {

void show_map_vma(std::string& out, const Vma* vma) {
  const mem::File* file = vma->vm_file;
  const std::uint64_t offset = file != nullptr ? vma->vm_pgoff << kPageShift : 0;
  char buf[160];
  int n = std::snprintf(buf, sizeof buf, "%08llx-%08llx %c%c%c%c %08llx %02x:%02x %llu ",
                        static_cast<unsigned long long>(vma->vm_start),
                        static_cast<unsigned long long>(vma->vm_end),
                        (vma->vm_flags & VM_READ) ? 'r' : '-', (vma->vm_flags & VM_WRITE) ? 'w' : '-',
                        (vma->vm_flags & VM_EXEC) ? 'x' : '-', (vma->vm_flags & VM_MAYSHARE) ? 's' : 'p',
                        static_cast<unsigned long long>(offset), file != nullptr ? file->dev_major : 0,
                        file != nullptr ? file->dev_minor : 0,
                        static_cast<unsigned long long>(file != nullptr ? file->ino : 0));
  out.append(buf, static_cast<std::size_t>(n));
  const std::string name = vma_display_name(vma);
  if (file != nullptr || !name.empty()) {  // a file always has its name column
    // seq_pad(): pad to 25 + 6 * sizeof(void*) - 1 columns, then a space.
    constexpr std::size_t kWidth = 25 + 6 * sizeof(void*) - 1;
    if (static_cast<std::size_t>(n) < kWidth) out.append(kWidth - static_cast<std::size_t>(n), ' ');
    out.push_back(' ');
    out += name;
  }
  out.push_back('\n');
}

}  // namespace

std::string show_maps_locked(MmStruct* mm) {
  std::string out;
  mm->mm_mt.for_each(0, tree::kMaxAddr, [&](const tree::Entry& e) { show_map_vma(out, e.as<Vma>()); });
  return out;
}

// Each line is printed while its VMA is read-locked, as Linux 6.17+ reads
// /proc/pid/maps (lock_next_vma): in the per-VMA lock modes a reader no
// longer holds the mmap_lock across the walk, so mmap/munmap elsewhere in
// the space does not wait for it (vmspace bench's `maps` workload: with
// two readers looping, the writer's median mmap went from ~6 ms to the
// lone writer's figure).  mmap_lock mode: mmap R for the whole walk.
std::string show_maps(MmStruct* mm) {
  std::string out;
  vma_walk(mm, 0, tree::kMaxAddr, [&](const Vma* vma) { show_map_vma(out, vma); });
  return out;
}

}  // namespace vmspace::mm
