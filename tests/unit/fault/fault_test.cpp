// SPDX-License-Identifier: MIT
// The fault path and the soft MMU, in every lock mode.  Linux behaviour
// (fault codes, contents, VMA effects) is checked against the host kernel
// by tests/scripts/faults.ops and anon_vma_merges.ops and by fuzz-kernel;
// these tests check what the kernel cannot show: frames, counters, the
// RETRY path, OOM and the reverse map.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "mem/phys_mem.h"
#include "mm/mmap_lock.h"
#include "mm/rmap.h"
#include "mm/vma.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kPage = 4096;
constexpr int kAnon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
constexpr int kRW = PROT_READ | PROT_WRITE;

class Faults : public ::testing::TestWithParam<LockMode> {
 protected:
  AddressSpaceOptions opts(std::uint64_t bytes = 64ull << 20) const {
    AddressSpaceOptions o = test::test_options(GetParam());
    o.phys_bytes = bytes;
    o.phys_pretouch = false;
    return o;
  }
  static mem::pte_t pte(AddressSpace& as, std::uint64_t va) {
    rcu::ReadGuard g;
    return as.mm()->pgtables.lookup(va);
  }
  bool per_vma() const { return GetParam() != LockMode::mmap_lock; }
};

TEST_P(Faults, ZeroPageThenCopyOnWrite) {
  if (!test::test_host_facts().zero_page) GTEST_SKIP() << "the test host has no zero page";
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, kAnon), static_cast<long>(kBase));
  unsigned char buf[kPage];
  ASSERT_TRUE(as.read(kBase, buf, kPage).ok());
  for (unsigned char c : buf) ASSERT_EQ(c, 0);
  mem::pte_t p = pte(as, kBase);
  ASSERT_TRUE(mem::pte_present(p));
  EXPECT_EQ(mem::pte_pfn(p), as.phys()->zero_pfn());
  EXPECT_FALSE(mem::pte_write(p));
  EXPECT_EQ(as.rss_pages(), 0u);

  ASSERT_TRUE(as.fill(kBase + 100, 0x5a, 10).ok());
  p = pte(as, kBase);
  EXPECT_NE(mem::pte_pfn(p), as.phys()->zero_pfn());
  EXPECT_TRUE(mem::pte_write(p));
  EXPECT_EQ(as.rss_pages(), 1u);
  ASSERT_TRUE(as.read(kBase, buf, kPage).ok());
  for (unsigned i = 0; i < kPage; ++i) ASSERT_EQ(buf[i], (i >= 100 && i < 110) ? 0x5a : 0) << i;
  // The frame knows its anon_vma and page index (reverse map).
  mem::Frame& fr = as.phys()->frame(mem::pte_pfn(p));
  EXPECT_EQ(fr.mapcount.load(), 1);
  EXPECT_EQ(fr.index.load(), kBase >> 12);
  EXPECT_TRUE(fr.mapping.load() & mem::kMappingAnon);
}

TEST_P(Faults, FaultCodes) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(kBase, 2 * kPage, PROT_READ, kAnon), static_cast<long>(kBase));
  ASSERT_EQ(as.mmap(kBase + 4 * kPage, kPage, PROT_NONE, kAnon), static_cast<long>(kBase + 4 * kPage));
  unsigned char b = 1;
  AccessResult r = as.write(kBase + kPage + 5, &b, 1);
  EXPECT_EQ(r.fault, Fault::segv_accerr);
  EXPECT_EQ(r.addr, kBase + kPage + 5);  // the byte itself, as si_addr
  EXPECT_EQ(r.done, 0u);
  r = as.read(kBase + 4 * kPage, &b, 1);
  EXPECT_EQ(r.fault, Fault::segv_accerr);
  r = as.read(kBase + 2 * kPage, &b, 1);
  EXPECT_EQ(r.fault, Fault::segv_maperr);
  EXPECT_EQ(r.addr, kBase + 2 * kPage);
  // A multi-page write stops at the first faulting page; earlier bytes stay.
  ASSERT_EQ(as.mprotect(kBase, kPage, kRW), 0);
  std::vector<unsigned char> src(2 * kPage, 7);
  r = as.write(kBase + kPage / 2, src.data(), src.size());
  EXPECT_EQ(r.fault, Fault::segv_accerr);
  EXPECT_EQ(r.addr, kBase + kPage);
  EXPECT_EQ(r.done, kPage / 2);
  ASSERT_TRUE(as.read(kBase + kPage - 1, &b, 1).ok());
  EXPECT_EQ(b, 7);
}

