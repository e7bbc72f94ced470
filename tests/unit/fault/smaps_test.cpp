// SPDX-License-Identifier: MIT
// smaps(): the proportional, shared/private and clean/dirty figures of each
// VMA (Pss, Pss_Dirty, Shared_Clean, Shared_Dirty, Private_Clean,
// Private_Dirty, LazyFree) against what Linux 6.18 reports.
//
// Every expected line below was first seen on the host kernel (Linux
// 6.18.44, x86-64, THP "madvise", shmem THP "never"): a probe program made
// the same mappings with raw system calls and read its own
// /proc/self/smaps.  "host:" quotes the probe's output for the same steps,
// in the order vmspace prints the lines (the probe also printed
// Referenced, which vmspace leaves out).  Each test places its mappings
// 64 pages apart so that none merges with another.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "mem/phys_mem.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kPage = 4096;
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr int kAnon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
constexpr int kShared = MAP_SHARED | MAP_FIXED;
constexpr int kPrivate = MAP_PRIVATE | MAP_FIXED;

// The n-th mapping place of a test.
constexpr std::uint64_t at(unsigned n) { return kBase + n * 64 * kPage; }

// The figures of the VMA starting at `start`, one "Name:kB" per line that
// smaps() prints, in its order: "Size:16 Rss:12 Pss:12 ...".  "" if there
// is no such VMA.
std::string figures(const AddressSpace& as, std::uint64_t start) {
  const std::string text = as.smaps();
  char head[32];
  std::snprintf(head, sizeof head, "%" PRIx64 "-", start);
  std::istringstream in(text);
  std::string line, out;
  bool in_block = false;
  while (std::getline(in, line)) {
    if (line.rfind("VmFlags:", 0) == 0) {
      if (in_block) break;
      continue;
    }
    const std::size_t kb = line.find(" kB");
    if (kb == std::string::npos) {  // a maps line
      in_block = line.rfind(head, 0) == 0;
      continue;
    }
    if (!in_block) continue;
    std::istringstream f(line);
    std::string name;
    unsigned long value = 0;
    f >> name >> value;
    if (!out.empty()) out += ' ';
    out += name + std::to_string(value);
  }
  return out;
}

class Smaps : public ::testing::TestWithParam<LockMode> {
 protected:
  AddressSpaceOptions opts() const {
    AddressSpaceOptions o = test::test_options(GetParam());
    o.phys_bytes = 2048 * kPage;
    o.phys_pretouch = false;
    return o;
  }
  static bool zero_page() { return test::test_host_facts().zero_page; }
  // A memfd of `pages` pages: made by ftruncate (its pages appear, clean,
  // when first faulted), or by pwrite (cached and dirty from the start).
  static int memfd(AddressSpace& as, std::uint64_t pages, bool pwritten) {
    const int fd = as.memfd_create("probe");
    EXPECT_GE(fd, 0);
    EXPECT_EQ(as.ftruncate(fd, static_cast<std::int64_t>(pages * kPage)), 0);
    if (pwritten) {
      std::vector<unsigned char> page(kPage, 7);
      for (std::uint64_t i = 0; i < pages; ++i)
        EXPECT_EQ(as.pwrite(fd, page.data(), kPage, static_cast<std::int64_t>(i * kPage)), static_cast<long>(kPage));
    }
    return fd;
  }
  static void rd(AddressSpace& as, std::uint64_t va) {
    unsigned char b = 0;
    ASSERT_TRUE(as.read(va, &b, 1).ok()) << std::hex << va;
  }
  static void wr(AddressSpace& as, std::uint64_t va) { ASSERT_TRUE(as.fill(va, 1, 1).ok()) << std::hex << va; }
  void map(AddressSpace& as, std::uint64_t va, std::uint64_t pages, int prot, int flags, int fd = -1) {
    ASSERT_EQ(as.mmap(va, pages * kPage, prot, flags, fd, 0), static_cast<long>(va));
  }
};

// The lines, their order and their format (the name in 16 columns, the
// value in 8, as Linux's SEQ_PUT_DEC), as the host prints them (with the
// lines vmspace leaves out removed).
TEST_P(Smaps, LinesInLinuxOrderAndFormat) {
  AddressSpace as(opts());
  map(as, at(0), 4, kRW, kAnon);
  wr(as, at(0));
  const std::string text = as.smaps();
  const std::string expect =
      "Size:                 16 kB\n"
      "Rss:                   4 kB\n"
      "Pss:                   4 kB\n"
      "Pss_Dirty:             4 kB\n"
      "Shared_Clean:          0 kB\n"
      "Shared_Dirty:          0 kB\n"
      "Private_Clean:         0 kB\n"
      "Private_Dirty:         4 kB\n"
      "Anonymous:             4 kB\n"
      "LazyFree:              0 kB\n"
      "Locked:                0 kB\n"
      "VmFlags: rd wr mr mw me ac \n";
  const std::size_t nl = text.find('\n');
  ASSERT_NE(nl, std::string::npos);
  EXPECT_EQ(text.substr(nl + 1), expect) << text;
}

// host (4 pages, 0-2 written, 3 read):
//   Size:16 Rss:12 Pss:12 Pss_Dirty:12 Shared_Clean:0 Shared_Dirty:0
//   Private_Clean:0 Private_Dirty:12 Anonymous:12 LazyFree:0 Locked:0
// The page only read is the zero page: not counted.  (A host without the
// zero page allocates it, writable and dirty in a writable VMA.)
TEST_P(Smaps, PrivateAnonymousWrittenAndRead) {
  AddressSpace as(opts());
  map(as, at(0), 4, kRW, kAnon);
  wr(as, at(0));
  wr(as, at(0) + kPage);
  wr(as, at(0) + 2 * kPage);
  rd(as, at(0) + 3 * kPage);
  if (zero_page())
    EXPECT_EQ(figures(as, at(0)),
              "Size:16 Rss:12 Pss:12 Pss_Dirty:12 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:12 "
              "Anonymous:12 LazyFree:0 Locked:0");
  else
    EXPECT_EQ(figures(as, at(0)),
              "Size:16 Rss:16 Pss:16 Pss_Dirty:16 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:16 "
              "Anonymous:16 LazyFree:0 Locked:0");
}

// host: 2 pages read only: Size:8 Rss:0 and every other figure 0; 4 pages,
// page 0 read, page 1 written: Rss:4 Pss:4 Pss_Dirty:4 Private_Dirty:4
// Anonymous:4.  MADV_POPULATE_READ maps the zero page too (Rss:0), and
// MADV_POPULATE_WRITE then copies: Rss:8 Pss_Dirty:8 Private_Dirty:8.
TEST_P(Smaps, ZeroPageIsNotCounted) {
  if (!zero_page()) GTEST_SKIP() << "a host without the zero page";
  AddressSpace as(opts());
  map(as, at(0), 2, kRW, kAnon);
  rd(as, at(0));
  rd(as, at(0) + kPage);
  EXPECT_EQ(figures(as, at(0)),
            "Size:8 Rss:0 Pss:0 Pss_Dirty:0 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:0");
  map(as, at(1), 4, kRW, kAnon);
  rd(as, at(1));
  wr(as, at(1) + kPage);
  EXPECT_EQ(figures(as, at(1)),
            "Size:16 Rss:4 Pss:4 Pss_Dirty:4 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:4 "
            "Anonymous:4 LazyFree:0 Locked:0");
  map(as, at(2), 4, kRW, kAnon);
  ASSERT_EQ(as.madvise(at(2), 2 * kPage, MADV_POPULATE_READ), 0);
  EXPECT_EQ(figures(as, at(2)),
            "Size:16 Rss:0 Pss:0 Pss_Dirty:0 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:0");
  ASSERT_EQ(as.madvise(at(2), 2 * kPage, MADV_POPULATE_WRITE), 0);
  EXPECT_EQ(figures(as, at(2)),
            "Size:16 Rss:8 Pss:8 Pss_Dirty:8 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:8 "
            "Anonymous:8 LazyFree:0 Locked:0");
}

// host: a memfd made by ftruncate, MAP_SHARED read-write, page 0 read:
//   Size:16 Rss:4 Pss:4 Pss_Dirty:0 Private_Clean:4 (refcount 2: the page
//   cache's and the PTE's; mapcount 1: private), then page 1 read too:
//   Rss:8 Pss:8 Private_Clean:8.  A read-only MAP_SHARED mapping: the same
//   (Rss:4 Private_Clean:4).
TEST_P(Smaps, SharedFileReadFaultIsPrivateClean) {
  AddressSpace as(opts());
  const int fd = memfd(as, 4, /*pwritten=*/false);
  map(as, at(0), 4, kRW, kShared, fd);
  rd(as, at(0));
  EXPECT_EQ(figures(as, at(0)),
            "Size:16 Rss:4 Pss:4 Pss_Dirty:0 Shared_Clean:0 Shared_Dirty:0 Private_Clean:4 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:0");
  rd(as, at(0) + kPage);
  EXPECT_EQ(figures(as, at(0)),
            "Size:16 Rss:8 Pss:8 Pss_Dirty:0 Shared_Clean:0 Shared_Dirty:0 Private_Clean:8 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:0");
  const int fd2 = memfd(as, 4, false);
  map(as, at(1), 4, PROT_READ, kShared, fd2);
  rd(as, at(1));
  EXPECT_EQ(figures(as, at(1)),
            "Size:16 Rss:4 Pss:4 Pss_Dirty:0 Shared_Clean:0 Shared_Dirty:0 Private_Clean:4 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:0");
}

