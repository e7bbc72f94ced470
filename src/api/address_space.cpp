// SPDX-License-Identifier: MIT
#include "vmspace/address_space.h"

#include "mm/mm.h"
#include "mm/mmap_lock.h"

namespace vmspace {

namespace {
mm::MmConfig to_config(const AddressSpaceOptions& o) {
  mm::MmConfig c;
  c.mode = o.mode;
  c.dac_mmap_min_addr = o.dac_mmap_min_addr;
  c.mmap_min_addr = o.mmap_min_addr;
  c.cap_sys_rawio = o.cap_sys_rawio;
  c.max_map_count = o.max_map_count;
  c.mmap_base = o.mmap_base;
  c.overcommit_guess_pages = o.overcommit_limit_pages;
  return c;
}
}  // namespace

AddressSpace::AddressSpace(const AddressSpaceOptions& opts)
    : mm_(std::make_unique<mm::MmStruct>(to_config(opts))) {}

AddressSpace::~AddressSpace() = default;

long AddressSpace::mmap(std::uint64_t addr, std::uint64_t len, int prot, int flags, int fd,
                        std::uint64_t offset) {
  return mm::vm_mmap(mm_.get(), addr, len, prot, flags, fd, offset);
}

int AddressSpace::munmap(std::uint64_t addr, std::uint64_t len) {
  return mm::vm_munmap(mm_.get(), addr, len);
}

int AddressSpace::mprotect(std::uint64_t addr, std::uint64_t len, int prot) {
  return mm::do_mprotect(mm_.get(), addr, len, prot);
}

int AddressSpace::madvise(std::uint64_t addr, std::uint64_t len, int advice) {
  return mm::do_madvise(mm_.get(), addr, len, advice);
}

std::string AddressSpace::maps() const { return mm::show_maps(mm_.get()); }

bool AddressSpace::validate(std::string* why) const {
  mm::mmap_read_lock(mm_.get());
  bool ok = mm::mm_validate(mm_.get(), why);
  mm::mmap_read_unlock(mm_.get());
  return ok;
}

LockMode AddressSpace::mode() const { return mm_->mode; }

int AddressSpace::map_count() const {
  mm::mmap_read_lock(mm_.get());
  int n = mm_->map_count;
  mm::mmap_read_unlock(mm_.get());
  return n;
}

std::uint64_t AddressSpace::vm_stat(VmStat s) const {
  return mm_->events.read(static_cast<mm::VmEvent>(static_cast<unsigned>(s)));
}

}  // namespace vmspace