// A host without the zero page (Linux's mm_forbids_zeropage): a read fault
// allocates a zeroed page, gives the VMA its anon_vma, and maps the page
// writable where the VMA is.  (The VMA effects are checked against a real
// kernel by host_probe_test where the host has no zero page.)
TEST_P(Faults, ReadFaultWithoutZeroPageAllocates) {
  AddressSpaceOptions o = opts();
  o.zero_page = false;
  AddressSpace as(o);
  ASSERT_EQ(as.mmap(kBase, 2 * kPage, kRW, kAnon), static_cast<long>(kBase));
  ASSERT_EQ(as.mmap(kBase + 2 * kPage, kPage, PROT_READ, kAnon), static_cast<long>(kBase + 2 * kPage));
  unsigned char buf[kPage];
  ASSERT_TRUE(as.read(kBase, buf, kPage).ok());
  for (unsigned char c : buf) ASSERT_EQ(c, 0);
  mem::pte_t p = pte(as, kBase);
  ASSERT_TRUE(mem::pte_present(p));
  EXPECT_NE(mem::pte_pfn(p), as.phys()->zero_pfn());
  EXPECT_TRUE(mem::pte_write(p));  // the VMA is writable: no write fault follows
  EXPECT_EQ(as.rss_pages(), 1u);
  EXPECT_NE(mm::vma_lookup(as.mm(), kBase)->anon_vma.load(), nullptr);
  // Read-only VMA: a read-only PTE on a real page.
  ASSERT_TRUE(as.read(kBase + 2 * kPage, buf, 1).ok());
  p = pte(as, kBase + 2 * kPage);
  EXPECT_NE(mem::pte_pfn(p), as.phys()->zero_pfn());
  EXPECT_FALSE(mem::pte_write(p));
  EXPECT_EQ(as.rss_pages(), 2u);
  // Writing reuses the page (no copy).
  const mem::pfn_t before = mem::pte_pfn(pte(as, kBase));
  ASSERT_TRUE(as.fill(kBase, 7, 1).ok());
  EXPECT_EQ(mem::pte_pfn(pte(as, kBase)), before);
}

// With the zero page, the same read leaves the VMA without an anon_vma.
TEST_P(Faults, ReadFaultWithZeroPageLeavesNoAnonVma) {
  AddressSpaceOptions o = opts();
  o.zero_page = true;
  o.thp = ThpMode::never;
  AddressSpace as(o);
  ASSERT_EQ(as.mmap(kBase, 2 * kPage, kRW, kAnon), static_cast<long>(kBase));
  unsigned char b;
  ASSERT_TRUE(as.read(kBase, &b, 1).ok());
  EXPECT_EQ(mem::pte_pfn(pte(as, kBase)), as.phys()->zero_pfn());
  EXPECT_EQ(mm::vma_lookup(as.mm(), kBase)->anon_vma.load(), nullptr);
  EXPECT_EQ(as.rss_pages(), 0u);
}

// Transparent huge pages: a fault that Linux would take down the huge-page
// path (whole aligned 2 MiB inside the VMA, no page table there yet, THP
// enabled for the VMA) prepares the anon_vma even for a read.
TEST_P(Faults, ThpFaultPathPreparesAnonVma) {
  constexpr std::uint64_t k2M = 2ull << 20;
  struct Case {
    ThpMode thp;
    int advice;  // -1: none
    bool expect_anon_vma;
  };
  const Case cases[] = {
      {ThpMode::always, -1, true},           {ThpMode::always, MADV_NOHUGEPAGE, false},
      {ThpMode::madvise, -1, false},         {ThpMode::madvise, MADV_HUGEPAGE, true},
      {ThpMode::never, MADV_HUGEPAGE, false},
  };
  for (const Case& c : cases) {
    AddressSpaceOptions o = opts();
    o.zero_page = true;
    o.thp = c.thp;
    AddressSpace as(o);
    ASSERT_EQ(as.mmap(kBase, 2 * k2M, kRW, kAnon), static_cast<long>(kBase));
    if (c.advice >= 0) {
      ASSERT_EQ(as.madvise(kBase, 2 * k2M, c.advice), 0);
    }
    unsigned char b;
    ASSERT_TRUE(as.read(kBase + k2M + 5 * kPage, &b, 1).ok());
    EXPECT_EQ(mm::vma_lookup(as.mm(), kBase)->anon_vma.load() != nullptr, c.expect_anon_vma)
        << "thp " << thp_mode_name(c.thp) << " advice " << c.advice;
    EXPECT_EQ(mem::pte_pfn(pte(as, kBase + k2M + 5 * kPage)), as.phys()->zero_pfn());
  }
  // Not when the aligned 2 MiB sticks out of the VMA, nor below a page
  // table that already exists.
  AddressSpaceOptions o = opts();
  o.zero_page = true;
  o.thp = ThpMode::always;
  AddressSpace as(o);
  ASSERT_EQ(as.mmap(kBase + kPage, k2M, kRW, kAnon), static_cast<long>(kBase + kPage));
  unsigned char b;
  ASSERT_TRUE(as.read(kBase + k2M, &b, 1).ok());
  EXPECT_EQ(mm::vma_lookup(as.mm(), kBase + kPage)->anon_vma.load(), nullptr);
  ASSERT_EQ(as.mmap(kBase + 4 * k2M, 2 * k2M, kRW, kAnon), static_cast<long>(kBase + 4 * k2M));
  ASSERT_EQ(as.mmap(kBase + 4 * k2M - kPage, kPage, kRW, kAnon), static_cast<long>(kBase + 4 * k2M - kPage));
  ASSERT_TRUE(as.read(kBase + 4 * k2M - kPage, &b, 1).ok());  // a table for the PMD below
  ASSERT_TRUE(as.read(kBase + 5 * k2M, &b, 1).ok());           // first fault of this PMD: huge path
  EXPECT_NE(mm::vma_lookup(as.mm(), kBase + 5 * k2M)->anon_vma.load(), nullptr);
}

// Execute-only mappings on hosts with protection keys: reads fault with
// SEGV_ACCERR (SEGV_PKUERR in Linux), populate skips them, and an
// mprotect to PROT_EXEC takes the data-access bit from present PTEs.
TEST_P(Faults, ExecOnlyWithProtectionKeys) {
  for (bool pkey : {false, true}) {
    AddressSpaceOptions o = opts();
    o.exec_only_pkey = pkey;
    AddressSpace as(o);
    ASSERT_EQ(as.mmap(kBase, 2 * kPage, PROT_EXEC, kAnon), static_cast<long>(kBase));
    unsigned char b = 1;
    EXPECT_EQ(as.read(kBase, &b, 1).fault, pkey ? Fault::segv_accerr : Fault::none) << pkey;
    ASSERT_EQ(as.mmap(kBase + 4 * kPage, kPage, kRW, kAnon), static_cast<long>(kBase + 4 * kPage));
    ASSERT_TRUE(as.fill(kBase + 4 * kPage, 9, 1).ok());
    ASSERT_EQ(as.mprotect(kBase + 4 * kPage, kPage, PROT_EXEC), 0);
    {
      AddressSpace::AccessScope scope(as);
      EXPECT_EQ(scope.translate(kBase + 4 * kPage, false) == nullptr, pkey) << pkey;
    }
    EXPECT_EQ(as.read(kBase + 4 * kPage, &b, 1).fault, pkey ? Fault::segv_accerr : Fault::none) << pkey;
    // -wx and r-x are not execute-only.
    ASSERT_EQ(as.mprotect(kBase + 4 * kPage, kPage, PROT_EXEC | PROT_READ), 0);
    ASSERT_TRUE(as.read(kBase + 4 * kPage, &b, 1).ok());
    EXPECT_EQ(b, 9);
    ASSERT_EQ(as.mprotect(kBase, 2 * kPage, PROT_EXEC | PROT_WRITE), 0);
    EXPECT_TRUE(as.read(kBase, &b, 1).ok());
    // MAP_POPULATE of an execute-only mapping faults nothing in (GUP is
    // refused by the key); without keys its pages are read-faulted (real
    // pages here, as the space has no zero page).
    AddressSpaceOptions o2 = o;
    o2.zero_page = false;
    AddressSpace as2(o2);
    ASSERT_EQ(as2.mmap(kBase, 3 * kPage, PROT_EXEC, kAnon | MAP_POPULATE), static_cast<long>(kBase));
    EXPECT_EQ(as2.rss_pages(), pkey ? 0u : 3u) << pkey;
  }
}

