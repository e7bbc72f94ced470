// SPDX-License-Identifier: MIT
// rmap.h - anon_vma: the reverse map of anonymous memory (Linux's
// mm/rmap.c).  Every private VMA that has anonymous pages is linked to one
// anon_vma; every anonymous frame points back to that anon_vma and carries
// its page index (vm_pgoff-based), so the owner of a frame can find every
// VMA (and address) that may map it.
//
// Without fork every anon_vma is its own root and each VMA links to exactly
// one anon_vma ("the chain is singular"); the chain is a list of VMAs.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "mm/mm_types.h"

namespace vmspace::mm {

struct AnonVma {
  // Protects `vmas`.  Write: linking/unlinking VMAs (anon_vma_prepare, VMA
  // split/merge/removal).  Read: rmap walks.  Lock order: after i_mmap,
  // before page_table_lock (lock_order.h).
  RwSemaphore rwsem{LockClass::anon_vma_rwsem};
  // The VMAs linked to this anon_vma (Linux's anon_vma_chain).  rwsem.
  std::vector<Vma*> vmas;
  // References: one per linked VMA.  The last unlink frees the anon_vma
  // after an RCU grace period (frames may still point at it until their
  // own deferred free).
  std::atomic<long> refcount{0};
  rcu::Head rcu;
};

// Linux vmf_anon_prepare()/__anon_vma_prepare(): make sure `vma` has an
// anon_vma, reusing a compatible neighbour's (find_mergeable_anon_vma) or
// allocating one, and install it under the anon_vma lock and the
// page_table_lock (seed 004: two racing first faults must not install two).
// Requires mmap R (or W).  Returns false only on allocation failure.
bool anon_vma_prepare(Vma* vma);

// Link `vma` to `av` (split, merge: the new/target VMA shares the anon_vma;
// Linux's anon_vma_clone).  Requires mmap W.  No-op for av == nullptr.
// `vma`'s range must already be final: walkers may see it as soon as it is
// linked.  False (nothing changed) when the link cannot be allocated.
[[nodiscard]] bool anon_vma_link(Vma* vma, AnonVma* av);
// Unlink `vma` from its anon_vma (VMA removal).  Requires mmap W.
void anon_vma_unlink(Vma* vma);

// Reverse-map walks: call fn(vma, address) for every VMA that may map page
// `index` of the anon_vma / file.  They take only the rmap lock (av->rwsem
// or file->i_mmap_rwsem, for read) and need no mm lock, as in Linux: every
// change to a linked VMA's vm_start, vm_end or vm_pgoff is made under that
// lock held for write (vma_prepare/vma_complete, expand_downwards), and a
// VMA is unlinked under it before it is freed.  fn runs with the lock held
// (it may take page-table locks, not mm locks).
void rmap_walk_anon(AnonVma* av, std::uint64_t index, const std::function<void(Vma*, std::uint64_t)>& fn);
void rmap_walk_file(mem::File* file, std::uint64_t index, const std::function<void(Vma*, std::uint64_t)>& fn);

// i_mmap membership of a file-backed VMA (no-ops for anonymous VMAs).
// vma_link_file/vma_unlink_file take file->i_mmap_rwsem for write;
// the __ forms require it held for write (vma_prepare/vma_complete).
// Linking can fail (false, nothing changed) for lack of memory, unless
// file_rmap_reserve() made room for it first; unlinking cannot fail.
[[nodiscard]] bool vma_link_file(Vma* vma);
void vma_unlink_file(Vma* vma);
void __vma_link_file(Vma* vma);  // requires room (file_rmap_reserve)
void __vma_unlink_file(Vma* vma);
// Make room for `n` more VMAs in file's i_mmap (file may be null).
// Requires mmap W.  False when the memory cannot be had.
[[nodiscard]] bool file_rmap_reserve(mem::File* file, std::size_t n);

// ---- test hook (deterministic tests of seed 004's race) ----------------
struct AnonVmaHooks {
  // anon_vma_prepare: `av` is the candidate for `vma` (reused from a
  // neighbour by find_mergeable_anon_vma, or freshly allocated), referenced;
  // neither its lock nor the page_table_lock is taken yet.
  void (*candidate)(Vma* vma, AnonVma* av, bool reused, void* arg) = nullptr;
  // anon_vma_prepare: under av's lock and the page_table_lock, the re-check
  // found `vma` still without an anon_vma; `av` is installed next.
  void (*installing)(Vma* vma, AnonVma* av, void* arg) = nullptr;
  void* arg = nullptr;
};
// Install hooks for the calling thread only (nullptr to remove).  The call
// points are compiled out of release builds.
void set_anon_vma_hooks(const AnonVmaHooks* hooks);

}  // namespace vmspace::mm
