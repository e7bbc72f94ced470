// SPDX-License-Identifier: MIT
// Stress tier: faults and accesses against concurrent mapping changes, in
// all three lock modes.  Each accessor thread owns a VMA and writes tagged
// words into it, then reads them back: a read must return what the thread
// last wrote there, or zero after a discard (MADV_DONTNEED) - never another
// mapping's data.  A writer thread meanwhile flips the owned VMAs'
// protection, discards them, and maps/unmaps/reprotects the neighbouring
// region.  Under tsan the guest memory copies, page-table updates and frame
// reuse are all checked for ordering; under asan for use-after-free.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "sync/rcu.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x300000000000;
constexpr std::uint64_t kPage = 4096;
constexpr unsigned kOwnedPages = 16;
constexpr unsigned kThreads = 3;

std::chrono::milliseconds budget() {
  if (const char* s = std::getenv("VMSPACE_STRESS_MS")) return std::chrono::milliseconds(std::atol(s));
  return std::chrono::milliseconds(3000);
}

std::uint64_t owned_base(unsigned t) { return kBase + t * 64 * kPage; }

class FaultStress : public ::testing::TestWithParam<LockMode> {};

TEST_P(FaultStress, AccessorsSeeOnlyTheirOwnDataOrZero) {
  AddressSpaceOptions o = test::test_options(GetParam());
  o.phys_bytes = 64ull << 20;
  o.phys_pretouch = false;
  AddressSpace as(o);
  for (unsigned t = 0; t < kThreads; ++t)
    ASSERT_EQ(as.mmap(owned_base(t), kOwnedPages * kPage, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
              static_cast<long>(owned_base(t)));
  const auto deadline = std::chrono::steady_clock::now() + budget();
  auto running = [&] { return std::chrono::steady_clock::now() < deadline; };
  std::atomic<long> accesses{0}, discards_seen{0}, refused{0};

  auto accessor = [&](unsigned t) {
    std::mt19937_64 rng(t + 1);
    std::uint64_t shadow[kOwnedPages] = {};
    std::uint64_t seq = 0;
    while (running()) {
      unsigned page = static_cast<unsigned>(rng() % kOwnedPages);
      std::uint64_t va = owned_base(t) + page * kPage + 8 * (rng() % 16);
      std::uint64_t word = 0;
      if (rng() % 2) {
        std::uint64_t v = (std::uint64_t{t + 1} << 56) | ++seq;
        AccessResult r = as.write(owned_base(t) + page * kPage, &v, sizeof v);
        if (r.ok()) {
          shadow[page] = v;
        } else {
          ASSERT_EQ(r.fault, Fault::segv_accerr) << fault_name(r.fault);  // write-protected by the writer
          refused.fetch_add(1, std::memory_order_relaxed);
        }
        continue;
      }
      AccessResult r = as.read(owned_base(t) + page * kPage, &word, sizeof word);
      ASSERT_TRUE(r.ok()) << fault_name(r.fault);
      if (word == 0 && shadow[page] != 0) {
        discards_seen.fetch_add(1, std::memory_order_relaxed);
        shadow[page] = 0;
      }
      ASSERT_EQ(word, shadow[page]) << "thread " << t << " page " << page;
      // Any other word of the page is zero or ours, never another thread's.
      std::uint64_t other = 0;
      if (as.read(va, &other, sizeof other).ok() && other != 0) {
        ASSERT_EQ(other >> 56, t + 1);
      }
      accesses.fetch_add(1, std::memory_order_relaxed);
    }
  };

  auto writer = [&] {
    std::mt19937_64 rng(99);
    const std::uint64_t scratch = kBase + kThreads * 64 * kPage;
    while (running()) {
      unsigned t = static_cast<unsigned>(rng() % kThreads);
      std::uint64_t a = owned_base(t) + (rng() % kOwnedPages) * kPage;
      std::uint64_t len = (1 + rng() % 4) * kPage;
      if (a + len > owned_base(t) + kOwnedPages * kPage) len = owned_base(t) + kOwnedPages * kPage - a;
      switch (rng() % 6) {
        case 0: as.madvise(a, len, MADV_DONTNEED); break;
        case 1:
          as.mprotect(a, len, PROT_READ);
          std::this_thread::yield();
          as.mprotect(a, len, PROT_READ | PROT_WRITE);
          break;
        case 2: {
          std::uint64_t s = scratch + (rng() % 32) * kPage;
          as.mmap(s, (1 + rng() % 8) * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
          as.fill(s, 0xee, kPage);
          break;
        }
        case 3: as.munmap(scratch + (rng() % 32) * kPage, (1 + rng() % 8) * kPage); break;
        case 4: as.mprotect(scratch + (rng() % 32) * kPage, 4 * kPage, static_cast<int>(rng() % 4)); break;
        case 5: as.madvise(scratch, 40 * kPage, MADV_DONTNEED); break;
      }
    }
  };

  std::vector<std::thread> ts;
  for (unsigned t = 0; t < kThreads; ++t) ts.emplace_back(accessor, t);
  ts.emplace_back(writer);
  for (auto& th : ts) th.join();
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
  EXPECT_GT(accesses.load(), 0);
  std::printf("%s: %ld checked reads, %ld discards seen, %ld writes refused; pgfault %llu, vma_lock success %llu retry %llu abort %llu\n",
              std::string(lock_mode_name(GetParam())).c_str(), accesses.load(), discards_seen.load(), refused.load(),
              static_cast<unsigned long long>(as.vm_stat(VmStat::pgfault)),
              static_cast<unsigned long long>(as.vm_stat(VmStat::vma_lock_success)),
              static_cast<unsigned long long>(as.vm_stat(VmStat::vma_lock_retry)),
              static_cast<unsigned long long>(as.vm_stat(VmStat::vma_lock_abort)));
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, FaultStress, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace
