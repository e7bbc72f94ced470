// SPDX-License-Identifier: MIT
// The layout queries (find_vma, vmas) and the guest geometry
// (AddressSpaceOptions::task_size) of issue 17.
//   - what a VmaInfo says of each kind of VMA, and that vmas() agrees with
//     maps() line for line;
//   - ranges, holes, empty results;
//   - a reader calling vmas()/find_vma in a loop while a writer changes
//     VMAs and other threads fault: every VmaInfo returned is one of the
//     shapes the writer ever made, and VMAs nobody changes are never
//     missed (no invented gap, no skipped VMA);
//   - 32-bit and 57-bit user spaces: where mappings go, what is refused.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "vmspace/address_space.h"
#include "vmspace/vmspace.h"

namespace vmspace {
namespace {

constexpr std::uint64_t P = 4096;
constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t at(std::uint64_t page) { return kBase + page * P; }
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr int kPriv = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
constexpr int kShared = MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED;

AddressSpaceOptions opts(LockMode mode) {
  AddressSpaceOptions o;
  o.mode = mode;
  return o;
}

class LayoutQuery : public ::testing::TestWithParam<LockMode> {};

// The maps() lines, split into (start, end, name).
std::vector<std::tuple<std::uint64_t, std::uint64_t, std::string>> maps_entries(const AddressSpace& as) {
  std::vector<std::tuple<std::uint64_t, std::uint64_t, std::string>> out;
  std::istringstream in(as.maps());
  std::string line;
  while (std::getline(in, line)) {
    unsigned long long s = 0, e = 0;
    std::sscanf(line.c_str(), "%llx-%llx", &s, &e);
    // Fields: range perms offset dev inode [name]; the name starts at a
    // fixed column (73 on 64-bit) when present.
    std::string name = line.size() > 73 ? line.substr(73) : "";
    out.emplace_back(s, e, name);
  }
  return out;
}

TEST_P(LayoutQuery, ContentsOfEachKind) {
  AddressSpaceOptions o = opts(GetParam());
  o.brk_start = at(100);
  AddressSpace as(o);
  ASSERT_EQ(as.mmap(at(0), 3 * P, kRW, kPriv), static_cast<long>(at(0)));                   // anon
  ASSERT_EQ(as.mmap(at(4), 2 * P, PROT_READ, kShared), static_cast<long>(at(4)));           // shared anon
  const int fd = as.memfd_create("file");
  ASSERT_GE(fd, 0);
  ASSERT_EQ(as.ftruncate(fd, 8 * P), 0);
  ASSERT_EQ(as.mmap(at(8), 2 * P, kRW, MAP_SHARED | MAP_FIXED, fd, 3 * P), static_cast<long>(at(8)));  // file
  ASSERT_EQ(as.mmap(at(12), 2 * P, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_FIXED, fd, P),
            static_cast<long>(at(12)));                                                      // private file
  ASSERT_EQ(as.mmap(at(20), 4 * P, kRW, kPriv | MAP_GROWSDOWN), static_cast<long>(at(20)));  // stack
  ASSERT_EQ(as.mmap(at(30), 1 * P, kRW, kPriv | MAP_LOCKED), static_cast<long>(at(30)));    // locked
  ASSERT_EQ(as.mmap(at(40), 2 * P, kRW, kPriv), static_cast<long>(at(40)));                  // named
  ASSERT_EQ(as.set_anon_name(at(40), 2 * P, "named"), 0);
  ASSERT_EQ(as.mmap(at(44), 2 * P, kRW, kShared), static_cast<long>(at(44)));                // named shmem
  ASSERT_EQ(as.set_anon_name(at(44), 2 * P, "sh"), 0);
  ASSERT_EQ(as.brk(at(102)), at(102));                                                       // heap
  ASSERT_EQ(as.set_anon_name(at(100), 2 * P, "heapname"), 0);  // [heap] wins over the name

  VmaInfo v;
  ASSERT_TRUE(as.find_vma(at(1), &v));
  EXPECT_EQ(v.start, at(0));
  EXPECT_EQ(v.end, at(3));
  EXPECT_EQ(v.prot, kRW);
  EXPECT_EQ(v.flags, MAP_PRIVATE);
  EXPECT_EQ(v.offset, 0u);
  EXPECT_EQ(v.name, "");
  EXPECT_EQ(v.vm_flags & 0xff, 0x73u);  // VM_READ|VM_WRITE|VM_MAYREAD|VM_MAYWRITE|VM_MAYEXEC

  ASSERT_TRUE(as.find_vma(at(5), &v));
  EXPECT_EQ(v.start, at(4));
  EXPECT_EQ(v.prot, PROT_READ);
  EXPECT_EQ(v.flags, MAP_SHARED);
  EXPECT_EQ(v.offset, 0u);
  EXPECT_EQ(v.name, "/dev/zero (deleted)");

  ASSERT_TRUE(as.find_vma(at(8), &v));
  EXPECT_EQ(v.end, at(10));
  EXPECT_EQ(v.flags, MAP_SHARED);
  EXPECT_EQ(v.offset, 3 * P);
  EXPECT_EQ(v.name, "/memfd:file (deleted)");

  ASSERT_TRUE(as.find_vma(at(13), &v));
  EXPECT_EQ(v.prot, PROT_READ | PROT_EXEC);
  EXPECT_EQ(v.flags, MAP_PRIVATE);
  EXPECT_EQ(v.offset, P);

  ASSERT_TRUE(as.find_vma(at(23), &v));
  EXPECT_EQ(v.flags, MAP_PRIVATE | MAP_GROWSDOWN);
  ASSERT_TRUE(as.find_vma(at(30), &v));
  EXPECT_EQ(v.flags, MAP_PRIVATE | MAP_LOCKED);
  ASSERT_TRUE(as.find_vma(at(41), &v));
  EXPECT_EQ(v.name, "[anon:named]");
  ASSERT_TRUE(as.find_vma(at(44), &v));
  EXPECT_EQ(v.name, "[anon_shmem:sh]");
  EXPECT_EQ(v.flags, MAP_SHARED);
  ASSERT_TRUE(as.find_vma(at(101), &v));
  EXPECT_EQ(v.name, "[heap]");

  // vmas() over everything is maps(), VMA for VMA.
  const auto all = as.vmas();
  const auto lines = maps_entries(as);
  ASSERT_EQ(all.size(), lines.size()) << as.maps();
  for (std::size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].start, std::get<0>(lines[i]));
    EXPECT_EQ(all[i].end, std::get<1>(lines[i]));
    EXPECT_EQ(all[i].name, std::get<2>(lines[i])) << as.maps();
  }
}

TEST_P(LayoutQuery, RangesHolesAndEmptyResults) {
  AddressSpace as(opts(GetParam()));
  EXPECT_TRUE(as.vmas().empty());
  VmaInfo v;
  EXPECT_FALSE(as.find_vma(at(0), &v));
  ASSERT_EQ(as.mmap(at(0), 4 * P, kRW, kPriv), static_cast<long>(at(0)));
  ASSERT_EQ(as.mmap(at(6), 2 * P, PROT_READ, kPriv), static_cast<long>(at(6)));
  ASSERT_EQ(as.mmap(at(10), 2 * P, kRW, kPriv), static_cast<long>(at(10)));

  EXPECT_TRUE(as.find_vma(at(0), nullptr));
  EXPECT_TRUE(as.find_vma(at(4) - 1, &v));
  EXPECT_EQ(v.start, at(0));
  EXPECT_FALSE(as.find_vma(at(4), &v));  // the hole right after
  EXPECT_FALSE(as.find_vma(at(5) + 17, &v));
  EXPECT_TRUE(as.find_vma(at(6), &v));
  EXPECT_EQ(v.start, at(6));
  EXPECT_FALSE(as.find_vma(at(12), &v));
  EXPECT_FALSE(as.find_vma(UINT64_MAX, &v));

  auto r = as.vmas(at(1), at(7));  // the first two, each whole
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].start, at(0));
  EXPECT_EQ(r[0].end, at(4));
  EXPECT_EQ(r[1].start, at(6));
  EXPECT_EQ(r[1].end, at(8));
  EXPECT_TRUE(as.vmas(at(4), at(6)).empty());   // a hole
  EXPECT_TRUE(as.vmas(at(3), at(3)).empty());   // empty range
  EXPECT_TRUE(as.vmas(at(9), at(1)).empty());   // backwards
  EXPECT_EQ(as.vmas(at(8), at(11)).size(), 1u);  // end excluded: at(8) is the hole's start
  EXPECT_EQ(as.vmas(at(7), at(10)).size(), 1u);  // [at(10), ...) does not intersect
  EXPECT_EQ(as.vmas(at(7), at(10) + 1).size(), 2u);
  EXPECT_EQ(as.vmas(at(12)).size(), 0u);
  EXPECT_EQ(as.vmas(0, at(12)).size(), 3u);
}