TEST_P(Faults, MprotectAndDontneedTakeEffect) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, kAnon), static_cast<long>(kBase));
  ASSERT_TRUE(as.fill(kBase, 0x11, 4 * kPage).ok());
  ASSERT_EQ(as.mprotect(kBase, 4 * kPage, PROT_READ), 0);
  EXPECT_FALSE(mem::pte_write(pte(as, kBase)));
  unsigned char b = 0;
  EXPECT_EQ(as.write(kBase, &b, 1).fault, Fault::segv_accerr);
  ASSERT_TRUE(as.read(kBase + 3, &b, 1).ok());
  EXPECT_EQ(b, 0x11);
  ASSERT_EQ(as.mprotect(kBase, 4 * kPage, PROT_NONE), 0);
  EXPECT_EQ(as.read(kBase, &b, 1).fault, Fault::segv_accerr);
  ASSERT_EQ(as.mprotect(kBase, 4 * kPage, kRW), 0);
  ASSERT_TRUE(as.read(kBase, &b, 1).ok());
  EXPECT_EQ(b, 0x11);  // data survived the protection changes
  ASSERT_TRUE(as.fill(kBase, 0x22, 1).ok());  // reuses the exclusive page
  ASSERT_EQ(as.madvise(kBase, 2 * kPage, MADV_DONTNEED), 0);
  ASSERT_TRUE(as.read(kBase, &b, 1).ok());
  EXPECT_EQ(b, 0);
  ASSERT_TRUE(as.read(kBase + 2 * kPage, &b, 1).ok());
  EXPECT_EQ(b, 0x11);
  // The read after DONTNEED maps the zero page, or (no zero page) a new one.
  EXPECT_EQ(as.rss_pages(), test::test_host_facts().zero_page ? 2u : 3u);
  ASSERT_EQ(as.munmap(kBase, 4 * kPage), 0);
  EXPECT_EQ(as.rss_pages(), 0u);
  EXPECT_EQ(pte(as, kBase + 2 * kPage), 0u);
}

TEST_P(Faults, OutOfMemoryIsAResultAndRecovers) {
  AddressSpace as(opts(16 * kPage));  // 16 frames
  ASSERT_EQ(as.mmap(kBase, 32 * kPage, kRW, kAnon), static_cast<long>(kBase));
  AccessResult r = as.fill(kBase, 1, 32 * kPage);
  EXPECT_EQ(r.fault, Fault::oom);
  EXPECT_EQ(r.addr, kBase + 16 * kPage);
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
  ASSERT_EQ(as.munmap(kBase, 8 * kPage), 0);
  EXPECT_TRUE(as.fill(kBase + 16 * kPage, 2, 8 * kPage).ok()) << "frames freed by munmap are reused";
}

TEST_P(Faults, CountersFollowTheLockMode) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(kBase, 64 * kPage, kRW, kAnon), static_cast<long>(kBase));
  ASSERT_TRUE(as.fill(kBase, 3, 64 * kPage).ok());
  EXPECT_EQ(as.vm_stat(VmStat::pgfault), 64u);
  if (per_vma()) {
    EXPECT_EQ(as.vm_stat(VmStat::vma_lock_success), 64u);
    EXPECT_EQ(as.vm_stat(VmStat::vma_lock_retry), 0u);
  } else {
    EXPECT_EQ(as.vm_stat(VmStat::vma_lock_success), 0u);
    EXPECT_EQ(as.vm_stat(VmStat::vma_lock_abort), 0u);
  }
}

// The first write fault of a VMA needs an anon_vma, which needs the
// mmap_lock; under only a VMA lock the fault may just try it.  With the
// mmap_lock write-held by another thread, it returns RETRY and the fault
// is redone under the mmap_lock.
TEST_P(Faults, FirstAnonFaultUnderVmaLockRetries) {
  if (!per_vma()) GTEST_SKIP() << "no VMA locks in mmap_lock mode";
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, kAnon), static_cast<long>(kBase));
  mm::mmap_write_lock(as.mm());
  std::atomic<bool> done{false};
  std::thread t([&] {
    EXPECT_EQ(as.fault_in(kBase, /*write=*/true), Fault::none);
    done = true;
  });
  while (as.vm_stat(VmStat::vma_lock_retry) == 0) std::this_thread::yield();
  EXPECT_FALSE(done.load());  // waiting for the mmap_lock now
  mm::mmap_write_unlock(as.mm());
  t.join();
  EXPECT_EQ(as.vm_stat(VmStat::vma_lock_retry), 1u);
  EXPECT_EQ(as.vm_stat(VmStat::vma_lock_success), 0u);
  // With an anon_vma in place, the next first-touch stays on the VMA lock.
  EXPECT_EQ(as.fault_in(kBase + kPage, true), Fault::none);
  EXPECT_EQ(as.vm_stat(VmStat::vma_lock_success), 1u);
}

