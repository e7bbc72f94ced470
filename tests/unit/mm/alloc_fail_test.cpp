// SPDX-License-Identifier: MIT
// Allocation failure (issue 12): walk the injection point (sync/fail_nth.h)
// over every allocation a scripted sequence of calls makes, failing the
// N-th one (and, in a second sweep, every one from the N-th on), for every
// N.  At each N:
//   - a call that ran into the failure returns what Linux returns when the
//     kernel cannot allocate: mmap/munmap/mprotect -ENOMEM, madvise
//     -EAGAIN (a failed split, Linux's madvise_vma_behavior), a fault OOM
//     (or SEGV_MAPERR where a stack could not grow), populate nothing (mmap
//     still succeeds);
//   - the mappings, seen page by page, are exactly what they were before
//     the failed call, except where Linux commits partially: mprotect has
//     applied the new protection to a prefix of the range;
//   - a call that succeeded despite an injected failure (a fault retried
//     after draining, a merge that fell back to a new VMA) leaves exactly
//     the mappings the run without injection has;
//   - validate() holds after every call;
//   - nothing leaks: after unmapping everything, every frame is free, no
//     page table is left, commit and locked counters are back at zero (and
//     asan's leak checker sees no lost VMA, anon_vma, file or tree node).
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mem/phys_mem.h"
#include "mm/mm.h"
#include "sync/fail_nth.h"
#include "sync/rcu.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kSpan = 1100;  // pages the script touches
constexpr std::uint64_t kFrames = 128;
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr int kPriv = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;

std::uint64_t P(std::uint64_t page) { return kBase + page * kPage; }

enum class Kind { mmap, munmap, mprotect, madvise_flags, madvise_other, access, mremap };

struct Step {
  const char* name;
  Kind kind;
  std::function<long(AddressSpace&)> run;  // result: >= 0, -errno, or -(1000 + Fault)
  std::uint64_t first = 0, pages = 0;      // mprotect: the range
  int prot = 0;                            // mprotect: the new protection
};

long access_result(const AccessResult& r) { return r.ok() ? 0 : -(1000 + static_cast<long>(r.fault)); }

