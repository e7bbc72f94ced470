// SPDX-License-Identifier: MIT
// Frames freed by munmap are usable again, whichever thread freed them
// (issue 12, bug 3).  With a 32-frame pool: the pages of a 16-page shared
// mapping are freed on liburcu's call_rcu worker (the VMA, and with it the
// shmem object holding them, is freed after a grace period), and the
// frames another thread freed or still caches sit in that thread's
// per-thread batches.  A fault that finds the pool empty must get them
// back (the fault path drains deferred frees and retries).
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kPage = 4096;
constexpr int kRW = PROT_READ | PROT_WRITE;

class Reclaim : public ::testing::TestWithParam<LockMode> {
 protected:
  AddressSpaceOptions opts() const {
    AddressSpaceOptions o;
    o.mode = GetParam();
    o.phys_bytes = 32 * kPage;
    o.phys_pretouch = false;
    return o;
  }
};

// Fill `pages` pages at va and read every byte back.
void fill_and_check(AddressSpace& as, std::uint64_t va, std::uint64_t pages, unsigned char byte) {
  AccessResult r = as.fill(va, byte, pages * kPage);
  ASSERT_TRUE(r.ok()) << fault_name(r.fault) << " at page " << (r.addr - va) / kPage << " of "
                      << pages;
  std::vector<unsigned char> buf(pages * kPage);
  ASSERT_TRUE(as.read(va, buf.data(), buf.size()).ok());
  for (std::size_t i = 0; i < buf.size(); ++i) ASSERT_EQ(buf[i], byte) << "byte " << i;
}

TEST_P(Reclaim, SharedMappingsFramesReusableAfterMunmap) {
  AddressSpace as(opts());
  long shared = as.mmap(0, 16 * kPage, kRW, MAP_SHARED | MAP_ANONYMOUS);
  ASSERT_GT(shared, 0);
  ASSERT_NO_FATAL_FAILURE(fill_and_check(as, shared, 16, 0x5a));
  ASSERT_EQ(as.munmap(shared, 16 * kPage), 0);
  long priv = as.mmap(0, 32 * kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS);
  ASSERT_GT(priv, 0);
  ASSERT_NO_FATAL_FAILURE(fill_and_check(as, priv, 32, 0xa5));  // today: OOM at page 16
  ASSERT_EQ(as.munmap(priv, 32 * kPage), 0);
  // And again, the other way round.
  shared = as.mmap(0, 32 * kPage, kRW, MAP_SHARED | MAP_ANONYMOUS);
  ASSERT_GT(shared, 0);
  ASSERT_NO_FATAL_FAILURE(fill_and_check(as, shared, 32, 0x3c));
}

// Another thread faulted 16 pages in (its refill took the whole pool: 16
// frames stay cached in it), unmapped them (16 frees pending in it), and
// stays alive.  This thread must still be able to fill all 32 pages.
TEST_P(Reclaim, FramesFreedOrCachedByAnotherLiveThreadAreReused) {
  AddressSpace as(opts());
  std::atomic<int> stage{0};
  std::thread other([&] {
    [&] {
      long va = as.mmap(0, 16 * kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS);
      ASSERT_GT(va, 0);
      ASSERT_NO_FATAL_FAILURE(fill_and_check(as, va, 16, 0x11));
      ASSERT_EQ(as.munmap(va, 16 * kPage), 0);
    }();
    stage.store(1);  // even after a failure, so the main thread goes on
    while (stage.load() != 2) std::this_thread::yield();
  });
  while (stage.load() == 0) std::this_thread::yield();
  long priv = as.mmap(0, 32 * kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS);
  EXPECT_GT(priv, 0);
  if (priv > 0) fill_and_check(as, priv, 32, 0x22);  // today: OOM at page 0
  stage.store(2);
  other.join();
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& info) {
  return std::string(lock_mode_name(info.param));
}

INSTANTIATE_TEST_SUITE_P(AllModes, Reclaim, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace
