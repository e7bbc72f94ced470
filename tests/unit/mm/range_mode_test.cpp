// SPDX-License-Identifier: MIT
// per_vma_range (issue 19): what the mode adds to the mmap_lock's
// semantics, deterministically.  Layout changes whose neighbourhoods are
// disjoint run while another holds its range; ones that meet wait; the
// calls that need the whole space take it; errno values near
// max_map_count are those of the serial modes.  (Every other unit test
// runs in this mode too, through kAllLockModes.)
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <future>
#include <string>
#include <vector>

#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/range_writer.h"
#include "mm/vma.h"
#include "support/test_host.h"
#include "unit/sync/test_util.h"
#include "vmspace/address_space.h"

namespace vmspace::mm {
namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kBase = 0x300000000000;
constexpr std::uint64_t kFar = kBase + (256ull << 20);
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr int kAnon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;

using test::get_or_die;
using test::is_blocked;

AddressSpaceOptions range_options() { return test::test_options(LockMode::per_vma_range); }

TEST(RangeMode, DisjointChangesRunWhileARangeIsHeld) {
  AddressSpace as(range_options());
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, kAnon), static_cast<long>(kBase));
  ASSERT_EQ(as.mmap(kFar, 4 * kPage, kRW, kAnon), static_cast<long>(kFar));
  // This thread holds the range of a change at kBase.
  EXPECT_TRUE(range_write_lock(as.mm(), kBase, kBase + kPage));
  // Far away: mmap, mprotect and munmap finish while it is held.
  auto far = std::async(std::launch::async, [&] {
    long r = as.mmap(kFar + 8 * kPage, kPage, kRW, kAnon);
    if (r >= 0) r = as.mprotect(kFar, 2 * kPage, PROT_READ);
    if (r >= 0) r = as.munmap(kFar + 8 * kPage, kPage);
    return r;
  });
  EXPECT_EQ(get_or_die(far, "a change far from the held range"), 0);
  // Next to it (the page after the VMA at kBase: they would merge): waits.
  auto near = std::async(std::launch::async, [&] { return as.mmap(kBase + 4 * kPage, kPage, kRW, kAnon); });
  EXPECT_TRUE(is_blocked(near)) << "an mmap adjacent to a held range did not wait";
  // So does anything that needs the whole space.
  auto whole = std::async(std::launch::async, [&] { return as.map_count(); });
  EXPECT_TRUE(is_blocked(whole)) << "a whole-space reader did not wait for a ranged writer";
  range_unlock(as.mm());
  EXPECT_EQ(get_or_die(near, "the adjacent mmap"), static_cast<long>(kBase + 4 * kPage));
  EXPECT_EQ(get_or_die(whole, "map_count"), 3);  // [kBase, +5 pages) merged; kFar split in two
  EXPECT_EQ(as.vmas(kBase, kBase + 8 * kPage).size(), 1u);
  EXPECT_TRUE(as.validate());
}

TEST(RangeMode, WhatNeedsTheWholeSpaceTakesIt) {
  AddressSpace as(range_options());
  auto counts = [&] {
    return std::pair{as.vm_stat(VmStat::range_write_ranged), as.vm_stat(VmStat::range_write_whole)};
  };
  auto [r0, w0] = counts();
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, kAnon), static_cast<long>(kBase));
  ASSERT_EQ(as.mprotect(kBase, kPage, PROT_READ), 0);
  ASSERT_EQ(as.munmap(kBase + 3 * kPage, kPage), 0);
  auto [r1, w1] = counts();
  EXPECT_EQ(r1 - r0, 3u);
  EXPECT_EQ(w1 - w0, 0u);
  // Populating, locked memory, stacks: the whole space.
  ASSERT_EQ(as.mmap(kFar, 4 * kPage, kRW, kAnon | MAP_POPULATE), static_cast<long>(kFar));
  ASSERT_EQ(as.mmap(kFar + 16 * kPage, 4 * kPage, kRW, kAnon | MAP_GROWSDOWN), static_cast<long>(kFar + 16 * kPage));
  ASSERT_EQ(as.mlock(kFar, kPage), 0);  // whole space (not a ranged call), no count
  ASSERT_EQ(as.mlock(kFar + 2 * kPage, kPage), 0);
  ASSERT_EQ(as.munmap(kFar, 2 * kPage), 0);  // meets the locked page
  // MAP_FIXED over locked memory (locked_vm changes).
  ASSERT_EQ(as.mmap(kFar + 2 * kPage, kPage, kRW, kAnon), static_cast<long>(kFar + 2 * kPage));
  ASSERT_EQ(as.mprotect(kFar + 16 * kPage, kPage, PROT_READ | PROT_GROWSDOWN), 0);
  auto [r2, w2] = counts();
  EXPECT_EQ(r2 - r1, 0u);
  EXPECT_EQ(w2 - w1, 5u);
  EXPECT_EQ(as.mm()->locked_vm, 0u);
  EXPECT_TRUE(as.validate());
}

