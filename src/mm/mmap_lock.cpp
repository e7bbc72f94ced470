// SPDX-License-Identifier: MIT
// mmap_lock.cpp - the per-VMA locking protocol (seeds 000-002; Linux 6.4+).
//
// THE PROTOCOL
//
// Writers.  Anything that changes a VMA's range, flags, pgoff, anon_vma or
// removes it holds the mmap_lock for write and first calls
// vma_start_write(vma).  mmap_write_lock() makes mm_lock_seq odd (S); a VMA
// is write-locked exactly when vma->vm_lock_seq == S.  vma_start_write()
// sets vm_lock_seq = S after excluding the VMA's readers:
//   per_vma_rwsem:    down_write(vm_lock); vm_lock_seq = S; up_write(vm_lock)
//   per_vma_refcount: vm_refcnt += kVmaLockOffset (new readers now fail);
//                     wait until only the attach reference is left;
//                     vm_lock_seq = S; vm_refcnt -= kVmaLockOffset
// There is no per-VMA unlock: mmap_write_unlock()/mmap_write_downgrade()
// call vma_end_write_all(), which makes mm_lock_seq even (S + 1), and every
// VMA write-locked in the session is unlocked at once.
//
// Readers.  lock_vma_under_rcu() finds the VMA in the tree under RCU (the
// Vma object cannot be freed before the read-side section ends: removal
// frees it with rcu::call) and calls vma_start_read():
//   1. unordered quick check: vm_lock_seq == mm_lock_seq -> fail;
//   2. take the read side (rwsem: try_lock_shared; refcount: increment if
//      non-zero and below kVmaRefLimit), with acquire ordering;
//   3. re-check vm_lock_seq against mm_lock_seq loaded with acquire.
// Then it re-checks that the address is still inside [vm_start, vm_end).
//
// WHY A READER NEVER USES A VMA A WRITER IS CHANGING
//
// Suppose a reader returns a VMA that a writer changes in session S.  The
// writer changes fields only after vma_start_write() returned, and until
// vma_end_write_all() of S.
//  - Reader's step 2 happened before the writer's exclusion began: the
//    writer waits (rwsem: down_write blocks; refcount: it waits for the
//    count to drain) until the reader calls vma_end_read().  The reader
//    releases with release ordering and the writer acquires, so all the
//    reader's accesses happen before the writer's changes.
//  - Reader's step 2 happened after the writer's exclusion ended: step 2
//    acquires what the exclusion's release published, so step 3 sees
//    vm_lock_seq == S.  mm_lock_seq is still S (the reader holds no lock
//    that could stop the writer from ending the session, but if S already
//    ended, the writer's changes are complete: see below), so the reader
//    fails.
//  - Step 2 cannot overlap the exclusion: readers fail while the rwsem is
//    write-held or the exclude flag is set.
// If step 3 reads S + 1 or later (the session ended), the acquire load
// pairs with vma_end_write_all()'s release: everything the writer did is
// visible and finished, and the VMA is consistent.
// Detached VMAs (removed from the tree) are recognised after step 2:
// refcount mode cannot take a reference (count 0); rwsem mode sees
// `detached`, which is set under the write lock before the session ends.
// Either way the walk is retried (vma_lock_miss): the tree no longer maps
// the address to that VMA.
//
// WHY SEQUENCE OVERFLOW DOES NOT MATTER
//
// For readers the argument does not depend on the counters' width.  A false
// "unlocked" result needs vm_lock_seq != mm_lock_seq while the VMA is
// write-locked, impossible: while write-locked they are equal by
// definition, and vm_lock_seq is only written under the exclusion.  A false
// "locked" result (a stale vm_lock_seq from an old session equal to a
// wrapped-around mm_lock_seq) only makes vma_start_read() fail, and the
// caller falls back to the mmap_lock: slower, never wrong.
//
// For writers it does depend on it (the model in tests/model found this:
// its seq_wrap_limit control).  vma_start_write() returns early when
// vm_lock_seq equals the current mm_lock_seq ("already ours"); a VMA last
// write-locked 2^63 sessions ago, and never since, would look already
// locked, and the writer would skip waiting for its readers (and
// kVmaUnlockedSeq, odd, is reached the same way).  Sequences are 64-bit and
// gain 2 per session, so that takes 2^63 write sessions: at a billion a
// second, about 292 years.  (Linux's are 32-bit.)  The model
// checks the protocol with the bound made explicit (at most 2^(bits-1)
// sessions).
//
// THE FALLBACK
//
// A thread holding a VMA read lock must never wait for the mmap_lock: a
// writer holding the mmap_lock may be waiting in vma_start_write() for that
// very read lock.  It may only try-lock it (see lock_order.h).
#include "mm/mmap_lock.h"
#include "sync/tls.h"