// Seed 004: racing first faults on one VMA install exactly one anon_vma.
TEST_P(Faults, RacingFirstFaultsInstallOneAnonVma) {
  for (int round = 0; round < 20; ++round) {
    AddressSpace as(opts());
    ASSERT_EQ(as.mmap(kBase, 64 * kPage, kRW, kAnon), static_cast<long>(kBase));
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; ++i) ts.emplace_back([&, i] { EXPECT_TRUE(as.fill(kBase + i * 16 * kPage, 1, kPage).ok()); });
    for (auto& t : ts) t.join();
    mm::mmap_read_lock(as.mm());
    mm::Vma* v = mm::vma_lookup(as.mm(), kBase);
    mm::AnonVma* av = v->anon_vma.load();
    ASSERT_NE(av, nullptr);
    for (int i = 0; i < 4; ++i) {
      mem::pte_t p = pte(as, kBase + i * 16 * kPage);
      EXPECT_EQ(as.phys()->frame(mem::pte_pfn(p)).mapping.load(), reinterpret_cast<std::uintptr_t>(av) | mem::kMappingAnon);
    }
    av->rwsem.lock_shared();
    EXPECT_EQ(av->vmas.size(), 1u);
    av->rwsem.unlock_shared();
    mm::mmap_read_unlock(as.mm());
  }
}

// From a frame to every VMA (and address) that maps it.
TEST_P(Faults, ReverseMapFindsTheMappingVma) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(kBase, 8 * kPage, kRW, kAnon), static_cast<long>(kBase));
  ASSERT_TRUE(as.fill(kBase, 1, 8 * kPage).ok());
  ASSERT_EQ(as.mprotect(kBase + 2 * kPage, 2 * kPage, PROT_READ), 0);  // split: three VMAs, one anon_vma
  mm::mmap_read_lock(as.mm());
  for (std::uint64_t a : {kBase, kBase + 3 * kPage, kBase + 7 * kPage}) {
    mem::Frame& fr = as.phys()->frame(mem::pte_pfn(pte(as, a)));
    auto* av = reinterpret_cast<mm::AnonVma*>(fr.mapping.load() & ~mem::kMappingAnon);
    int hits = 0;
    mm::rmap_walk_anon(av, fr.index.load(), [&](mm::Vma* v, std::uint64_t addr) {
      EXPECT_EQ(addr, a);
      EXPECT_TRUE(v->vm_start <= a && a < v->vm_end);
      ++hits;
    });
    EXPECT_EQ(hits, 1) << std::hex << a;
  }
  mm::mmap_read_unlock(as.mm());
}

TEST_P(Faults, TranslateHitsAfterFaultIn) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(kBase, 2 * kPage, kRW, kAnon), static_cast<long>(kBase));
  {
    AddressSpace::AccessScope scope(as);
    EXPECT_EQ(scope.translate(kBase, true), nullptr);
  }
  ASSERT_EQ(as.fault_in(kBase, true), Fault::none);
  {
    AddressSpace::AccessScope scope(as);
    auto* p = static_cast<unsigned char*>(scope.translate(kBase + 10, true));
    ASSERT_NE(p, nullptr);
    *p = 42;
  }
  unsigned char b = 0;
  ASSERT_TRUE(as.read(kBase + 10, &b, 1).ok());
  EXPECT_EQ(b, 42);
  ASSERT_EQ(as.munmap(kBase, 2 * kPage), 0);
  AddressSpace::AccessScope scope(as);
  EXPECT_EQ(scope.translate(kBase + 10, false), nullptr);
}

TEST_P(Faults, SharedMemoryIsOneObject) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(kBase));
  ASSERT_TRUE(as.fill(kBase, 9, 4 * kPage).ok());
  ASSERT_EQ(as.madvise(kBase, 4 * kPage, MADV_DONTNEED), 0);
  unsigned char b = 0;
  ASSERT_TRUE(as.read(kBase + kPage, &b, 1).ok());
  EXPECT_EQ(b, 9);  // refaulted from the shmem object
  ASSERT_EQ(as.madvise(kBase, 4 * kPage, MADV_REMOVE), 0);
  ASSERT_TRUE(as.read(kBase + kPage, &b, 1).ok());
  EXPECT_EQ(b, 0);  // the hole punched in the object
}

TEST_P(Faults, SmapsCountsResidentPages) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, kAnon), static_cast<long>(kBase));
  ASSERT_TRUE(as.fill(kBase, 1, 3 * kPage).ok());
  std::string s = as.smaps();
  EXPECT_NE(s.find("Size:                 16 kB"), std::string::npos) << s;
  EXPECT_NE(s.find("Rss:                  12 kB"), std::string::npos) << s;
  EXPECT_NE(s.find("Anonymous:            12 kB"), std::string::npos) << s;
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, Faults, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace
