// SPDX-License-Identifier: MIT
// The soft MMU's TLB for readers (src/mm/tlb.h), continued from
// stale_read_test.cpp: the other paths that let go of a shared page (guard
// install, mremap then DONTNEED), three generations, nested scopes, a
// scope on the other space, fork inside a scope, concurrent readers, and
// the allocation-failure fallback.  Written by the review of the change.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "mem/phys_mem.h"
#include "vmspace/address_space.h"
#include "vmspace/mman.h"

// ---- nothrow operator new that fails on demand (this thread only) ----
namespace {
thread_local bool t_fail_nothrow_new = false;
thread_local int t_failed_nothrow_new = 0;
}  // namespace

// Otherwise the throwing operator new (the runtime's, or a sanitizer's:
// operator delete must match it).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (t_fail_nothrow_new) {
    ++t_failed_nothrow_new;
    return nullptr;
  }
  try {
    return ::operator new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  if (t_fail_nothrow_new) {
    ++t_failed_nothrow_new;
    return nullptr;
  }
  try {
    return ::operator new[](n);
  } catch (...) {
    return nullptr;
  }
}

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x300000000000;
constexpr std::uint64_t kPage = 4096;

int leaked(const volatile unsigned char* p, unsigned char want) {
  int n = 0;
  for (std::uint64_t i = 0; i < kPage; ++i) n += p[i] != want;
  return n;
}

class StaleReadPaths : public ::testing::TestWithParam<LockMode> {
 protected:
  void SetUp() override {
    AddressSpaceOptions o;
    o.mode = GetParam();
    o.phys_bytes = 16ull << 20;
    parent_ = std::make_unique<AddressSpace>(o);
    ASSERT_EQ(parent_->mmap(kBase, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
              static_cast<long>(kBase));
    ASSERT_TRUE(parent_->fill(kBase, 0x11, 4 * kPage).ok());
    child_ = parent_->fork();
    ASSERT_NE(child_, nullptr);
  }
  std::unique_ptr<AddressSpace> parent_, child_;
};

// Guard install drops the parent's mapping through the gather too.
TEST_P(StaleReadPaths, ScopePointerAcrossGuardInstall) {
  AddressSpace::AccessScope scope(*parent_);
  const auto* p = static_cast<const volatile unsigned char*>(scope.translate(kBase, false));
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(parent_->madvise(kBase, kPage, MADV_GUARD_INSTALL), 0);
  ASSERT_TRUE(child_->fill(kBase, 0x77, kPage).ok());
  EXPECT_EQ(leaked(p, 0x11), 0);
}

// The page moved by mremap, then dropped at its new address.
TEST_P(StaleReadPaths, ScopePointerAcrossMremapThenDontneed) {
  AddressSpace::AccessScope scope(*parent_);
  const auto* p = static_cast<const volatile unsigned char*>(scope.translate(kBase, false));
  ASSERT_NE(p, nullptr);
  const std::uint64_t to = kBase + 64 * kPage;
  ASSERT_EQ(parent_->mremap(kBase, kPage, kPage, MREMAP_MAYMOVE | MREMAP_FIXED, to), static_cast<long>(to));
  ASSERT_EQ(parent_->madvise(to, kPage, MADV_DONTNEED), 0);
  ASSERT_TRUE(child_->fill(kBase, 0x77, kPage).ok());
  EXPECT_EQ(leaked(p, 0x11), 0);
}

// Three generations share the frame: the grandchild must not reuse it
// while the parent's phantom mapping is there.
TEST_P(StaleReadPaths, ThreeGenerations) {
  auto grandchild = child_->fork();
  ASSERT_NE(grandchild, nullptr);
  AddressSpace::AccessScope scope(*parent_);
  const auto* p = static_cast<const volatile unsigned char*>(scope.translate(kBase, false));
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(parent_->madvise(kBase, kPage, MADV_DONTNEED), 0);
  ASSERT_TRUE(child_->fill(kBase, 0x66, kPage).ok());
  ASSERT_TRUE(grandchild->fill(kBase, 0x77, kPage).ok());
  EXPECT_EQ(leaked(p, 0x11), 0);
}

// A nested scope ending does not end the outer scope's holding.
TEST_P(StaleReadPaths, NestedScopes) {
  AddressSpace::AccessScope outer(*parent_);
  const auto* p = static_cast<const volatile unsigned char*>(outer.translate(kBase, false));
  ASSERT_NE(p, nullptr);
  { AddressSpace::AccessScope inner(*parent_); }
  {
    // read() inside the scope: its own count goes up and down.
    unsigned char b;
    ASSERT_TRUE(parent_->read(kBase + kPage, &b, 1).ok());
  }
  ASSERT_EQ(parent_->madvise(kBase, kPage, MADV_DONTNEED), 0);
  ASSERT_TRUE(child_->fill(kBase, 0x77, kPage).ok());
  EXPECT_EQ(leaked(p, 0x11), 0);
}

// A scope on the child while the parent lets go, from the same thread:
// the parent's release is immediate and the child's pointer reads the
// child's own page (which it may then reuse in place: its own data).
TEST_P(StaleReadPaths, ScopeOnChildReadsOwnData) {
  AddressSpace::AccessScope scope(*child_);
  const auto* p = static_cast<const volatile unsigned char*>(scope.translate(kBase, false));
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(parent_->madvise(kBase, kPage, MADV_DONTNEED), 0);
  ASSERT_TRUE(child_->fill(kBase, 0x77, kPage).ok());  // reused in place
  EXPECT_EQ(leaked(p, 0x77), 0);
  ASSERT_TRUE(parent_->fill(kBase, 0x22, kPage).ok());
  EXPECT_EQ(leaked(p, 0x77), 0);
}

// Fork inside a scope (no grace period, read-only pages shared): the
// scope's translations of them are protected as well.
TEST_P(StaleReadPaths, ForkInsideScope) {
  ASSERT_EQ(parent_->mprotect(kBase, 4 * kPage, PROT_READ), 0);
  child_.reset();  // the pages are the parent's alone again
  AddressSpace::AccessScope scope(*parent_);
  const auto* p = static_cast<const volatile unsigned char*>(scope.translate(kBase, false));
  ASSERT_NE(p, nullptr);
  int err = 0;
  auto c = parent_->fork(&err);
  ASSERT_NE(c, nullptr) << err;
  ASSERT_EQ(parent_->madvise(kBase, kPage, MADV_DONTNEED), 0);
  ASSERT_EQ(c->mprotect(kBase, 4 * kPage, PROT_READ | PROT_WRITE), 0);
  ASSERT_TRUE(c->fill(kBase, 0x77, kPage).ok());
  EXPECT_EQ(leaked(p, 0x11), 0);
}

// Concurrent: readers in the parent (read()) against a copy-on-write in
// the parent and an in-place write in the child; many rounds.
TEST_P(StaleReadPaths, ConcurrentReadersAgainstCowAndChildWrite) {
  for (int round = 0; round < 100; ++round) {
    child_.reset();
    ASSERT_TRUE(parent_->fill(kBase, 0x11, kPage).ok());
    child_ = parent_->fork();
    ASSERT_NE(child_, nullptr);
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 2; ++t)
      readers.emplace_back([&] {
        unsigned char buf[kPage];
        while (!stop.load(std::memory_order_relaxed)) {
          if (!parent_->read(kBase, buf, kPage).ok()) continue;
          for (unsigned char c : buf)
            if (c == 0x77) {
              bad.fetch_add(1);
              break;
            }
        }
      });
    std::this_thread::yield();
    ASSERT_TRUE(parent_->fill(kBase, 0x22, 1).ok());  // copy on write in the parent
    ASSERT_TRUE(child_->fill(kBase, 0x77, kPage).ok());
    stop = true;
    for (auto& t : readers) t.join();
    ASSERT_EQ(bad.load(), 0) << "round " << round;
  }
}

