// SPDX-License-Identifier: MIT
// A layout change must not need the heap while it changes VMAs one by one:
// an allocation that fails there (std::bad_alloc) would leave the change
// half done, with VMAs stamped write-locked that nobody unlocks.  In
// per_vma_range a writer lists the VMAs it write-locks and the ones it
// removes; those lists were std::vectors that grew as a change met more
// VMAs (issue 19: "OOM-safe per-writer lists").  Here every plain
// operator new (throwing or nothrow) of the changing thread fails while an mprotect and a
// munmap meet 64 VMAs: the mprotect must succeed, the munmap succeed or
// fail with -ENOMEM before it changed anything (it gathers the VMAs into
// a list first), no std::bad_alloc may escape, and the space must be left
// whole (no VMA of the range left, faults beside it served, the range
// usable again).
//
// Its own executable: it replaces the global operator new.  Only the
// thread that arms it sees failures; the tree's and the VMAs' pools
// (aligned new, their own slabs) are not failed: the change would then
// fail cleanly with -ENOMEM before it started (alloc_fail_test covers
// that).
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <new>
#include <thread>

#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace {
thread_local bool t_fail_new = false;
thread_local unsigned long t_failed = 0;

void* plain_new(std::size_t n) {
  if (t_fail_new) {
    ++t_failed;
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}

// Runs f with the calling thread's plain operator new failing; returns
// its result, or 1000 when it threw (nothing may allocate while armed:
// gtest's reporting neither).
template <typename F>
int run_armed(F f) {
  t_fail_new = true;
  int r;
  try {
    r = f();
  } catch (const std::bad_alloc&) {
    r = 1000;
  }
  t_fail_new = false;
  return r;
}
}  // namespace

void* operator new(std::size_t n) { return plain_new(n); }
void* operator new[](std::size_t n) { return plain_new(n); }
// The nothrow forms too (the library's allocations use them), so that
// every plain new and delete pairs with this malloc and free.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return plain_new(n);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x300000000000, kPage = 4096;
constexpr int kVmas = 64;

class WriterAlloc : public ::testing::TestWithParam<LockMode> {};

TEST_P(WriterAlloc, ChangesMeetingManyVmasNeedNoHeap) {
  AddressSpace as(test::test_options(GetParam()));
  // Beside the range: must stay and stay usable.
  const std::uint64_t beside = kBase - 64 * kPage;
  ASSERT_EQ(as.mmap(beside, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
            static_cast<long>(beside));
  // 64 adjacent pages of alternating protection (64 VMAs), one mprotect
  // that merges them (63 removed), apart again, one munmap of all 64.
  // Only the two changes run armed.
  auto sequence = [&](bool arm) {
    auto changed = [&](auto f) { return arm ? run_armed(f) : f(); };
    for (int i = 0; i < kVmas; ++i) {
      const std::uint64_t a = kBase + static_cast<std::uint64_t>(i) * kPage;
      ASSERT_EQ(as.mmap(a, kPage, i % 2 ? PROT_READ : PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
                static_cast<long>(a));
    }
    ASSERT_EQ(as.vmas(kBase, kBase + kVmas * kPage).size(), static_cast<std::size_t>(kVmas));
    EXPECT_EQ(changed([&] { return as.mprotect(kBase, kVmas * kPage, PROT_READ); }), 0)
        << "(1000: std::bad_alloc escaped from mprotect)";
    EXPECT_EQ(as.vmas(kBase, kBase + kVmas * kPage).size(), 1u);
    for (int i = 1; i < kVmas; i += 2)
      ASSERT_EQ(as.mprotect(kBase + static_cast<std::uint64_t>(i) * kPage, kPage, PROT_NONE), 0);
    ASSERT_EQ(as.vmas(kBase, kBase + kVmas * kPage).size(), static_cast<std::size_t>(kVmas));
    // munmap gathers the VMAs into a list first (Linux: a tree it
    // preallocates): without memory for it, -ENOMEM before anything but
    // the edge splits changed, as Linux's munmap_gather_failed.
    const int r = changed([&] { return as.munmap(kBase, kVmas * kPage); });
    EXPECT_TRUE(r == 0 || r == -ENOMEM) << r << (r == 1000 ? ": std::bad_alloc escaped from munmap" : "");
    if (r == -ENOMEM) {
      EXPECT_EQ(as.vmas(kBase, kBase + kVmas * kPage).size(), static_cast<std::size_t>(kVmas));
      EXPECT_EQ(as.munmap(kBase, kVmas * kPage), 0);
    }
    EXPECT_TRUE(as.vmas(kBase, kBase + kVmas * kPage).empty());
  };
  // Unarmed first, on this thread: what the space itself keeps and grows
  // once (the tree's scratch list of overlapping entries) is grown here;
  // this test is about what each change needs.  Then armed, on a thread
  // whose per-thread state (a range writer's) is new.
  sequence(false);
  std::thread t([&] { sequence(true); });
  t.join();
  // Whole: faults beside the range are served, and the range maps again
  // and faults (no VMA left write-locked, none leaked: asan's leak check).
  EXPECT_EQ(as.fault_in(beside, AccessKind::write), Fault::none);
  ASSERT_EQ(as.mmap(kBase, kVmas * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
            static_cast<long>(kBase));
  EXPECT_EQ(as.fault_in(kBase + 5 * kPage, AccessKind::write), Fault::none);
  EXPECT_EQ(as.munmap(kBase - 64 * kPage, (kVmas + 64) * kPage), 0);
}

INSTANTIATE_TEST_SUITE_P(AllModes, WriterAlloc, ::testing::ValuesIn(kAllLockModes),
                         [](const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); });

}  // namespace
}  // namespace vmspace