// Concurrency: the window [at(0), at(8)) is one VMA [0, 8) rw, or split
// by mprotect of [3, 5) to read-only and back (window_shape says which
// pieces may show), and is sometimes unmapped and mapped again; stable
// VMAs at [-4, -2) and [10, 12) never change.  Readers must only ever see
// those shapes and always see the stable VMAs, whose name another thread
// keeps changing (the name is copied under the VMA's read lock while
// set_anon_name replaces it under the write lock).
TEST_P(LayoutQuery, ConcurrentWithChangesAndFaults) {
  AddressSpace as(opts(GetParam()));
  ASSERT_EQ(as.mmap(at(0) - 4 * P, 2 * P, PROT_READ, kPriv), static_cast<long>(at(0) - 4 * P));
  ASSERT_EQ(as.mmap(at(10), 2 * P, PROT_READ, kPriv), static_cast<long>(at(10)));
  ASSERT_EQ(as.mmap(at(0), 8 * P, kRW, kPriv), static_cast<long>(at(0)));
  // Pieces of the window start and end at pages 0, 3, 5 or 8; [3, 5) may
  // be read-only; read-write pieces merge back only when their anon_vmas
  // allow it (pieces faulted before the split share one, pieces first
  // faulted after it do not), so any read-write union of neighbours may
  // show up.  Never anything else (a torn range, a wrong protection).
  auto window_shape = [](std::uint64_t s, std::uint64_t e, int prot) {
    const std::set<std::uint64_t> cuts = {at(0), at(3), at(5), at(8)};
    if (!cuts.count(s) || !cuts.count(e) || s >= e) return false;
    return prot == kRW || (prot == PROT_READ && s == at(3) && e == at(5));
  };
  const std::set<std::tuple<std::uint64_t, std::uint64_t, int>> stable = {
      {at(0) - 4 * P, at(0) - 2 * P, PROT_READ}, {at(10), at(12), PROT_READ}};
  std::atomic<bool> stop{false};
  std::atomic<long> bad{0}, reads{0};
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) {
      as.mprotect(at(3), 2 * P, PROT_READ);
      as.mprotect(at(3), 2 * P, kRW);
      if (i % 8 == 0) {
        as.munmap(at(0), 8 * P);
        as.mmap(at(0), 8 * P, kRW, kPriv);
      }
    }
  });
  std::thread namer([&] {
    for (int i = 0; !stop.load(); ++i) as.set_anon_name(at(10), 2 * P, i % 2 ? "s1" : "s2");
  });
  std::vector<std::thread> faulters;
  for (int t = 0; t < 2; ++t)
    faulters.emplace_back([&, t] {
      for (std::uint64_t i = 0; !stop.load(); ++i) {
        char c = static_cast<char>(i);
        (void)as.write(at((i + static_cast<std::uint64_t>(t)) % 8), &c, 1);  // faults may fail meanwhile
      }
    });
  std::string first_bad;  // the reader's only
  auto check = [&](const VmaInfo& v) {
    // [10, 12) is renamed all the time (whole, so it never splits).
    const bool name_ok = v.start == at(10) ? (v.name == "" || v.name == "[anon:s1]" || v.name == "[anon:s2]")
                                           : v.name == "";
    if (!(stable.count({v.start, v.end, v.prot}) || window_shape(v.start, v.end, v.prot)) || !name_ok ||
        v.flags != MAP_PRIVATE) {
      if (bad++ == 0)
        first_bad = "unexpected VMA " + std::to_string((v.start - kBase) / P) + "-" +
                    std::to_string((v.end - kBase) / P) + " prot " + std::to_string(v.prot);
    }
  };
  auto fail = [&](const char* what) {
    if (bad++ == 0) first_bad = what;
  };
  std::thread reader([&] {
    while (!stop.load()) {
      const auto all = as.vmas();
      bool low = false, high = false;
      for (const VmaInfo& v : all) {
        check(v);
        low |= v.start == at(0) - 4 * P;
        high |= v.start == at(10);
      }
      if (!low || !high) fail("a stable VMA missing from vmas()");
      VmaInfo v;
      if (!as.find_vma(at(11), &v) || v.start != at(10)) fail("find_vma missed a stable VMA");
      if (as.find_vma(at(4), &v)) check(v);
      if (as.find_vma(at(9), &v)) fail("find_vma found a never-mapped page");  // never mapped
      const auto part = as.vmas(at(2), at(11));
      if (part.empty() || part.back().start != at(10)) fail("vmas(range) missed a stable VMA");
      for (const VmaInfo& p : part) check(p);
      reads++;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  stop = true;
  writer.join();
  namer.join();
  reader.join();
  for (auto& f : faulters) f.join();
  EXPECT_EQ(bad.load(), 0) << first_bad;
  EXPECT_GT(reads.load(), 0);
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

INSTANTIATE_TEST_SUITE_P(Modes, LayoutQuery,
                         ::testing::Values(LockMode::mmap_lock, LockMode::per_vma_rwsem, LockMode::per_vma_refcount),
                         [](const auto& p) { return std::string(lock_mode_name(p.param)); });

// ---- task_size --------------------------------------------------------

TEST(TaskSize, OnlyTheKnownValues) {
  for (std::uint64_t ts : {std::uint64_t{0}, kTaskSize47, kTaskSize57, kTaskSize32}) {
    AddressSpaceOptions o;
    o.task_size = ts;
    EXPECT_NO_THROW(AddressSpace as(o));
  }
  for (std::uint64_t ts : {std::uint64_t{1}, std::uint64_t{0xffffffff}, std::uint64_t{1} << 47, ~std::uint64_t{0}}) {
    AddressSpaceOptions o;
    o.task_size = ts;
    EXPECT_THROW(AddressSpace as(o), std::invalid_argument) << ts;
  }
}

TEST(TaskSize, Ia32) {
  AddressSpaceOptions o;
  o.task_size = kTaskSize32;
  AddressSpace as(o);
  constexpr std::uint64_t kMmapBase = 0xffffe000 - (128u << 20);  // TASK_SIZE - 128 MiB gap
  // No hint: top-down from mmap_base, below 4 GiB.
  EXPECT_EQ(as.mmap(0, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS), static_cast<long>(kMmapBase - P));
  // 2 MiB multiples are not THP-aligned for compat calls.
  const long big = as.mmap(0, 2 << 20, kRW, MAP_PRIVATE | MAP_ANONYMOUS);
  EXPECT_EQ(big, static_cast<long>(kMmapBase - P - (2 << 20)));
  // MAP_32BIT means nothing to an ia32 guest: the same top-down search.
  EXPECT_EQ(as.mmap(0, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT), big - static_cast<long>(P));
  // A hint above TASK_SIZE is ignored; one below it is taken.
  const long h = as.mmap(std::uint64_t{1} << 33, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS);
  EXPECT_GT(h, 0);
  EXPECT_LT(static_cast<std::uint64_t>(h), std::uint64_t{1} << 32);
  EXPECT_EQ(as.mmap(0x10000000, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS), 0x10000000);
  // MAP_FIXED: up to TASK_SIZE, not beyond (-ENOMEM, as Linux).
  EXPECT_EQ(as.mmap(0xffffd000, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), 0xffffd000);
  EXPECT_EQ(as.mmap(0xffffd000, 2 * P, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), -ENOMEM);
  EXPECT_EQ(as.mmap(std::uint64_t{1} << 32, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), -ENOMEM);
  EXPECT_EQ(as.mmap(0, std::uint64_t{1} << 32, kRW, MAP_PRIVATE | MAP_ANONYMOUS), -ENOMEM);
  // munmap and mremap bounds are TASK_SIZE too.
  EXPECT_EQ(as.munmap(std::uint64_t{1} << 32, P), -EINVAL);
  EXPECT_EQ(as.munmap(0xffffd000, 2 * P), -EINVAL);
  EXPECT_EQ(as.mremap(0xffffd000, P, std::uint64_t{1} << 32, MREMAP_MAYMOVE), -EINVAL);
  EXPECT_EQ(as.mremap(0xffffd000, P, P, MREMAP_MAYMOVE | MREMAP_FIXED, std::uint64_t{1} << 32), -EINVAL);
  // Growing in place past TASK_SIZE fails; moving finds room below it.
  const long moved = as.mremap(0xffffd000, P, 4 * P, MREMAP_MAYMOVE);
  EXPECT_GT(moved, 0);
  EXPECT_LE(static_cast<std::uint64_t>(moved) + 4 * P, kTaskSize32);
  for (const VmaInfo& v : as.vmas()) EXPECT_LE(v.end, kTaskSize32);
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

TEST(TaskSize, Ia32Heap) {
  AddressSpaceOptions o;
  o.task_size = kTaskSize32;
  o.brk_start = 0x08100000;
  AddressSpace as(o);
  EXPECT_EQ(as.brk(0x08100000 + 5 * P), 0x08100000 + 5 * P);
  EXPECT_EQ(as.brk(std::uint64_t{1} << 32), 0x08100000 + 5 * P);  // beyond TASK_SIZE: refused
}

TEST(TaskSize, FiveLevel) {
  AddressSpaceOptions o;
  o.task_size = kTaskSize57;
  AddressSpace as(o);
  constexpr std::uint64_t kWindow = kTaskSize47;
  // Without a hint (or with one below 47 bits) mappings stay in the 47-bit
  // window, below the same mmap_base as four-level paging.
  EXPECT_EQ(as.mmap(0, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS), 0x7ffff7fff000 - static_cast<long>(P));
  const long low = as.mmap(0x100000000, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS);
  EXPECT_EQ(low, 0x100000000);
  // A hint above the window is taken there...
  const std::uint64_t high = std::uint64_t{1} << 50;
  EXPECT_EQ(as.mmap(high, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS), static_cast<long>(high));
  // ...and when it is taken already, the search covers the whole space
  // (top-down from the lifted limit: above the window).
  const long again = as.mmap(high, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS);
  EXPECT_GT(static_cast<std::uint64_t>(again), kWindow);
  // A hint that would straddle the window's end is not taken: default search.
  const long straddle = as.mmap(kWindow - P, 2 * P, kRW, MAP_PRIVATE | MAP_ANONYMOUS);
  EXPECT_LT(static_cast<std::uint64_t>(straddle), kWindow);
  EXPECT_NE(straddle, static_cast<long>(kWindow - P));
  // MAP_FIXED anywhere below TASK_SIZE.
  EXPECT_EQ(as.mmap(kTaskSize57 - P, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
            static_cast<long>(kTaskSize57 - P));
  EXPECT_EQ(as.mmap(kTaskSize57, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), -ENOMEM);
  EXPECT_EQ(as.munmap(kTaskSize57 - P, P), 0);
  // mincore's range check is the 57-bit one.
  unsigned char vec[1];
  EXPECT_EQ(as.mincore(high, P, vec), 0);
  EXPECT_EQ(vec[0], 0);
  // Pages above 48 bits live in the fifth page-table level: they fault in,
  // hold their bytes apart from the low addresses that share the lower
  // 48 bits, move with mremap and go with munmap.
  EXPECT_EQ(as.fill(high, 0xab, P).fault, Fault::none);
  EXPECT_EQ(as.mincore(high, P, vec), 0);
  EXPECT_EQ(vec[0], 1);
  ASSERT_EQ(as.mmap(0x100000000 + P, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), 0x100000000 + static_cast<long>(P));
  EXPECT_EQ(as.fill(0x100000000 + P, 0x11, P).fault, Fault::none);
  const std::uint64_t top = kTaskSize57 - 4 * P;
  ASSERT_EQ(as.mmap(top, 2 * P, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(top));
  EXPECT_EQ(as.fill(top, 0xcd, 2 * P).fault, Fault::none);
  unsigned char b = 0;
  EXPECT_EQ(as.read(high + 7, &b, 1).fault, Fault::none);
  EXPECT_EQ(b, 0xab);
  EXPECT_EQ(as.read(top + P, &b, 1).fault, Fault::none);
  EXPECT_EQ(b, 0xcd);
  EXPECT_EQ(as.read(0x100000000 + P, &b, 1).fault, Fault::none);
  EXPECT_EQ(b, 0x11);
  // The same lower 48 bits as 0x100000000 + P: a four-level walk would
  // alias the two.
  const std::uint64_t alias = high + 0x100000000 + P;
  ASSERT_EQ(as.mmap(alias, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(alias));
  EXPECT_EQ(as.fill(alias, 0x22, P).fault, Fault::none);
  EXPECT_EQ(as.read(0x100000000 + P, &b, 1).fault, Fault::none);
  EXPECT_EQ(b, 0x11);
  EXPECT_EQ(as.read(alias, &b, 1).fault, Fault::none);
  EXPECT_EQ(b, 0x22);
  const long moved = as.mremap(top, 2 * P, 2 * P, MREMAP_MAYMOVE | MREMAP_FIXED, high + (std::uint64_t{1} << 40));
  ASSERT_EQ(moved, static_cast<long>(high + (std::uint64_t{1} << 40)));
  EXPECT_EQ(as.read(static_cast<std::uint64_t>(moved) + P + 5, &b, 1).fault, Fault::none);
  EXPECT_EQ(b, 0xcd);
  EXPECT_EQ(as.read(top, &b, 1).fault, Fault::segv_maperr);
  EXPECT_EQ(as.munmap(high, P), 0);
  EXPECT_EQ(as.read(high, &b, 1).fault, Fault::segv_maperr);
  EXPECT_TRUE(as.fork() != nullptr);
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

TEST(TaskSize, FourLevelDefaultUnchanged) {
  AddressSpace as;
  EXPECT_EQ(as.mmap(std::uint64_t{1} << 50, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS), 0x7ffff7fff000 - static_cast<long>(P));
  EXPECT_EQ(as.mmap(kTaskSize47, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), -ENOMEM);
}

TEST(TaskSize, CApi) {
  vmspace_options_t o;
  vmspace_options_init(&o);
  EXPECT_EQ(o.task_size, 0u);
  vmspace_t* vs = nullptr;
  o.task_size = 12345;
  EXPECT_EQ(vmspace_create(&o, &vs), -EINVAL);
  o.task_size = VMSPACE_TASK_SIZE_32;
  ASSERT_EQ(vmspace_create(&o, &vs), 0);
  const std::int64_t a = vmspace_mmap(vs, 0, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  EXPECT_GT(a, 0);
  EXPECT_LT(static_cast<std::uint64_t>(a), std::uint64_t{1} << 32);
  vmspace_destroy(vs);
}

}  // namespace
}  // namespace vmspace