// host: MAP_SHARED, page 0 written (a write fault): Rss:4 Pss:4
// Pss_Dirty:4 Private_Dirty:4.  Page 0 read first, then written (the
// write goes through the writable clean PTE the read installed; the MMU
// sets its dirty bit): the same.
TEST_P(Smaps, SharedFileWrittenIsPrivateDirty) {
  AddressSpace as(opts());
  const std::string dirty4 =
      "Size:16 Rss:4 Pss:4 Pss_Dirty:4 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:4 "
      "Anonymous:0 LazyFree:0 Locked:0";
  const int fd = memfd(as, 4, false);
  map(as, at(0), 4, kRW, kShared, fd);
  wr(as, at(0));
  EXPECT_EQ(figures(as, at(0)), dirty4);
  const int fd2 = memfd(as, 4, false);
  map(as, at(1), 4, kRW, kShared, fd2);
  rd(as, at(1));
  wr(as, at(1));
  EXPECT_EQ(figures(as, at(1)), dirty4);
  // The same through AccessScope::translate: asking for a write pointer
  // is the write access that dirties the PTE.
  const int fd3 = memfd(as, 4, false);
  map(as, at(2), 4, kRW, kShared, fd3);
  rd(as, at(2));
  {
    AddressSpace::AccessScope scope(as);
    EXPECT_NE(scope.translate(at(2), /*write=*/false), nullptr);
  }
  EXPECT_EQ(figures(as, at(2)),
            "Size:16 Rss:4 Pss:4 Pss_Dirty:0 Shared_Clean:0 Shared_Dirty:0 Private_Clean:4 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:0");
  {
    AddressSpace::AccessScope scope(as);
    EXPECT_NE(scope.translate(at(2), /*write=*/true), nullptr);
  }
  EXPECT_EQ(figures(as, at(2)), dirty4);
}

// host: four pages written with pwrite, MAP_SHARED, page 0 read: fault-
// around maps the other three cached pages too, and the pages are dirty
// (pwrite dirtied them): Rss:16 Pss:16 Pss_Dirty:16 Private_Dirty:16.
// Page 0 read, then pwrite to it: Rss:4 Pss_Dirty:4 Private_Dirty:4 (a
// clean PTE, a dirty page).
TEST_P(Smaps, PwriteDirtiesThePage) {
  AddressSpace as(opts());
  const int fd = memfd(as, 4, /*pwritten=*/true);
  map(as, at(0), 4, kRW, kShared, fd);
  rd(as, at(0));
  EXPECT_EQ(figures(as, at(0)),
            "Size:16 Rss:16 Pss:16 Pss_Dirty:16 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:16 "
            "Anonymous:0 LazyFree:0 Locked:0");
  const int fd2 = memfd(as, 4, false);
  map(as, at(1), 4, kRW, kShared, fd2);
  rd(as, at(1));
  const unsigned char buf[16] = {1};
  ASSERT_EQ(as.pwrite(fd2, buf, sizeof buf, 0), 16);
  EXPECT_EQ(figures(as, at(1)),
            "Size:16 Rss:4 Pss:4 Pss_Dirty:4 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:4 "
            "Anonymous:0 LazyFree:0 Locked:0");
}

