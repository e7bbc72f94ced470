// SPDX-License-Identifier: MIT
// file.h - the identity of a file a VMA maps (Linux's struct file plus the
// inode numbers /proc/self/maps shows).  Shared anonymous mappings get a
// fresh shmem object per mmap() call (Linux's shmem_zero_setup), which is
// why two of them never merge while the pieces of one split mapping can.
// The page cache behind a file arrives with the memory layer.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace vmspace::mem {

struct File {
  // Immutable after creation.
  std::uint64_t ino;
  unsigned dev_major, dev_minor;
  std::string name;  // as /proc/self/maps prints it
  bool shmem;

  // References: one per VMA mapping the file.  get/put are atomic; the
  // last put frees the File (VMAs are freed after an RCU grace period, so
  // no reader can still reach it).
  std::atomic<long> refs{1};
};

// A new shmem object for one MAP_SHARED|MAP_ANONYMOUS mmap().
File* shmem_zero_setup();

inline File* get_file(File* f) {
  if (f != nullptr) f->refs.fetch_add(1, std::memory_order_relaxed);
  return f;
}

inline void fput(File* f) {
  // acq_rel: the last put sees every other holder's accesses.
  if (f != nullptr && f->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete f;
}

}  // namespace vmspace::mem
