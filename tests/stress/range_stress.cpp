// SPDX-License-Identifier: MIT
// Stress tier, issue 19: writers of the per_vma_range mode on disjoint and
// on adjacent ranges, with faults everywhere, checked against a shadow
// model at quiescent points.
//
// Four writer threads own one zone each.  Zones 0 and 1 touch (a mapping
// at the end of zone 0 merges with one at the start of zone 1, and a
// change in one splits VMAs reaching into the other: those writers take
// overlapping ranges and serialize); zones 2 and 3 lie far away from
// everything (their writers run concurrently with the others).  Each
// writer mmaps (MAP_FIXED), munmaps, mprotects and writes pages of its
// zone at random (writer 1 also a 4 MiB mapping after its zone, which
// makes neighbourhoods change under the others' snapshots), keeping a shadow of every page (mapped, writable, the
// byte it holds).  Fault threads read and write random pages of every
// zone meanwhile (what they see is not checked, only that the fault is
// one a page could give).  Every round all threads meet; then one thread
// checks that the VMAs cover exactly the shadow's mapped pages with the
// shadow's protections, that no two adjacent VMAs could merge (the layout
// is the normalised one every serial order gives), that every page holds
// the shadow's byte, and the space's own invariants.
//
// Under tsan a writer touching a VMA or tree node another writer is
// changing is a reported data race; under asan a VMA freed under a reader
// is a use after free.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cinttypes>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mm/mm.h"
#include "mm/vma.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kPage = 4096;
constexpr unsigned kZonePages = 64;
constexpr unsigned kWriters = 4;
constexpr unsigned kFaulters = 2;
constexpr std::uint64_t kBase = 0x300000000000;
// Zones 0 and 1 are adjacent; 2 and 3 are 64 MiB apart from the rest (a
// range is the change padded by the guard gap, rounded to 2 MiB).
constexpr std::array<std::uint64_t, kWriters> kZone = {
    kBase, kBase + kZonePages * kPage, kBase + (64ull << 20), kBase + (128ull << 20)};

std::chrono::milliseconds budget() {
  if (const char* s = std::getenv("VMSPACE_STRESS_MS")) return std::chrono::milliseconds(std::atol(s));
  return std::chrono::milliseconds(3000);
}

struct PageShadow {
  bool mapped = false;
  bool writable = false;
  unsigned char byte = 0;
};

struct Zone {
  std::array<PageShadow, kZonePages> page{};
};

TEST(RangeStress, DisjointAndAdjacentWritersMatchTheShadow) {
  AddressSpace as(test::test_options(LockMode::per_vma_range));
  std::array<Zone, kWriters> zones{};
  const auto deadline = std::chrono::steady_clock::now() + budget();
  std::atomic<bool> round_done{false}, stop{false};
  std::atomic<long> ops{0}, faults_ok{0}, faults_refused{0};
  std::atomic<int> failures{0};
  constexpr unsigned kOpsPerRound = 60;
  unsigned rounds = 0;

  auto check = [&]() noexcept {
    // Quiescent: every thread is at the barrier.
    std::string why;
    if (!as.validate(&why)) {
      ADD_FAILURE() << "validate: " << why;
      ++failures;
    }
    const auto vmas = as.vmas();
    // Per page: the VMA's protection against the shadow.
    for (unsigned z = 0; z < kWriters; ++z) {
      for (unsigned p = 0; p < kZonePages; ++p) {
        const std::uint64_t a = kZone[z] + p * kPage;
        const PageShadow& s = zones[z].page[p];
        const VmaInfo* v = nullptr;
        for (const VmaInfo& x : vmas)
          if (x.start <= a && a < x.end) v = &x;
        if ((v != nullptr) != s.mapped) {
          ADD_FAILURE() << "zone " << z << " page " << p << ": mapped " << (v != nullptr) << ", shadow " << s.mapped;
          ++failures;
          continue;
        }
        if (v == nullptr) continue;
        const bool w = (v->prot & PROT_WRITE) != 0;
        if (w != s.writable) {
          ADD_FAILURE() << "zone " << z << " page " << p << ": writable " << w << ", shadow " << s.writable;
          ++failures;
        }
        unsigned char b = 0xee;
        const AccessResult r = as.read(a, &b, 1);
        if (r.fault != Fault::none || b != s.byte) {
          ADD_FAILURE() << "zone " << z << " page " << p << ": holds " << int(b) << ", shadow " << int(s.byte);
          ++failures;
        }
      }
    }
    // Normalised: no two adjacent VMAs a merge would have joined (equal
    // flags, and no two different anon_vmas: a VMA without one merges
    // with any).
    mm::MmStruct* mm = as.mm();
    for (std::size_t i = 1; i < vmas.size(); ++i) {
      if (vmas[i - 1].end != vmas[i].start || vmas[i - 1].vm_flags != vmas[i].vm_flags) continue;
      const mm::Vma* a = mm::vma_lookup(mm, vmas[i - 1].start);
      const mm::Vma* b = mm::vma_lookup(mm, vmas[i].start);
      const auto* aa = a->anon_vma.load();
      const auto* ba = b->anon_vma.load();
      if (aa == nullptr || ba == nullptr || aa == ba) {
        ADD_FAILURE() << std::hex << "VMAs [" << vmas[i - 1].start << ", " << vmas[i - 1].end << ") and ["
                      << vmas[i].start << ", " << vmas[i].end << ") should have merged";
        ++failures;
      }
    }
    ++rounds;
    round_done.store(false);
    if (std::chrono::steady_clock::now() >= deadline || failures.load() > 0) stop.store(true);
  };
  std::barrier sync(kWriters + kFaulters, check);

  constexpr std::uint64_t kExt = kBase + 2 * kZonePages * kPage, kExtLen = 4ull << 20;
  bool ext_mapped = false;  // writer 1's
  auto writer = [&](unsigned z) {
    std::mt19937_64 rng(0x1900 + z);
    Zone& zone = zones[z];
    unsigned char tag = static_cast<unsigned char>(z * 50 + 1);
    while (!stop.load()) {
      for (unsigned i = 0; i < kOpsPerRound; ++i) {
        const unsigned a = rng() % kZonePages;
        const unsigned n = 1 + rng() % std::min<unsigned>(8, kZonePages - a);
        const std::uint64_t va = kZone[z] + a * kPage;
        const std::uint64_t len = n * kPage;
        switch (rng() % 4) {
          case 0: {  // mmap over
            const bool w = rng() % 2 != 0;
            const long r = as.mmap(va, len, PROT_READ | (w ? PROT_WRITE : 0), MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
            if (r != static_cast<long>(va)) {
              ADD_FAILURE() << "mmap " << std::hex << va << ": " << std::dec << r;
              ++failures;
              break;
            }
            for (unsigned p = a; p < a + n; ++p) zone.page[p] = {true, w, 0};
            break;
          }
          case 1: {
            const int r = as.munmap(va, len);
            if (r != 0) {
              ADD_FAILURE() << "munmap: " << r;
              ++failures;
            }
            for (unsigned p = a; p < a + n; ++p) zone.page[p] = {};
            break;
          }
          case 2: {  // mprotect: -ENOMEM if a page is unmapped (the mapped ones before it still change)
            const bool w = rng() % 2 != 0;
            const int r = as.mprotect(va, len, PROT_READ | (w ? PROT_WRITE : 0));
            bool hole = false;
            for (unsigned p = a; p < a + n; ++p) {
              if (!zone.page[p].mapped) {
                hole = true;
                break;
              }
              zone.page[p].writable = w;
            }
            if (r != (hole ? -ENOMEM : 0)) {
              ADD_FAILURE() << "mprotect: " << r << " with hole " << hole;
              ++failures;
            }
            break;
          }
          case 3: {  // write a page the shadow says is writable
            for (unsigned p = a; p < a + n; ++p) {
              if (!zone.page[p].mapped || !zone.page[p].writable) continue;
              tag = static_cast<unsigned char>(tag == 255 ? 1 : tag + 1);
              const AccessResult r = as.fill(kZone[z] + p * kPage, tag, 1);
              if (r.fault != Fault::none) {
                ADD_FAILURE() << "write to a writable page: fault " << static_cast<int>(r.fault);
                ++failures;
              }
              zone.page[p].byte = tag;
            }
            break;
          }
        }
        ops.fetch_add(1, std::memory_order_relaxed);
        if (z == 1 && rng() % 16 == 0) {
          // Zone 1 also maps and unmaps 4 MiB right after itself, which
          // merges with its last VMA when the protections agree: a VMA
          // that grows past a neighbourhood another writer computed
          // before its grant (that writer retries wider).
          const bool map = !ext_mapped;
          const long r = map ? as.mmap(kExt, kExtLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
                             : as.munmap(kExt, kExtLen);
          if (r != (map ? static_cast<long>(kExt) : 0)) {
            ADD_FAILURE() << "extension " << map << ": " << r;
            ++failures;
          }
          ext_mapped = map;
        }
      }
      round_done.store(true);
      sync.arrive_and_wait();
    }
  };

  auto faulter = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    while (!stop.load()) {
      while (!round_done.load()) {
        const unsigned z = rng() % kWriters;
        // Never byte 0 of a page: that one is the writers' (their shadow).
        const std::uint64_t va = kZone[z] + (rng() % kZonePages) * kPage + 1 + rng() % (kPage - 1);
        unsigned char b;
        AccessResult r = as.read(va, &b, 1);
        if (r.fault == Fault::none && rng() % 2 != 0) r = as.write(va, &b, 1);
        if (r.fault == Fault::none) {
          faults_ok.fetch_add(1, std::memory_order_relaxed);
        } else if (r.fault == Fault::segv_maperr || r.fault == Fault::segv_accerr) {
          faults_refused.fetch_add(1, std::memory_order_relaxed);
        } else {
          ADD_FAILURE() << "fault " << static_cast<int>(r.fault) << " at " << std::hex << va;
          ++failures;
        }
      }
      sync.arrive_and_wait();
    }
  };

  std::vector<std::thread> threads;
  for (unsigned z = 0; z < kWriters; ++z) threads.emplace_back(writer, z);
  for (unsigned f = 0; f < kFaulters; ++f) threads.emplace_back(faulter, 77 + f);
  for (auto& t : threads) t.join();

  const std::uint64_t ranged = as.vm_stat(VmStat::range_write_ranged);
  const std::uint64_t whole = as.vm_stat(VmStat::range_write_whole);
  std::printf("range_stress: %u rounds, %ld ops, %ld accesses (%ld refused), %" PRIu64 " ranged, %" PRIu64
              " whole, %" PRIu64 " retries\n",
              rounds, ops.load(), faults_ok.load(), faults_refused.load(), ranged, whole,
              as.vm_stat(VmStat::range_lock_retry));
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(rounds, 1u);
  // Vacuity: the layout changes did lock ranges, not the whole space.
  EXPECT_GT(ranged, whole);
}

}  // namespace
}  // namespace vmspace
