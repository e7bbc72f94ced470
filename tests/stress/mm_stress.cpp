// SPDX-License-Identifier: MIT
// Stress tier: the per-VMA lock protocol under fire, in all three modes.
// Reader threads take VMA read locks on random addresses (falling back to
// the mmap_lock as the fault path does) while writer threads mmap, munmap,
// mprotect and madvise the same region.  A reader holding a VMA must see
// its range and flags unchanged until it unlocks, and never a detached or
// freed VMA.  The VMA fields are plain (non-atomic), so under tsan any
// writer change racing with a reader is a reported data race; under asan
// any use of a freed VMA is reported.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"
#include "sync/rcu.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace::mm {
namespace {

constexpr std::uint64_t kBase = 0x300000000000;
constexpr std::uint64_t kPage = 4096;
constexpr unsigned kPages = 128;

std::chrono::milliseconds budget() {
  if (const char* s = std::getenv("VMSPACE_STRESS_MS")) return std::chrono::milliseconds(std::atol(s));
  return std::chrono::milliseconds(3000);
}

struct Snapshot {
  std::uint64_t start, end, pgoff;
  vm_flags_t flags;
  bool operator==(const Snapshot&) const = default;
};

Snapshot snap(const Vma* v) { return {v->vm_start, v->vm_end, v->vm_pgoff, v->vm_flags}; }

class MmStress : public ::testing::TestWithParam<LockMode> {};

TEST_P(MmStress, ReadersSeeStableVmasWhileWritersChangeThem) {
  AddressSpace as(test::test_options(GetParam()));
  MmStruct* mm = as.mm();
  ASSERT_EQ(as.mmap(kBase, kPages * kPage, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
            static_cast<long>(kBase));
  const auto deadline = std::chrono::steady_clock::now() + budget();
  auto running = [&] { return std::chrono::steady_clock::now() < deadline; };
  std::atomic<long> vma_locked{0}, fallback{0}, writes{0};

  auto writer = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    while (running()) {
      std::uint64_t a = kBase + (rng() % kPages) * kPage;
      std::uint64_t len = (1 + rng() % 16) * kPage;
      if (a + len > kBase + kPages * kPage) len = kBase + kPages * kPage - a;
      int prot = static_cast<int>(rng() % 8);
      switch (rng() % 5) {
        case 0:
          as.mmap(a, len, prot, (rng() % 4 ? MAP_PRIVATE : MAP_SHARED) | MAP_ANONYMOUS | MAP_FIXED);
          break;
        case 1: as.munmap(a, len); break;
        case 2:
        case 3: as.mprotect(a, len, prot); break;
        case 4: as.madvise(a, len, rng() % 2 ? MADV_RANDOM : MADV_NORMAL); break;
      }
      writes.fetch_add(1, std::memory_order_relaxed);
    }
  };

  auto reader = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    while (running()) {
      std::uint64_t addr = kBase + (rng() % (kPages * kPage));
      if (Vma* v = lock_vma_under_rcu(mm, addr)) {
        Snapshot s = snap(v);
        ASSERT_TRUE(s.start <= addr && addr < s.end);
        ASSERT_FALSE(vma_is_detached(v));
        for (int i = 0; i < 16; ++i) {
          std::this_thread::yield();
          ASSERT_EQ(snap(v), s) << "VMA changed under its read lock";
        }
        vma_end_read(v);
        vma_locked.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      // The fault path's fallback: the mmap_lock read side.
      mmap_read_lock(mm);
      if (Vma* v = vma_lookup(mm, addr)) {
        Snapshot s = snap(v);
        ASSERT_TRUE(s.start <= addr && addr < s.end);
        std::this_thread::yield();
        ASSERT_EQ(snap(v), s) << "VMA changed under the mmap_lock read side";
      }
      mmap_read_unlock(mm);
      fallback.fetch_add(1, std::memory_order_relaxed);
    }
  };

  std::vector<std::thread> ts;
  ts.emplace_back(writer, 1);
  ts.emplace_back(writer, 2);
  ts.emplace_back(reader, 3);
  ts.emplace_back(reader, 4);
  for (auto& t : ts) t.join();

  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
  EXPECT_GT(writes.load(), 0);
  if (GetParam() == LockMode::mmap_lock)
    EXPECT_EQ(vma_locked.load(), 0);
  else
    EXPECT_GT(vma_locked.load(), 0);
  std::printf("%s: %ld writer ops, %ld VMA-locked reads, %ld mmap_lock reads; miss %llu abort %llu\n",
              std::string(lock_mode_name(GetParam())).c_str(), writes.load(), vma_locked.load(),
              fallback.load(), static_cast<unsigned long long>(mm->events.read(VmEvent::vma_lock_miss)),
              static_cast<unsigned long long>(mm->events.read(VmEvent::vma_lock_abort)));
  rcu::barrier();
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) {
  return std::string(lock_mode_name(i.param));
}
INSTANTIATE_TEST_SUITE_P(AllModes, MmStress, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace::mm
