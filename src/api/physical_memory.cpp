// SPDX-License-Identifier: MIT
#include "vmspace/physical_memory.h"

#include "mem/phys_mem.h"

namespace vmspace {

namespace {
mem::PhysMemOptions to_phys_options(const PhysicalMemory::Options& o) {
  mem::PhysMemOptions po;
  po.capacity_bytes = o.limit_bytes;
  po.pretouch = o.pretouch;
  return po;
}
}  // namespace

PhysicalMemory::PhysicalMemory(const Options& opts) : phys_(std::make_unique<mem::PhysMem>(to_phys_options(opts))) {}
PhysicalMemory::PhysicalMemory() : PhysicalMemory(Options{}) {}
PhysicalMemory::~PhysicalMemory() = default;

std::uint64_t PhysicalMemory::limit_bytes() const { return phys_->capacity_frames() * mem::kFrameSize; }
std::uint64_t PhysicalMemory::free_bytes() const { return phys_->free_frames() * mem::kFrameSize; }

}  // namespace vmspace
