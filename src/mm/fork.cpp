// SPDX-License-Identifier: MIT
// fork.cpp - copying an address space (Linux's dup_mmap()).
//
// The order, and why (seed 001, "kernel/fork: mark VMAs as locked before
// copying pages during fork"; Linux bugzilla 217624):
//   1. the parent's mmap_lock for write, then the child's (subclass 1);
//   2. EVERY parent VMA write-locked before anything is copied.  A page
//      fault under a VMA read lock does not take the mmap_lock: without the
//      VMA write locks, a write fault in the parent could run
//      anon_vma_prepare() and install a page while fork is between
//      anon_vma_fork() and copy_page_range() of that VMA: the child would
//      then map a page whose anon_vma its VMA is not linked to (an
//      incomplete reverse map), or miss the write-protect and share a
//      writable page with the parent (memory corruption: 6.4's bug);
//   3. each VMA: duplicate it into the child (VM_DONTCOPY skipped,
//      VM_WIPEONFORK copied without pages, VM_LOCKED / VM_LOCKONFAULT
//      cleared), give it its anon state (anon_vma_fork), link it (tree,
//      the file's i_mmap), copy its page tables if they hold what a fault
//      cannot bring back (vma_needs_copy);
//   4. release the child's lock, then the parent's (which ends every VMA
//      write lock at once);
//   5. (AddressSpace::fork) wait for a grace period before the child is
//      handed out: a lockless writer (AccessScope) may hold a translation
//      of a parent page taken before it was write-protected, and its
//      stores must not reach the shared page once fork has returned
//      (Linux flushes the parent's TLB before fork returns).  Inside a
//      scope fork cannot wait: it copies writable private pages at once
//      instead (copy_writable), so no shared page is writable anywhere.
//      Until the grace period ends the parent runs again, and a store
//      through an older translation must not be lost: a copy-on-write
//      fault of the parent in that window keeps the frame (where those
//      stores land) and gives the pending child a copy instead
//      (do_wp_page, MmStruct::fork_child).
#include <cerrno>
#include <new>
#include <thread>

#include "mm/memory.h"
#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/rmap.h"
#include "mm/vma.h"
#include "sync/tls.h"

namespace vmspace::mm {

namespace {
VMSPACE_TLS_FAST thread_local const ForkHooks* tls_fork_hooks = nullptr;

#if defined(VMSPACE_DEBUG_CHECKS)
#define FORK_HOOK(name, ...)                                                      \
  do {                                                                            \
    if (const ForkHooks* h_ = tls_fork_hooks; h_ != nullptr && h_->name != nullptr) \
      h_->name(__VA_ARGS__, h_->arg);                                             \
  } while (0)
#else
#define FORK_HOOK(name, ...) \
  do {                       \
  } while (0)
#endif

// Copy one parent VMA into the child.  0 or -ENOMEM (what was linked stays
// and is torn down with the child).
int dup_vma(MmStruct* mm, Vma* mpnt, bool copy_writable) {
  if ((mpnt->vm_flags & VM_ACCOUNT) && !vm_enough_memory(mm, mpnt->pages())) return -ENOMEM;
  // Flags the child does not inherit: memory locks (mlock(2): "not
  // inherited by a child created via fork").
  Vma* tmp = vm_area_alloc(mm, mpnt->vm_start, mpnt->vm_end, mpnt->vm_flags & ~VM_LOCKED_MASK, mpnt->vm_pgoff);
  if (tmp == nullptr) {
    if (mpnt->vm_flags & VM_ACCOUNT) vm_unacct_memory(mm, mpnt->pages());
    return -ENOMEM;
  }
  tmp->vm_file = mem::get_file(mpnt->vm_file);
  tmp->anon_name = mpnt->anon_name;  // names are inherited (dup_anon_vma_name); not attached yet
  // VM_WIPEONFORK: the child's VMA starts empty, as if never faulted.
  const bool wipe = (mpnt->vm_flags & VM_WIPEONFORK) != 0;
  if (!wipe && !anon_vma_fork(tmp, mpnt)) {
    delete tmp;  // never linked anywhere; drops its file reference
    if (mpnt->vm_flags & VM_ACCOUNT) vm_unacct_memory(mm, mpnt->pages());
    return -ENOMEM;
  }
  if (!vma_link(mm, tmp)) {
    unlink_anon_vmas(tmp);
    delete tmp;
    if (mpnt->vm_flags & VM_ACCOUNT) vm_unacct_memory(mm, mpnt->pages());
    return -ENOMEM;
  }
  // From here the child owns tmp (and its charge): teardown releases it.
  if (!wipe && vma_needs_copy(mpnt) && !copy_page_range(tmp, mpnt, copy_writable)) return -ENOMEM;
  return 0;
}

}  // namespace

void set_fork_hooks(const ForkHooks* hooks) { tls_fork_hooks = hooks; }

void fork_window_close(MmStruct* oldmm) {
  oldmm->fork_child.store(nullptr, std::memory_order_seq_cst);
  // A fault that loaded the pointer before the store above has counted
  // itself first (seq_cst on both sides): wait for it to finish with the
  // child.  It holds no lock we hold and never waits for us.
  while (oldmm->fork_window_users.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
}

int dup_mmap(MmStruct* mm, MmStruct* oldmm, bool copy_writable) {
  mmap_write_lock(oldmm);
  mmap_write_lock(mm, /*subclass=*/1);
  // Step 2: every parent VMA, before anything is copied.  Write-locking
  // waits for each VMA's readers (faults in progress) to leave; new ones
  // fail and fall back to the mmap_lock, which we hold.
  std::vector<Vma*> vmas;
  try {
    vmas.reserve(static_cast<std::size_t>(oldmm->map_count.load()));
  } catch (const std::bad_alloc&) {
    mmap_write_unlock(mm);
    mmap_write_unlock(oldmm);
    return -ENOMEM;
  }
  oldmm->mm_mt.for_each(0, tree::kMaxAddr, [&](const tree::Entry& e) {
    vmas.push_back(e.as<Vma>());  // cannot throw: map_count entries reserved
    return true;
  });
  for (Vma* v : vmas) vma_start_write(v);
  FORK_HOOK(locked, oldmm);
  // Step 5's window opens before the parent can fault again (when fork
  // shares writable pages: not with copy_writable).
  if (!copy_writable) oldmm->fork_child.store(mm, std::memory_order_seq_cst);

  // What the child inherits of the space itself.  The program break;
  // not mlockall(MCL_FUTURE) (Linux keeps only VM_NOHUGEPAGE of
  // def_flags); the commit charge counts parent and children together.
  mm->start_brk = oldmm->start_brk;
  mm->brk = oldmm->brk.load(std::memory_order_relaxed);  // both mmap W
  mm->def_flags = oldmm->def_flags & VM_NOHUGEPAGE;
  mm->vm_committed = oldmm->vm_committed;

  int err = 0;
  for (Vma* mpnt : vmas) {
    if (mpnt->vm_flags & VM_DONTCOPY) continue;
    FORK_HOOK(copying, oldmm, mpnt);
    if ((err = dup_vma(mm, mpnt, copy_writable)) != 0) break;
  }
  mm_debug_validate(mm);
  mm_debug_validate(oldmm);
  mmap_write_unlock(mm);
  mmap_write_unlock(oldmm);  // ends every parent VMA write lock
  return err;
}

}  // namespace vmspace::mm
