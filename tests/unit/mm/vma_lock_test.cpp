// SPDX-License-Identifier: MIT
// The per-VMA lock protocol, deterministically: the success, abort and miss
// paths of lock_vma_under_rcu, a writer waiting for a reader, and what the
// mmap_lock mode does, in every lock mode.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace::mm {
namespace {

constexpr std::uint64_t kBase = 0x10000000;
constexpr std::uint64_t kPage = 4096;

bool wait_until(const std::function<bool()>& pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

class VmaLock : public ::testing::TestWithParam<LockMode> {
 protected:
  VmaLock() : as_(test::test_options(GetParam())) {}
  ~VmaLock() override { rcu::barrier(); }
  MmStruct* mm() { return as_.mm(); }
  std::uint64_t ev(VmEvent e) { return mm()->events.read(e); }
  void map(std::uint64_t addr, std::uint64_t len, int prot = PROT_READ | PROT_WRITE) {
    ASSERT_EQ(as_.mmap(addr, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
              static_cast<long>(addr));
  }
  bool per_vma() const { return GetParam() != LockMode::mmap_lock; }
  // lock_vma_under_rcu + vma_end_read on another thread; returns the VMA
  // it locked (nullptr if none).
  Vma* try_read_elsewhere(std::uint64_t addr) {
    Vma* got = nullptr;
    std::thread([&] {
      got = lock_vma_under_rcu(mm(), addr);
      if (got != nullptr) vma_end_read(got);
    }).join();
    return got;
  }
  AddressSpace as_;
};

TEST_P(VmaLock, LockUnderRcuFindsAndReadLocks) {
  map(kBase, 4 * kPage);
  Vma* v = lock_vma_under_rcu(mm(), kBase + kPage);
  if (!per_vma()) {
    EXPECT_EQ(v, nullptr) << "mmap_lock mode has no VMA locks";
    EXPECT_EQ(ev(VmEvent::vma_lock_abort), 0u);
    return;
  }
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->vm_start, kBase);
  EXPECT_EQ(v->vm_end, kBase + 4 * kPage);
  vma_assert_locked(v);
  // Readers share: another thread read-locks the same VMA meanwhile.
  EXPECT_EQ(try_read_elsewhere(kBase), v);
  vma_end_read(v);
  EXPECT_EQ(ev(VmEvent::vma_lock_abort), 0u);
  EXPECT_EQ(ev(VmEvent::vma_lock_miss), 0u);
}

TEST_P(VmaLock, NoVmaIsAnAbort) {
  map(kBase, kPage);
  EXPECT_EQ(lock_vma_under_rcu(mm(), kBase + 8 * kPage), nullptr);
  EXPECT_EQ(ev(VmEvent::vma_lock_abort), per_vma() ? 1u : 0u);
}

// A VMA write-locked in an ongoing mmap_lock write session cannot be
// read-locked: the reader gives up (abort) and would fall back.  Other
// VMAs stay readable, and ending the session unlocks every VMA at once.
TEST_P(VmaLock, WriteLockedVmaAborts) {
  if (!per_vma()) GTEST_SKIP() << "no VMA locks in mmap_lock mode";
  map(kBase, 2 * kPage);
  map(kBase + 8 * kPage, 2 * kPage);
  mmap_write_lock(mm());
  Vma* v = vma_lookup(mm(), kBase);
  ASSERT_NE(v, nullptr);
  vma_start_write(v);
  vma_assert_write_locked(v);
  vma_start_write(v);  // idempotent within a session
  EXPECT_EQ(try_read_elsewhere(kBase), nullptr);
  EXPECT_EQ(ev(VmEvent::vma_lock_abort), 1u);
  Vma* other = vma_lookup(mm(), kBase + 8 * kPage);
  EXPECT_EQ(try_read_elsewhere(kBase + 8 * kPage), other);
  mmap_write_unlock(mm());
  EXPECT_EQ(try_read_elsewhere(kBase), v);
  EXPECT_EQ(ev(VmEvent::vma_lock_abort), 1u);
}

// Downgrading the mmap_lock also ends the VMA write locks.
TEST_P(VmaLock, DowngradeEndsVmaWriteLocks) {
  if (!per_vma()) GTEST_SKIP() << "no VMA locks in mmap_lock mode";
  map(kBase, kPage);
  mmap_write_lock(mm());
  Vma* v = vma_lookup(mm(), kBase);
  vma_start_write(v);
  mmap_write_downgrade(mm());
  EXPECT_FALSE(vma_is_write_locked(v));
  EXPECT_EQ(try_read_elsewhere(kBase), v);
  mmap_read_unlock(mm());
}

struct MissHook {
  std::function<void()> action;
  int calls = 0;
};

void run_hook(MmStruct*, Vma*, void* arg) {
  auto* h = static_cast<MissHook*>(arg);
  if (h->calls++ == 0) h->action();
}

// The VMA found in the tree is removed before the reader locks it: the
// reader sees it detached, counts a miss and walks the tree again.
TEST_P(VmaLock, DetachedAfterLookupIsAMissAndRetries) {
  if (!per_vma()) GTEST_SKIP() << "no VMA locks in mmap_lock mode";
  map(kBase, 4 * kPage);
  Vma* old_vma = vma_lookup(mm(), kBase);
  MissHook hook;
  // Replace the mapping while the reader is between lookup and lock: the
  // address stays mapped, by a new VMA with other flags.
  hook.action = [&] {
    std::thread([&] {
      EXPECT_EQ(as_.mmap(kBase, 4 * kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
                static_cast<long>(kBase));
    }).join();
  };
  VmaLockHooks hooks{run_hook, &hook};
  set_vma_lock_hooks(&hooks);
  Vma* v = lock_vma_under_rcu(mm(), kBase + kPage);
  set_vma_lock_hooks(nullptr);
  ASSERT_NE(v, nullptr);
  EXPECT_NE(v, old_vma);
  EXPECT_EQ(v->vm_flags & VM_ACCESS_FLAGS, VM_READ);
  vma_end_read(v);
  EXPECT_EQ(ev(VmEvent::vma_lock_miss), 1u);
  EXPECT_EQ(ev(VmEvent::vma_lock_abort), 0u);
  EXPECT_EQ(hook.calls, 2);
}

TEST_P(VmaLock, UnmappedAfterLookupMissesThenAborts) {
  if (!per_vma()) GTEST_SKIP() << "no VMA locks in mmap_lock mode";
  map(kBase, 4 * kPage);
  MissHook hook;
  hook.action = [&] { std::thread([&] { EXPECT_EQ(as_.munmap(kBase, 4 * kPage), 0); }).join(); };
  VmaLockHooks hooks{run_hook, &hook};
  set_vma_lock_hooks(&hooks);
  EXPECT_EQ(lock_vma_under_rcu(mm(), kBase), nullptr);
  set_vma_lock_hooks(nullptr);
  EXPECT_EQ(ev(VmEvent::vma_lock_miss), 1u);
  EXPECT_EQ(ev(VmEvent::vma_lock_abort), 1u);
}

// The range is re-checked under the lock: the VMA found in the tree is
// still attached but no longer covers the address (a merge moved its start:
// prev absorbed the head of it).
TEST_P(VmaLock, RangeChangedAfterLookupAborts) {
  if (!per_vma()) GTEST_SKIP() << "no VMA locks in mmap_lock mode";
  map(kBase, 2 * kPage);
  map(kBase + 2 * kPage, 4 * kPage, PROT_READ);
  Vma* b = vma_lookup(mm(), kBase + 2 * kPage);
  MissHook hook;
  hook.action = [&] {
    std::thread([&] {
      EXPECT_EQ(as_.mprotect(kBase + 2 * kPage, 2 * kPage, PROT_READ | PROT_WRITE), 0);
    }).join();
  };
  VmaLockHooks hooks{run_hook, &hook};
  set_vma_lock_hooks(&hooks);
  EXPECT_EQ(lock_vma_under_rcu(mm(), kBase + 2 * kPage), nullptr);
  set_vma_lock_hooks(nullptr);
  EXPECT_EQ(b->vm_start, kBase + 4 * kPage);  // b shrank, still attached
  EXPECT_EQ(ev(VmEvent::vma_lock_abort), 1u);
  EXPECT_EQ(ev(VmEvent::vma_lock_miss), 0u);
}

// vma_start_write waits until the VMA's readers have left.
TEST_P(VmaLock, WriterWaitsForReader) {
  if (!per_vma()) GTEST_SKIP() << "no VMA locks in mmap_lock mode";
  map(kBase, 2 * kPage);
  Vma* v = lock_vma_under_rcu(mm(), kBase);
  ASSERT_NE(v, nullptr);
  std::atomic<bool> locked{false};
  std::thread writer([&] {
    mmap_write_lock(mm());
    vma_start_write(v);
    locked = true;
    mmap_write_unlock(mm());
  });
  if (GetParam() == LockMode::per_vma_refcount || GetParam() == LockMode::per_vma_range) {
    // The writer has raised the exclude-readers flag and waits for us.
    ASSERT_TRUE(wait_until([&] { return v->vm_refcnt.load() >= kVmaLockOffset; }));
    EXPECT_EQ(v->vm_refcnt.load(), kVmaLockOffset + 2);  // attach ref + us
  } else {
    ASSERT_TRUE(wait_until([&] { return v->vm_lock.has_waiters(); }));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_FALSE(locked.load());
  // New readers are turned away while the writer waits.
  EXPECT_EQ(try_read_elsewhere(kBase), nullptr);
  vma_end_read(v);
  writer.join();
  EXPECT_TRUE(locked.load());
  if (GetParam() == LockMode::per_vma_refcount || GetParam() == LockMode::per_vma_range) {
    EXPECT_EQ(v->vm_refcnt.load(), 1u);
  }
}

// munmap (vma_mark_detached) of a VMA a reader holds must wait: the
// writer's vma_start_write excludes the reader first.
TEST_P(VmaLock, MunmapWaitsForReaderThenDetaches) {
  if (!per_vma()) GTEST_SKIP() << "no VMA locks in mmap_lock mode";
  map(kBase, 2 * kPage);
  Vma* v = lock_vma_under_rcu(mm(), kBase);
  ASSERT_NE(v, nullptr);
  std::atomic<bool> done{false};
  std::thread unmapper([&] {
    EXPECT_EQ(as_.munmap(kBase, 2 * kPage), 0);
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_FALSE(done.load());
  EXPECT_EQ(v->vm_start, kBase);  // unchanged while we hold it
  vma_end_read(v);
  unmapper.join();
  EXPECT_EQ(try_read_elsewhere(kBase), nullptr);
}

TEST_P(VmaLock, AttachDetachState) {
  map(kBase, kPage);
  mmap_write_lock(mm());
  Vma* v = vma_lookup(mm(), kBase);
  EXPECT_FALSE(vma_is_detached(v));
  if (GetParam() == LockMode::per_vma_refcount || GetParam() == LockMode::per_vma_range) {
    EXPECT_EQ(v->vm_refcnt.load(), 1u);
  }
  mmap_write_unlock(mm());
}

class VmaLockDeathTest : public VmaLock {};

TEST_P(VmaLockDeathTest, StartWriteWithoutMmapWriteLockAborts) {
  if (!lockdep::enabled) GTEST_SKIP() << "assertions are compiled out in release builds";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  map(kBase, kPage);
  mmap_read_lock(mm());
  Vma* v = vma_lookup(mm(), kBase);
  EXPECT_DEATH(vma_start_write(v), "expected to be write-locked");
  mmap_read_unlock(mm());
}

TEST_P(VmaLockDeathTest, DetachWithoutVmaWriteLockAborts) {
  if (!lockdep::enabled) GTEST_SKIP() << "assertions are compiled out in release builds";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  map(kBase, kPage);
  mmap_write_lock(mm());
  Vma* v = vma_lookup(mm(), kBase);
  EXPECT_DEATH(vma_mark_detached(v), "VMA expected to be write-locked");
  mmap_write_unlock(mm());
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) {
  return std::string(lock_mode_name(i.param));
}

INSTANTIATE_TEST_SUITE_P(AllModes, VmaLock, ::testing::ValuesIn(kAllLockModes), mode_name);
INSTANTIATE_TEST_SUITE_P(AllModes, VmaLockDeathTest, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace::mm