std::vector<Step> script() {
  std::vector<Step> s;
  s.push_back({"mmap populate", Kind::mmap,
               [](AddressSpace& as) { return as.mmap(P(0), 16 * kPage, kRW, kPriv | MAP_POPULATE); }});
  s.push_back({"mmap shared", Kind::mmap,
               [](AddressSpace& as) { return as.mmap(P(32), 8 * kPage, kRW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED); }});
  s.push_back({"fill shared", Kind::access, [](AddressSpace& as) { return access_result(as.fill(P(32), 0x33, 8 * kPage)); }});
  s.push_back({"mprotect split", Kind::mprotect, [](AddressSpace& as) { return long{as.mprotect(P(4), 4 * kPage, PROT_READ)}; },
               4, 4, PROT_READ});
  s.push_back({"mprotect merge", Kind::mprotect, [](AddressSpace& as) { return long{as.mprotect(P(4), 4 * kPage, kRW)}; },
               4, 4, kRW});
  s.push_back({"mprotect shared split", Kind::mprotect,
               [](AddressSpace& as) { return long{as.mprotect(P(34), 2 * kPage, PROT_READ)}; }, 34, 2, PROT_READ});
  s.push_back({"mprotect across", Kind::mprotect,
               [](AddressSpace& as) { return long{as.mprotect(P(2), 12 * kPage, PROT_NONE)}; }, 2, 12, PROT_NONE});
  s.push_back({"mprotect back", Kind::mprotect, [](AddressSpace& as) { return long{as.mprotect(P(0), 16 * kPage, kRW)}; },
               0, 16, kRW});
  s.push_back({"munmap middle", Kind::munmap, [](AddressSpace& as) { return long{as.munmap(P(10), 2 * kPage)}; }});
  s.push_back({"mmap fixed over", Kind::mmap, [](AddressSpace& as) { return as.mmap(P(6), 8 * kPage, kRW, kPriv); }});
  s.push_back({"madvise dontfork", Kind::madvise_flags,
               [](AddressSpace& as) { return long{as.madvise(P(1), 2 * kPage, MADV_DONTFORK)}; }});
  s.push_back({"madvise dontneed", Kind::madvise_other,
               [](AddressSpace& as) { return long{as.madvise(P(0), 16 * kPage, MADV_DONTNEED)}; }});
  s.push_back({"write after dontneed", Kind::access, [](AddressSpace& as) { return access_result(as.fill(P(0), 7, 3 * kPage)); }});
  s.push_back({"read shared", Kind::access, [](AddressSpace& as) {
                 unsigned char b[2 * kPage];
                 return access_result(as.read(P(35), b, sizeof b));
               }});
  s.push_back({"madvise remove", Kind::madvise_other,
               [](AddressSpace& as) { return long{as.madvise(P(32), 2 * kPage, MADV_REMOVE)}; }});
  s.push_back({"mmap neighbours", Kind::mmap, [](AddressSpace& as) { return as.mmap(P(50), 2 * kPage, kRW, kPriv); }});
  s.push_back({"mmap merges", Kind::mmap, [](AddressSpace& as) { return as.mmap(P(52), 2 * kPage, kRW, kPriv); }});
  s.push_back({"write neighbours", Kind::access, [](AddressSpace& as) { return access_result(as.fill(P(50), 1, 4 * kPage)); }});
  s.push_back({"mremap grow in place", Kind::mremap,
               [](AddressSpace& as) { return as.mremap(P(50), 4 * kPage, 6 * kPage, 0); }});
  s.push_back({"mremap move", Kind::mremap,
               [](AddressSpace& as) { return as.mremap(P(50), 6 * kPage, 7 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, P(60)); }});
  s.push_back({"mremap move back", Kind::mremap,
               [](AddressSpace& as) { return as.mremap(P(61), 3 * kPage, 3 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, P(1030)); }});
  s.push_back({"mmap stack", Kind::mmap,
               [](AddressSpace& as) { return as.mmap(P(120), 2 * kPage, kRW, kPriv | MAP_GROWSDOWN); }});
  s.push_back({"grow stack", Kind::access, [](AddressSpace& as) { return access_result(as.fill(P(117), 9, kPage)); }});
  s.push_back({"mmap locked", Kind::mmap,
               [](AddressSpace& as) { return as.mmap(P(70), 4 * kPage, kRW, kPriv | MAP_LOCKED); }});
  s.push_back({"mprotect locked", Kind::mprotect,
               [](AddressSpace& as) { return long{as.mprotect(P(70), 2 * kPage, PROT_READ)}; }, 70, 2, PROT_READ});
  s.push_back({"munmap across", Kind::munmap, [](AddressSpace& as) { return long{as.munmap(P(3), 48 * kPage)}; }});
  return s;
}

// The mappings page by page: "" for unmapped, else the maps perms field.
using View = std::vector<std::string>;

View view(AddressSpace& as) {
  View v(kSpan);
  const std::string maps = as.maps();
  std::size_t pos = 0;
  while (pos < maps.size()) {
    std::size_t nl = maps.find('\n', pos);
    std::string line = maps.substr(pos, nl - pos);
    pos = nl == std::string::npos ? maps.size() : nl + 1;
    const std::uint64_t start = std::stoull(line.substr(0, line.find('-')), nullptr, 16);
    const std::uint64_t end = std::stoull(line.substr(line.find('-') + 1, line.find(' ')), nullptr, 16);
    const std::string perms = line.substr(line.find(' ') + 1, 4);
    for (std::uint64_t a = std::max(start, kBase); a < end && a < P(kSpan); a += kPage) v[(a - kBase) / kPage] = perms;
  }
  return v;
}

std::string perms_of(int prot, const std::string& old) {
  std::string p = old;
  p[0] = prot & PROT_READ ? 'r' : '-';
  p[1] = prot & PROT_WRITE ? 'w' : '-';
  p[2] = prot & PROT_EXEC ? 'x' : '-';
  return p;
}

// Linux's partial mprotect: the new protection on a prefix of the range.
bool mprotect_prefix(const View& before, const View& after, const Step& s) {
  for (std::uint64_t i = 0; i < kSpan; ++i)
    if ((i < s.first || i >= s.first + s.pages) && before[i] != after[i]) return false;
  bool in_prefix = true;
  for (std::uint64_t i = s.first; i < s.first + s.pages; ++i) {
    if (before[i].empty()) break;  // a hole ends the walk
    const bool changed = after[i] == perms_of(s.prot, before[i]) && after[i] != before[i];
    if (!in_prefix && changed) return false;
    if (after[i] != before[i] && !changed) return false;
    if (after[i] == before[i] && after[i] != perms_of(s.prot, before[i])) in_prefix = false;
  }
  return true;
}