#include "sync/futex.h"
#include "sync/lockdep.h"

namespace vmspace::mm {

namespace {
VMSPACE_TLS_FAST thread_local const VmaLockHooks* tls_hooks = nullptr;
}  // namespace

void set_vma_lock_hooks(const VmaLockHooks* hooks) { tls_hooks = hooks; }

// ---- mmap_lock ---------------------------------------------------------

void mmap_write_lock(MmStruct* mm, unsigned subclass) {
  if (mm->mode == LockMode::per_vma_range) return range_lock_whole(mm, RangeLock::Mode::write, subclass);
  mm->mmap_lock.lock(subclass);
  mm->mm_lock_seq.write_begin();  // odd: VMAs can now be write-locked
}

bool mmap_write_trylock(MmStruct* mm) {
  if (mm->mode == LockMode::per_vma_range) return range_trylock_whole(mm, RangeLock::Mode::write);
  if (!mm->mmap_lock.try_lock()) return false;
  mm->mm_lock_seq.write_begin();
  return true;
}

namespace {
// End every VMA write lock of this session.  The release ordering of
// write_end() pairs with the acquire re-check in vma_start_read().
void vma_end_write_all(MmStruct* mm) {
  mmap_assert_write_locked(mm);
  mm->mm_lock_seq.write_end();
}
}  // namespace

void mmap_write_unlock(MmStruct* mm) {
  if (mm->mode == LockMode::per_vma_range) return range_unlock(mm);  // ends its VMA write locks
  vma_end_write_all(mm);
  mm->mmap_lock.unlock();
}

void mmap_write_downgrade(MmStruct* mm) {
  if (mm->mode == LockMode::per_vma_range) return range_downgrade(mm);  // ends its VMA write locks
  vma_end_write_all(mm);
  mm->mmap_lock.downgrade();
}

std::size_t mmap_lock_waiter_count(MmStruct* mm) {
  if (mm->mode == LockMode::per_vma_range) return mm->range_lock.waiter_count();
  return mm->mmap_lock.waiter_count();
}

// ---- refcount helpers (per_vma_refcount) -------------------------------

namespace {

// Add kVmaLockOffset unless the count is zero (detached).  Returns false if
// it was zero.
bool refcnt_add_lock_offset(Vma* vma) {
  std::uint32_t c = vma->vm_refcnt.load(std::memory_order_relaxed);
  do {
    if (c == 0) return false;
    // Acquire: pairs with the release in vma_refcount_put() of readers that
    // already left, so their accesses happen before our changes.
  } while (!vma->vm_refcnt.compare_exchange_weak(c, c + kVmaLockOffset, std::memory_order_acquire,
                                                 std::memory_order_relaxed));
  return true;
}

// Wait until vm_refcnt == target.  Readers that leave while the exclude
// flag is set wake us through mm->vma_writer_wait, an event count (Linux:
// mm->vma_writer_wait): we read the count, re-check vm_refcnt and sleep
// only if the count is unchanged.  A reader that leaves after our re-check
// bumps the count after its decrement, so the futex either sees the new
// count or is woken (seq_cst on both sides orders the four accesses).
void refcnt_wait_for(Vma* vma, std::uint32_t target) {
  MmStruct* mm = vma->vm_mm;
  int spins = 0;
  for (;;) {
    // Acquire: pairs with the release decrement of each leaving reader.
    if (vma->vm_refcnt.load(std::memory_order_acquire) == target) return;
    if (++spins < 128) {
      cpu_relax();
      continue;
    }
    const std::uint32_t ev = mm->vma_writer_wait.load(std::memory_order_seq_cst);
    if (vma->vm_refcnt.load(std::memory_order_seq_cst) == target) return;
    futex_wait(&mm->vma_writer_wait, ev);
  }
}

// Drop one reader reference; wake a writer waiting for readers to drain.
// The VMA is not touched after the decrement (a waiting writer may detach
// and free it at once), so no RCU section is needed: the wake-up goes
// through the mm, which outlives every fault on it.
void vma_refcount_put(Vma* vma) {
  MmStruct* mm = vma->vm_mm;
  // Release (seq_cst for the event count, see refcnt_wait_for): our
  // accesses to the VMA happen before the writer's changes.  Pairs with the
  // acquire loads in refcnt_wait_for and the acquire CAS in
  // refcnt_add_lock_offset.
  const std::uint32_t now = vma->vm_refcnt.fetch_sub(1, std::memory_order_seq_cst) - 1;
  if (now & kVmaLockOffset) {
    mm->vma_writer_wait.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(&mm->vma_writer_wait);
  }
}

}  // namespace

// ---- per-VMA write side ------------------------------------------------

void vma_start_write(Vma* vma) {
  MmStruct* mm = vma->vm_mm;
  mmap_assert_write_locked(mm);
  // Stable: only the mmap_lock write holder (us) changes it.  In
  // per_vma_range, our own S: a VMA inside our range carries S or
  // kVmaUnlockedSeq (invariant R1), so equality means we stamped it.
  RangeHold* w = mm->mode == LockMode::per_vma_range ? range_writer(mm) : nullptr;
  const std::uint64_t seq = w != nullptr ? w->seq : mm->mm_lock_seq.raw_read_relaxed();
  // Invariant R2 (range-writers.md section 10): a writer write-locks only
  // VMAs inside its range.
  if constexpr (lockdep::enabled)
    if (w != nullptr && !range_held_covers(mm, vma->vm_start, vma->vm_end))
      lockdep::fail(vma, LockClass::vma_lock, "per_vma_range: write-locking a VMA outside the writer's range");
  if (vma->vm_lock_seq.load(std::memory_order_relaxed) == seq) return;  // already ours

  switch (mm->mode) {
    case LockMode::mmap_lock:
      // No VMA readers exist in this mode; record the lock for assertions.
      vma->vm_lock_seq.store(seq, std::memory_order_relaxed);
      break;
    case LockMode::per_vma_rwsem:
      vma->vm_lock.lock();  // waits for readers; lockdep: after mmap_lock
      vma->vm_lock_seq.store(seq, std::memory_order_relaxed);
      vma->vm_lock.unlock();  // release: pairs with the reader's try_lock_shared
      break;
    case LockMode::per_vma_refcount:
    case LockMode::per_vma_range:
      lockdep::acquire(vma, LockClass::vma_lock, lockdep::Mode::exclusive, 0, false);
      if (refcnt_add_lock_offset(vma)) {
        refcnt_wait_for(vma, kVmaLockOffset + 1);
        vma->vm_lock_seq.store(seq, std::memory_order_relaxed);
        // Release: a reader whose increment reads this value also sees
        // vm_lock_seq == seq (pairs with the acquire in vma_start_read).
        vma->vm_refcnt.fetch_sub(kVmaLockOffset, std::memory_order_release);
      } else {
        vma->vm_lock_seq.store(seq, std::memory_order_relaxed);  // detached: no readers
      }
      lockdep::release(vma);
      // per_vma_range: unlocked by this writer's end (range_writer.cpp).
      if (w != nullptr) {  // (intrusive: stamping never allocates, so it cannot fail halfway)
        vma->list_next = w->locked;
        w->locked = vma;
      }
      break;
  }
}

void vma_assert_write_locked(const Vma* vma) {
  mmap_assert_write_locked(vma->vm_mm);
  if constexpr (lockdep::enabled) {
    // per_vma_range: write-locked by this thread's writer, not another's.
    const bool mine = vma->vm_mm->mode == LockMode::per_vma_range
                          ? vma->vm_lock_seq.load(std::memory_order_relaxed) == range_writer(vma->vm_mm)->seq
                          : vma_is_write_locked(vma);
    if (!mine) lockdep::fail(vma, LockClass::vma_lock, "VMA expected to be write-locked (vma_start_write)");
  }
}

void vma_assert_locked(const Vma* vma) {
  if constexpr (lockdep::enabled) {
    const MmStruct* mm = vma->vm_mm;
    bool vma_read = mm->mode == LockMode::per_vma_rwsem ? lockdep::held(&vma->vm_lock)
                    : mm->vma_refcounted()                  ? lockdep::held(vma)
                                                            : false;
    const bool mm_locked = mm->mode == LockMode::per_vma_range ? range_hold(mm) != nullptr
                                                                : lockdep::held(&mm->mmap_lock);
    if (!vma_read && !mm_locked)
      lockdep::fail(vma, LockClass::vma_lock, "VMA expected to be locked (mmap_lock or VMA read lock)");
  }
}

void vma_mark_attached(Vma* vma) {
  vma->detached.store(false, std::memory_order_relaxed);
  // Release: a reader that takes a reference sees the initialised VMA.
  vma->vm_refcnt.store(1, std::memory_order_release);
}

void vma_mark_detached(Vma* vma) {
  vma_assert_write_locked(vma);
  vma->detached.store(true, std::memory_order_relaxed);
  if (!vma->vm_mm->vma_refcounted()) return;
  // Drop the attach reference.  Readers still holding a reference are
  // transient: the VMA is write-locked, so each of them will see
  // vm_lock_seq == mm_lock_seq and drop out.  Wait for them, so that after
  // we return nobody holds the VMA (it may then be freed via RCU).
  std::uint32_t left = vma->vm_refcnt.fetch_sub(1, std::memory_order_acq_rel) - 1;
  if (left == 0) return;
  if (refcnt_add_lock_offset(vma)) {
    refcnt_wait_for(vma, kVmaLockOffset);
    vma->vm_refcnt.fetch_sub(kVmaLockOffset, std::memory_order_release);
  }
}

bool vma_is_detached(const Vma* vma) {
  if (vma->vm_mm->vma_refcounted())
    return vma->vm_refcnt.load(std::memory_order_relaxed) == 0;
  return vma->detached.load(std::memory_order_relaxed);
}

// ---- per-VMA read side -------------------------------------------------

namespace {

// Take a reader reference unless the VMA is detached (0) or a writer
// excludes readers (>= kVmaLockOffset).  Acquire: pairs with the release
// in vma_start_write / vma_mark_attached.
VmaReadResult refcnt_get(Vma* vma) {
  std::uint32_t c = vma->vm_refcnt.load(std::memory_order_relaxed);
  do {
    if (c == 0) return VmaReadResult::detached;
    if (c >= kVmaRefLimit) return VmaReadResult::write_locked;
  } while (!vma->vm_refcnt.compare_exchange_weak(c, c + 1, std::memory_order_acquire,
                                                 std::memory_order_relaxed));
  return VmaReadResult::locked;
}

// per_vma_range (docs/range-writers.md section 4, "the readers' test"):
// write-locked means vm_lock_seq != kVmaUnlockedSeq, whoever's S it is.
VmaReadResult vma_start_read_range(Vma* vma) {
  // 1. Quick unordered check.
  if (vma->vm_lock_seq.load(std::memory_order_relaxed) != kVmaUnlockedSeq) return VmaReadResult::write_locked;
  // 2. The reference.
  if (VmaReadResult r = refcnt_get(vma); r != VmaReadResult::locked) return r;
  // 3. Acquire: pairs with the writer's release store of kVmaUnlockedSeq
  //    (range_writer.cpp, end_writer): seeing it, we see all its changes;
  //    a stamp stored before the exclusion ended we see through step 2.
  if (vma->vm_lock_seq.load(std::memory_order_acquire) != kVmaUnlockedSeq) {
    vma_refcount_put(vma);
    return VmaReadResult::write_locked;
  }
  lockdep::acquire(vma, LockClass::vma_lock, lockdep::Mode::shared, 0, /*trylock=*/true);
  return VmaReadResult::locked;
}

}  // namespace

VmaReadResult vma_start_read(MmStruct* mm, Vma* vma) {
  if (mm->mode == LockMode::per_vma_range) return vma_start_read_range(vma);
  // 1. Quick unordered check (Linux: READ_ONCE on both): a VMA locked in
  //    the current write session fails without touching the lock word.
  if (vma->vm_lock_seq.load(std::memory_order_relaxed) == mm->mm_lock_seq.raw_read_relaxed())
    return VmaReadResult::write_locked;

  if (mm->mode == LockMode::per_vma_rwsem) {
    // 2. Fails if a writer holds or waits for the semaphore.
    if (!vma->vm_lock.try_lock_shared()) return VmaReadResult::write_locked;
    // 3. Acquire: pairs with vma_end_write_all()'s release.
    if (vma->vm_lock_seq.load(std::memory_order_relaxed) == mm->mm_lock_seq.raw_read()) {
      vma->vm_lock.unlock_shared();
      return VmaReadResult::write_locked;
    }
    if (vma->detached.load(std::memory_order_relaxed)) {
      vma->vm_lock.unlock_shared();
      return VmaReadResult::detached;
    }
    return VmaReadResult::locked;
  }

  // per_vma_refcount.  2. Increment unless detached or excluded.
  if (VmaReadResult r = refcnt_get(vma); r != VmaReadResult::locked) return r;
  // 3. Acquire: pairs with vma_end_write_all()'s release.
  if (vma->vm_lock_seq.load(std::memory_order_relaxed) == mm->mm_lock_seq.raw_read()) {
    vma_refcount_put(vma);
    return VmaReadResult::write_locked;
  }
  lockdep::acquire(vma, LockClass::vma_lock, lockdep::Mode::shared, 0, /*trylock=*/true);
  return VmaReadResult::locked;
}

void vma_end_read(Vma* vma) {
  if (vma->vm_mm->mode == LockMode::per_vma_rwsem) {
    // unlock_shared() may hand the semaphore to a waiting writer and keep
    // touching it afterwards (its wait queue); that writer may detach the
    // VMA and queue it for freeing.  The read-side section keeps the VMA
    // alive until unlock_shared() has returned (Linux does the same).
    rcu::ReadGuard rcu;
    vma->vm_lock.unlock_shared();
    return;
  }
  lockdep::release(vma);
  vma_refcount_put(vma);
}

Vma* lock_vma_under_rcu(MmStruct* mm, std::uint64_t addr) {
  if (!mm->per_vma_locks()) return nullptr;
  rcu::ReadGuard rcu;
  for (;;) {
    auto* vma = static_cast<Vma*>(mm->mm_mt.lookup(addr));
    if (vma == nullptr) break;
    if (const VmaLockHooks* h = tls_hooks; h != nullptr && h->after_lookup != nullptr)
      h->after_lookup(mm, vma, h->arg);
    VmaReadResult r = vma_start_read(mm, vma);
    if (r == VmaReadResult::detached) {
      // Replaced or removed after we found it: the tree has moved on.
      mm->events.count(VmEvent::vma_lock_miss);
      continue;
    }
    if (r != VmaReadResult::locked) break;
    // vm_start/vm_end may have changed between the lookup and the lock.
    if (addr < vma->vm_start || addr >= vma->vm_end) {
      vma_end_read(vma);
      break;
    }
    return vma;
  }
  mm->events.count(VmEvent::vma_lock_abort);
  return nullptr;
}

}  // namespace vmspace::mm
