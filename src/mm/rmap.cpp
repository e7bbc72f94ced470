// SPDX-License-Identifier: MIT
// rmap.cpp - anon_vma preparation, linking and the reverse-map walk.
#include "mm/rmap.h"
#include "sync/tls.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <new>

#include "mm/memory.h"
#include "mm/mmap_lock.h"
#include "sync/fail_nth.h"
#include "mm/vma.h"

namespace vmspace::mm {

namespace {

VMSPACE_TLS_FAST thread_local const AnonVmaHooks* tls_anon_vma_hooks = nullptr;

void anon_vma_free_rcu(rcu::Head* h) {
  AnonVma* av = reinterpret_cast<AnonVma*>(reinterpret_cast<char*>(h) - offsetof(AnonVma, rcu));
  delete av;
}

void put_anon_vma(AnonVma* av) {
  static_assert(std::is_standard_layout_v<AnonVma>);
  // A child's reference keeps its parent: the last put walks up.
  while (av != nullptr && av->refcount.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    AnonVma* parent = av->parent != av ? av->parent : nullptr;
    rcu::call(&av->rcu, anon_vma_free_rcu);
    av = parent;
  }
}

// Linux anon_vma_compatible(): could `a` and `b` (adjacent) end up merged,
// so that sharing an anon_vma is worthwhile?  Same file, flags equal apart
// from access bits (and the ones merging ignores), linear pgoff.
bool anon_vma_compatible(const Vma* a, const Vma* b) {
  return a->vm_end == b->vm_start && a->vm_file == b->vm_file &&
         // An execute-only VMA carries the execute-only protection key in
         // its vm_flags (pkey bits, not access bits), so it never shares
         // with a VMA without it (host-checked: a guard-installed --x VMA
         // and its r-- neighbour get two anon_vmas).
         ((a->vm_flags ^ b->vm_flags) & ~(VM_ACCESS_FLAGS | VM_IGNORE_MERGE)) == 0 &&
         b->vm_pgoff == a->vm_pgoff + a->pages();
}

// Linux reusable_anon_vma(): `old`'s anon_vma, if `a` and `b` are
// compatible and old's chain is singular (an anon_vma shared with a fork
// family is not handed to a new VMA).  The acquire load orders the chain
// read after the one write that may race with it (anon_vma_prepare of
// `old` under mmap R, which fills the chain before it publishes anon_vma).
AnonVma* reusable_anon_vma(const Vma* old, const Vma* a, const Vma* b) {
  if (!anon_vma_compatible(a, b)) return nullptr;
  AnonVma* av = old->anon_vma.load(std::memory_order_acquire);
  return av != nullptr && old->anon_vma_chain.size() == 1 ? av : nullptr;
}

// Linux find_mergeable_anon_vma(): the next VMA's anon_vma, else the
// previous one's, if reusable.
AnonVma* find_mergeable_anon_vma(Vma* vma) {
  MmStruct* mm = vma->vm_mm;
  if (Vma* next = vma_next(mm, vma))
    if (AnonVma* av = reusable_anon_vma(next, vma, next)) return av;
  if (Vma* prev = vma_prev(mm, vma)) return reusable_anon_vma(prev, prev, vma);
  return nullptr;
}

}  // namespace

void set_anon_vma_hooks(const AnonVmaHooks* hooks) { tls_anon_vma_hooks = hooks; }

bool vma_is_fork_child(const Vma* vma) {
  return vma->anon_vma.load(std::memory_order_acquire) != nullptr && vma->anon_vma_chain.size() != 1;
}

bool anon_vma_prepare(Vma* vma) {
  if (vma->anon_vma.load(std::memory_order_acquire) != nullptr) return true;
  MmStruct* mm = vma->vm_mm;
  mmap_assert_locked(mm);
  AnonVma* av = find_mergeable_anon_vma(vma);
  AnonVma* allocated = nullptr;
  if (av == nullptr) {
    allocated = fail_nth::should_fail(fail_nth::Site::anon_vma) ? nullptr : new (std::nothrow) AnonVma;
    if (allocated == nullptr) return false;
    allocated->refcount.store(1, std::memory_order_relaxed);  // dropped below if unused
    allocated->num_children = 1;                               // a root is its own parent
    av = allocated;
  } else {
    av->refcount.fetch_add(1, std::memory_order_relaxed);
  }
#if defined(VMSPACE_DEBUG_CHECKS)
  if (const AnonVmaHooks* h = tls_anon_vma_hooks; h != nullptr && h->candidate != nullptr)
    h->candidate(vma, av, allocated == nullptr, h->arg);
#endif
  // Two faults on this VMA (under mmap R or VMA read locks) may race here,
  // each with a different candidate anon_vma (seed 004): the
  // page_table_lock makes exactly one of them install theirs.
  anon_vma_lock_write(av);
  // Room for the links first (Linux allocates the anon_vma_chain), under
  // the same hold as the pushes below (racing prepares may hold the same
  // candidate or different ones: each reserves room in its own; only the
  // installer, under the page_table_lock, pushes).
  bool room = !fail_nth::should_fail(fail_nth::Site::rmap_link);  // injected (tests)
  if (room) {
    try {
      av->vmas.reserve(av->vmas.size() + 1);  // the buckets; the node below may still fail
    } catch (const std::bad_alloc&) {
      room = false;
    }
  }
  std::vector<AnonVma*> chain;
  if (room) {
    try {
      chain.reserve(1);
    } catch (const std::bad_alloc&) {
      room = false;
    }
  }
  if (!room) {
    anon_vma_unlock_write(av);
    put_anon_vma(av);
    return false;
  }
  mm->page_table_lock.lock();
  bool installed = false;
  if (vma->anon_vma.load(std::memory_order_relaxed) == nullptr) {
#if defined(VMSPACE_DEBUG_CHECKS)
    if (const AnonVmaHooks* h = tls_anon_vma_hooks; h != nullptr && h->installing != nullptr)
      h->installing(vma, av, h->arg);
#endif
    try {
      av->vmas.insert(vma);
      installed = true;
    } catch (const std::bad_alloc&) {
    }
  }
  if (installed) {
    chain.push_back(av);  // cannot throw: room reserved
    vma->anon_vma_chain.swap(chain);
    av->num_active_vmas++;
    // Release: pairs with the acquire loads of faults (and of neighbours'
    // find_mergeable_anon_vma) that find it set; the chain is filled first.
    vma->anon_vma.store(av, std::memory_order_release);
  }
  const bool lost = !installed && vma->anon_vma.load(std::memory_order_relaxed) == nullptr;
  mm->page_table_lock.unlock();
  anon_vma_unlock_write(av);
  if (!installed) put_anon_vma(av);
  return !lost;  // lost: the link's node could not be allocated
}

namespace {

// Link `vma` into every anon_vma of `chain` (all of one family; the root
// lock is held) and append them to vma's chain, which has room.  Strong
// guarantee: on bad_alloc nothing stays linked.
void link_chain(Vma* vma, const std::vector<AnonVma*>& chain) {
  std::size_t done = 0;
  try {
    for (; done < chain.size(); ++done) chain[done]->vmas.insert(vma);
  } catch (const std::bad_alloc&) {
    while (done > 0) chain[--done]->vmas.erase(vma);
    throw;
  }
  for (AnonVma* av : chain) {
    vma->anon_vma_chain.push_back(av);
    av->refcount.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace

bool anon_vma_clone(Vma* dst, const Vma* src) {
  if (src->anon_vma_chain.empty()) return true;
  if (fail_nth::should_fail(fail_nth::Site::rmap_link)) return false;  // injected (tests)
  try {
    dst->anon_vma_chain.reserve(src->anon_vma_chain.size() + 1);  // + 1: anon_vma_fork's own
  } catch (const std::bad_alloc&) {
    return false;
  }
  AnonVma* root = src->anon_vma_chain.front()->root;
  anon_vma_lock_write(root);
  try {
    link_chain(dst, src->anon_vma_chain);
  } catch (const std::bad_alloc&) {
    anon_vma_unlock_write(root);
    return false;
  }
  // Fork: reuse, oldest first, an anon_vma that no VMA uses any more and
  // at most one child shares (Linux: it saves a level per fork of a
  // process that forks again).  The root is never reused: it counts
  // itself among its children.
  if (dst->anon_vma.load(std::memory_order_relaxed) == nullptr &&
      src->anon_vma.load(std::memory_order_relaxed) != nullptr) {
    for (AnonVma* av : dst->anon_vma_chain) {
      if (av->num_children < 2 && av->num_active_vmas == 0) {
        dst->anon_vma.store(av, std::memory_order_release);
        break;
      }
    }
  }
  if (AnonVma* av = dst->anon_vma.load(std::memory_order_relaxed)) av->num_active_vmas++;
  anon_vma_unlock_write(root);
  return true;
}

bool anon_vma_fork(Vma* vma, const Vma* pvma) {
  vma->anon_vma.store(nullptr, std::memory_order_relaxed);  // vm_area_dup copied the parent's
  AnonVma* pav = pvma->anon_vma.load(std::memory_order_relaxed);
  if (pav == nullptr) return true;
  if (!anon_vma_clone(vma, pvma)) return false;
  if (vma->anon_vma.load(std::memory_order_relaxed) != nullptr) return true;  // reused one
  AnonVma* av = fail_nth::should_fail(fail_nth::Site::anon_vma) ? nullptr : new (std::nothrow) AnonVma;
  if (av == nullptr) {
    unlink_anon_vmas(vma);
    return false;
  }
  av->root = pav->root;
  av->parent = pav;
  av->refcount.store(1, std::memory_order_relaxed);  // vma's link
  anon_vma_lock_write(av);
  try {
    av->vmas.insert(vma);
  } catch (const std::bad_alloc&) {
    anon_vma_unlock_write(av);
    delete av;  // never visible to anyone
    unlink_anon_vmas(vma);
    return false;
  }
  vma->anon_vma_chain.push_back(av);  // room reserved by anon_vma_clone
  av->num_active_vmas = 1;
  pav->num_children++;
  pav->refcount.fetch_add(1, std::memory_order_relaxed);  // the child's reference
  vma->anon_vma.store(av, std::memory_order_release);
  anon_vma_unlock_write(av);
  return true;
}

void unlink_anon_vmas(Vma* vma) {
  if (vma->anon_vma_chain.empty()) return;
  AnonVma* root = vma->anon_vma_chain.front()->root;
  anon_vma_lock_write(root);
  for (AnonVma* av : vma->anon_vma_chain) {
    av->vmas.erase(vma);
    if (av->vmas.empty()) av->parent->num_children--;  // Linux: its tree is empty
  }
  if (AnonVma* av = vma->anon_vma.load(std::memory_order_relaxed)) av->num_active_vmas--;
  anon_vma_unlock_write(root);
  std::vector<AnonVma*> chain;
  chain.swap(vma->anon_vma_chain);
  for (AnonVma* av : chain) put_anon_vma(av);
}

namespace {
template <class List>
void walk_list(const List& vmas, std::uint64_t index,
               const std::function<void(Vma*, std::uint64_t)>& fn) {
  for (Vma* v : vmas) {
    if (index < v->vm_pgoff || index >= v->vm_pgoff + v->pages()) continue;
    fn(v, v->vm_start + ((index - v->vm_pgoff) << kPageShift));
  }
}
}  // namespace

void rmap_walk_anon(AnonVma* av, std::uint64_t index, const std::function<void(Vma*, std::uint64_t)>& fn) {
  anon_vma_lock_read(av);
  walk_list(av->vmas, index, fn);
  anon_vma_unlock_read(av);
}

void rmap_walk_file(mem::File* file, std::uint64_t index, const std::function<void(Vma*, std::uint64_t)>& fn) {
  file->i_mmap_rwsem.lock_shared();
  walk_list(file->i_mmap, index, fn);
  file->i_mmap_rwsem.unlock_shared();
}

bool file_rmap_reserve(mem::File* file, std::size_t n) {
  if (file == nullptr) return true;
  if (fail_nth::should_fail(fail_nth::Site::rmap_link)) return false;  // injected (tests)
  bool ok = true;
  file->i_mmap_rwsem.lock();
  try {
    // Room for every slot reserved and not yet used, by any address space
    // (a file can be mapped by several): a reservation holds until its
    // push, even if another space links meanwhile.
    file->i_mmap.reserve(file->i_mmap.size() + file->i_mmap_reserved + n);
    file->i_mmap_reserved += n;
  } catch (const std::bad_alloc&) {
    ok = false;
  }
  file->i_mmap_rwsem.unlock();
  return ok;
}

void __vma_link_file(Vma* vma) {
  mem::File* file = vma->vm_file;
  if (file == nullptr) return;
  file->i_mmap_rwsem.assert_write_locked();
  // The caller reserved room (file_rmap_reserve): no allocation here.  A
  // reservation a failed call never used stays counted: only spare room.
  if (file->i_mmap_reserved == 0 || file->i_mmap.size() == file->i_mmap.capacity()) {
    std::fprintf(stderr, "vmspace: linking a VMA into i_mmap without a reservation\n");
    std::abort();
  }
  --file->i_mmap_reserved;
  file->i_mmap.push_back(vma);
}

void __vma_unlink_file(Vma* vma) {
  if (vma->vm_file == nullptr) return;
  auto& list = vma->vm_file->i_mmap;
  vma->vm_file->i_mmap_rwsem.assert_write_locked();
  auto it = std::find(list.begin(), list.end(), vma);
  if (it != list.end()) list.erase(it);
}

bool vma_link_file(Vma* vma) {
  if (vma->vm_file == nullptr) return true;
  if (!file_rmap_reserve(vma->vm_file, 1)) return false;
  vma->vm_file->i_mmap_rwsem.lock();
  __vma_link_file(vma);
  vma->vm_file->i_mmap_rwsem.unlock();
  return true;
}

void vma_unlink_file(Vma* vma) {
  if (vma->vm_file == nullptr) return;
  vma->vm_file->i_mmap_rwsem.lock();
  __vma_unlink_file(vma);
  vma->vm_file->i_mmap_rwsem.unlock();
}

}  // namespace vmspace::mm
