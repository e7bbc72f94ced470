// SPDX-License-Identifier: MIT
// tlb.h - the soft MMU's "TLB": translations held without a lock, and the
// release of shared frames after them (Linux's mm_cpumask and mmu_gather,
// mm/mmu_gather.c).
//
// A thread holds a translation of this space (a frame's host address
// looked up in its page tables without any mm lock) while it is between
// mm_tlb_enter and mm_tlb_exit: an AccessScope for its whole life, and
// AddressSpace::read/write/fill around their copies (not around the faults
// they take).  Every such use is also inside an RCU read section.
//
// Freed frames are reused only after a grace period (PhysMem::put), so a
// stale translation of a frame that was freed reads the old data.  But a
// frame shared with a fork relative is not freed when this space lets go
// of it: the relative may then reuse it in place (copy-on-write reuse,
// do_wp_page) and write to it while a stale translation of this space
// still reads it -- this space would read another space's data.  So a PTE
// change that drops this space's mapping of a frame mapped elsewhere too
// hands the frame to an MmuGather, which drops the mapping and the
// reference at once if no thread of this space holds a translation, else
// after a grace period (which ends after every holder's read section).
// Until then the frame counts one mapping too many: the relative copies
// instead of reusing, and smaps shows the page shared a little longer.
//
// Ordering (Dekker): the releaser changes the PTE, then issues a seq_cst
// fence and reads the holder counts (seq_cst); a holder raises its count
// (a seq_cst RMW), then reads PTEs with seq_cst loads.  Either the
// releaser sees the holder, or the holder's lookups see the new PTE.
#pragma once

#include <cstdint>

#include "mem/phys_mem.h"
#include "mm/mm_types.h"

namespace vmspace::mm {

// Count this thread as holding translations of `mm` (nests).  Pairs with
// mm_tlb_exit on the same thread.  Lock-free; never blocks.  The PTE
// loads of the translations taken meanwhile must be seq_cst.
void mm_tlb_enter(MmStruct* mm);
void mm_tlb_exit(MmStruct* mm);

// After a seq_cst fence: does any thread hold translations of `mm`?  Call
// after the PTE changes whose old translations matter.
bool mm_tlb_held(MmStruct* mm);

// Frames whose PTEs in `mm` were just cleared or replaced while another
// space maps them too: each still holds this space's mapcount and
// reference, dropped by finish() (at once, or after a grace period if a
// thread of `mm` holds translations).  May be used under a PTE lock:
// finish() never blocks (it may allocate; if that fails, the frames keep
// the extra mapping and reference for good -- a leak, never a stale read).
class MmuGather {
 public:
  explicit MmuGather(MmStruct* mm) : mm_(mm) {}
  ~MmuGather() { finish(); }
  MmuGather(const MmuGather&) = delete;
  MmuGather& operator=(const MmuGather&) = delete;

  void add(mem::pfn_t pfn) {
    if (n_ == kBatch) finish();
    pfns_[n_++] = pfn;
  }
  void finish();

 private:
  static constexpr unsigned kBatch = 64;
  MmStruct* mm_;
  unsigned n_ = 0;
  mem::pfn_t pfns_[kBatch];
};

// Is the anonymous frame behind a PTE of this space mapped by another
// space too (so that dropping this mapping must go through an MmuGather)?
// Under the PTE's lock.  (A file's page needs no gather: every mapping of
// it sees the one page, whose owner never changes.)
inline bool frame_shared_anon(const mem::Frame& fr) {
  return (fr.mapping.load(std::memory_order_relaxed) & mem::kMappingAnon) &&
         fr.mapcount.load(std::memory_order_relaxed) > 1;
}

}  // namespace vmspace::mm
