// SPDX-License-Identifier: MIT
// memfd files: shared and private mappings of them, faults on them, and
// ftruncate with its races (issue 14, first part).
//   - contents: shared mappings and pwrite/pread see the same bytes;
//     private mappings read the file and copy a page on the first write;
//   - the size: pages wholly past it fault SIGBUS, the bytes past it in the
//     last page read zero, truncation unmaps every mapping (private copies
//     too), growth reads zeros;
//   - races (test hooks, compiled out of release builds): a fault that took
//     a page from the cache before ftruncate removed it must not map it (or
//     a copy of it) after ftruncate returned.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "fault/fault.h"
#include "mm/mm_types.h"
#include "mm/truncate.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kPage = 4096;
constexpr int kRW = PROT_READ | PROT_WRITE;

class FileMap : public ::testing::TestWithParam<LockMode> {
 protected:
  AddressSpaceOptions opts() const {
    AddressSpaceOptions o = test::test_options(GetParam());
    o.phys_bytes = 1024 * kPage;
    o.phys_pretouch = false;
    return o;
  }
  // A file of `pages` pages, page i filled with byte 0x10 + i.
  static int make_file(AddressSpace& as, std::uint64_t pages) {
    const int fd = as.memfd_create("data");
    EXPECT_GE(fd, 0);
    std::vector<unsigned char> page(kPage);
    for (std::uint64_t i = 0; i < pages; ++i) {
      std::memset(page.data(), static_cast<int>(0x10 + i), kPage);
      EXPECT_EQ(as.pwrite(fd, page.data(), kPage, static_cast<std::int64_t>(i * kPage)), static_cast<long>(kPage));
    }
    return fd;
  }
  static unsigned char byte_at(AddressSpace& as, std::uint64_t va, Fault* fault = nullptr) {
    unsigned char b = 0xee;
    AccessResult r = as.read(va, &b, 1);
    if (fault != nullptr) *fault = r.fault;
    return b;
  }
  static unsigned char file_byte(AddressSpace& as, int fd, std::uint64_t off) {
    unsigned char b = 0xee;
    EXPECT_EQ(as.pread(fd, &b, 1, static_cast<std::int64_t>(off)), 1);
    return b;
  }
};