// host: two MAP_SHARED mappings of one memfd, page 0 read through both:
// each Rss:4 Pss:2 Shared_Clean:4.  Then a write through the first (its
// writable clean PTE: only that PTE becomes dirty, not the page): first
// Pss:2 Pss_Dirty:2 Shared_Dirty:4, second still Pss:2 Pss_Dirty:0
// Shared_Clean:4.  When the first write is a write fault instead, the page
// is dirtied too, and both show Pss_Dirty:2 Shared_Dirty:4.
TEST_P(Smaps, TwoSharedMappingsShareEachPage) {
  AddressSpace as(opts());
  const std::string clean =
      "Size:16 Rss:4 Pss:2 Pss_Dirty:0 Shared_Clean:4 Shared_Dirty:0 Private_Clean:0 Private_Dirty:0 "
      "Anonymous:0 LazyFree:0 Locked:0";
  const std::string dirty =
      "Size:16 Rss:4 Pss:2 Pss_Dirty:2 Shared_Clean:0 Shared_Dirty:4 Private_Clean:0 Private_Dirty:0 "
      "Anonymous:0 LazyFree:0 Locked:0";
  const int fd = memfd(as, 4, false);
  map(as, at(0), 4, kRW, kShared, fd);
  map(as, at(1), 4, kRW, kShared, fd);
  rd(as, at(0));
  rd(as, at(1));
  EXPECT_EQ(figures(as, at(0)), clean);
  EXPECT_EQ(figures(as, at(1)), clean);
  wr(as, at(0));
  EXPECT_EQ(figures(as, at(0)), dirty);
  EXPECT_EQ(figures(as, at(1)), clean);

  const int fd2 = memfd(as, 4, false);
  map(as, at(2), 4, kRW, kShared, fd2);
  map(as, at(3), 4, kRW, kShared, fd2);
  wr(as, at(2));
  rd(as, at(3));
  EXPECT_EQ(figures(as, at(2)), dirty);
  EXPECT_EQ(figures(as, at(3)), dirty);

  // host: a file written with pwrite, both mappings read (fault-around
  // maps all four pages): Rss:16 Pss:8 Pss_Dirty:8 Shared_Dirty:16.
  const int fd3 = memfd(as, 4, true);
  map(as, at(4), 4, kRW, kShared, fd3);
  map(as, at(5), 4, kRW, kShared, fd3);
  rd(as, at(4));
  rd(as, at(5));
  EXPECT_EQ(figures(as, at(4)),
            "Size:16 Rss:16 Pss:8 Pss_Dirty:8 Shared_Clean:0 Shared_Dirty:16 Private_Clean:0 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:0");
}

// host: three mappings of a 3-page memfd, every page read through each:
// Rss:12 Pss:3 Shared_Clean:12 (3 x 4096/3 bytes summed with 12 fraction
// bits is just under 4 kB: rounded down once, at the end); one page read
// through each of three mappings: Rss:4 Pss:1 Shared_Clean:4.
TEST_P(Smaps, PssKeepsFractionsUntilPrinted) {
  AddressSpace as(opts());
  const int fd = memfd(as, 3, false);
  for (unsigned m = 0; m < 3; ++m) map(as, at(m), 3, kRW, kShared, fd);
  for (unsigned p = 0; p < 3; ++p)
    for (unsigned m = 0; m < 3; ++m) rd(as, at(m) + p * kPage);
  EXPECT_EQ(figures(as, at(0)),
            "Size:12 Rss:12 Pss:3 Pss_Dirty:0 Shared_Clean:12 Shared_Dirty:0 Private_Clean:0 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:0");
  const int fd2 = memfd(as, 3, false);
  for (unsigned m = 3; m < 6; ++m) map(as, at(m), 3, kRW, kShared, fd2);
  for (unsigned m = 3; m < 6; ++m) rd(as, at(m));
  EXPECT_EQ(figures(as, at(3)),
            "Size:12 Rss:4 Pss:1 Pss_Dirty:0 Shared_Clean:4 Shared_Dirty:0 Private_Clean:0 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:0");
}

