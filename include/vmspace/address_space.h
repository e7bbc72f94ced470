// SPDX-License-Identifier: MIT
// address_space.h - the vmspace public API: a Linux-compatible virtual
// address space.
//
// The entry points are syscall-shaped: same arguments and flag values as
// Linux (PROT_*, MAP_*, MADV_* from <sys/mman.h>), results >= 0 on success
// and -errno on failure, and the same VMA boundaries after every merge and
// split.  All of them are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "vmspace/lock_mode.h"

namespace vmspace {

namespace mm {
struct MmStruct;
}

struct AddressSpaceOptions {
  LockMode mode = kDefaultLockMode;
  // vm.mmap_min_addr (fixed mappings below it need cap_sys_rawio) and the
  // floor for hints and searches (Linux's internal mmap_min_addr).
  std::uint64_t dac_mmap_min_addr = 65536;
  std::uint64_t mmap_min_addr = 65536;
  bool cap_sys_rawio = false;
  int max_map_count = 65530;  // vm.max_map_count
  std::uint64_t mmap_base = 0x7ffff7fff000;
  // Heuristic overcommit (vm.overcommit_memory = 0): a single writable
  // private request above this many pages (RAM + swap) fails with -ENOMEM.
  // 0 = unlimited.
  std::uint64_t overcommit_limit_pages = 0;
};

// Events counted as /proc/vmstat names them.
enum class VmStat { pgfault, vma_lock_success, vma_lock_abort, vma_lock_retry, vma_lock_miss };

class AddressSpace {
 public:
  explicit AddressSpace(const AddressSpaceOptions& opts = {});
  ~AddressSpace();
  AddressSpace(const AddressSpace&) = delete;
  AddressSpace& operator=(const AddressSpace&) = delete;

  // mmap(2): the mapped address, or -errno.  Anonymous memory only for now
  // (without MAP_ANONYMOUS: -EBADF).
  long mmap(std::uint64_t addr, std::uint64_t len, int prot, int flags, int fd = -1,
            std::uint64_t offset = 0);
  int munmap(std::uint64_t addr, std::uint64_t len);
  int mprotect(std::uint64_t addr, std::uint64_t len, int prot);
  int madvise(std::uint64_t addr, std::uint64_t len, int advice);

  // The /proc/self/maps text of this space, in the kernel's format.
  std::string maps() const;
  // Checks every structural invariant; on failure returns false and says
  // why.  Debug builds also run it after every modifying call.
  bool validate(std::string* why = nullptr) const;

  LockMode mode() const;
  int map_count() const;
  std::uint64_t vm_stat(VmStat s) const;

  // The internals, for the fault path, benchmarks and tests.
  mm::MmStruct* mm() const { return mm_.get(); }

 private:
  std::unique_ptr<mm::MmStruct> mm_;
};

}  // namespace vmspace
