// SPDX-License-Identifier: MIT
#include "mem/file.h"

namespace vmspace::mem {

File* shmem_zero_setup() {
  // Inode numbers only need to be distinct; start where a fresh tmpfs
  // mount would hand them out.
  static std::atomic<std::uint64_t> next_ino{1};
  auto* f = new File{next_ino.fetch_add(1, std::memory_order_relaxed), 0, 1, "/dev/zero (deleted)", true};
  return f;
}

}  // namespace vmspace::mem