TEST_P(FileMap, SharedMappingsAndTheFileSeeTheSameBytes) {
  AddressSpace as(opts());
  const int fd = make_file(as, 4);
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  // A second mapping of pages 2-3.
  const std::uint64_t b = kBase + 16 * kPage;
  ASSERT_EQ(as.mmap(b, 2 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 2 * kPage), static_cast<long>(b));
  EXPECT_EQ(byte_at(as, kBase + 2 * kPage + 5), 0x12);
  ASSERT_TRUE(as.fill(b + 7, 0x77, 1).ok());
  EXPECT_EQ(byte_at(as, kBase + 2 * kPage + 7), 0x77);
  EXPECT_EQ(file_byte(as, fd, 2 * kPage + 7), 0x77);
  const unsigned char v = 0x42;
  ASSERT_EQ(as.pwrite(fd, &v, 1, 3 * kPage), 1);
  EXPECT_EQ(byte_at(as, b + kPage), 0x42);
  EXPECT_EQ(byte_at(as, kBase + 3 * kPage), 0x42);
  // Closing the descriptor keeps the mappings' file.
  ASSERT_EQ(as.close(fd), 0);
  EXPECT_EQ(as.close(fd), -EBADF);
  EXPECT_EQ(byte_at(as, kBase + kPage), 0x11);
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

TEST_P(FileMap, PrivateMappingsCopyOnTheFirstWrite) {
  AddressSpace as(opts());
  const int fd = make_file(as, 3);
  ASSERT_EQ(as.mmap(kBase, 3 * kPage, kRW, MAP_PRIVATE | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  EXPECT_EQ(byte_at(as, kBase + kPage), 0x11);  // read: the file's page itself
  ASSERT_TRUE(as.fill(kBase + kPage + 1, 0x99, 1).ok());  // write after read: copy (do_wp_page)
  ASSERT_TRUE(as.fill(kBase + 2 * kPage, 0x98, 1).ok());   // write first: copy (do_cow_fault)
  EXPECT_EQ(file_byte(as, fd, kPage + 1), 0x11) << "a private write reached the file";
  EXPECT_EQ(file_byte(as, fd, 2 * kPage), 0x12);
  EXPECT_EQ(byte_at(as, kBase + kPage + 1), 0x99);
  EXPECT_EQ(byte_at(as, kBase + kPage + 2), 0x11) << "the copy lost the file's bytes";
  // The file changes under the pages not copied, not under the copies.
  const unsigned char v = 0x55;
  ASSERT_EQ(as.pwrite(fd, &v, 1, 0), 1);
  ASSERT_EQ(as.pwrite(fd, &v, 1, kPage + 2), 1);
  EXPECT_EQ(byte_at(as, kBase), 0x55);
  EXPECT_EQ(byte_at(as, kBase + kPage + 2), 0x11);
  // smaps: two anonymous copies, three resident pages.
  const std::string sm = as.smaps();
  EXPECT_NE(sm.find("Rss:                  12 kB"), std::string::npos) << sm;
  EXPECT_NE(sm.find("Anonymous:             8 kB"), std::string::npos) << sm;
  EXPECT_NE(as.maps().find("/memfd:data (deleted)"), std::string::npos) << as.maps();
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

TEST_P(FileMap, TruncateUnmapsEveryMappingAndGrowthReadsZeros) {
  AddressSpace as(opts());
  const int fd = make_file(as, 4);
  const std::uint64_t priv = kBase + 16 * kPage;
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  ASSERT_EQ(as.mmap(priv, 4 * kPage, kRW, MAP_PRIVATE | MAP_FIXED, fd, 0), static_cast<long>(priv));
  ASSERT_TRUE(as.fill(kBase, 0x33, 4 * kPage).ok());
  ASSERT_TRUE(as.fill(priv + 3 * kPage, 0x44, kPage).ok());  // a private copy of page 3
  const std::uint64_t rss = as.rss_pages();
  ASSERT_EQ(as.ftruncate(fd, static_cast<std::int64_t>(kPage + 100)), 0);  // two pages left, the second partial
  Fault f = Fault::none;
  byte_at(as, kBase + 2 * kPage, &f);
  EXPECT_EQ(f, Fault::sigbus);
  byte_at(as, priv + 3 * kPage, &f);
  EXPECT_EQ(f, Fault::sigbus) << "a private copy past the end survived the truncate";
  EXPECT_EQ(byte_at(as, kBase + kPage + 99), 0x33);
  EXPECT_EQ(byte_at(as, kBase + kPage + 100), 0) << "the bytes past the end were not zeroed";
  EXPECT_EQ(byte_at(as, priv + kPage + 100), 0);
  EXPECT_LT(as.rss_pages(), rss);
  ASSERT_EQ(as.ftruncate(fd, static_cast<std::int64_t>(4 * kPage)), 0);
  EXPECT_EQ(byte_at(as, kBase + 3 * kPage + 9, &f), 0);
  EXPECT_EQ(f, Fault::none);
  EXPECT_EQ(byte_at(as, priv + 3 * kPage), 0);
  EXPECT_EQ(as.ftruncate(fd, -1), -EINVAL);
  EXPECT_EQ(as.ftruncate(fd + 1, 0), -EBADF);
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

// A read fault maps the cached pages of its aligned 16-page window too
// (Linux's fault-around), inside the VMA and the file's size only, never
// over what is mapped; a private mapping gets them read-only.
TEST_P(FileMap, ReadFaultsMapTheCachedPagesAround) {
  AddressSpace as(opts());
  const int fd = make_file(as, 40);
  ASSERT_EQ(as.ftruncate(fd, static_cast<std::int64_t>(20 * kPage + 1)), 0);  // 21 pages, the last partial
  // The VMA starts at file page 2 and covers pages 2..29 (past the end).
  ASSERT_EQ(as.mmap(kBase + 2 * kPage, 28 * kPage, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 2 * kPage),
            static_cast<long>(kBase + 2 * kPage));
  // Linux's window: 16 pages from the aligned start, moved up to the VMA's
  // start: [2, 18); then [16, 32), of which 18..20 are in the file.
  EXPECT_EQ(byte_at(as, kBase + 5 * kPage), 0x15);
  EXPECT_EQ(as.rss_pages(), 16u);
  EXPECT_EQ(byte_at(as, kBase + 20 * kPage), 0x24);
  EXPECT_EQ(as.rss_pages(), 19u) << "the window reached past the file's 21 pages";
  Fault f = Fault::none;
  byte_at(as, kBase + 21 * kPage, &f);
  EXPECT_EQ(f, Fault::sigbus);
  // Private: read-only around, and a write copies.
  const std::uint64_t priv = kBase + 64 * kPage;
  ASSERT_EQ(as.mmap(priv, 16 * kPage, kRW, MAP_PRIVATE | MAP_FIXED, fd, 0), static_cast<long>(priv));
  EXPECT_EQ(byte_at(as, priv), 0x10);
  ASSERT_TRUE(as.fill(priv + 3 * kPage, 0x77, 1).ok());
  EXPECT_EQ(file_byte(as, fd, 3 * kPage), 0x13) << "a write through a page mapped around reached the file";
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

TEST_P(FileMap, MmapOfAFileChecksItsArguments) {
  AddressSpace as(opts());
  const int fd = make_file(as, 1);
  EXPECT_EQ(as.mmap(kBase, kPage, kRW, MAP_SHARED | MAP_FIXED, fd + 5, 0), -EBADF);
  EXPECT_EQ(as.mmap(kBase, kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 100), -EINVAL);
  EXPECT_EQ(as.mmap(kBase, kPage, kRW, MAP_SHARED | MAP_FIXED | MAP_GROWSDOWN, fd, 0), -EINVAL);
  EXPECT_EQ(as.mmap(kBase, 2 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0xfffffffffffff000), -EOVERFLOW);
  // Adjacent mappings at adjoining offsets merge; others do not.
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  ASSERT_EQ(as.mmap(kBase + kPage, kPage, kRW, MAP_SHARED | MAP_FIXED, fd, kPage), static_cast<long>(kBase + kPage));
  EXPECT_EQ(as.map_count(), 1);
  ASSERT_EQ(as.mmap(kBase + 2 * kPage, kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase + 2 * kPage));
  EXPECT_EQ(as.map_count(), 2);
  EXPECT_EQ(as.memfd_create(std::string(250, 'x')), -EINVAL);
}

// pwrite extends the file only as far as it wrote: a zero-length write
// changes nothing (Linux returns 0 and leaves the size).
TEST_P(FileMap, PwriteExtendsOnlyAsFarAsItWrote) {
  AddressSpace as(opts());
  const int fd = as.memfd_create("w");
  ASSERT_GE(fd, 0);
  const unsigned char v = 7;
  EXPECT_EQ(as.pwrite(fd, &v, 0, 2 * kPage), 0);
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  Fault f = Fault::none;
  byte_at(as, kBase, &f);
  EXPECT_EQ(f, Fault::sigbus) << "a zero-length pwrite grew the file";
  EXPECT_EQ(as.pwrite(fd, &v, 1, kPage + 10), 1);  // two pages now, the second up to byte 10
  EXPECT_EQ(byte_at(as, kBase + kPage + 10, &f), 7);
  EXPECT_EQ(f, Fault::none);
  EXPECT_EQ(byte_at(as, kBase, &f), 0);
  byte_at(as, kBase + 2 * kPage, &f);
  EXPECT_EQ(f, Fault::sigbus);
  unsigned char buf[8] = {};
  EXPECT_EQ(as.pread(fd, buf, sizeof buf, kPage + 8), 3) << "pread stops at the end";
  EXPECT_EQ(as.pwrite(fd, &v, 1, -1), -EINVAL);
  EXPECT_EQ(as.pread(fd + 3, buf, 1, 0), -EBADF);
}

// The races.  A fault takes the page from the cache; before it maps the
// page (or its copy), ftruncate removes the page and returns.  The fault
// must then find the page gone and report SIGBUS: mapping it would show
// data past the end after ftruncate returned.
struct Gate {
  std::promise<void> arrived, go;
  std::shared_future<void> go_f = go.get_future().share();
  std::atomic<int> calls{0};
  static void hook(void* arg) {
    auto* g = static_cast<Gate*>(arg);
    if (g->calls.fetch_add(1) != 0) return;
    g->arrived.set_value();
    g->go_f.wait();
  }
};

void truncate_during_fault(AddressSpace& as, int fd, std::uint64_t va, bool write) {
  Gate gate;
  fault::FaultHooks hooks;
  hooks.shared_page_taken = &Gate::hook;
  hooks.arg = &gate;
  AccessResult r;
  std::thread faulter([&] {
    fault::set_fault_hooks(&hooks);
    unsigned char b = 0x5a;
    r = write ? as.write(va, &b, 1) : as.read(va, &b, 1);
    fault::set_fault_hooks(nullptr);
  });
  gate.arrived.get_future().wait();
  ASSERT_EQ(as.ftruncate(fd, 0), 0);  // returns before the fault maps anything
  gate.go.set_value();
  faulter.join();
  EXPECT_EQ(r.fault, Fault::sigbus) << "the fault mapped a page ftruncate had removed";
  EXPECT_EQ(as.rss_pages(), 0u);
}

#if defined(VMSPACE_DEBUG_CHECKS)
constexpr bool kHooks = true;
#else
constexpr bool kHooks = false;
#endif

TEST_P(FileMap, TruncateRacingASharedFault) {
  if (!kHooks) GTEST_SKIP() << "test hooks are compiled out of release builds";
  AddressSpace as(opts());
  const int fd = make_file(as, 1);
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  truncate_during_fault(as, fd, kBase, /*write=*/false);
}

TEST_P(FileMap, TruncateRacingAPrivateCopy) {
  if (!kHooks) GTEST_SKIP() << "test hooks are compiled out of release builds";
  AddressSpace as(opts());
  const int fd = make_file(as, 1);
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, MAP_PRIVATE | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  truncate_during_fault(as, fd, kBase, /*write=*/true);
}

// ftruncate walks the page tables of every mapping of the file with only
// i_mmap_rwsem held for read.  munmap of one of those mappings from
// another thread must not free that mapping's page tables under the walk:
// it takes the VMA out of the file's i_mmap (which waits for the walk)
// before it frees tables.  Here the truncate stops inside its i_mmap
// section while the other thread unmaps; no page table may go until the
// truncate goes on.
TEST_P(FileMap, MunmapWaitsForATruncateWalkingItsTables) {
  if (!kHooks) GTEST_SKIP() << "test hooks are compiled out of release builds";
  AddressSpace as(opts());
  const int fd = make_file(as, 4);
  const std::uint64_t b = kBase + 1024 * kPage;  // its own page table
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  ASSERT_EQ(as.mmap(b, 4 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(b));
  ASSERT_TRUE(as.fill(kBase, 1, 4 * kPage).ok());
  ASSERT_TRUE(as.fill(b, 2, 4 * kPage).ok());
  const std::uint64_t tables = as.mm()->pgtables.stats().pte_tables;

  struct TGate {
    std::promise<void> arrived, go;
    std::shared_future<void> go_f = go.get_future().share();
    int calls = 0;
  } gate;
  mm::TruncateHooks hooks;
  hooks.i_mmap_locked = [](mem::File*, void* arg) {
    auto* g = static_cast<TGate*>(arg);
    if (g->calls++ != 0) return;
    g->arrived.set_value();
    g->go_f.wait();
  };
  hooks.arg = &gate;
  std::thread truncater([&] {
    mm::set_truncate_hooks(&hooks);
    EXPECT_EQ(as.ftruncate(fd, static_cast<std::int64_t>(kPage)), 0);
    mm::set_truncate_hooks(nullptr);
  });
  gate.arrived.get_future().wait();
  std::atomic<bool> unmapped{false};
  std::thread unmapper([&] {
    EXPECT_EQ(as.munmap(b, 4 * kPage), 0);
    unmapped = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(as.mm()->pgtables.stats().pte_tables, tables) << "munmap freed page tables under the truncate's walk";
  EXPECT_FALSE(unmapped.load());
  gate.go.set_value();
  truncater.join();
  unmapper.join();
  EXPECT_LT(as.mm()->pgtables.stats().pte_tables, tables);
  Fault f = Fault::none;
  byte_at(as, kBase + kPage, &f);
  EXPECT_EQ(f, Fault::sigbus);
  EXPECT_EQ(byte_at(as, kBase), 2);  // both mappings are of the same pages
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, FileMap, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace
