// SPDX-License-Identifier: MIT
// Stress tier: one memfd file mapped in two AddressSpaces that share their
// physical memory (shared mappings in both, a private one in the first),
// with threads faulting, writing and reading through the mappings while
// another truncates the file and grows it again, in all three lock modes.
//
// The file has kPages pages; pages below kKeep are never truncated.  Bytes
// name their page (low 4 bits: the page index mod 16; bit 7 set in private
// copies), so a frame mapped at the wrong offset, or reused while still
// mapped, shows.  So that the test itself has no data races (tsan), no two
// threads touch the same bytes at once, except by reading: writer A owns
// pages [0, kKeep/2) (it reads back what it wrote); the private writer
// copies pages [kKeep/2, kKeep) in the private mapping; writer B owns the
// odd pages past kKeep (it faults on pages being truncated); the reader
// reads pages [kKeep/2, kKeep) and the even pages past kKeep through all
// three mappings; the truncater moves the size between kKeep pages and the
// whole file, in whole pages.  While running: reads see 0 or a byte that
// names the page; pages below kKeep never fault.  After each round
// (threads joined): the file is truncated to kKeep pages, and then every
// page past it faults SIGBUS in every mapping (private copies included),
// every shared page below it holds what was last written in both spaces,
// and every private page its copy or the file's byte; validate() holds.
// Run under tsan for the orderings, asan for use-after-free of frames and
// page tables.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mem/phys_mem.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kPages = 24, kKeep = 8;
constexpr std::uint64_t kA = 0x300000000000, kB = 0x310000000000, kPriv = 0x320000000000;
constexpr int kRW = PROT_READ | PROT_WRITE;
#if defined(__SANITIZE_THREAD__)
constexpr int kRounds = 4;
#else
constexpr int kRounds = 12;
#endif

unsigned char tag(std::uint64_t page, unsigned gen) {
  return static_cast<unsigned char>(((gen % 7 + 1) << 4) | (page % 16));  // never 0, bit 7 clear
}
bool names_page(unsigned char b, std::uint64_t page, bool priv) {
  if (b == 0) return true;
  if ((b & 0x0f) != page % 16) return false;
  return priv ? true : (b & 0x80) == 0;
}

class FileStress : public ::testing::TestWithParam<LockMode> {};