// host: MAP_PRIVATE of a memfd made by ftruncate, page 0 read: the file's
// page itself, Rss:4 Pss:4 Private_Clean:4 Anonymous:0.  Of a memfd
// written with pwrite: fault-around maps all four, and they are dirty
// (the page cache's pages are): Rss:16 Pss_Dirty:16 Private_Dirty:16.
// Page 0 read then written (a copy replaces it) and page 1 written (a
// copy at once): Rss:8 Pss_Dirty:8 Private_Dirty:8 Anonymous:8.  A
// private and a shared mapping of one page, both read: each Pss:2
// Shared_Clean:4.
TEST_P(Smaps, PrivateFileMapping) {
  AddressSpace as(opts());
  const int fd = memfd(as, 4, false);
  map(as, at(0), 4, kRW, kPrivate, fd);
  rd(as, at(0));
  EXPECT_EQ(figures(as, at(0)),
            "Size:16 Rss:4 Pss:4 Pss_Dirty:0 Shared_Clean:0 Shared_Dirty:0 Private_Clean:4 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:0");
  wr(as, at(0));
  EXPECT_EQ(figures(as, at(0)),
            "Size:16 Rss:4 Pss:4 Pss_Dirty:4 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:4 "
            "Anonymous:4 LazyFree:0 Locked:0");
  wr(as, at(0) + kPage);
  EXPECT_EQ(figures(as, at(0)),
            "Size:16 Rss:8 Pss:8 Pss_Dirty:8 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:8 "
            "Anonymous:8 LazyFree:0 Locked:0");

  const int fd2 = memfd(as, 4, true);
  map(as, at(1), 4, kRW, kPrivate, fd2);
  rd(as, at(1));
  EXPECT_EQ(figures(as, at(1)),
            "Size:16 Rss:16 Pss:16 Pss_Dirty:16 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:16 "
            "Anonymous:0 LazyFree:0 Locked:0");

  const int fd3 = memfd(as, 4, false);
  map(as, at(2), 4, kRW, kPrivate, fd3);
  map(as, at(3), 4, kRW, kShared, fd3);
  rd(as, at(2));
  rd(as, at(3));
  const std::string shared =
      "Size:16 Rss:4 Pss:2 Pss_Dirty:0 Shared_Clean:4 Shared_Dirty:0 Private_Clean:0 Private_Dirty:0 "
      "Anonymous:0 LazyFree:0 Locked:0";
  EXPECT_EQ(figures(as, at(2)), shared);
  EXPECT_EQ(figures(as, at(3)), shared);
}

// host: 4 private anonymous pages written, MADV_FREE: Rss:16 Pss:16
// Pss_Dirty:0 Private_Clean:16 Anonymous:16, and LazyFree:16 once Linux's
// per-CPU lazyfree batch has drained (right after the call it showed
// LazyFree:0 for 4 pages, 248 kB of 256 for 64 pages; after another
// madvise on the same CPU drained it, 16 and 256).  Then page 0 written:
// Pss_Dirty:4 Private_Clean:12 Private_Dirty:4 LazyFree:12.  MADV_FREE
// again: everything clean and lazily freeable again.
TEST_P(Smaps, MadvFreeMakesPagesCleanAndLazyFree) {
  AddressSpace as(opts());
  map(as, at(0), 4, kRW, kAnon);
  ASSERT_TRUE(as.fill(at(0), 1, 4 * kPage).ok());
  ASSERT_EQ(as.madvise(at(0), 4 * kPage, MADV_FREE), 0);
  const std::string freed =
      "Size:16 Rss:16 Pss:16 Pss_Dirty:0 Shared_Clean:0 Shared_Dirty:0 Private_Clean:16 Private_Dirty:0 "
      "Anonymous:16 LazyFree:16 Locked:0";
  EXPECT_EQ(figures(as, at(0)), freed);
  wr(as, at(0));
  EXPECT_EQ(figures(as, at(0)),
            "Size:16 Rss:16 Pss:16 Pss_Dirty:4 Shared_Clean:0 Shared_Dirty:0 Private_Clean:12 Private_Dirty:4 "
            "Anonymous:16 LazyFree:12 Locked:0");
  rd(as, at(0) + kPage);  // reading changes nothing
  EXPECT_EQ(figures(as, at(0)),
            "Size:16 Rss:16 Pss:16 Pss_Dirty:4 Shared_Clean:0 Shared_Dirty:0 Private_Clean:12 Private_Dirty:4 "
            "Anonymous:16 LazyFree:12 Locked:0");
  ASSERT_EQ(as.madvise(at(0), 4 * kPage, MADV_FREE), 0);
  EXPECT_EQ(figures(as, at(0)), freed);
}