class AllocFail : public ::testing::TestWithParam<LockMode> {
 protected:
  void SetUp() override {
    if (!fail_nth::armed()) GTEST_SKIP() << "allocation-failure injection is compiled out of release builds";
  }
  AddressSpaceOptions opts() const {
    AddressSpaceOptions o = test::test_options(GetParam());
    o.phys_bytes = kFrames * kPage;
    o.phys_pretouch = false;
    o.cap_ipc_lock = true;
    o.stack_guard_gap = 4 * kPage;  // the stack grows towards its neighbours
    return o;
  }

  // One run of the script with failure injection from allocation `nth`
  // (count of them; nth = 0: none).  Sets total_ to how many allocations
  // the run made.  `base` are the no-injection run's views after each step.
  void run(std::uint64_t nth, std::uint64_t count, const std::vector<View>* base) {
    const std::vector<Step> steps = script();
    std::uint64_t total = 0;
    std::vector<View> views;
    std::shared_ptr<std::atomic<std::int64_t>> committed;
    mem::PhysMem& pool = pool_;  // shared by the runs: its destructor would wait for a grace period
    {
      AddressSpaceOptions o = opts();
      o.phys = &pool;
      AddressSpace as(o);
      bool diverged = false;
      // Allocations are numbered 1, 2, ... across the whole script (the
      // views and checks between calls allocate nothing that counts).
      fail_nth::set(nth == 0 ? ~std::uint64_t{0} : nth, count);
      for (std::size_t i = 0; i < steps.size(); ++i) {
        const Step& s = steps[i];
        const View before = view(as);
        const std::uint64_t failures_before = fail_nth::failures();
        const long r = s.run(as);
        const std::uint64_t failed = fail_nth::failures() - failures_before;
        const View after = view(as);
        std::string why;
        if (!as.validate(&why)) {
          fail_nth::set(0);
          FAIL() << s.name << " at N=" << nth << ": " << why;
        }
        const std::string where = std::string(s.name) + " (N=" + std::to_string(nth) + ", count " +
                                  std::to_string(count) + ", " + fail_nth::site_name(fail_nth::last_failed_site()) + ")";
        if (failed == 0) {
          if (!diverged && base != nullptr) {
            EXPECT_EQ(after, (*base)[i]) << where;
          }
          if (nth == 0) views.push_back(after);
          // (Once an earlier call failed, later ones may fail for Linux's
          // own reasons: their range may not be mapped.)
          if (!diverged) {
            EXPECT_GE(r, 0) << "no injected failure, yet " << where << " failed: " << r;
          }
          continue;
        }
        // This call ran into an injected failure.
        if (r >= 0) {  // it coped: retried, fell back, or skipped populating
          // (A move whose source could not then be unmapped succeeds with the
          // source still mapped, as in Linux.)
          if (!diverged && base != nullptr && s.kind != Kind::mremap) {
            EXPECT_EQ(after, (*base)[i]) << "succeeded differently: " << where;
          }
          // Same pages, but perhaps other VMA boundaries (a merge that fell
          // back to a new VMA) or fewer pages present: later calls may then
          // fail for Linux's own reasons.
          diverged = true;
          continue;
        }
        diverged = true;
        switch (s.kind) {
          case Kind::mmap:
          case Kind::munmap:
          case Kind::mremap:
            EXPECT_EQ(r, -ENOMEM) << where;
            EXPECT_EQ(after, before) << "the mappings changed: " << where;
            break;
          case Kind::mprotect:
            EXPECT_EQ(r, -ENOMEM) << where;
            EXPECT_TRUE(mprotect_prefix(before, after, s)) << "not Linux's partial mprotect: " << where;
            break;
          case Kind::madvise_flags:
            EXPECT_EQ(r, -EAGAIN) << where;
            EXPECT_EQ(after, before) << where;
            break;
          case Kind::madvise_other:
            ADD_FAILURE() << "unexpected failure " << r << ": " << where;
            break;
          case Kind::access: {
            const bool stack = std::string(s.name) == "grow stack";
            const long oom = -(1000 + static_cast<long>(Fault::oom));
            const long maperr = -(1000 + static_cast<long>(Fault::segv_maperr));
            EXPECT_TRUE(r == oom || (stack && r == maperr)) << "fault result " << r << ": " << where;
            // A stack that grew keeps its new size when the page for it
            // cannot be had (Linux expands, then the fault fails).
            const bool grown = stack && r == oom && base != nullptr && after == (*base)[i];
            if (!grown) {
              EXPECT_EQ(after, before) << where;
            }
            break;
          }
        }
      }
      total = fail_nth::calls();
      fail_nth::set(0);
      // Nothing leaked: unmap everything and count.
      ASSERT_EQ(as.munmap(kBase, kSpan * kPage), 0);
      mm::MmStruct* mm = as.mm();
      EXPECT_EQ(as.map_count(), 0);
      EXPECT_EQ(as.rss_pages(), 0u);
      EXPECT_EQ(mm->locked_vm, 0u);
      const auto pt = mm->pgtables.stats();
      EXPECT_EQ(pt.pte_tables, 0u) << "page tables left at N=" << nth;
      committed = mm->vm_committed;
    }
    // The AddressSpace's destructor ran the RCU callbacks that free the
    // removed VMAs and shmem objects, which drop their pages and give their
    // commit charge back.  Free frames include those still waiting for
    // their grace period.
    EXPECT_EQ(committed->load(), 0) << "commit charge leaked at N=" << nth;
    EXPECT_EQ(pool.free_frames(), pool.capacity_frames()) << "frames leaked at N=" << nth;
    if (nth == 0) baseline_ = std::move(views);
    total_ = total;
  }

