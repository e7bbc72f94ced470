// SPDX-License-Identifier: MIT
// rmap.h - anon_vma: the reverse map of anonymous memory (Linux's
// mm/rmap.c).  Every private VMA that has anonymous pages is linked to one
// anon_vma; every anonymous frame points back to that anon_vma and carries
// its page index (vm_pgoff-based), so the owner of a frame can find every
// VMA (and address) that may map it.
//
// fork makes families (Linux's anon_vma hierarchy): a child VMA gets an
// anon_vma of its own whose parent is the parent VMA's anon_vma, and is
// linked into every anon_vma its parent VMA was linked to (its "chain"),
// so that a page faulted in any ancestor finds every VMA of every
// descendant that may still map it.  One lock serves a whole family: the
// root anon_vma's rwsem.  A VMA that never forked or was forked from a
// VMA without anonymous memory has a chain of exactly its own anon_vma
// ("singular"); merges treat the others specially (vma_is_fork_child).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <unordered_set>
#include <vector>

#include "mem/phys_mem.h"
#include "mm/memory.h"  // linear_page_index
#include "mm/mm_types.h"

namespace vmspace::mm {

struct AnonVma {
  // The family's root and this anon_vma's parent (both itself for a root,
  // made by anon_vma_prepare; anon_vma_fork makes the others).  Static.
  // A child holds a reference on its parent, so every ancestor (the root
  // with its lock included) lives as long as any descendant.
  AnonVma* root = this;
  AnonVma* parent = this;
  // Used on the root only: it protects every anon_vma of the family (all
  // the fields below but refcount).  Write: linking/unlinking VMAs
  // (anon_vma_prepare, anon_vma_clone, anon_vma_fork, unlink_anon_vmas,
  // VMA split/merge/removal).  Read: rmap walks.  Lock order: after
  // i_mmap, before page_table_lock (lock_order.h).  Take it with
  // anon_vma_lock_write()/anon_vma_lock_read().
  RwSemaphore rwsem{LockClass::anon_vma_rwsem};
  // The VMAs linked to this anon_vma: those whose chain holds it (Linux's
  // rb_root of anon_vma_chain entries; a hash set here, so that unlinking
  // one of the many VMAs a fork family links to its root is O(1)).
  // Root's rwsem.
  std::unordered_set<Vma*> vmas;
  // Linux's counts that decide whether fork may reuse this anon_vma for a
  // child VMA instead of making one (anon_vma_clone): anon_vmas whose
  // parent this is (a root counts itself), and VMAs whose anon_vma this is.
  // Root's rwsem.
  long num_children = 0;
  long num_active_vmas = 0;
  // References: one per linked VMA, one per child anon_vma.  The last put
  // frees the anon_vma after an RCU grace period (frames may still point
  // at it until their own deferred free) and puts its parent.  RMW only.
  std::atomic<long> refcount{0};
  rcu::Head rcu;
};

inline void anon_vma_lock_write(AnonVma* av) { av->root->rwsem.lock(); }
inline void anon_vma_unlock_write(AnonVma* av) { av->root->rwsem.unlock(); }
inline void anon_vma_lock_read(AnonVma* av) { av->root->rwsem.lock_shared(); }
inline void anon_vma_unlock_read(AnonVma* av) { av->root->rwsem.unlock_shared(); }

// Linux folio_add_new_anon_rmap(): a frame just allocated for `vma` at
// `addr` becomes one of its anonymous pages, mapped once: it points back
// to the VMA's own anon_vma (which it must have), at the VMA's linear
// index.  Before the PTE that maps it is published (release), which
// orders these stores for lockless readers.
inline void folio_add_new_anon_rmap(mem::Frame& fr, const Vma* vma, std::uint64_t addr) {
  AnonVma* av = vma->anon_vma.load(std::memory_order_acquire);
  fr.mapping.store(reinterpret_cast<std::uintptr_t>(av) | mem::kMappingAnon, std::memory_order_relaxed);
  fr.index.store(linear_page_index(vma, addr), std::memory_order_relaxed);
  fr.mapcount.store(1, std::memory_order_relaxed);
}

// Linux vmf_anon_prepare()/__anon_vma_prepare(): make sure `vma` has an
// anon_vma, reusing a compatible neighbour's (find_mergeable_anon_vma) or
// allocating one, and install it under the anon_vma lock and the
// page_table_lock (seed 004: two racing first faults must not install two).
// Requires mmap R (or W).  Returns false only on allocation failure.
bool anon_vma_prepare(Vma* vma);

// Linux anon_vma_clone(): link `dst` to every anon_vma `src` is linked to
// (split, merge, mremap: the new/target VMA shares src's family).  dst's
// chain must be empty; dst->anon_vma is whatever the caller set (src's, or
// null for fork, which then may reuse an anon_vma of the chain that no
// VMA uses any more and only one child shares, as Linux does).  Requires
// mmap W of dst's space (and src's).  dst's range must already be final:
// walkers may see it as soon as it is linked.  False (nothing changed)
// when the links cannot be allocated.
[[nodiscard]] bool anon_vma_clone(Vma* dst, const Vma* src);
// Linux anon_vma_fork(): give the child's copy `vma` of `pvma` its anon
// state: the clone of pvma's chain, plus (unless clone reused one) a new
// anon_vma whose parent is pvma's and whose root is the family's.  No-op
// when pvma has no anon_vma.  Requires both spaces' mmap W.  False
// (nothing linked) when memory cannot be had.
[[nodiscard]] bool anon_vma_fork(Vma* vma, const Vma* pvma);
// Linux unlink_anon_vmas(): unlink `vma` from every anon_vma of its chain
// (VMA removal; mremap's DONTUNMAP forgetting).  Requires mmap W.  The
// chain is empty afterwards; vma->anon_vma is left for the caller.
void unlink_anon_vmas(Vma* vma);
// Linux vma_is_fork_child(): `vma` has an anon_vma and a chain of more
// than that one (it, or a VMA it was split from, came from fork).  Merges
// refuse to give such a VMA's anon_vma to, or take one into, a VMA without
// one.  Requires mmap R (or the VMA's read lock, after its anon_vma was
// loaded with acquire).
bool vma_is_fork_child(const Vma* vma);

// Reverse-map walks: call fn(vma, address) for every VMA that may map page
// `index` of the anon_vma / file.  They take only the rmap lock (av->rwsem
// or file->i_mmap_rwsem, for read) and need no mm lock, as in Linux: every
// change to a linked VMA's vm_start, vm_end or vm_pgoff is made under that
// lock held for write (vma_prepare/vma_complete, expand_downwards), and a
// VMA is unlinked under it before it is freed.  fn runs with the lock held
// (it may take page-table locks, not mm locks).  An anonymous walk visits
// the VMAs of every descendant that may map the page (anon_vma_fork links
// them into the ancestors' anon_vmas).
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
