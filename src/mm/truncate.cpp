// SPDX-License-Identifier: MIT
#include "mm/truncate.h"
#include "sync/tls.h"

#include <algorithm>
#include <cerrno>
#include <mutex>

#include "mm/memory.h"
#include "mm/mmu_notifier.h"
#include "vmspace/address_space.h"

namespace vmspace::mm {

namespace {
VMSPACE_TLS_FAST thread_local const TruncateHooks* tls_truncate_hooks = nullptr;
}  // namespace

void set_truncate_hooks(const TruncateHooks* hooks) { tls_truncate_hooks = hooks; }

void unmap_mapping_pages(mem::File* file, std::uint64_t first, std::uint64_t last, bool even_cows) {
  if (first >= last) return;
  file->i_mmap_rwsem.lock_shared();
#if defined(VMSPACE_DEBUG_CHECKS)
  if (const TruncateHooks* h = tls_truncate_hooks; h != nullptr && h->i_mmap_locked != nullptr)
    h->i_mmap_locked(file, h->arg);
#endif
  for (Vma* v : file->i_mmap) {
    std::uint64_t start, end;
    if (!vma_file_range(v, first, last, &start, &end)) continue;
    // Without even_cows only the file's own pages go (private copies
    // stay); a shared mapping has nothing else, so vm_flags (which
    // i_mmap_rwsem does not guard) need not be read.  Each space's own
    // notifiers, called under i_mmap_rwsem read only (no mm lock: v's
    // space cannot go away while v is in i_mmap).  MADV_REMOVE comes here
    // too: it punches a hole in the file, in every mapping of it.
    MmuNotifierRange inv(v->vm_mm, start, end, InvalidateReason::truncate);
    if (even_cows)
      zap_vma_range(v, start, end, ZapMarkers::keep);
    else
      zap_file_pages(v, start, end);
  }
  file->i_mmap_rwsem.unlock_shared();
}

int shmem_truncate(mem::File* file, std::uint64_t size) {
  if (size > static_cast<std::uint64_t>(INT64_MAX)) return -EINVAL;
  std::uint64_t old;
  if (file->can_writeback()) {
    // Under wb_io: no write-back writes past the new size after this.
    std::lock_guard<std::mutex> io(file->wb_io);
    if (const int r = file->backing->truncate(size); r != 0) return r;
    old = mem::file_set_size(file, size);
  } else {
    old = mem::file_set_size(file, size);
  }
  if (size >= old) return 0;
  const std::uint64_t first = (size + kPageSize - 1) >> kPageShift;
  mem::shmem_truncate_range(file, first, UINT64_MAX);
  unmap_mapping_pages(file, first, UINT64_MAX, /*even_cows=*/true);
  // The bytes past the size in the last page read as zeros from now on
  // (and again if the file grows).
  if (size % kPageSize != 0) mem::shmem_zero_tail(file, size >> kPageShift, size % kPageSize);
  return 0;
}

int shmem_punch_hole(mem::File* file, std::uint64_t first, std::uint64_t last) {
  if (first >= last) return 0;
  if (file->can_writeback()) {
    // Under wb_io: a page written back after this would fill the hole
    // again; once out of the cache it is not written (file_write_page).
    std::lock_guard<std::mutex> io(file->wb_io);
    if (const int r = file->backing->punch_hole(first << kPageShift, (last - first) << kPageShift); r != 0) return r;
    mem::shmem_truncate_range(file, first, last);
  } else {
    mem::shmem_truncate_range(file, first, last);
  }
  unmap_mapping_pages(file, first, last, /*even_cows=*/false);
  return 0;
}

}  // namespace vmspace::mm