  std::vector<View> baseline_;
  std::uint64_t total_ = 0;
  mem::PhysMem pool_{mem::PhysMemOptions{.capacity_bytes = kFrames * kPage, .pretouch = false}};
};

TEST_P(AllocFail, FailedMoveOfLockedMemoryKeepsLockedVm) {
  // mremap moving a locked VMA, with each allocation failing in turn: a
  // move that fails (-ENOMEM) leaves the locked VMA where it was, and
  // locked_vm still counts its pages.  (A page-table failure used to
  // unmap the locked destination without counting it in first: locked_vm
  // fell to 0 under a mapped VM_LOCKED VMA, and the later munmap took it
  // below zero.)
  constexpr std::uint64_t kDest = kBase + (8ull << 20);
  int failed_moves = 0;
  for (std::uint64_t nth = 1; nth < 64; ++nth) {
    AddressSpace as(opts());
    ASSERT_EQ(as.mmap(kBase, 2 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_LOCKED),
              static_cast<long>(kBase));
    ASSERT_EQ(as.mm()->locked_vm, 2u);
    long r;
    std::uint64_t failures;
    {
      fail_nth::Scope inject(nth);
      r = as.mremap(kBase, 2 * kPage, 2 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, kDest);
      failures = fail_nth::failures();
    }
    if (failures == 0) {
      ASSERT_EQ(r, static_cast<long>(kDest));
      break;  // every allocation of the move was tried
    }
    if (r != -ENOMEM) continue;  // an allocation it could do without
    ++failed_moves;
    EXPECT_EQ(as.mm()->locked_vm, 2u) << "N=" << nth;
    EXPECT_EQ(as.map_count(), 1) << "N=" << nth;
    ASSERT_EQ(as.munmap(kBase, 2 * kPage), 0);
    EXPECT_EQ(as.mm()->locked_vm, 0u) << "N=" << nth;
  }
  EXPECT_GT(failed_moves, 0);
}

TEST_P(AllocFail, EveryAllocationFailsInTurn) {
  run(0, 0, nullptr);
  ASSERT_FALSE(HasFatalFailure());
  const std::uint64_t total = total_;
  ASSERT_GT(total, 50u) << "the script should allocate";
  std::printf("%llu allocations in the script\n", static_cast<unsigned long long>(total));
  const std::vector<View> base = baseline_;
  for (std::uint64_t count : {std::uint64_t{1}, ~std::uint64_t{0}}) {
    for (std::uint64_t nth = 1; nth <= total; ++nth) {
      run(nth, count, &base);
      if (HasFatalFailure() || ::testing::Test::HasFailure()) {
        ADD_FAILURE() << "stopped at N=" << nth << " (count " << count << ")";
        return;
      }
    }
  }
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, AllocFail, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace
