// SPDX-License-Identifier: MIT
// brk(2) in every lock mode: growth, shrinking, the one-page gap, the
// expand-only merge, RLIMIT_DATA, seals, mlockall(MCL_FUTURE) and the
// [heap] name.  tests/unit/api/brk_differential_test.cpp checks the same
// rules against the host kernel (sbrk deltas in a child process); these
// tests also cover what a child cannot safely do with its own heap.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <string>

#include "vmspace/mman.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kStart = 0x555555560000;  // where a PIE's heap might start
constexpr int kAnon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
constexpr int kRW = PROT_READ | PROT_WRITE;

std::uint64_t at(std::uint64_t page) { return kStart + page * kPage; }

class Brk : public ::testing::TestWithParam<LockMode> {
 protected:
  AddressSpaceOptions opts() const {
    AddressSpaceOptions o = test::test_options(GetParam());
    o.phys_bytes = 64ull << 20;
    o.phys_pretouch = false;
    o.brk_start = kStart;
    return o;
  }
  // The maps lines, one string, with addresses relative to kStart in pages:
  // "0-5 rw-p [heap]|7-8 rw-p|".
  static std::string shape(AddressSpace& as) {
    std::string out;
    mm::MmStruct* mm = as.mm();
    mm::mmap_read_lock(mm);
    mm->mm_mt.for_each(0, tree::kMaxAddr, [&](const tree::Entry& e) {
      const mm::Vma* v = e.as<mm::Vma>();
      out += std::to_string((v->vm_start - kStart) / kPage) + "-" + std::to_string((v->vm_end - kStart) / kPage);
      out += (v->vm_flags & mm::VM_READ) ? " r" : " -";
      out += (v->vm_flags & mm::VM_WRITE) ? "w" : "-";
      if (v->vm_flags & mm::VM_LOCKED) out += " lo";
      out += "|";
    });
    mm::mmap_read_unlock(mm);
    return out;
  }
  static bool named_heap(AddressSpace& as, std::uint64_t addr) {
    const std::string maps = as.maps();
    char buf[32];
    std::snprintf(buf, sizeof buf, "%08llx-", static_cast<unsigned long long>(addr));
    const std::size_t line = maps.find(buf);
    if (line == std::string::npos) return false;
    const std::size_t nl = maps.find('\n', line);
    return maps.compare(nl - 6, 6, "[heap]") == 0;
  }
};

TEST_P(Brk, NoHeapWithoutAStart) {
  AddressSpaceOptions o = opts();
  o.brk_start = 0;
  AddressSpace as(o);
  EXPECT_EQ(as.brk(0), 0u);
  EXPECT_EQ(as.brk(at(4)), 0u);
  EXPECT_EQ(as.map_count(), 0);
}

TEST_P(Brk, GrowAndShrink) {
  AddressSpace as(opts());
  EXPECT_EQ(as.brk(0), kStart);
  EXPECT_EQ(as.map_count(), 0);  // no heap VMA until it grows
  EXPECT_EQ(as.brk(kStart - 1), kStart);
  EXPECT_EQ(as.brk(at(0) + 1), at(0) + 1);  // not page aligned: stored as asked
  EXPECT_EQ(shape(as), "0-1 rw|");
  EXPECT_EQ(as.brk(at(1)), at(1));  // same page: nothing changes
  EXPECT_EQ(as.brk(at(5)), at(5));
  EXPECT_EQ(shape(as), "0-5 rw|");
  EXPECT_TRUE(named_heap(as, at(0)));
  // The heap is ordinary memory, charged to the commit limit.
  ASSERT_TRUE(as.fill(at(4), 3, kPage).ok());
  EXPECT_TRUE(mm::vma_lookup(as.mm(), at(0))->vm_flags & mm::VM_ACCOUNT);
  EXPECT_EQ(as.brk(at(2) + 7), at(2) + 7);
  EXPECT_EQ(shape(as), "0-3 rw|");
  EXPECT_EQ(as.brk(at(5)), at(5));
  unsigned char b = 1;
  ASSERT_TRUE(as.read(at(4), &b, 1).ok());
  EXPECT_EQ(b, 0);  // shrunk away: fresh memory
  EXPECT_EQ(as.brk(kStart), kStart);
  EXPECT_EQ(shape(as), "");
  EXPECT_EQ(as.brk(0), kStart);
}

TEST_P(Brk, GrowthKeepsAPageFreeBelowTheNextMapping) {
  AddressSpace as(opts());
  ASSERT_EQ(as.mmap(at(10), kPage, kRW, kAnon), static_cast<long>(at(10)));
  EXPECT_EQ(as.brk(at(9) + 1), kStart);
  EXPECT_EQ(as.brk(at(9)), at(9));
  EXPECT_EQ(shape(as), "0-9 rw|10-11 rw|");
  // A MAP_GROWSDOWN mapping keeps the stack guard gap free too.
  AddressSpaceOptions o = opts();
  AddressSpace as2(o);
  const std::uint64_t gap_pages = o.stack_guard_gap / kPage;
  const std::uint64_t stack = 300 + gap_pages;
  ASSERT_EQ(as2.mmap(at(stack), 4 * kPage, kRW, kAnon | MAP_GROWSDOWN), static_cast<long>(at(stack)));
  EXPECT_EQ(as2.brk(at(stack - gap_pages - 1) + 1), kStart);
  EXPECT_EQ(as2.brk(at(stack - gap_pages - 1)), at(stack - gap_pages - 1));
  // Beyond the task size: refused.
  EXPECT_EQ(as.brk(std::uint64_t{1} << 47), at(9));
  EXPECT_EQ(as.brk(~std::uint64_t{0}), at(9));
}

TEST_P(Brk, ExtendsOnlyACompatibleHeapVma) {
  AddressSpace as(opts());
  ASSERT_EQ(as.brk(at(4)), at(4));
  ASSERT_EQ(as.mprotect(at(3), kPage, PROT_READ), 0);
  ASSERT_EQ(as.brk(at(6)), at(6));
  EXPECT_EQ(shape(as), "0-3 rw|3-4 r-|4-6 rw|");
  ASSERT_EQ(as.mprotect(at(3), kPage, kRW), 0);
  EXPECT_EQ(shape(as), "0-6 rw|");
  // Never merges with a mapping after the new range (the gap rule keeps
  // one page free anyway); a mapping inside the heap's range is "[heap]".
  ASSERT_EQ(as.mmap(at(8), 2 * kPage, kRW, kAnon), static_cast<long>(at(8)));
  EXPECT_FALSE(named_heap(as, at(8)));
  ASSERT_EQ(as.brk(at(7)), at(7));
  EXPECT_EQ(shape(as), "0-7 rw|8-10 rw|");
  EXPECT_EQ(as.brk(at(8)), at(7));
  ASSERT_EQ(as.mmap(at(5), kPage, PROT_READ, kAnon), static_cast<long>(at(5)));
  EXPECT_TRUE(named_heap(as, at(5)));
  // Shrinking unmaps whatever lies in the range, foreign mappings too.
  ASSERT_EQ(as.brk(at(1)), at(1));
  EXPECT_EQ(shape(as), "0-1 rw|8-10 rw|");
}

TEST_P(Brk, ShrinkNeedsSomethingMapped) {
  AddressSpace as(opts());
  ASSERT_EQ(as.brk(at(4)), at(4));
  ASSERT_EQ(as.munmap(at(0), 4 * kPage), 0);
  EXPECT_EQ(as.brk(at(2)), at(4));  // nothing in [2, 4): refused
  ASSERT_EQ(as.brk(at(6)), at(6));  // grows from the old break: a new VMA
  EXPECT_EQ(shape(as), "4-6 rw|");
  ASSERT_EQ(as.brk(at(6) + 5), at(6) + 5);
  EXPECT_EQ(shape(as), "4-7 rw|");
  ASSERT_EQ(as.brk(at(7)), at(7));  // same page
  EXPECT_EQ(shape(as), "4-7 rw|");
}

TEST_P(Brk, RlimitDataIsCheckedBeforeShrinking) {
  AddressSpaceOptions o = opts();
  o.rlimit_data = 4 * kPage;
  AddressSpace as(o);
  EXPECT_EQ(as.brk(at(5)), kStart);
  EXPECT_EQ(as.brk(at(4)), at(4));
  // do_brk_flags counts every private writable mapping (data_vm).
  ASSERT_EQ(as.brk(at(2)), at(2));
  ASSERT_EQ(as.mmap(at(100), 2 * kPage, kRW, kAnon), static_cast<long>(at(100)));
  EXPECT_EQ(as.brk(at(4)), at(2));
  EXPECT_EQ(as.brk(at(3)), at(2));
  ASSERT_EQ(as.munmap(at(100), 2 * kPage), 0);
  EXPECT_EQ(as.brk(at(4)), at(4));
}

TEST_P(Brk, SealedHeapRefusesShrinking) {
  AddressSpace as(opts());
  ASSERT_EQ(as.brk(at(6)), at(6));
  ASSERT_EQ(as.mseal(at(5), kPage), 0);
  EXPECT_EQ(as.brk(at(1)), at(6));
  EXPECT_EQ(shape(as), "0-1 rw|1-5 rw|5-6 rw|");  // munmap's head split stays
  EXPECT_EQ(as.brk(at(8)), at(8));                // growth: a new VMA (flags differ)
  EXPECT_EQ(shape(as), "0-1 rw|1-5 rw|5-6 rw|6-8 rw|");
}

TEST_P(Brk, MclFutureLocksAndFaultsInTheHeap) {
  AddressSpaceOptions o = opts();
  o.cap_ipc_lock = true;
  AddressSpace as(o);
  ASSERT_EQ(as.brk(at(2)), at(2));
  ASSERT_EQ(as.mlockall(MCL_FUTURE), 0);
  ASSERT_EQ(as.brk(at(4)), at(4));
  EXPECT_EQ(shape(as), "0-2 rw|2-4 rw lo|");
  EXPECT_EQ(as.rss_pages(), 2u);
  ASSERT_EQ(as.mlockall(MCL_FUTURE | MCL_ONFAULT), 0);
  ASSERT_EQ(as.brk(at(6)), at(6));
  EXPECT_EQ(as.rss_pages(), 2u);  // on fault: not populated
  ASSERT_EQ(as.munlockall(), 0);
  EXPECT_EQ(shape(as), "0-6 rw|");
  // RLIMIT_MEMLOCK bounds a locked heap's growth.
  AddressSpaceOptions o2 = opts();
  o2.rlimit_memlock = 2 * kPage;
  o2.cap_ipc_lock = false;
  AddressSpace as2(o2);
  ASSERT_EQ(as2.mlockall(MCL_FUTURE), 0);
  EXPECT_EQ(as2.brk(at(3)), kStart);
  EXPECT_EQ(as2.brk(at(2)), at(2));
}

TEST_P(Brk, CommitAndMapCountLimits) {
  AddressSpaceOptions o = opts();
  o.overcommit = Overcommit::never;
  o.overcommit_limit_pages = 8;
  AddressSpace as(o);
  EXPECT_EQ(as.brk(at(9)), kStart);
  EXPECT_EQ(as.brk(at(8)), at(8));
  EXPECT_EQ(as.brk(at(4)), at(4));  // gives the commit back
  EXPECT_EQ(as.brk(at(8)), at(8));
  AddressSpaceOptions o2 = opts();
  o2.max_map_count = 2;
  AddressSpace as2(o2);
  ASSERT_EQ(as2.mmap(at(100), kPage, kRW, kAnon), static_cast<long>(at(100)));
  ASSERT_EQ(as2.mmap(at(102), kPage, PROT_READ, kAnon), static_cast<long>(at(102)));
  ASSERT_EQ(as2.mmap(at(104), kPage, kRW, kAnon), static_cast<long>(at(104)));
  EXPECT_EQ(as2.map_count(), 3);
  EXPECT_EQ(as2.brk(at(1)), kStart);  // map_count > max
  ASSERT_EQ(as2.munmap(at(104), kPage), 0);
  EXPECT_EQ(as2.brk(at(1)), at(1));  // map_count == max is still fine
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, Brk, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace
