// SPDX-License-Identifier: MIT
// How removed VMAs are freed: after a grace period, private anonymous ones
// in per-thread batches (vma.cpp vm_area_free_now), handed to RCU when a
// batch fills, when the thread exits, and by vm_area_free_flush().  What a
// VMA's destruction releases is observable through its anonymous name (a
// shared reference held by the VMA).
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>

#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace::mm {
namespace {

constexpr std::uint64_t kBase = 0x20000000;
constexpr std::uint64_t kPage = 4096;

class VmaFree : public ::testing::TestWithParam<LockMode> {
 protected:
  VmaFree() : as_(test::test_options(GetParam())) {}
  MmStruct* mm() { return as_.mm(); }
  // Map one page at `addr` and give its VMA `name` (the VMA then holds a
  // reference to it).
  void map_named(std::uint64_t addr, const AnonName& name) {
    ASSERT_EQ(as_.mmap(addr, kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(addr));
    mmap_write_lock(mm());
    Vma* v = vma_lookup(mm(), addr);
    ASSERT_NE(v, nullptr);
    v->anon_name = name;
    mmap_write_unlock(mm());
  }
  AddressSpace as_;
};

TEST_P(VmaFree, AThreadsBatchIsFreedWhenTheThreadExits) {
  // Fewer VMAs than a batch: nothing but the thread's exit hands them on.
  const AnonName name = std::make_shared<const std::string>("batch");
  for (std::uint64_t i = 0; i < 3; ++i) map_named(kBase + 2 * i * kPage, name);
  EXPECT_EQ(name.use_count(), 4);
  std::thread([&] {
    for (std::uint64_t i = 0; i < 3; ++i) EXPECT_EQ(as_.munmap(kBase + 2 * i * kPage, kPage), 0);
  }).join();
  rcu::barrier();
  EXPECT_EQ(name.use_count(), 1) << "a VMA removed by a thread that exited was never destroyed";
}

TEST_P(VmaFree, FlushHandsThisThreadsBatchToRcu) {
  const AnonName name = std::make_shared<const std::string>("flush");
  map_named(kBase, name);
  EXPECT_EQ(as_.munmap(kBase, kPage), 0);
  vm_area_free_flush();
  rcu::barrier();
  EXPECT_EQ(name.use_count(), 1);
}

TEST_P(VmaFree, AFullBatchGoesToRcuWithoutAFlush) {
  // 64 removals on one thread fill at least one batch; each VMA of a full
  // batch is destroyed after a grace period, with no flush.
  const AnonName name = std::make_shared<const std::string>("full");
  std::thread([&] {
    vm_area_free_flush();  // start from an empty batch
    for (std::uint64_t i = 0; i < 64; ++i) {
      map_named(kBase + 2 * i * kPage, name);
      EXPECT_EQ(as_.munmap(kBase + 2 * i * kPage, kPage), 0);
    }
    rcu::barrier();
    // At most one partial batch (< 32 VMAs) is still waiting.
    EXPECT_LE(name.use_count(), 32);
    EXPECT_GE(name.use_count(), 1);
  }).join();
  rcu::barrier();
  EXPECT_EQ(name.use_count(), 1);
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }

INSTANTIATE_TEST_SUITE_P(AllModes, VmaFree, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace::mm
