// SPDX-License-Identifier: MIT
// mremap beyond what the kernel can show (its VMA results, errno and
// contents are checked against the host kernel by tests/scripts/*mremap*
// and fuzz-kernel): pages move with their frames (nothing is copied),
// aligned page tables move whole, the reverse map follows, accounting
// balances, a locked mapping that grows is populated, and a DONTUNMAP
// racing a fault on its source ends consistently.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>
#include <vector>

#include "vmspace/mman.h"
#include "mem/phys_mem.h"
#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/rmap.h"
#include "mm/vma.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace::mm {
namespace {

constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t k2M = 2ull << 20;
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr int kPriv = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;

class Mremap : public ::testing::TestWithParam<LockMode> {
 protected:
  AddressSpaceOptions opts() const {
    AddressSpaceOptions o = test::test_options(GetParam());
    o.phys_bytes = 64ull << 20;
    o.phys_pretouch = false;
    return o;
  }
  static mem::pte_t pte(AddressSpace& as, std::uint64_t va) {
    rcu::ReadGuard g;
    return as.mm()->pgtables.lookup(va);
  }
  // Every present anonymous frame in [start, end) is found by the reverse
  // map at exactly its address.
  static void expect_rmap(AddressSpace& as, std::uint64_t start, std::uint64_t end) {
    for (std::uint64_t a = start; a < end; a += kPage) {
      const mem::pte_t p = pte(as, a);
      if (!mem::pte_present(p) || mem::pte_pfn(p) == as.phys()->zero_pfn()) continue;
      mem::Frame& fr = as.phys()->frame(mem::pte_pfn(p));
      const auto mapping = fr.mapping.load();
      if (!(mapping & mem::kMappingAnon)) continue;
      auto* av = reinterpret_cast<AnonVma*>(mapping & ~mem::kMappingAnon);
      bool found = false;
      rmap_walk_anon(av, fr.index.load(), [&](Vma*, std::uint64_t addr) { found |= addr == a; });
      EXPECT_TRUE(found) << std::hex << "frame at " << a << " not found by the reverse map";
    }
  }
};

TEST_P(Mremap, PagesMoveWithTheirFrames) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(kBase, 8 * kPage, kRW, kPriv), static_cast<long>(kBase));
  for (unsigned i = 0; i < 8; ++i) ASSERT_TRUE(as.fill(kBase + i * kPage, static_cast<unsigned char>(i + 1), kPage).ok());
  ASSERT_EQ(as.mmap(kBase + 8 * kPage, kPage, PROT_READ, kPriv), static_cast<long>(kBase + 8 * kPage));  // blocks growth
  std::vector<mem::pfn_t> pfns;
  for (unsigned i = 0; i < 8; ++i) pfns.push_back(mem::pte_pfn(pte(as, kBase + i * kPage)));
  const std::uint64_t rss = as.rss_pages();
  const std::int64_t committed = as.mm()->vm_committed->load();

  const long moved = as.mremap(kBase, 8 * kPage, 16 * kPage, MREMAP_MAYMOVE);
  ASSERT_GT(moved, 0);
  const auto to = static_cast<std::uint64_t>(moved);
  EXPECT_NE(to, kBase);
  for (unsigned i = 0; i < 8; ++i) {
    EXPECT_EQ(mem::pte_pfn(pte(as, to + i * kPage)), pfns[i]) << "page " << i << " was copied, not moved";
    EXPECT_EQ(pte(as, kBase + i * kPage), 0u);
    unsigned char b = 0;
    ASSERT_TRUE(as.read(to + i * kPage + 77, &b, 1).ok());
    EXPECT_EQ(b, i + 1);
  }
  EXPECT_EQ(as.rss_pages(), rss);
  EXPECT_EQ(as.mm()->vm_committed->load(), committed + 8) << "a grow-move charges the growth only";
  expect_rmap(as, to, to + 16 * kPage);
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

// An aligned move of whole 2 MiB tables relinks them: no PTE table is
// allocated, none is left behind.
TEST_P(Mremap, AlignedMoveRelinksWholePageTables) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(kBase, 2 * k2M, kRW, kPriv), static_cast<long>(kBase));
  ASSERT_TRUE(as.fill(kBase, 0x5a, 2 * k2M).ok());
  const auto before = as.mm()->pgtables.stats();
  const std::uint64_t to = kBase + 64 * k2M;
  ASSERT_EQ(as.mremap(kBase, 2 * k2M, 2 * k2M, MREMAP_MAYMOVE | MREMAP_FIXED, to), static_cast<long>(to));
  EXPECT_EQ(as.mm()->pgtables.stats().pte_tables, before.pte_tables);
  unsigned char b = 0;
  ASSERT_TRUE(as.read(to + k2M + 5, &b, 1).ok());
  EXPECT_EQ(b, 0x5a);
  EXPECT_EQ(as.map_count(), 1);
  expect_rmap(as, to, to + 2 * k2M);
}

// DONTUNMAP of a whole faulted VMA: the source stays, forgets its pages and
// its anon_vma; the destination has the data.
TEST_P(Mremap, DontunmapLeavesAnEmptySource) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, kPriv), static_cast<long>(kBase));
  ASSERT_TRUE(as.fill(kBase, 0x42, 4 * kPage).ok());
  const std::uint64_t to = kBase + 64 * kPage;
  ASSERT_EQ(as.mremap(kBase, 4 * kPage, 4 * kPage, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, to), static_cast<long>(to));
  EXPECT_EQ(as.map_count(), 2);
  {
    mmap_read_lock(as.mm());
    EXPECT_EQ(vma_lookup(as.mm(), kBase)->anon_vma.load(), nullptr);
    mmap_read_unlock(as.mm());
  }
  unsigned char b = 1;
  ASSERT_TRUE(as.read(kBase + 2 * kPage, &b, 1).ok());
  EXPECT_EQ(b, 0);
  ASSERT_TRUE(as.read(to + 2 * kPage, &b, 1).ok());
  EXPECT_EQ(b, 0x42);
  ASSERT_TRUE(as.fill(kBase, 7, kPage).ok());  // the source faults afresh
  expect_rmap(as, kBase, kBase + 4 * kPage);
  expect_rmap(as, to, to + 4 * kPage);
}

// Linux's "lock_vma_under_rcu() must check vma->anon_vma under vma lock"
// (a fault racing MREMAP_DONTUNMAP, which resets the source's anon_vma):
// here the fault found the source VMA under RCU and is about to lock it
// when the DONTUNMAP runs; it must then see the source as it is after the
// move (no anon_vma, no pages) and fault a fresh page into it.
TEST_P(Mremap, FaultRacingDontunmapOnItsSource) {
#if !defined(VMSPACE_DEBUG_CHECKS)
  GTEST_SKIP() << "test hooks are compiled out of release builds";
#endif
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, kPriv), static_cast<long>(kBase));
  ASSERT_TRUE(as.fill(kBase, 0x42, 4 * kPage).ok());
  ASSERT_EQ(as.madvise(kBase + kPage, kPage, MADV_DONTNEED), 0);  // the fault will need a page
  const std::uint64_t to = kBase + 64 * kPage;

  struct Gate {
    std::promise<void> arrived, go;
    std::shared_future<void> go_f = go.get_future().share();
    int calls = 0;
  } gate;
  VmaLockHooks hooks;
  hooks.after_lookup = [](MmStruct*, Vma*, void* arg) {
    auto* g = static_cast<Gate*>(arg);
    if (g->calls++ != 0) return;
    g->arrived.set_value();
    g->go_f.wait();
  };
  hooks.arg = &gate;
  const auto fault = [&] {
    set_vma_lock_hooks(&hooks);
    const unsigned char v = 9;
    EXPECT_TRUE(as.write(kBase + kPage, &v, 1).ok());
    set_vma_lock_hooks(nullptr);
  };
  const auto move = [&] {
    return as.mremap(kBase, 4 * kPage, 4 * kPage, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, to);
  };
  if (as.mode() == LockMode::mmap_lock) {
    // No VMA-locked lookup to stop in: faults serialize on mmap_lock, so the
    // only outcome with this test's meaning is the fault after the move.
    ASSERT_EQ(move(), static_cast<long>(to));
    fault();
  } else {
    std::thread faulter(fault);
    gate.arrived.get_future().wait();
    const long r = move();
    gate.go.set_value();
    faulter.join();
    ASSERT_EQ(r, static_cast<long>(to));
  }

  unsigned char b = 0;
  ASSERT_TRUE(as.read(kBase + kPage, &b, 1).ok());
  EXPECT_EQ(b, 9);
  ASSERT_TRUE(as.read(kBase, &b, 1).ok());
  EXPECT_EQ(b, 0) << "the source kept a page it moved";
  ASSERT_TRUE(as.read(to, &b, 1).ok());
  EXPECT_EQ(b, 0x42);
  ASSERT_TRUE(as.read(to + kPage, &b, 1).ok());
  EXPECT_EQ(b, 0) << "the DONTNEEDed page moved as nothing";
  mmap_read_lock(as.mm());
  Vma* src = vma_lookup(as.mm(), kBase);
  AnonVma* av = src->anon_vma.load();
  EXPECT_NE(av, nullptr) << "the fault gave the source a new anon_vma";
  EXPECT_NE(av, vma_lookup(as.mm(), to)->anon_vma.load());
  mmap_read_unlock(as.mm());
  expect_rmap(as, kBase, kBase + 4 * kPage);
  expect_rmap(as, to, to + 4 * kPage);
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

// A locked mapping that grows is populated (under the downgraded lock);
// locked_vm and the commit charge follow.
TEST_P(Mremap, LockedGrowthIsPopulated) {
  AddressSpaceOptions o = opts();
  o.cap_ipc_lock = true;
  AddressSpace as(o);
  ASSERT_EQ(as.mmap(kBase, 2 * kPage, kRW, kPriv | MAP_LOCKED), static_cast<long>(kBase));
  EXPECT_EQ(as.rss_pages(), 2u);
  ASSERT_EQ(as.mremap(kBase, 2 * kPage, 6 * kPage, 0), static_cast<long>(kBase));  // in place
  EXPECT_EQ(as.rss_pages(), 6u);
  EXPECT_EQ(as.mm()->locked_vm, 6u);
  const long moved = as.mremap(kBase, 6 * kPage, 6 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, kBase + 64 * kPage);
  ASSERT_EQ(moved, static_cast<long>(kBase + 64 * kPage));
  EXPECT_EQ(as.mm()->locked_vm, 6u);
  EXPECT_EQ(as.mm()->vm_committed->load(), 6);
  ASSERT_EQ(as.munmap(kBase + 64 * kPage, 6 * kPage), 0);
  EXPECT_EQ(as.mm()->locked_vm, 0u);
  EXPECT_EQ(as.mm()->vm_committed->load(), 0);
  EXPECT_EQ(as.rss_pages(), 0u);
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, Mremap, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace::mm