TEST_P(FileStress, TwoSpacesTruncateFaultWriteRead) {
  mem::PhysMem pool(mem::PhysMemOptions{.capacity_bytes = 4096 * kPage, .pretouch = false});
  AddressSpaceOptions o = test::test_options(GetParam());
  o.phys = &pool;
  auto a = std::make_unique<AddressSpace>(o);
  auto b = std::make_unique<AddressSpace>(o);
  const int fa = a->memfd_create("shared");
  ASSERT_GE(fa, 0);
  const int fb = a->send_file(fa, *b);
  ASSERT_GE(fb, 0);
  ASSERT_EQ(a->ftruncate(fa, kPages * kPage), 0);
  ASSERT_EQ(a->mmap(kA, kPages * kPage, kRW, MAP_SHARED | MAP_FIXED, fa, 0), static_cast<long>(kA));
  ASSERT_EQ(b->mmap(kB, kPages * kPage, kRW, MAP_SHARED | MAP_FIXED, fb, 0), static_cast<long>(kB));
  ASSERT_EQ(a->mmap(kPriv, kPages * kPage, kRW, MAP_PRIVATE | MAP_FIXED, fa, 0), static_cast<long>(kPriv));

  std::array<unsigned char, kPages> last{};   // the file's last byte per page below kKeep
  std::array<unsigned char, kPages> plast{};  // the private writer's
  std::atomic<long> bad{0};
  std::string first_bad;
  std::mutex bad_lock;
  auto report = [&](const std::string& what) {
    if (bad.fetch_add(1) == 0) {
      std::lock_guard<std::mutex> g(bad_lock);
      first_bad = what;
    }
  };

  constexpr std::uint64_t kHalf = kKeep / 2;
  // Pages [kHalf, kKeep) of the file hold one byte each from the start.
  for (std::uint64_t p = kHalf; p < kKeep; ++p) {
    ASSERT_TRUE(a->fill(kA + p * kPage, tag(p, 99), kPage).ok());
    last[p] = tag(p, 99);
  }
  for (int round = 0; round < kRounds; ++round) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> t;
    t.emplace_back([&, round] {  // writer A
      std::mt19937_64 rng(1000 + round);
      for (unsigned gen = 0; !stop.load(std::memory_order_relaxed); ++gen) {
        const std::uint64_t p = rng() % kHalf;
        const unsigned char v = tag(p, gen);
        if (!a->fill(kA + p * kPage, v, kPage).ok()) report("write below kKeep faulted");
        last[p] = v;
        unsigned char back = 0;
        if (!b->read(kB + p * kPage + rng() % kPage, &back, 1).ok() || back != v)
          report("page " + std::to_string(p) + ": space b read " + std::to_string(back) + " after " +
                 std::to_string(v));
      }
    });
    t.emplace_back([&, round] {  // writer B: odd pages past kKeep
      std::mt19937_64 rng(2000 + round);
      for (unsigned gen = 0; !stop.load(std::memory_order_relaxed); ++gen) {
        const std::uint64_t p = kKeep + 1 + 2 * (rng() % ((kPages - kKeep) / 2));
        AccessResult r = b->fill(kB + p * kPage, tag(p, gen), kPage);
        if (!r.ok() && r.fault != Fault::sigbus) report("write past kKeep: " + std::string(fault_name(r.fault)));
      }
    });
    t.emplace_back([&, round] {  // the private writer
      std::mt19937_64 rng(3000 + round);
      for (unsigned gen = 0; !stop.load(std::memory_order_relaxed); ++gen) {
        const std::uint64_t p = kHalf + rng() % (kKeep - kHalf);
        const unsigned char v = static_cast<unsigned char>(tag(p, gen) | 0x80);
        if (!a->fill(kPriv + p * kPage, v, 64).ok()) report("private write faulted");
        plast[p] = v;
      }
    });
    t.emplace_back([&, round] {  // the reader
      std::mt19937_64 rng(4000 + round);
      while (!stop.load(std::memory_order_relaxed)) {
        const bool low = rng() % 2 == 0;
        const std::uint64_t p = low ? kHalf + rng() % (kKeep - kHalf) : kKeep + 2 * (rng() % ((kPages - kKeep) / 2));
        const int which = static_cast<int>(rng() % (low ? 2 : 3));  // not the private copies being written
        AddressSpace& s = which == 1 ? *b : *a;
        const std::uint64_t base = which == 0 ? kA : which == 1 ? kB : kPriv;
        unsigned char byte = 0;
        AccessResult r = s.read(base + p * kPage + rng() % kPage, &byte, 1);
        if (!r.ok()) {
          if (p < kKeep || r.fault != Fault::sigbus) report("read faulted: " + std::string(fault_name(r.fault)));
          continue;
        }
        if (!names_page(byte, p, which == 2))
          report("page " + std::to_string(p) + " read byte " + std::to_string(byte));
      }
    });
    // The truncater: whole-page sizes between kKeep pages and the file.
    std::mt19937_64 rng(5000 + round);
    for (int i = 0; i < 200; ++i) {
      const std::uint64_t size = (kKeep + rng() % (kPages - kKeep + 1)) * kPage;
      ASSERT_EQ(a->ftruncate(fa, static_cast<std::int64_t>(size)), 0);
      if (i % 3 == 0) {
        ASSERT_EQ(b->ftruncate(fb, kPages * kPage), 0);
      }
      std::this_thread::yield();
    }
    stop = true;
    for (auto& th : t) th.join();
    ASSERT_EQ(bad.load(), 0) << first_bad;

    // Quiet: truncate to kKeep and check everything.
    ASSERT_EQ(b->ftruncate(fb, kKeep * kPage), 0);
    for (std::uint64_t p = 0; p < kPages; ++p) {
      for (int which = 0; which < 3; ++which) {
        AddressSpace& s = which == 1 ? *b : *a;
        const std::uint64_t base = which == 0 ? kA : which == 1 ? kB : kPriv;
        unsigned char byte = 0;
        AccessResult r = s.read(base + p * kPage + 5, &byte, 1);
        if (p >= kKeep) {
          EXPECT_EQ(r.fault, Fault::sigbus) << "page " << p << " mapping " << which << " after truncate";
          continue;
        }
        ASSERT_TRUE(r.ok()) << "page " << p << " mapping " << which;
        if (which < 2)
          EXPECT_EQ(byte, last[p]) << "page " << p << " mapping " << which;
        else  // a copy once written, for good (never truncated); else the file's page
          EXPECT_EQ(byte, plast[p] != 0 ? plast[p] : last[p]) << "private page " << p;
      }
    }
    std::string why;
    ASSERT_TRUE(a->validate(&why)) << why;
    ASSERT_TRUE(b->validate(&why)) << why;
    ASSERT_EQ(a->ftruncate(fa, kPages * kPage), 0);
  }
  // Everything returns to the pool.
  a.reset();
  b.reset();
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, FileStress, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace
