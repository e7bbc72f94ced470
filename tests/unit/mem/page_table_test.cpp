// SPDX-License-Identifier: MIT
#include "mem/page_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <thread>
#include <vector>

#include "sync/rcu.h"

namespace vmspace::mem {
namespace {

// ---- entry helpers are constexpr ----
static_assert(pte_present(make_pte(5, false)));
static_assert(!pte_write(make_pte(5, false)));
static_assert(pte_write(make_pte(5, true)));
static_assert(pte_user(make_pte(5, true)));
static_assert(pte_pfn(make_pte(0x123456789ull, true)) == 0x123456789ull);
static_assert(pte_pfn(make_pte((pfn_t{1} << 40) - 1, true)) == (pfn_t{1} << 40) - 1);
static_assert(!pte_write(pte_wrprotect(make_pte(7, true))));
static_assert(pte_pfn(pte_wrprotect(make_pte(7, true))) == 7);
static_assert(pte_dirty(pte_mkdirty(make_pte(7, true))));
static_assert(!pte_dirty(pte_mkclean(pte_mkdirty(make_pte(7, true)))));
static_assert(pte_young(pte_mkyoung(make_pte(7, true))));
static_assert(!pte_young(pte_mkold(pte_mkyoung(make_pte(7, true)))));
static_assert(pte_write(pte_mkwrite(make_pte(7, false))));
static_assert(pte_pfn(pte_modify_pfn(make_pte(7, true), 9)) == 9);
static_assert(pte_write(pte_modify_pfn(make_pte(7, true), 9)));
static_assert(pte_none(0) && !pte_present(0));
static_assert(pgd_index(0x7ffffffff000) == 255 && pud_index(0x7ffffffff000) == 511 &&
              pmd_index(0x7ffffffff000) == 511 && pte_index(0x7ffffffff000) == 511);

void set_pte(PteTable* t, std::uint64_t va, pte_t v) {
  PageTables::pte_lock(t).lock();
  PageTables::pte_slot(t, va).store(v, std::memory_order_release);
  PageTables::pte_lock(t).unlock();
}

pte_t look(const PageTables& pt, std::uint64_t va) {
  rcu::ReadGuard g;
  return pt.lookup(va);
}

struct PageTablesTest : ::testing::Test {
  SpinLock ptl{LockClass::page_table_lock};
  PageTables pt{ptl};
  void TearDown() override { rcu::barrier(); }
};

TEST_F(PageTablesTest, EmptyLookupIsZero) {
  rcu::ReadGuard g;
  for (std::uint64_t va : {0ull, 0x1000ull, 0x7ffffffff000ull, 0xffffffffffffull, 1ull << 48})
    EXPECT_EQ(pt.lookup(va), 0u);
  EXPECT_EQ(pt.pte_table(0x1000), nullptr);
  auto s = pt.stats();
  EXPECT_EQ(s.pte_tables, 0u);
  EXPECT_EQ(s.upper_tables, 1u);
  EXPECT_GT(s.bytes, 4096u);
}

TEST_F(PageTablesTest, AllocSetLookup) {
  PteTable* t = pt.pte_alloc(0x1000);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(pt.pte_alloc(0x1000), t);
  EXPECT_EQ(pt.pte_alloc(0x1fffff), t);  // same 2 MiB
  EXPECT_EQ(pt.pte_table(0x0), t);
  EXPECT_EQ(pt.pte_table(0x200000), nullptr);
  EXPECT_EQ(look(pt, 0x1000), 0u);
  set_pte(t, 0x1000, make_pte(5, true));
  pte_t v = look(pt, 0x1000);
  EXPECT_TRUE(pte_present(v));
  EXPECT_TRUE(pte_write(v));
  EXPECT_EQ(pte_pfn(v), 5u);
  EXPECT_EQ(look(pt, 0x1fff), v);  // any byte of the page
  EXPECT_EQ(look(pt, 0x2000), 0u);
  EXPECT_EQ(look(pt, 0x0), 0u);
  auto s = pt.stats();
  EXPECT_EQ(s.pte_tables, 1u);
  EXPECT_EQ(s.upper_tables, 3u);  // pgd + pud + pmd
  EXPECT_EQ(pt.pte_alloc(1ull << 48), nullptr);
}

TEST_F(PageTablesTest, SparseAddressesAcrossAllLevels) {
  const std::vector<std::uint64_t> vas = {0x1000, 0x40000000, 0x200000000000, 0x7ffffffff000,
                                          0x3fe00000};
  pfn_t pfn = 100;
  for (auto va : vas) {
    PteTable* t = pt.pte_alloc(va);
    ASSERT_NE(t, nullptr);
    set_pte(t, va, make_pte(pfn++, false));
  }
  pfn = 100;
  for (auto va : vas) {
    pte_t v = look(pt, va);
    EXPECT_EQ(pte_pfn(v), pfn++) << std::hex << va;
    EXPECT_FALSE(pte_write(v));
    EXPECT_EQ(look(pt, va + 0x1000), 0u);
    EXPECT_EQ(look(pt, va ^ (1ull << 30)), 0u);
  }
  // pgd 0: pud{0: pmd(0x1000, 0x3fe00000), 1: pmd(0x40000000)}; pgd 64; pgd 255.
  auto s = pt.stats();
  EXPECT_EQ(s.pte_tables, 5u);
  EXPECT_EQ(s.upper_tables, 1u + 3u + 4u);
}

TEST_F(PageTablesTest, ZapRangeCallsBackAndCounts) {
  const std::uint64_t base = 0x10000000;
  for (std::uint64_t i = 0; i < 1100; ++i) {  // crosses two table boundaries
    std::uint64_t va = base + i * kPageSize;
    if (i % 7 == 3) continue;  // holes
    set_pte(pt.pte_alloc(va), va, make_pte(1000 + i, true));
  }
  std::map<std::uint64_t, pte_t> seen;
  const std::uint64_t zs = base + 10 * kPageSize, ze = base + 1090 * kPageSize;
  std::uint64_t n = pt.zap_range(zs, ze, [&](std::uint64_t va, pte_t old) {
    EXPECT_TRUE(seen.emplace(va, old).second);
    EXPECT_EQ(look(pt, va), 0u);  // already cleared
  });
  EXPECT_EQ(n, seen.size());
  std::uint64_t expect = 0;
  for (std::uint64_t i = 10; i < 1090; ++i) {
    std::uint64_t va = base + i * kPageSize;
    EXPECT_EQ(look(pt, va), 0u);
    if (i % 7 == 3) {
      EXPECT_EQ(seen.count(va), 0u);
      continue;
    }
    ++expect;
    ASSERT_EQ(seen.count(va), 1u);
    EXPECT_EQ(pte_pfn(seen[va]), 1000 + i);
  }
  EXPECT_EQ(n, expect);
  for (std::uint64_t i : {0ull, 9ull, 1090ull, 1099ull})
    EXPECT_EQ(pte_pfn(look(pt, base + i * kPageSize)), 1000 + i);
  // Zapping an empty or absent range is a no-op.
  EXPECT_EQ(pt.zap_range(zs, ze, {}), 0u);
  EXPECT_EQ(pt.zap_range(0x7f0000000000, 0x7f0100000000, {}), 0u);
  // Tables stay until free_pgtables.
  EXPECT_EQ(pt.stats().pte_tables, 3u);
}

TEST_F(PageTablesTest, ForEachPresentWriteProtects) {
  for (std::uint64_t va = 0x400000; va < 0x800000; va += 0x10000)
    set_pte(pt.pte_alloc(va), va, make_pte(va >> 12, true));
  int visits = 0;
  pt.for_each_present(0x500000, 0x700000, [&](std::uint64_t va, std::atomic<pte_t>& slot,
                                               pte_t old) {
    EXPECT_EQ(pte_pfn(old), va >> 12);
    slot.store(pte_wrprotect(old), std::memory_order_release);
    ++visits;
  });
  EXPECT_EQ(visits, 32);
  for (std::uint64_t va = 0x400000; va < 0x800000; va += 0x10000) {
    pte_t v = look(pt, va);
    EXPECT_EQ(pte_pfn(v), va >> 12);
    EXPECT_EQ(pte_write(v), va < 0x500000 || va >= 0x700000) << std::hex << va;
  }
}

TEST_F(PageTablesTest, FreePgtablesKeepsSharedTables) {
  // prev VMA [0, 0x2000), unmapped VMA [0x2000, 0x800000), next VMA at 0x900000.
  for (std::uint64_t va : {0x1000ull, 0x3000ull, 0x200000ull, 0x400000ull, 0x600000ull,
                           0x7ff000ull, 0x900000ull})
    set_pte(pt.pte_alloc(va), va, make_pte(va >> 12, true));
  ASSERT_EQ(pt.stats().pte_tables, 5u);
  ASSERT_EQ(pt.stats().upper_tables, 3u);
  EXPECT_EQ(pt.zap_range(0x2000, 0x800000, {}), 5u);
  pt.free_pgtables(0x2000, 0x800000, /*floor=*/0x2000, /*ceiling=*/0x900000);
  auto s = pt.stats();
  EXPECT_EQ(s.pte_tables, 2u);  // [0,2M) shared with prev, [8M,10M) holds next
  EXPECT_EQ(s.upper_tables, 3u);
  EXPECT_NE(pt.pte_table(0x0), nullptr);
  EXPECT_EQ(pt.pte_table(0x200000), nullptr);
  EXPECT_EQ(pt.pte_table(0x400000), nullptr);
  EXPECT_EQ(pt.pte_table(0x600000), nullptr);
  EXPECT_NE(pt.pte_table(0x900000), nullptr);
  EXPECT_EQ(pte_pfn(look(pt, 0x1000)), 1u);
  EXPECT_EQ(pte_pfn(look(pt, 0x900000)), 0x900u);
  EXPECT_EQ(look(pt, 0x400000), 0u);

  // A whole 1 GiB PMD subtree inside [floor, ceiling) goes with its tables.
  for (std::uint64_t va : {0x40000000ull, 0x40200000ull, 0x7fe00000ull})
    set_pte(pt.pte_alloc(va), va, make_pte(1, true));
  s = pt.stats();
  EXPECT_EQ(s.pte_tables, 5u);
  EXPECT_EQ(s.upper_tables, 4u);
  pt.zap_range(0x40000000, 0x80000000, {});
  pt.free_pgtables(0x40000000, 0x80000000, 0x40000000, 0x80000000);
  s = pt.stats();
  EXPECT_EQ(s.pte_tables, 2u);
  EXPECT_EQ(s.upper_tables, 3u);

  // Ceiling 0 = no next VMA: the last PUD subtree goes entirely.
  set_pte(pt.pte_alloc(0x7ffffffff000), 0x7ffffffff000, make_pte(2, true));
  EXPECT_EQ(pt.stats().upper_tables, 5u);
  pt.zap_range(0x7fff00000000, 0x800000000000, {});
  pt.free_pgtables(0x7fff00000000, 0x800000000000, /*floor=*/0x100000000, /*ceiling=*/0);
  s = pt.stats();
  EXPECT_EQ(s.pte_tables, 2u);
  EXPECT_EQ(s.upper_tables, 3u);
  EXPECT_EQ(look(pt, 0x7ffffffff000), 0u);

  // Floor inside the table: nothing freed; the range can be reused.
  pt.free_pgtables(0x900000, 0xa00000, 0x901000, 0);
  EXPECT_EQ(pt.stats().pte_tables, 2u);
  set_pte(pt.pte_alloc(0x400000), 0x400000, make_pte(3, true));
  EXPECT_EQ(pte_pfn(look(pt, 0x400000)), 3u);
  EXPECT_EQ(pt.stats().pte_tables, 3u);
  s = pt.stats();
  EXPECT_GE(s.bytes, 3 * sizeof(PteTable) + s.upper_tables * 4096);
}

// move_range (mremap): a whole aligned 2 MiB table moves by relinking it
// (one step for 512 PTEs); the rest moves entry by entry, also across two
// destination tables and within one table; entries (frames) move intact.
TEST_F(PageTablesTest, MoveRangeRelinksWholeTablesAndMovesTheRest) {
  constexpr std::uint64_t k2M = kPteTableSpan;
  const std::uint64_t src = 0x200000000000, dst = 0x300000000000;
  // Three tables' worth at src: all of [src, src + 2M) and part of the next.
  for (std::uint64_t va = src; va < src + k2M + 16 * kPageSize; va += kPageSize)
    set_pte(pt.pte_alloc(va), va, make_pte((va - src) / kPageSize + 1, true));
  const auto before = pt.stats();
  std::uint64_t relinked = 0;
  ASSERT_EQ(pt.move_range(src, dst, k2M + 16 * kPageSize, &relinked), k2M + 16 * kPageSize);
  EXPECT_EQ(relinked, 1u) << "the whole table moved by relinking";
  for (std::uint64_t va = src; va < src + k2M + 16 * kPageSize; va += kPageSize) {
    EXPECT_EQ(look(pt, va), 0u);
    EXPECT_EQ(pte_pfn(look(pt, dst + (va - src))), (va - src) / kPageSize + 1);
  }
  EXPECT_EQ(pt.stats().pte_tables, before.pte_tables + 1) << "one new table for the partial part";

  // Misaligned destination: entry by entry, spread over two tables.
  const std::uint64_t dst2 = 0x400000000000 + k2M - 4 * kPageSize;
  ASSERT_EQ(pt.move_range(dst, dst2, 8 * kPageSize, &relinked), 8 * kPageSize);
  EXPECT_EQ(relinked, 0u);
  for (std::uint64_t i = 0; i < 8; ++i) EXPECT_EQ(pte_pfn(look(pt, dst2 + i * kPageSize)), i + 1);
  EXPECT_NE(pt.pte_table(dst2), pt.pte_table(dst2 + 4 * kPageSize));

  // Within one table (the ranges share it).
  ASSERT_EQ(pt.move_range(dst2 + 4 * kPageSize, dst2 + 16 * kPageSize, 4 * kPageSize), 4 * kPageSize);
  for (std::uint64_t i = 4; i < 8; ++i) {
    EXPECT_EQ(look(pt, dst2 + i * kPageSize), 0u);
    EXPECT_EQ(pte_pfn(look(pt, dst2 + (i + 12) * kPageSize)), i + 1);
  }
  // Nothing mapped: nothing moves, nothing is allocated.
  const auto s = pt.stats();
  EXPECT_EQ(pt.move_range(0x500000000000, 0x600000000000, 64 * k2M), 64 * k2M);
  EXPECT_EQ(pt.stats().pte_tables, s.pte_tables);
}

TEST_F(PageTablesTest, ReaderInsideFreedTableStaysValid) {
  const std::uint64_t va = 0x12345000;
  set_pte(pt.pte_alloc(va), va, make_pte(77, true));
  std::atomic<int> stage{0};
  std::thread reader([&] {
    rcu::ReadGuard g;
    PteTable* t = pt.pte_table(va);
    EXPECT_EQ(pte_pfn(pt.lookup(va)), 77u);
    stage.store(1);
    while (stage.load() != 2) std::this_thread::yield();
    // The table was unlinked and queued for freeing; we may still read it.
    pte_t v = PageTables::pte_slot(t, va).load(std::memory_order_acquire);
    EXPECT_EQ(v, 0u);
    EXPECT_EQ(pt.lookup(va), 0u);  // a walk starting now sees nothing
  });
  while (stage.load() != 1) std::this_thread::yield();
  EXPECT_EQ(pt.zap_range(0, kVaLimit, {}), 1u);
  pt.free_pgtables(0, kVaLimit, 0, 0);
  EXPECT_EQ(pt.stats().pte_tables, 0u);
  EXPECT_EQ(pt.stats().upper_tables, 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  stage.store(2);
  reader.join();
}

TEST_F(PageTablesTest, ConcurrentWalkersVsFreeing) {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> walks{0};
  std::thread reader([&] {
    std::uint64_t x = 1;
    while (!stop.load(std::memory_order_relaxed)) {
      rcu::ReadGuard g;
      for (int i = 0; i < 64; ++i) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        std::uint64_t va = ((x >> 20) % 4096) * 0x1000 + 0x40000000;  // 16 MiB
        pte_t v = pt.lookup(va);
        if (v != 0) {
          EXPECT_EQ(pte_pfn(v), va >> 12);
        }
      }
      walks.fetch_add(1, std::memory_order_relaxed);
    }
  });
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  while (std::chrono::steady_clock::now() < until) {
    for (std::uint64_t va = 0x40000000; va < 0x41000000; va += 0x21000)
      set_pte(pt.pte_alloc(va), va, make_pte(va >> 12, true));
    pt.zap_range(0x40000000, 0x41000000, {});
    pt.free_pgtables(0x40000000, 0x41000000, 0x3fe00000, 0x41000000);
  }
  stop.store(true);
  reader.join();
  EXPECT_GT(walks.load(), 0u);
}

// ---- the hardware dirty bit (page_table.h rule I) ----

TEST_F(PageTablesTest, HardwareDirtyBitOnlyOnWritableCleanEntries) {
  const std::uint64_t va = 0x10000000;
  PteTable* t = pt.pte_alloc(va);
  std::atomic<pte_t>& slot = PageTables::pte_slot(t, va);
  rcu::ReadGuard g;
  EXPECT_EQ(pt.lookup_slot(va), &slot);
  EXPECT_EQ(pt.lookup_slot(va + kPteTableSpan), nullptr);
  EXPECT_EQ(pt.lookup_slot(kVaLimit), nullptr);
  const pte_t clean = make_pte(7, true);
  for (const pte_t p : {pte_t{0}, kPteMarkerGuard, make_pte(7, false), clean & ~kPteUser, pte_mkdirty(clean)}) {
    slot.store(p);
    EXPECT_FALSE(pte_hw_dirtyable(p)) << std::hex << p;
    EXPECT_EQ(pte_mkdirty_hw(slot, p), p) << std::hex << p;
    EXPECT_EQ(slot.load(), p) << std::hex << p;
  }
  slot.store(clean);
  EXPECT_TRUE(pte_hw_dirtyable(clean));
  EXPECT_EQ(pte_mkdirty_hw(slot, clean), pte_mkdirty(clean));
  EXPECT_EQ(slot.load(), pte_mkdirty(clean));
  // The entry changed after the walker loaded it: the new value is checked
  // (a read-only one is left alone and returned for the caller to fault).
  slot.store(make_pte(8, false));
  EXPECT_EQ(pte_mkdirty_hw(slot, clean), make_pte(8, false));
  EXPECT_EQ(slot.load(), make_pte(8, false));
  slot.store(make_pte(9, true));
  EXPECT_EQ(pte_mkdirty_hw(slot, clean), pte_mkdirty(make_pte(9, true)));
  slot.store(0);
}

// A lock holder that loaded a clean entry, then a write dirtied it, then
// the lock holder replaced it: the bit survives.  (One thread plays both
// parts in that order.)
TEST_F(PageTablesTest, LockHoldersKeepADirtyBitSetMeanwhile) {
  const std::uint64_t va = 0x10000000;
  const pte_t clean = make_pte(7, true);
  set_pte(pt.pte_alloc(va), va, clean);
  auto dirty_now = [&](std::atomic<pte_t>& slot) {
    rcu::ReadGuard g;
    return pte_mkdirty_hw(slot, slot.load());
  };
  pt.for_each_present(va, va + kPageSize, [&](std::uint64_t, std::atomic<pte_t>& slot, pte_t old) {
    EXPECT_EQ(old, clean);
    EXPECT_TRUE(pte_dirty(dirty_now(slot)));
    EXPECT_EQ(ptep_modify(slot, old, [](pte_t p) { return pte_wrprotect(p); }), pte_mkdirty(clean));
  });
  EXPECT_EQ(look(pt, va), pte_wrprotect(pte_mkdirty(clean)));
  set_pte(pt.pte_table(va), va, clean);
  pt.for_each_present(va, va + kPageSize, [&](std::uint64_t, std::atomic<pte_t>& slot, pte_t old) {
    EXPECT_TRUE(pte_dirty(dirty_now(slot)));
    EXPECT_EQ(ptep_get_and_clear(slot, old), pte_mkdirty(clean));
  });
  EXPECT_EQ(look(pt, va), 0u);
  // An entry no writer can dirty is stored plainly and returned as loaded.
  set_pte(pt.pte_table(va), va, make_pte(7, false));
  pt.for_each_present(va, va + kPageSize, [&](std::uint64_t, std::atomic<pte_t>& slot, pte_t old) {
    EXPECT_EQ(ptep_get_and_set(slot, old, kPteMarkerGuard), make_pte(7, false));
  });
  EXPECT_EQ(look(pt, va), kPteMarkerGuard);
}

// A writer thread dirties whatever writable clean entry it finds at one
// address while this thread installs clean entries there and replaces
// them (zap, write-protect, move).  Only the writer sets dirty bits, each
// entry at most once, and only on an entry it found: so every
// compare-exchange that succeeded must show up as a dirty bit in what the
// lock holder replaced, and no other dirty bit may (succeeded == seen).
TEST_F(PageTablesTest, NoDirtyBitIsLostToALockHolder) {
  const std::uint64_t va = 0x10003000, to = 0x10009000;  // same table: moved entry by entry
  const pte_t clean = make_pte(7, true);
  PteTable* t = pt.pte_alloc(va);
  enum Op { zap, wrprotect, move };
  for (const Op op : {zap, wrprotect, move}) {
    SCOPED_TRACE(op);
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> succeeded{0};
    std::thread writer([&] {
      std::uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        rcu::ReadGuard g;
        std::atomic<pte_t>* slot = pt.lookup_slot(va);
        const pte_t p = slot->load(std::memory_order_acquire);
        if (pte_hw_dirtyable(p) && pte_dirty(pte_mkdirty_hw(*slot, p))) ++n;
      }
      succeeded.store(n);
    });
    std::uint64_t seen = 0, rounds = 0;
    auto account = [&] {
      switch (op) {
        case zap:
          pt.zap_range(va, va + kPageSize, [&](std::uint64_t, pte_t old) { seen += pte_dirty(old) ? 1 : 0; });
          break;
        case wrprotect:
          pt.for_each_present(va, va + kPageSize, [&](std::uint64_t, std::atomic<pte_t>& slot, pte_t old) {
            ptep_modify(slot, old, [](pte_t p) { return pte_wrprotect(p); });
          });
          seen += pte_dirty(look(pt, va)) ? 1 : 0;
          pt.zap_range(va, va + kPageSize, {});
          break;
        case move:
          pt.move_range(va, to, kPageSize);
          seen += pte_dirty(look(pt, to)) ? 1 : 0;
          pt.zap_range(to, to + kPageSize, {});
          break;
      }
    };
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(150);
    while (std::chrono::steady_clock::now() < until) {
      set_pte(t, va, clean);
      account();
      ++rounds;
    }
    stop.store(true);
    writer.join();
    set_pte(t, va, clean);  // the writer has stopped: nothing more to see
    account();
    EXPECT_EQ(succeeded.load(), seen) << rounds << " rounds";
    EXPECT_GT(rounds, 0u);
  }
}

}  // namespace
}  // namespace vmspace::mem
