// SPDX-License-Identifier: MIT
// Stress tier: madvise advice that acts on pages, racing faults and
// mapping changes, in all three lock modes.  MADV_DONTNEED (and
// DONTNEED_LOCKED, FREE) on a range inside one VMA runs under only that
// VMA's read lock in the per-VMA modes, concurrently with faults on the
// same VMA (under its read lock), with other discards, with guard-marker
// installation and removal, and with munmap/mmap/mprotect of the same and
// neighbouring VMAs (which must wait for the read lock).  The VMAs share
// their page tables.
//
// Accessor threads own interleaved pages and write tagged words into them;
// a read must give what the thread last wrote there, or zero (discarded),
// or fault as SEGV_MAPERR (a guard page, or unmapped for a moment) or
// SEGV_ACCERR (write-protected for a moment) - never another thread's
// data.  At the end every frame must be free again once the space is
// unmapped (a zap or a discard that lost or kept a reference would show),
// and validate() must hold.  Run under tsan for the orderings, asan for
// use-after-free of frames and page tables.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "vmspace/mman.h"
#include "mem/phys_mem.h"
#include "sync/rcu.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x300000000000;
constexpr std::uint64_t kPage = 4096;
constexpr unsigned kThreads = 3;
// Four VMAs of kVmaPages, then a scratch area the mapper maps and unmaps
// (in the same page tables).
constexpr unsigned kVmas = 4;
constexpr unsigned kVmaPages = 12;
constexpr unsigned kPages = kVmas * kVmaPages;
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr int kFixed = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;

std::chrono::milliseconds budget() {
  if (const char* s = std::getenv("VMSPACE_STRESS_MS")) return std::chrono::milliseconds(std::atol(s));
  return std::chrono::milliseconds(3000);
}

std::uint64_t page_va(unsigned p) { return kBase + std::uint64_t{p} * kPage; }
std::uint64_t vma_va(unsigned v) { return page_va(v * kVmaPages); }

class MadviseStress : public ::testing::TestWithParam<LockMode> {};

TEST_P(MadviseStress, DiscardsRaceFaultsAndMappingChanges) {
  AddressSpaceOptions o = test::test_options(GetParam());
  o.phys_bytes = 64ull << 20;
  o.phys_pretouch = false;
  AddressSpace as(o);
  // Adjacent VMAs kept apart by alternating MADV_RANDOM.
  ASSERT_EQ(as.mmap(kBase, kPages * kPage, kRW, kFixed), static_cast<long>(kBase));
  for (unsigned v = 1; v < kVmas; v += 2) ASSERT_EQ(as.madvise(vma_va(v), kVmaPages * kPage, MADV_RANDOM), 0);
  ASSERT_EQ(as.map_count(), static_cast<int>(kVmas));

  const auto deadline = std::chrono::steady_clock::now() + budget();
  auto running = [&] { return std::chrono::steady_clock::now() < deadline; };
  std::atomic<long> checked{0}, zeros{0}, guards{0}, refused{0}, unmapped{0};

  // Thread t owns the pages p with p % kThreads == t.
  auto accessor = [&](unsigned t) {
    std::mt19937_64 rng(t + 1);
    std::vector<std::uint64_t> shadow(kPages, 0);
    std::uint64_t seq = 0;
    while (running()) {
      const unsigned p = static_cast<unsigned>(rng() % (kPages / kThreads)) * kThreads + t;
      const std::uint64_t va = page_va(p) + 8 * (rng() % 8);
      if (rng() % 2) {
        const std::uint64_t w = (std::uint64_t{t + 1} << 56) | ++seq;
        AccessResult r = as.write(page_va(p), &w, sizeof w);
        if (r.ok()) {
          shadow[p] = w;
        } else {
          ASSERT_TRUE(r.fault == Fault::segv_maperr || r.fault == Fault::segv_accerr) << fault_name(r.fault);
          (r.fault == Fault::segv_maperr ? guards : refused).fetch_add(1, std::memory_order_relaxed);
        }
        continue;
      }
      std::uint64_t word = 0;
      AccessResult r = as.read(page_va(p), &word, sizeof word);
      if (!r.ok()) {
        // A guard page, or the mapper's munmap/mmap window.
        ASSERT_EQ(r.fault, Fault::segv_maperr) << fault_name(r.fault);
        unmapped.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (word == 0 && shadow[p] != 0) {
        zeros.fetch_add(1, std::memory_order_relaxed);
        shadow[p] = 0;
      }
      ASSERT_EQ(word, shadow[p]) << "thread " << t << " page " << p;
      std::uint64_t other = 0;
      if (as.read(va, &other, sizeof other).ok() && other != 0) {
        ASSERT_EQ(other >> 56, t + 1) << "another thread's data in page " << p;
      }
      checked.fetch_add(1, std::memory_order_relaxed);
    }
  };

  // Discards: mostly inside one VMA (the VMA-lock path), sometimes across
  // VMAs (the mmap_lock path).
  auto discarder = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    static constexpr int kAdvice[] = {MADV_DONTNEED, MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_FREE,
                                      MADV_PAGEOUT,  MADV_COLD,     MADV_POPULATE_WRITE};
    while (running()) {
      const int advice = kAdvice[rng() % (sizeof kAdvice / sizeof kAdvice[0])];
      std::uint64_t start, len;
      if (rng() % 4 != 0) {
        const unsigned v = static_cast<unsigned>(rng() % kVmas);
        const unsigned first = static_cast<unsigned>(rng() % kVmaPages);
        const unsigned n = 1 + static_cast<unsigned>(rng() % (kVmaPages - first));
        start = page_va(v * kVmaPages + first);
        len = n * kPage;
      } else {
        start = page_va(static_cast<unsigned>(rng() % (kPages / 2)));
        len = (1 + rng() % (kPages / 2)) * kPage;
      }
      const int r = as.madvise(start, len, advice);
      // Holes from the mapper, guard pages for POPULATE, write-protected
      // VMAs for POPULATE_WRITE.
      if (r != 0) {
        ASSERT_TRUE(r == -ENOMEM || r == -EFAULT || r == -EINVAL) << "advice " << advice << ": " << r;
      }
    }
  };

  auto guarder = [&] {
    std::mt19937_64 rng(77);
    while (running()) {
      const unsigned p = static_cast<unsigned>(rng() % kPages);
      const std::uint64_t len = (1 + rng() % 3) * kPage;
      as.madvise(page_va(p), len, MADV_GUARD_INSTALL);
      std::this_thread::yield();
      as.madvise(page_va(p), len, MADV_GUARD_REMOVE);
    }
  };

  // Mapping changes that write-lock the VMAs the others hold read locks on.
  auto mapper = [&] {
    std::mt19937_64 rng(99);
    const std::uint64_t scratch = page_va(kPages);
    while (running()) {
      const unsigned v = static_cast<unsigned>(rng() % kVmas);
      const std::uint64_t piece = vma_va(v) + (rng() % (kVmaPages - 2)) * kPage;
      switch (rng() % 5) {
        case 0:  // split and merge back
          as.mprotect(piece, 2 * kPage, PROT_READ);
          std::this_thread::yield();
          as.mprotect(piece, 2 * kPage, kRW);
          break;
        case 1:  // unmap and map again (guard markers and data go)
          as.munmap(piece, 2 * kPage);
          std::this_thread::yield();
          as.mmap(piece, 2 * kPage, kRW, kFixed);
          if (v % 2 == 1) as.madvise(piece, 2 * kPage, MADV_RANDOM);
          break;
        case 2: {  // a neighbour in the same page tables
          const std::uint64_t s = scratch + (rng() % 16) * kPage;
          as.mmap(s, (1 + rng() % 8) * kPage, kRW, kFixed);
          as.fill(s, 0xee, kPage);
          break;
        }
        case 3: as.munmap(scratch + (rng() % 16) * kPage, (1 + rng() % 8) * kPage); break;
        case 4: as.madvise(scratch, 24 * kPage, MADV_DONTNEED); break;
      }
    }
  };

  std::vector<std::thread> ts;
  for (unsigned t = 0; t < kThreads; ++t) ts.emplace_back(accessor, t);
  ts.emplace_back(discarder, 11);
  ts.emplace_back(discarder, 12);
  ts.emplace_back(guarder);
  ts.emplace_back(mapper);
  for (auto& th : ts) th.join();

  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
  EXPECT_GT(checked.load(), 0);
  if (GetParam() != LockMode::mmap_lock) {
    EXPECT_GT(as.vm_stat(VmStat::madvise_vma_lock), 0u);
  } else {
    EXPECT_EQ(as.vm_stat(VmStat::madvise_vma_lock), 0u);
  }
  EXPECT_GT(as.vm_stat(VmStat::madvise_mmap_lock), 0u);
  std::printf("%s: %ld checked reads, %ld zeros, %ld guard/unmapped reads, %ld guard writes, %ld refused; "
              "madvise under the VMA lock %llu, under the mmap_lock %llu\n",
              std::string(lock_mode_name(GetParam())).c_str(), checked.load(), zeros.load(), unmapped.load(),
              guards.load(), refused.load(), static_cast<unsigned long long>(as.vm_stat(VmStat::madvise_vma_lock)),
              static_cast<unsigned long long>(as.vm_stat(VmStat::madvise_mmap_lock)));

  // Every frame comes back once nothing is mapped.
  ASSERT_EQ(as.munmap(kBase, 2 * kPages * kPage), 0);
  EXPECT_EQ(as.rss_pages(), 0u);
  as.phys()->drain_deferred();
  EXPECT_EQ(as.phys()->free_frames(), as.phys()->capacity_frames());
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, MadviseStress, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace
