// SPDX-License-Identifier: MIT
// Stress tier: reverse-map walks need only the rmap locks (issue 12, item
// 4; Linux's rule).  Walker threads run rmap_walk_anon / rmap_walk_file
// with no mm lock while a writer splits and merges the VMAs they visit
// (mprotect flipping parts of a region).  vma_prepare/vma_complete hold the
// file's i_mmap_rwsem and the anon_vma's rwsem across every range change,
// so a walker must always find the page mapped at the one address it has,
// never a half-updated range (start moved, pgoff not yet).  The VMA fields
// are plain, so under tsan a change outside those locks is also a
// reported data race.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "mm/mmap_lock.h"
#include "mm/rmap.h"
#include "mm/vma.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace::mm {
namespace {

constexpr std::uint64_t kBase = 0x300000000000;
constexpr std::uint64_t kPage = 4096;
constexpr unsigned kPages = 64;

std::chrono::milliseconds budget() {
  if (const char* s = std::getenv("VMSPACE_STRESS_MS")) return std::chrono::milliseconds(std::atol(s));
  return std::chrono::milliseconds(3000);
}

class RmapStress : public ::testing::TestWithParam<LockMode> {};

TEST_P(RmapStress, WalksSeeWholeRangesWhileVmasSplitAndMerge) {
  AddressSpace as(test::test_options(GetParam()));
  MmStruct* mm = as.mm();
  const std::uint64_t anon = kBase, shared = kBase + 2 * kPages * kPage;
  ASSERT_EQ(as.mmap(anon, kPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
            static_cast<long>(anon));
  ASSERT_EQ(as.mmap(shared, kPages * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED),
            static_cast<long>(shared));
  ASSERT_TRUE(as.fill(anon, 1, kPages * kPage).ok());  // gives the region its anon_vma
  ASSERT_TRUE(as.fill(shared, 1, kPages * kPage).ok());
  // The anon_vma and the shmem object outlive the walkers: a piece of each
  // region stays mapped throughout (the writer only changes protections).
  mmap_read_lock(mm);
  AnonVma* av = vma_lookup(mm, anon)->anon_vma.load();
  mem::File* file = vma_lookup(mm, shared)->vm_file;
  const std::uint64_t anon_pgoff = vma_lookup(mm, anon)->vm_pgoff;
  mmap_read_unlock(mm);
  ASSERT_NE(av, nullptr);

  const auto deadline = std::chrono::steady_clock::now() + budget();
  auto running = [&] { return std::chrono::steady_clock::now() < deadline; };
  std::atomic<long> walks{0}, changes{0}, bad{0};

  std::thread writer([&] {
    std::mt19937_64 rng(7);
    while (running()) {
      const std::uint64_t base = rng() % 2 ? anon : shared;
      const std::uint64_t first = rng() % kPages, n = 1 + rng() % (kPages - first);
      const int prot = rng() % 2 ? PROT_READ : PROT_READ | PROT_WRITE;
      if (as.mprotect(base + first * kPage, n * kPage, prot) == 0) changes.fetch_add(1);
    }
  });
  auto walker = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    while (running()) {
      const std::uint64_t page = rng() % kPages;
      int found = 0;
      // Every VMA the walk reports must put the page at its one address.
      rmap_walk_anon(av, anon_pgoff + page, [&](Vma* v, std::uint64_t addr) {
        ++found;
        if (addr != anon + page * kPage || addr < v->vm_start || addr >= v->vm_end) bad.fetch_add(1);
      });
      if (found == 0) bad.fetch_add(1);
      found = 0;
      rmap_walk_file(file, page, [&](Vma* v, std::uint64_t addr) {
        ++found;
        if (addr != shared + page * kPage || addr < v->vm_start || addr >= v->vm_end) bad.fetch_add(1);
      });
      if (found == 0) bad.fetch_add(1);
      walks.fetch_add(1);
    }
  };
  std::vector<std::thread> walkers;
  for (unsigned i = 0; i < 2; ++i) walkers.emplace_back(walker, 100 + i);
  writer.join();
  for (auto& t : walkers) t.join();
  EXPECT_EQ(bad.load(), 0) << "a walk saw a VMA range in the middle of a change";
  EXPECT_GT(walks.load(), 100);
  EXPECT_GT(changes.load(), 100);
  std::printf("walks %ld, protection changes %ld\n", walks.load(), changes.load());
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, RmapStress, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace::mm
