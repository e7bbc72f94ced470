// SPDX-License-Identifier: MIT
#include "sync/lockdep.h"

#include <gtest/gtest.h>

#include "sync/rwsem.h"
#include "sync/spinlock.h"

namespace vmspace {
namespace {

class Lockdep : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!lockdep::enabled) GTEST_SKIP() << "the lock-order checker is compiled out in release builds";
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  }
};

TEST_F(Lockdep, InOrderNestingIsAllowed) {
  RwSemaphore mmap_lock(LockClass::mmap_lock);
  RwSemaphore vma_lock(LockClass::vma_lock);
  RwSemaphore anon_vma(LockClass::anon_vma_rwsem);
  SpinLock ptl(LockClass::page_table_lock);
  SpinLock pte(LockClass::pte_lock);
  mmap_lock.lock();
  vma_lock.lock();
  anon_vma.lock_shared();
  ptl.lock();
  pte.lock();
  EXPECT_EQ(lockdep::depth(), 5u);
  pte.unlock();
  ptl.unlock();
  anon_vma.unlock_shared();
  vma_lock.unlock();
  mmap_lock.unlock();
  EXPECT_EQ(lockdep::depth(), 0u);
}

TEST_F(Lockdep, InversionAbortsNamingBothClasses) {
  RwSemaphore mmap_lock(LockClass::mmap_lock);
  SpinLock pte(LockClass::pte_lock);
  pte.lock();
  EXPECT_DEATH(mmap_lock.lock_shared(),
               "lock order inversion(.|\n)*acquiring mmap_lock/0 0x[0-9a-f]+ while holding "
               "pte_lock/0(.|\n)*holds 1 lock");
  pte.unlock();
}

TEST_F(Lockdep, InversionAcrossRwsemClassesAborts) {
  RwSemaphore anon_vma(LockClass::anon_vma_rwsem);
  RwSemaphore i_mmap(LockClass::i_mmap_rwsem);
  anon_vma.lock();
  EXPECT_DEATH(i_mmap.lock(), "acquiring i_mmap_rwsem/0 .* while holding anon_vma_rwsem/0");
  anon_vma.unlock();
}

TEST_F(Lockdep, SameClassRecursionAborts) {
  RwSemaphore a(LockClass::mmap_lock), b(LockClass::mmap_lock);
  a.lock_shared();
  EXPECT_DEATH(b.lock_shared(), "recursive locking of one lock class");
  a.unlock_shared();
}

TEST_F(Lockdep, SameLockRecursionAborts) {
  SpinLock l(LockClass::pte_lock);
  l.lock();
  EXPECT_DEATH(l.lock(), "recursive locking: this thread already holds the lock");
  l.unlock();
}

TEST_F(Lockdep, SubclassNestingIsAllowed) {
  // fork: the parent's mmap_lock, then the child's as subclass 1.
  RwSemaphore parent(LockClass::mmap_lock), child(LockClass::mmap_lock);
  parent.lock();
  child.lock(1);
  child.unlock();
  parent.unlock();
}

TEST_F(Lockdep, TrylockOutOfOrderIsAllowedAndRecorded) {
  // The fault path: a VMA read lock, then only a try-lock of mmap_lock.
  RwSemaphore vma_lock(LockClass::vma_lock);
  RwSemaphore mmap_lock(LockClass::mmap_lock);
  SpinLock ptl(LockClass::page_table_lock);
  ASSERT_TRUE(vma_lock.try_lock_shared());
  ASSERT_TRUE(mmap_lock.try_lock_shared());
  EXPECT_TRUE(lockdep::held(&mmap_lock));
  ptl.lock();  // in order after both
  ptl.unlock();
  mmap_lock.unlock_shared();
  vma_lock.unlock_shared();
}

TEST_F(Lockdep, BlockingAfterTrylockIsStillChecked) {
  RwSemaphore mmap_lock(LockClass::mmap_lock);
  SpinLock pte(LockClass::pte_lock);
  ASSERT_TRUE(pte.try_lock());
  EXPECT_DEATH(mmap_lock.lock(), "lock order inversion");
  pte.unlock();
}

}  // namespace
}  // namespace vmspace
