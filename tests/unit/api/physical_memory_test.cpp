// SPDX-License-Identifier: MIT
// The public frame pool (physical_memory.h): shared by spaces, kept alive
// by them, growing on demand to its limit and failing only there; a
// default space costs almost no host memory before its first fault.
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "support/resident.h"
#include "vmspace/address_space.h"
#include "vmspace/physical_memory.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kPage = 4096;
constexpr int kRW = PROT_READ | PROT_WRITE;

using test::resident_bytes;

TEST(PhysicalMemory, SharedBySpacesThatKeepItAlive) {
  auto pool = std::make_shared<PhysicalMemory>(PhysicalMemory::Options{64 * kPage, false});
  EXPECT_EQ(pool->limit_bytes(), 64 * kPage);
  EXPECT_EQ(pool->free_bytes(), 64 * kPage);
  AddressSpaceOptions o;
  o.pool = pool;
  auto a = std::make_unique<AddressSpace>(o);
  auto b = std::make_unique<AddressSpace>(o);
  pool.reset();  // the spaces hold it
  const int fd = a->memfd_create("shared");
  ASSERT_GE(fd, 0);
  ASSERT_EQ(a->pwrite(fd, "hello", 5, 0), 5);
  const int fd_b = a->send_file(fd, *b);  // same pool: no -EXDEV
  ASSERT_GE(fd_b, 0);
  ASSERT_EQ(b->mmap(kBase, kPage, PROT_READ, MAP_SHARED | MAP_FIXED, fd_b, 0), static_cast<long>(kBase));
  char got[5] = {};
  ASSERT_TRUE(b->read(kBase, got, 5).ok());
  EXPECT_EQ(std::string(got, 5), "hello");
  a.reset();
  ASSERT_TRUE(b->read(kBase, got, 5).ok());  // the pool and the file live on
  EXPECT_EQ(std::string(got, 5), "hello");
}

TEST(PhysicalMemory, OutOfMemoryOnlyAtTheLimit) {
  AddressSpaceOptions o;
  o.phys_bytes = 32 * kPage;
  AddressSpace as(o);
  ASSERT_EQ(as.mmap(kBase, 64 * kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(kBase));
  // Page tables come from the host heap, not the pool: all 32 frames are
  // for pages.
  AccessResult r = as.fill(kBase, 0x5a, 64 * kPage);
  EXPECT_EQ(r.fault, Fault::oom);
  EXPECT_EQ(r.addr, kBase + 32 * kPage);
  ASSERT_EQ(as.munmap(kBase, 64 * kPage), 0);
  // Freed frames come back (after a grace period the fault path waits for).
  ASSERT_EQ(as.mmap(kBase, 32 * kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(kBase));
  EXPECT_TRUE(as.fill(kBase, 0x5b, 32 * kPage).ok());
}

// A default space reserves its pool but touches nothing: well under 1 MiB
// of host memory until the first fault.  (The pool was pre-touched by
// default before: 256 MiB.)
TEST(PhysicalMemory, ADefaultSpaceCostsNothingUntilUsed) {
  const std::uint64_t before = resident_bytes();
  auto as = std::make_unique<AddressSpace>();
  const std::uint64_t after = resident_bytes();
  EXPECT_LT(after - std::min(after, before), 1ull << 20);
  ASSERT_EQ(as->mmap(kBase, 64 * kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(kBase));
  EXPECT_TRUE(as->fill(kBase, 1, 64 * kPage).ok());
}

}  // namespace
}  // namespace vmspace
