// SPDX-License-Identifier: MIT
#include "sync/spinlock.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace vmspace {
namespace {

TEST(SpinLock, TryLock) {
  SpinLock l(LockClass::pte_lock);
  ASSERT_TRUE(l.try_lock());
  EXPECT_TRUE(l.is_locked());
  std::thread([&] { EXPECT_FALSE(l.try_lock()); }).join();
  l.assert_locked();
  l.unlock();
  EXPECT_FALSE(l.is_locked());
}

TEST(SpinLock, MutualExclusion) {
  SpinLock l(LockClass::pte_lock);
  long counter = 0;  // plain: tsan checks the lock orders the accesses
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 50000; ++i) {
        l.lock();
        ++counter;
        l.unlock();
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(counter, 4 * 50000);
}

TEST(SpinLockDeathTest, UnlockWithoutHoldingAborts) {
  if (!lockdep::enabled) GTEST_SKIP() << "misuse checks are compiled out in release builds";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  SpinLock l(LockClass::page_table_lock);
  EXPECT_DEATH(l.unlock(), "page_table_lock.*thread [0-9]+");
}

}  // namespace
}  // namespace vmspace