const auto kModes = ::testing::Values(LockMode::per_vma_refcount, LockMode::per_vma_rwsem, LockMode::mmap_lock);
std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, StaleReadPaths, kModes, mode_name);

// The allocation-failure fallback of MmuGather::finish (tlb.h): when the
// deferred release cannot be allocated, the frame keeps the parent's
// mapping and reference for good -- a leaked frame, never a stale read:
// the child copies instead of reusing the page in place.
TEST(StaleReadAllocFail, GatherAllocationFailureKeepsTheFrame) {
  mem::PhysMemOptions po;
  po.capacity_bytes = 4ull << 20;
  auto pm = std::make_unique<mem::PhysMem>(po);
  {
    AddressSpaceOptions o;
    o.phys = pm.get();
    auto parent = std::make_unique<AddressSpace>(o);
    ASSERT_EQ(parent->mmap(kBase, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
              static_cast<long>(kBase));
    ASSERT_TRUE(parent->fill(kBase, 0x11, kPage).ok());
    auto child = parent->fork();
    ASSERT_NE(child, nullptr);
    {
      AddressSpace::AccessScope scope(*parent);  // a holder: the release is deferred
      const auto* p = static_cast<const volatile unsigned char*>(scope.translate(kBase, false));
      ASSERT_NE(p, nullptr);
      t_failed_nothrow_new = 0;
      t_fail_nothrow_new = true;
      const bool ok = parent->fill(kBase, 0x22, 1).ok();  // copy on write: the gather must allocate
      t_fail_nothrow_new = false;
      ASSERT_TRUE(ok);
      EXPECT_GE(t_failed_nothrow_new, 1);
      ASSERT_TRUE(child->fill(kBase, 0x77, kPage).ok());  // copies: the frame counts two mappings
      EXPECT_EQ(leaked(p, 0x11), 0);
    }
    pm->drain_deferred();
    std::string why;
    EXPECT_TRUE(parent->validate(&why)) << why;
    EXPECT_TRUE(child->validate(&why)) << why;
    unsigned char b = 0;
    ASSERT_TRUE(child->read(kBase, &b, 1).ok());
    EXPECT_EQ(b, 0x77);
    ASSERT_TRUE(parent->read(kBase, &b, 1).ok());
    EXPECT_EQ(b, 0x22);
    child.reset();
    parent.reset();
  }
  pm->drain_deferred();
  EXPECT_EQ(pm->free_frames(), pm->capacity_frames() - 1) << "exactly the one frame is kept";
}

}  // namespace
}  // namespace vmspace