// host: 2 private anonymous pages written, grown to 4 by mremap and moved
// with MREMAP_FIXED: Size:16 Rss:8 Pss:8 Pss_Dirty:8 Private_Dirty:8
// Anonymous:8.  A MAP_SHARED memfd mapping, page 0 read, page 1 written,
// moved: Size:8 Rss:8 Pss:8 Pss_Dirty:4 Private_Clean:4 Private_Dirty:4.
// MREMAP_DONTUNMAP of 2 anonymous pages, page 0 written: the new place
// Size:8 Rss:4 Pss_Dirty:4 Private_Dirty:4 Anonymous:4, the old Rss:0.
// A shared mapping read, moved, then written (through the moved clean
// PTE): Rss:4 Pss_Dirty:4 Private_Dirty:4.
TEST_P(Smaps, MremapKeepsTheFigures) {
  AddressSpace as(opts());
  map(as, at(0), 2, kRW, kAnon);
  wr(as, at(0));
  wr(as, at(0) + kPage);
  ASSERT_EQ(as.mremap(at(0), 2 * kPage, 4 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, at(1)), static_cast<long>(at(1)));
  EXPECT_EQ(figures(as, at(1)),
            "Size:16 Rss:8 Pss:8 Pss_Dirty:8 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:8 "
            "Anonymous:8 LazyFree:0 Locked:0");

  const int fd = memfd(as, 2, false);
  map(as, at(2), 2, kRW, kShared, fd);
  rd(as, at(2));
  wr(as, at(2) + kPage);
  ASSERT_EQ(as.mremap(at(2), 2 * kPage, 2 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, at(3)), static_cast<long>(at(3)));
  EXPECT_EQ(figures(as, at(3)),
            "Size:8 Rss:8 Pss:8 Pss_Dirty:4 Shared_Clean:0 Shared_Dirty:0 Private_Clean:4 Private_Dirty:4 "
            "Anonymous:0 LazyFree:0 Locked:0");

  map(as, at(4), 2, kRW, kAnon);
  wr(as, at(4));
  ASSERT_EQ(as.mremap(at(4), 2 * kPage, 2 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, at(5)),
            static_cast<long>(at(5)));
  EXPECT_EQ(figures(as, at(5)),
            "Size:8 Rss:4 Pss:4 Pss_Dirty:4 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:4 "
            "Anonymous:4 LazyFree:0 Locked:0");
  EXPECT_EQ(figures(as, at(4)),
            "Size:8 Rss:0 Pss:0 Pss_Dirty:0 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:0");

  const int fd2 = memfd(as, 4, false);
  map(as, at(6), 4, kRW, kShared, fd2);
  rd(as, at(6));
  ASSERT_EQ(as.mremap(at(6), 4 * kPage, 4 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, at(7)), static_cast<long>(at(7)));
  wr(as, at(7));
  EXPECT_EQ(figures(as, at(7)),
            "Size:16 Rss:4 Pss:4 Pss_Dirty:4 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:4 "
            "Anonymous:0 LazyFree:0 Locked:0");
}

// host: a shared anonymous mapping duplicated by mremap(old_len 0), page 0
// read through both, page 1 written through the copy: the original
// Size:16 Rss:4 Pss:2 Shared_Clean:4; the copy Rss:8 Pss:6 Pss_Dirty:4
// Shared_Clean:4 Private_Dirty:4.
TEST_P(Smaps, SharedAnonymousDuplicate) {
  AddressSpace as(opts());
  map(as, at(0), 4, kRW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED);
  ASSERT_EQ(as.mremap(at(0), 0, 4 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, at(1)), static_cast<long>(at(1)));
  rd(as, at(0));
  rd(as, at(1));
  wr(as, at(1) + kPage);
  EXPECT_EQ(figures(as, at(0)),
            "Size:16 Rss:4 Pss:2 Pss_Dirty:0 Shared_Clean:4 Shared_Dirty:0 Private_Clean:0 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:0");
  EXPECT_EQ(figures(as, at(1)),
            "Size:16 Rss:8 Pss:6 Pss_Dirty:4 Shared_Clean:4 Shared_Dirty:0 Private_Clean:0 Private_Dirty:4 "
            "Anonymous:0 LazyFree:0 Locked:0");
}