TEST(RangeMode, PlacementAndHintsLandWhereTheSerialModesPutThem) {
  // Without MAP_FIXED the place is guessed from a snapshot and checked
  // under the lock; the answers are those of per_vma_refcount.
  AddressSpace a(range_options()), b(test::test_options(LockMode::per_vma_refcount));
  const std::vector<std::pair<std::uint64_t, std::uint64_t>> reqs = {
      {0, kPage}, {0, 5 * kPage}, {0, 2ull << 20}, {kBase, kPage}, {kBase, 3 * kPage}, {0, 4ull << 20}, {kBase + kPage, kPage}};
  for (const auto& [hint, len] : reqs) {
    const long ra = a.mmap(hint, len, kRW, MAP_PRIVATE | MAP_ANONYMOUS);
    const long rb = b.mmap(hint, len, kRW, MAP_PRIVATE | MAP_ANONYMOUS);
    EXPECT_EQ(ra, rb) << "hint " << std::hex << hint << " length " << len;
  }
  EXPECT_EQ(a.maps(), b.maps());
  EXPECT_GT(a.vm_stat(VmStat::range_write_ranged), 0u);
}

TEST(RangeMode, MaxMapCountErrnosAreTheSerialModes) {
  // Near the limit every change takes the whole space: the same results
  // as per_vma_refcount, call by call.
  auto opts = [](LockMode m) {
    AddressSpaceOptions o = test::test_options(m);
    o.max_map_count = 12;
    return o;
  };
  AddressSpace a(opts(LockMode::per_vma_range)), b(opts(LockMode::per_vma_refcount));
  for (int i = 0; i < 20; ++i) {
    const std::uint64_t at = kBase + static_cast<std::uint64_t>(i) * 2 * kPage;
    EXPECT_EQ(a.mmap(at, kPage, kRW, kAnon), b.mmap(at, kPage, kRW, kAnon)) << i;
  }
  // Splits in the middle of a VMA (one more each), and unmaps that split.
  ASSERT_EQ(a.mmap(kFar, 16 * kPage, kRW, kAnon), b.mmap(kFar, 16 * kPage, kRW, kAnon));
  for (int i = 0; i < 6; ++i) {
    const std::uint64_t at = kFar + static_cast<std::uint64_t>(2 * i + 1) * kPage;
    EXPECT_EQ(a.mprotect(at, kPage, PROT_READ), b.mprotect(at, kPage, PROT_READ)) << i;
    EXPECT_EQ(a.munmap(at + 16 * kPage, kPage), b.munmap(at + 16 * kPage, kPage)) << i;
  }
  EXPECT_EQ(a.map_count(), b.map_count());
  EXPECT_EQ(a.maps(), b.maps());
  EXPECT_GT(a.vm_stat(VmStat::range_write_whole), 0u);
}

TEST(RangeMode, VmaWriteLocksEndWithTheirWriter) {
  // A VMA a ranged writer stamped is write-locked (a fault cannot take it)
  // until that writer ends, and unlocked after, with no sequence of a
  // finished writer left on it.
  AddressSpace as(range_options());
  MmStruct* mm = as.mm();
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, kAnon), static_cast<long>(kBase));
  ASSERT_TRUE(range_write_lock(mm, kBase, kBase + kPage));
  Vma* v = vma_lookup(mm, kBase);
  ASSERT_NE(v, nullptr);
  vma_start_write(v);
  const std::uint64_t s = v->vm_lock_seq.load();
  EXPECT_NE(s, kVmaUnlockedSeq);
  EXPECT_EQ(s % 2, 1u);
  auto fault = std::async(std::launch::async, [&] {
    Vma* r = lock_vma_under_rcu(mm, kBase);
    if (r != nullptr) vma_end_read(r);
    return r != nullptr;
  });
  EXPECT_FALSE(get_or_die(fault, "lock_vma_under_rcu")) << "a fault took a write-locked VMA";
  range_unlock(mm);
  EXPECT_EQ(v->vm_lock_seq.load(), kVmaUnlockedSeq);
  Vma* r = lock_vma_under_rcu(mm, kBase);
  EXPECT_EQ(r, v);
  if (r != nullptr) vma_end_read(r);
}

}  // namespace
}  // namespace vmspace::mm
