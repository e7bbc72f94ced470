// SPDX-License-Identifier: MIT
// physical_memory.h - the frames address spaces allocate their pages from.
//
// An AddressSpace gets its pages (anonymous memory, page tables aside, and
// the page caches of its files) from a pool of 4 KiB frames.  By default
// each space makes its own (AddressSpaceOptions::phys_bytes); a
// PhysicalMemory made here can be shared by several spaces instead
// (AddressSpaceOptions::pool), which is what lets them share files
// (AddressSpace::send_file, and one page cache per backed file).
//
// Sizing: the limit is the most guest memory that can be resident at once
// in the spaces using the pool: every private page written and not freed,
// every page of every file read or written (page caches are not evicted),
// and shared anonymous memory in use.  Past it, a fault reports Fault::oom
// and calls that need frames fail with -ENOMEM (-EAGAIN for mlock's
// faulting in).  The pool grows on demand: only address space is reserved
// for the limit (per frame: 4 KiB, 64 bytes of descriptor and 8 of free
// list, with MAP_NORESERVE), and host memory is committed as frames are
// first used; freed frames return to the pool (after an RCU grace period),
// not to the host.  So a generous limit costs nothing until used -- but
// under vm.overcommit_memory=2 the host charges the whole reservation,
// and RLIMIT_AS counts it.  If the host cannot commit memory for a frame
// when it is first used, the process is killed (as for any memory it
// touches), not given -ENOMEM.
#pragma once

#include <cstdint>
#include <memory>

#include "vmspace/export.h"

namespace vmspace {

namespace mem {
class PhysMem;
}

class VMSPACE_API PhysicalMemory {
 public:
  struct Options {
    // The limit (rounded down to 4 KiB frames); at most 2^32 - 2 frames.
    std::uint64_t limit_bytes = 256ull << 20;
    // Touch every frame's host page now (benchmarks: later faults then
    // measure vmspace, not the host's first touch).  Costs the whole limit
    // in host memory and time up front.
    bool pretouch = false;
  };
  // Throws std::bad_alloc when the host refuses the reservation, and
  // std::length_error above 2^32 - 2 frames (just under 16 TiB); aborts
  // on a kernel without membarrier() (before Linux 4.14).
  explicit PhysicalMemory(const Options& opts);
  PhysicalMemory();
  // Preconditions: no AddressSpace uses the pool any more (spaces hold it
  // through a shared_ptr, so that holds when it is destroyed by the last
  // one of them).  Frames still allocated simply vanish.
  ~PhysicalMemory();
  PhysicalMemory(const PhysicalMemory&) = delete;
  PhysicalMemory& operator=(const PhysicalMemory&) = delete;

  std::uint64_t limit_bytes() const;
  // Bytes of frames not in use (approximate while other threads allocate
  // or free; freed frames count once their grace period has passed or is
  // pending).  Thread-safe.
  std::uint64_t free_bytes() const;

  // The pool's internals (for vmspace's own tools and tests).
  mem::PhysMem* internal() const { return phys_.get(); }

 private:
  std::unique_ptr<mem::PhysMem> phys_;
};

}  // namespace vmspace