// A file page stays dirty when the PTE that dirtied it goes.  host:
//   written by a write fault, munmap, mapped again and read: Private_Dirty:4;
//   read, written through the clean PTE, munmap, mapped again and read:
//   Private_Dirty:4 (the unmap moved the PTE's dirty bit to the page);
//   read and written, MADV_DONTNEED, read: Private_Dirty:4;
//   only read, MADV_DONTNEED, read: Private_Clean:4.
TEST_P(Smaps, FilePageDirtOutlivesThePte) {
  AddressSpace as(opts());
  const std::string clean =
      "Size:16 Rss:4 Pss:4 Pss_Dirty:0 Shared_Clean:0 Shared_Dirty:0 Private_Clean:4 Private_Dirty:0 "
      "Anonymous:0 LazyFree:0 Locked:0";
  const std::string dirty =
      "Size:16 Rss:4 Pss:4 Pss_Dirty:4 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:4 "
      "Anonymous:0 LazyFree:0 Locked:0";
  for (const bool read_first : {false, true}) {
    SCOPED_TRACE(read_first ? "read first" : "write fault");
    const int fd = memfd(as, 4, false);
    map(as, at(0), 4, kRW, kShared, fd);
    if (read_first) rd(as, at(0));
    wr(as, at(0));
    ASSERT_EQ(as.munmap(at(0), 4 * kPage), 0);
    map(as, at(0), 4, kRW, kShared, fd);
    rd(as, at(0));
    EXPECT_EQ(figures(as, at(0)), dirty);
    ASSERT_EQ(as.munmap(at(0), 4 * kPage), 0);
  }
  const int fd = memfd(as, 4, false);
  map(as, at(1), 4, kRW, kShared, fd);
  rd(as, at(1));
  wr(as, at(1));
  ASSERT_EQ(as.madvise(at(1), 4 * kPage, MADV_DONTNEED), 0);
  rd(as, at(1));
  EXPECT_EQ(figures(as, at(1)), dirty);
  const int fd2 = memfd(as, 4, false);
  map(as, at(2), 4, kRW, kShared, fd2);
  rd(as, at(2));
  ASSERT_EQ(as.madvise(at(2), 4 * kPage, MADV_DONTNEED), 0);
  rd(as, at(2));
  EXPECT_EQ(figures(as, at(2)), clean);
}

// host: a shared page read, mprotect read-only then read-write, written:
// Private_Dirty:4.  A shared page written, then mprotect read-only:
// Private_Dirty:4; a private anonymous page the same: Private_Dirty:4
// Anonymous:4 (mprotect keeps the dirty bit).
TEST_P(Smaps, MprotectKeepsTheDirtyBit) {
  AddressSpace as(opts());
  const int fd = memfd(as, 2, false);
  map(as, at(0), 2, kRW, kShared, fd);
  rd(as, at(0));
  ASSERT_EQ(as.mprotect(at(0), 2 * kPage, PROT_READ), 0);
  ASSERT_EQ(as.mprotect(at(0), 2 * kPage, kRW), 0);
  wr(as, at(0));
  EXPECT_EQ(figures(as, at(0)),
            "Size:8 Rss:4 Pss:4 Pss_Dirty:4 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:4 "
            "Anonymous:0 LazyFree:0 Locked:0");
  const int fd2 = memfd(as, 4, false);
  map(as, at(1), 4, kRW, kShared, fd2);
  rd(as, at(1));
  wr(as, at(1));
  ASSERT_EQ(as.mprotect(at(1), 4 * kPage, PROT_READ), 0);
  EXPECT_EQ(figures(as, at(1)),
            "Size:16 Rss:4 Pss:4 Pss_Dirty:4 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:4 "
            "Anonymous:0 LazyFree:0 Locked:0");
  map(as, at(2), 4, kRW, kAnon);
  wr(as, at(2));
  ASSERT_EQ(as.mprotect(at(2), 4 * kPage, PROT_READ), 0);
  EXPECT_EQ(figures(as, at(2)),
            "Size:16 Rss:4 Pss:4 Pss_Dirty:4 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:4 "
            "Anonymous:4 LazyFree:0 Locked:0");
}

// host: MADV_POPULATE_WRITE of a shared page already read (clean PTE):
// Pss_Dirty:4 Private_Dirty:4 (GUP dirties the page); of two pages never
// faulted: Rss:8 Pss_Dirty:8 Private_Dirty:8.  MAP_POPULATE of a shared
// mapping (read faults): Rss:16 Private_Clean:16.
TEST_P(Smaps, PopulateOnSharedFiles) {
  AddressSpace as(opts());
  const int fd = memfd(as, 4, false);
  map(as, at(0), 4, kRW, kShared, fd);
  rd(as, at(0));
  ASSERT_EQ(as.madvise(at(0), kPage, MADV_POPULATE_WRITE), 0);
  EXPECT_EQ(figures(as, at(0)),
            "Size:16 Rss:4 Pss:4 Pss_Dirty:4 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:4 "
            "Anonymous:0 LazyFree:0 Locked:0");
  const int fd2 = memfd(as, 4, false);
  map(as, at(1), 4, kRW, kShared, fd2);
  ASSERT_EQ(as.madvise(at(1), 2 * kPage, MADV_POPULATE_WRITE), 0);
  EXPECT_EQ(figures(as, at(1)),
            "Size:16 Rss:8 Pss:8 Pss_Dirty:8 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:8 "
            "Anonymous:0 LazyFree:0 Locked:0");
  const int fd3 = memfd(as, 4, false);
  map(as, at(2), 4, kRW, kShared | MAP_POPULATE, fd3);
  EXPECT_EQ(figures(as, at(2)),
            "Size:16 Rss:16 Pss:16 Pss_Dirty:0 Shared_Clean:0 Shared_Dirty:0 Private_Clean:16 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:0");
}

