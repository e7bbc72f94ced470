// SPDX-License-Identifier: MIT
// Stress tier: a file with a backing, mapped MAP_SHARED in two spaces that
// share one frame pool, written through both mappings and with pwrite while
// other threads write it back (msync MS_SYNC / MS_ASYNC, fsync, one of
// them from inside an AccessScope), punch holes into a range of it and
// read it; in all three lock modes.
//
// Every page has one owner thread (so the test has no data races of its
// own): writer A fills its pages through space A's mapping, writer B
// through space B's, the pwriter with pwrite, the puncher fills its pages
// and punches them (MADV_REMOVE), each remembering what the page holds
// now.  After the threads are joined, one more msync: the backing must
// hold exactly what memory holds, which must be what the owners last put
// there (nothing written before a write-back began is lost to a later
// clean page, nothing punched comes back).  validate() holds in both
// spaces.  Under tsan: the orderings of kPgDirty, write-notify faults,
// mapping_mkclean and the grace period; under asan: frames and files
// freed on the flusher thread.
#include <fcntl.h>
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/test_host.h"
#include "vmspace/address_space.h"
#include "vmspace/file_backing.h"
#include "vmspace/physical_memory.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kPages = 32;  // A: 0..7, B: 8..15, pwrite: 16..23, punch: 24..31
constexpr std::uint64_t kA = 0x300000000000, kB = 0x310000000000;
constexpr int kRW = PROT_READ | PROT_WRITE;
#if defined(__SANITIZE_THREAD__)
constexpr int kIters = 300;
#else
constexpr int kIters = 20000;
#endif

class WritebackStress : public ::testing::TestWithParam<LockMode> {};

TEST_P(WritebackStress, BackingEqualsMemoryAfterTheLastSync) {
  auto pool = std::make_shared<PhysicalMemory>(PhysicalMemory::Options{4096 * kPage, false});
  AddressSpaceOptions o = test::test_options(GetParam());
  o.pool = pool;
  AddressSpace a(o), b(o);
  auto backing = std::make_shared<MemoryBacking>(std::vector<unsigned char>(kPages * kPage, 0x11));
  const int fa = a.open_file(backing, "/stress/data", O_RDWR);
  ASSERT_GE(fa, 0);
  const int fb = a.send_file(fa, b);
  ASSERT_GE(fb, 0);
  ASSERT_EQ(a.mmap(kA, kPages * kPage, kRW, MAP_SHARED | MAP_FIXED, fa, 0), static_cast<long>(kA));
  ASSERT_EQ(b.mmap(kB, kPages * kPage, kRW, MAP_SHARED | MAP_FIXED, fb, 0), static_cast<long>(kB));

  std::vector<unsigned char> model(kPages, 0x11);  // each page's byte, written by its owner only
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  auto owner = [&](std::uint64_t first, auto&& step) {
    return std::thread([&, first, step] {
      for (int i = 0; i < kIters && !stop.load(std::memory_order_relaxed); ++i) {
        const std::uint64_t page = first + static_cast<std::uint64_t>(i) % 8;
        const auto v = static_cast<unsigned char>(0x20 + (i % 200));
        if (!step(page, v)) errors.fetch_add(1);
      }
    });
  };
  std::vector<std::thread> ts;
  ts.push_back(owner(0, [&](std::uint64_t p, unsigned char v) {
    model[p] = v;
    return a.fill(kA + p * kPage, v, kPage).ok();
  }));
  ts.push_back(owner(8, [&](std::uint64_t p, unsigned char v) {
    model[p] = v;
    return b.fill(kB + p * kPage, v, kPage).ok();
  }));
  ts.push_back(owner(16, [&](std::uint64_t p, unsigned char v) {
    std::vector<unsigned char> buf(kPage, v);
    model[p] = v;
    return a.pwrite(fa, buf.data(), kPage, static_cast<std::int64_t>(p * kPage)) == static_cast<long>(kPage);
  }));
  ts.push_back(owner(24, [&](std::uint64_t p, unsigned char v) {
    if (v % 3 == 0) {  // punch: the page reads zero from now on
      model[p] = 0;
      return b.madvise(kB + p * kPage, kPage, MADV_REMOVE) == 0;
    }
    model[p] = v;
    return a.fill(kA + p * kPage, v, kPage).ok();
  }));
  std::thread syncer([&] {
    for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      int r;
      switch (i % 4) {
        case 0: r = a.msync(kA, kPages * kPage, MS_SYNC); break;
        case 1: r = b.msync(kB, kPages * kPage, MS_ASYNC); break;
        case 2: r = b.fsync(fb); break;
        default: {
          AddressSpace::AccessScope scope(a);  // write-back that cannot wait for a grace period
          r = a.msync(kA + 8 * kPage, 16 * kPage, MS_SYNC);
        }
      }
      if (r != 0) errors.fetch_add(1);
    }
  });
  std::thread reader([&] {
    unsigned char byte;
    for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i)
      if (!b.read(kB + (i % kPages) * kPage + (i % kPage), &byte, 1).ok()) errors.fetch_add(1);
  });
  for (auto& t : ts) t.join();
  stop.store(true);
  syncer.join();
  reader.join();
  EXPECT_EQ(errors.load(), 0);

  ASSERT_EQ(a.msync(kA, kPages * kPage, MS_SYNC), 0);
  std::vector<unsigned char> mem(kPages * kPage);
  ASSERT_TRUE(b.read(kB, mem.data(), mem.size()).ok());
  const std::vector<unsigned char> stored = backing->contents();
  ASSERT_EQ(stored.size(), mem.size());
  for (std::uint64_t p = 0; p < kPages; ++p) {
    for (std::uint64_t i = 0; i < kPage; ++i) {
      ASSERT_EQ(mem[p * kPage + i], model[p]) << "memory, page " << p << " byte " << i;
      ASSERT_EQ(stored[p * kPage + i], model[p]) << "backing, page " << p << " byte " << i;
    }
  }
  std::string why;
  EXPECT_TRUE(a.validate(&why)) << why;
  EXPECT_TRUE(b.validate(&why)) << why;
}

INSTANTIATE_TEST_SUITE_P(AllModes, WritebackStress, ::testing::ValuesIn(kAllLockModes),
                         [](const auto& i) { return std::string(lock_mode_name(i.param)); });

}  // namespace
}  // namespace vmspace
