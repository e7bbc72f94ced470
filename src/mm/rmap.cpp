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
  if (av->refcount.fetch_sub(1, std::memory_order_acq_rel) == 1) rcu::call(&av->rcu, anon_vma_free_rcu);
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

// Linux find_mergeable_anon_vma(): the next VMA's anon_vma, else the
// previous one's, if compatible.  Without fork every chain is singular, so
// any neighbour's anon_vma is reusable.
AnonVma* find_mergeable_anon_vma(Vma* vma) {
  MmStruct* mm = vma->vm_mm;
  if (Vma* next = vma_next(mm, vma); next != nullptr && anon_vma_compatible(vma, next))
    if (AnonVma* av = next->anon_vma.load(std::memory_order_acquire)) return av;
  if (Vma* prev = vma_prev(mm, vma); prev != nullptr && anon_vma_compatible(prev, vma))
    if (AnonVma* av = prev->anon_vma.load(std::memory_order_acquire)) return av;
  return nullptr;
}

}  // namespace

void set_anon_vma_hooks(const AnonVmaHooks* hooks) { tls_anon_vma_hooks = hooks; }

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
  av->rwsem.lock();
  // Room for the link first (Linux allocates the anon_vma_chain), under
  // the same hold as the push below: racing prepares share `av`.
  bool room = !fail_nth::should_fail(fail_nth::Site::rmap_link);  // injected (tests)
  if (room) {
    try {
      av->vmas.reserve(av->vmas.size() + 1);
    } catch (const std::bad_alloc&) {
      room = false;
    }
  }
  if (!room) {
    av->rwsem.unlock();
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
    av->vmas.push_back(vma);  // cannot throw: room reserved
    // Release: pairs with the acquire loads of faults that find it set.
    vma->anon_vma.store(av, std::memory_order_release);
    installed = true;
  }
  mm->page_table_lock.unlock();
  av->rwsem.unlock();
  if (!installed) put_anon_vma(av);
  return true;
}

bool anon_vma_link(Vma* vma, AnonVma* av) {
  if (av == nullptr) return true;
  if (fail_nth::should_fail(fail_nth::Site::rmap_link)) return false;  // injected (tests)
  av->rwsem.lock();
  try {
    av->vmas.push_back(vma);
  } catch (const std::bad_alloc&) {
    av->rwsem.unlock();
    return false;
  }
  av->rwsem.unlock();
  av->refcount.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void anon_vma_unlink(Vma* vma) {
  AnonVma* av = vma->anon_vma.load(std::memory_order_relaxed);
  if (av == nullptr) return;
  av->rwsem.lock();
  auto it = std::find(av->vmas.begin(), av->vmas.end(), vma);
  if (it != av->vmas.end()) av->vmas.erase(it);
  av->rwsem.unlock();
  put_anon_vma(av);
}

namespace {
void walk_list(const std::vector<Vma*>& vmas, std::uint64_t index,
               const std::function<void(Vma*, std::uint64_t)>& fn) {
  for (Vma* v : vmas) {
    if (index < v->vm_pgoff || index >= v->vm_pgoff + v->pages()) continue;
    fn(v, v->vm_start + ((index - v->vm_pgoff) << kPageShift));
  }
}
}  // namespace

void rmap_walk_anon(AnonVma* av, std::uint64_t index, const std::function<void(Vma*, std::uint64_t)>& fn) {
  av->rwsem.lock_shared();
  walk_list(av->vmas, index, fn);
  av->rwsem.unlock_shared();
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