// host: mlock of 4 anonymous pages, 2 of them written: mlock populates the
// others with write faults: Rss:16 Pss:16 Pss_Dirty:16 Private_Dirty:16
// Anonymous:16 Locked:16.  Two shared mappings of a memfd, page 0 read
// through both, the first mlocked (read faults populate it): the first
// Rss:16 Pss:14 Shared_Clean:4 Private_Clean:12 Locked:14.
TEST_P(Smaps, LockedIsThePss) {
  AddressSpace as(opts());
  map(as, at(0), 4, kRW, kAnon);
  wr(as, at(0));
  wr(as, at(0) + kPage);
  ASSERT_EQ(as.mlock(at(0), 4 * kPage), 0);
  EXPECT_EQ(figures(as, at(0)),
            "Size:16 Rss:16 Pss:16 Pss_Dirty:16 Shared_Clean:0 Shared_Dirty:0 Private_Clean:0 Private_Dirty:16 "
            "Anonymous:16 LazyFree:0 Locked:16");
  const int fd = memfd(as, 4, false);
  map(as, at(1), 4, kRW, kShared, fd);
  map(as, at(2), 4, kRW, kShared, fd);
  rd(as, at(1));
  rd(as, at(2));
  ASSERT_EQ(as.mlock(at(1), 4 * kPage), 0);
  EXPECT_EQ(figures(as, at(1)),
            "Size:16 Rss:16 Pss:14 Pss_Dirty:0 Shared_Clean:4 Shared_Dirty:0 Private_Clean:12 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:14");
}

// host: a 2-page memfd made by ftruncate, both pages read through a shared
// mapping (Private_Clean:8), then ftruncate to 4096 + 100 bytes: the page
// whose tail was zeroed is dirty: Rss:8 Pss_Dirty:4 Private_Clean:4
// Private_Dirty:4.
TEST_P(Smaps, PartialTruncateDirtiesTheLastPage) {
  AddressSpace as(opts());
  const int fd = memfd(as, 2, false);
  map(as, at(0), 2, kRW, kShared, fd);
  rd(as, at(0));
  rd(as, at(0) + kPage);
  EXPECT_EQ(figures(as, at(0)),
            "Size:8 Rss:8 Pss:8 Pss_Dirty:0 Shared_Clean:0 Shared_Dirty:0 Private_Clean:8 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:0");
  ASSERT_EQ(as.ftruncate(fd, kPage + 100), 0);
  EXPECT_EQ(figures(as, at(0)),
            "Size:8 Rss:8 Pss:8 Pss_Dirty:4 Shared_Clean:0 Shared_Dirty:0 Private_Clean:4 Private_Dirty:4 "
            "Anonymous:0 LazyFree:0 Locked:0");
}

// Two spaces sharing physical memory and a file, as two processes sharing
// a memfd.  host (a forked child mapped the memfd itself, read page 0 and
// wrote page 1 with a write fault; the parent then mapped it and read
// both): the parent's Rss:8 Pss:4 Pss_Dirty:2 Shared_Clean:4
// Shared_Dirty:4.
TEST_P(Smaps, MapcountCountsEverySpace) {
  mem::PhysMem pool({.capacity_bytes = 512 * kPage, .pretouch = false});
  AddressSpaceOptions o = opts();
  o.phys = &pool;
  AddressSpace parent(o), child(o);
  const int fd = memfd(parent, 2, false);
  const int cfd = parent.send_file(fd, child);
  ASSERT_GE(cfd, 0);
  map(child, at(0), 2, kRW, kShared, cfd);
  rd(child, at(0));
  wr(child, at(0) + kPage);
  map(parent, at(1), 2, kRW, kShared, fd);
  rd(parent, at(1));
  rd(parent, at(1) + kPage);
  EXPECT_EQ(figures(parent, at(1)),
            "Size:8 Rss:8 Pss:4 Pss_Dirty:2 Shared_Clean:4 Shared_Dirty:4 Private_Clean:0 Private_Dirty:0 "
            "Anonymous:0 LazyFree:0 Locked:0");
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, Smaps, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace
