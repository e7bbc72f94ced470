// SPDX-License-Identifier: MIT
// fork (issue 15): what AddressSpace::fork gives the child and leaves the
// parent, in every lock mode, on both kinds of test host.  The host kernel
// checks maps, contents and mincore through tests/scripts/fork_*.ops; these
// tests check what it cannot show:
//   - copy-on-write frame by frame: which frame each side maps (the PTEs),
//     when a write copies and when it reuses the frame in place (pool free
//     bytes: a reuse takes no frame), where the reused frame's reverse map
//     points;
//   - the shared zero page stays the zero page in the child;
//   - MAP_SHARED anonymous and memfd mappings stay shared, MAP_PRIVATE file
//     mappings are copy-on-write;
//   - DONTFORK / WIPEONFORK, memory locks (and MCL_FUTURE) not inherited,
//     seals and guard regions inherited;
//   - maps text, map_count and rss of parent and child right after fork;
//   - teardown in every order returns every frame of a shared pool;
//   - the program break inherited; the commit charge (Overcommit::never)
//     counting the family together;
//   - a family grown at random (fork, exit, write, discard, unmap, mremap,
//     mprotect, fork advice) against a model of every space's pages;
//   - fork failing on each of its allocations in turn (sync/fail_nth.h)
//     returns -ENOMEM, leaves the parent as it was and leaks nothing;
//   - fork inside an AccessScope, succeeding and failing;
// and validate() (the reverse map included) after every step.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "mem/phys_mem.h"
#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/rmap.h"
#include "mm/vma.h"
#include "support/test_host.h"
#include "sync/fail_nth.h"
#include "sync/rcu.h"
#include "support/smaps.h"
#include "support/expect_valid.h"
#include "vmspace/address_space.h"
#include "vmspace/mman.h"
#include "vmspace/physical_memory.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kPage = 4096;
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr int kAnon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
constexpr int kSharedAnon = MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED;

std::uint64_t P(std::uint64_t page) { return kBase + page * kPage; }

// ---- observations ------------------------------------------------------------

// The byte at va, or -1 when the read faults (*f: how).
int byte_at(AddressSpace& as, std::uint64_t va, Fault* f = nullptr) {
  unsigned char b = 0;
  const AccessResult r = as.read(va, &b, 1);
  if (f != nullptr) *f = r.fault;
  return r.ok() ? b : -1;
}

// Does every byte of the page at va read as `b`?  ("" if so, else what differs.)
std::string page_is(AddressSpace& as, std::uint64_t va, unsigned char b) {
  std::vector<unsigned char> buf(kPage);
  const AccessResult r = as.read(va, buf.data(), kPage);
  if (!r.ok()) return std::string("read faults: ") + fault_name(r.fault);
  for (std::uint64_t i = 0; i < kPage; ++i)
    if (buf[i] != b) {
      char m[96];
      std::snprintf(m, sizeof m, "byte %llu is %#x, expected %#x", static_cast<unsigned long long>(i), buf[i], b);
      return m;
    }
  return "";
}

void fill(AddressSpace& as, std::uint64_t va, unsigned char b, std::uint64_t pages = 1) {
  const AccessResult r = as.fill(va, b, pages * kPage);
  ASSERT_TRUE(r.ok()) << fault_name(r.fault) << " at " << std::hex << r.addr;
}

mem::pte_t pte_at(AddressSpace& as, std::uint64_t va) {
  rcu::ReadGuard g;
  return as.mm()->pgtables.lookup(va);
}
// The frame the PTE at va maps, or kNoFrame.
mem::pfn_t pfn_at(AddressSpace& as, std::uint64_t va) {
  const mem::pte_t p = pte_at(as, va);
  return mem::pte_present(p) ? mem::pte_pfn(p) : mem::kNoFrame;
}

mm::AnonVma* anon_vma_at(AddressSpace& as, std::uint64_t va) {
  mm::mmap_read_lock(as.mm());
  const mm::Vma* v = mm::vma_lookup(as.mm(), va);
  mm::AnonVma* av = v != nullptr ? v->anon_vma.load() : nullptr;
  mm::mmap_read_unlock(as.mm());
  return av;
}

using test::smaps_line;
bool has_vmflag(AddressSpace& as, std::uint64_t start, const char* two) {
  return smaps_line(as, start, "VmFlags:").find(std::string(" ") + two + " ") != std::string::npos;
}

// maps text without the lines of the VMAs starting at `drop`.
std::string maps_without(const std::string& maps, const std::vector<std::uint64_t>& drop) {
  std::istringstream in(maps);
  std::string line, out;
  while (std::getline(in, line)) {
    bool skip = false;
    for (std::uint64_t d : drop) {
      char head[40];
      std::snprintf(head, sizeof head, "%llx-", static_cast<unsigned long long>(d));
      if (line.compare(0, std::strlen(head), head) == 0) skip = true;
    }
    if (!skip) out += line + "\n";
  }
  return out;
}

// ---- the fixture ----------------------------------------------------------------

class Fork : public ::testing::TestWithParam<LockMode> {
 protected:
  // Every space of a test takes its frames from pool_; at the end every
  // frame is back (TearDown).
  void SetUp() override { free0_ = pool_->free_bytes(); }
  void TearDown() override {
    pool_->internal()->drain_deferred();
    EXPECT_EQ(pool_->free_bytes(), free0_) << "frames leaked: " << (free0_ - pool_->free_bytes()) / kPage;
  }
  AddressSpaceOptions opts() const {
    AddressSpaceOptions o = test::test_options(GetParam());
    o.pool = pool_;
    return o;
  }
  bool zero_page() const { return test::test_host_facts().zero_page; }
  std::int64_t free_pages() const { return static_cast<std::int64_t>(pool_->free_bytes() / kPage); }

  std::unique_ptr<AddressSpace> fork(AddressSpace& parent) {
    int err = 1;
    std::unique_ptr<AddressSpace> child = parent.fork(&err);
    EXPECT_EQ(err, 0);
    EXPECT_NE(child, nullptr);
    if (child != nullptr) {
      EXPECT_EQ(child->mode(), parent.mode());
      EXPECT_VALID(*child, "child right after fork");
    }
    EXPECT_VALID(parent, "parent right after fork");
    return child;
  }

  std::shared_ptr<PhysicalMemory> pool_ =
      std::make_shared<PhysicalMemory>(PhysicalMemory::Options{.limit_bytes = 64ull << 20, .pretouch = false});
  std::uint64_t free0_ = 0;
};

// ---- copy-on-write --------------------------------------------------------------

// Eight private pages, page i holding 0x10 + i.  After fork both spaces map
// the same frames, read-only; the child reads the parent's data.  Then:
//   page 0: the child writes: it gets a copy (one frame more); the parent
//           keeps its frame and data;
//   page 1: the parent writes: the parent copies, the child keeps the old
//           frame, which now only it maps: its write reuses it (no frame),
//           and the frame's reverse map moves to the child's anon_vma;
//   page 2: the parent unmaps it: the child's write reuses the frame;
//   page 3: nobody writes: still shared.
TEST_P(Fork, CopyOnWriteCopiesThenReuses) {
  AddressSpace parent(opts());
  ASSERT_EQ(parent.mmap(P(0), 8 * kPage, kRW, kAnon), static_cast<long>(P(0)));
  for (int i = 0; i < 8; ++i) ASSERT_NO_FATAL_FAILURE(fill(parent, P(i), static_cast<unsigned char>(0x10 + i)));
  EXPECT_EQ(parent.rss_pages(), 8u);
  const std::int64_t free_before_fork = free_pages();
  std::vector<mem::pfn_t> frame(8);
  for (int i = 0; i < 8; ++i) frame[i] = pfn_at(parent, P(i));

  std::unique_ptr<AddressSpace> child = fork(parent);
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(free_pages(), free_before_fork) << "fork took frames for private memory";
  EXPECT_EQ(child->rss_pages(), 8u);
  EXPECT_EQ(parent.rss_pages(), 8u);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(pfn_at(*child, P(i)), frame[i]) << "page " << i << " is not shared";
    EXPECT_FALSE(mem::pte_write(pte_at(*child, P(i)))) << "child page " << i << " writable";
    EXPECT_FALSE(mem::pte_write(pte_at(parent, P(i)))) << "parent page " << i << " writable";
    EXPECT_EQ(page_is(*child, P(i), static_cast<unsigned char>(0x10 + i)), "") << "child page " << i;
    EXPECT_EQ(parent.mm()->phys->frame(frame[i]).mapcount.load(), 2) << i;
  }
  // The child's VMA is a fork child: its own anon_vma, whose parent is the
  // parent's.
  mm::AnonVma* pav = anon_vma_at(parent, P(0));
  mm::AnonVma* cav = anon_vma_at(*child, P(0));
  ASSERT_NE(pav, nullptr);
  ASSERT_NE(cav, nullptr);
  EXPECT_NE(cav, pav);
  EXPECT_EQ(cav->parent, pav);
  EXPECT_EQ(cav->root, pav->root);

  // Page 0: the child's first write copies.
  ASSERT_NO_FATAL_FAILURE(fill(*child, P(0), 0xc0));
  EXPECT_EQ(free_pages(), free_before_fork - 1) << "the child's first write did not copy";
  EXPECT_NE(pfn_at(*child, P(0)), frame[0]);
  EXPECT_EQ(pfn_at(parent, P(0)), frame[0]);
  EXPECT_EQ(page_is(parent, P(0), 0x10), "") << "the parent sees the child's write";
  EXPECT_EQ(page_is(*child, P(0), 0xc0), "");
  EXPECT_VALID(parent, "page 0");
  EXPECT_VALID(*child, "page 0");
  // The parent's page 0 is its own again: its write reuses the frame.
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(0), 0xa0));
  EXPECT_EQ(free_pages(), free_before_fork - 1) << "the parent copied a frame nobody else maps";
  EXPECT_EQ(pfn_at(parent, P(0)), frame[0]);
  EXPECT_EQ(page_is(*child, P(0), 0xc0), "");

  // Page 1: the parent writes (copies); the child then reuses the old frame.
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(1), 0xa1));
  EXPECT_EQ(free_pages(), free_before_fork - 2);
  EXPECT_NE(pfn_at(parent, P(1)), frame[1]);
  EXPECT_EQ(page_is(*child, P(1), 0x11), "") << "the child sees the parent's write";
  EXPECT_EQ(child->mm()->phys->frame(frame[1]).mapping.load(), reinterpret_cast<std::uintptr_t>(pav) | mem::kMappingAnon);
  ASSERT_NO_FATAL_FAILURE(fill(*child, P(1), 0xc1));
  EXPECT_EQ(free_pages(), free_before_fork - 2) << "the child copied a frame only it maps";
  EXPECT_EQ(pfn_at(*child, P(1)), frame[1]);
  EXPECT_EQ(child->mm()->phys->frame(frame[1]).mapping.load(), reinterpret_cast<std::uintptr_t>(cav) | mem::kMappingAnon)
      << "the reused frame's reverse map still points to the parent's anon_vma";
  EXPECT_EQ(page_is(parent, P(1), 0xa1), "");
  EXPECT_VALID(parent, "page 1");
  EXPECT_VALID(*child, "page 1");

  // Page 2: the parent unmaps it; the child's write reuses the frame.
  ASSERT_EQ(parent.munmap(P(2), kPage), 0);
  EXPECT_EQ(parent.rss_pages(), 7u);
  EXPECT_EQ(free_pages(), free_before_fork - 2) << "the frame went away with the parent's mapping";
  EXPECT_EQ(page_is(*child, P(2), 0x12), "");
  ASSERT_NO_FATAL_FAILURE(fill(*child, P(2), 0xc2));
  EXPECT_EQ(free_pages(), free_before_fork - 2) << "the child's write copied a frame only it maps";
  EXPECT_EQ(pfn_at(*child, P(2)), frame[2]);
  EXPECT_VALID(parent, "page 2");
  EXPECT_VALID(*child, "page 2");

  // Page 3: still shared, still read-only on both sides.
  EXPECT_EQ(pfn_at(*child, P(3)), frame[3]);
  EXPECT_EQ(pfn_at(parent, P(3)), frame[3]);
  for (int i = 3; i < 8; ++i) {
    EXPECT_EQ(page_is(parent, P(i), static_cast<unsigned char>(0x10 + i)), "") << i;
    EXPECT_EQ(page_is(*child, P(i), static_cast<unsigned char>(0x10 + i)), "") << i;
  }
  EXPECT_EQ(child->rss_pages(), 8u);
  EXPECT_EQ(parent.rss_pages(), 7u);

  // The child exits: what it alone mapped is freed, the shared frames
  // become the parent's alone, and the parent's writes reuse them.
  child.reset();
  EXPECT_EQ(free_pages(), free_before_fork + 1) << "the parent maps 7 pages now";
  const std::int64_t after_exit = free_pages();
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(3), 0xa3));
  EXPECT_EQ(pfn_at(parent, P(3)), frame[3]);
  EXPECT_EQ(free_pages(), after_exit);
  EXPECT_VALID(parent, "after the child exited");
}

// A child forks again (a grandchild): three spaces share each frame, and
// each write copies until one space is left mapping it.
TEST_P(Fork, CopyOnWriteAcrossThreeGenerations) {
  AddressSpace parent(opts());
  ASSERT_EQ(parent.mmap(P(0), 4 * kPage, kRW, kAnon), static_cast<long>(P(0)));
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(0), 0x21, 4));
  std::unique_ptr<AddressSpace> child = fork(parent);
  ASSERT_NE(child, nullptr);
  ASSERT_NO_FATAL_FAILURE(fill(*child, P(1), 0x22));  // the child's own page 1
  std::unique_ptr<AddressSpace> grand = fork(*child);
  ASSERT_NE(grand, nullptr);
  const mem::pfn_t f0 = pfn_at(parent, P(0));
  EXPECT_EQ(pfn_at(*child, P(0)), f0);
  EXPECT_EQ(pfn_at(*grand, P(0)), f0);
  EXPECT_EQ(parent.mm()->phys->frame(f0).mapcount.load(), 3);
  EXPECT_EQ(page_is(*grand, P(0), 0x21), "");
  EXPECT_EQ(page_is(*grand, P(1), 0x22), "");
  const std::int64_t base = free_pages();

  ASSERT_NO_FATAL_FAILURE(fill(*grand, P(0), 0x30));  // copies (3 -> 2 users of f0)
  EXPECT_EQ(free_pages(), base - 1);
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(0), 0x31));  // copies (2 -> 1)
  EXPECT_EQ(free_pages(), base - 2);
  ASSERT_NO_FATAL_FAILURE(fill(*child, P(0), 0x32));  // the last user: reuses f0
  EXPECT_EQ(free_pages(), base - 2);
  EXPECT_EQ(pfn_at(*child, P(0)), f0);
  EXPECT_EQ(page_is(parent, P(0), 0x31), "");
  EXPECT_EQ(page_is(*child, P(0), 0x32), "");
  EXPECT_EQ(page_is(*grand, P(0), 0x30), "");
  // The grandchild's page 1 came from the child (an anon_vma the parent's
  // VMA is not linked to): its reverse map reaches it.
  ASSERT_NO_FATAL_FAILURE(fill(*child, P(1), 0x33));
  EXPECT_EQ(page_is(*grand, P(1), 0x22), "");
  ASSERT_NO_FATAL_FAILURE(fill(*grand, P(1), 0x34));  // now the grandchild's alone: reuse
  EXPECT_EQ(page_is(*child, P(1), 0x33), "");
  EXPECT_EQ(page_is(parent, P(1), 0x21), "");
  for (AddressSpace* as : {&parent, child.get(), grand.get()}) EXPECT_VALID(*as, "three generations");
  // The middle generation exits first: the grandchild's family links (to
  // the child's anon_vma) keep working.
  child.reset();
  EXPECT_VALID(parent, "after the child exited");
  EXPECT_VALID(*grand, "after the child exited");
  ASSERT_NO_FATAL_FAILURE(fill(*grand, P(2), 0x35));
  EXPECT_EQ(page_is(parent, P(2), 0x21), "");
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(2), 0x36));
  EXPECT_EQ(page_is(*grand, P(2), 0x35), "");
  EXPECT_VALID(parent, "end");
  EXPECT_VALID(*grand, "end");
}

// Pages read before fork map the shared zero page: they still do in the
// child (no frame), read as zeros, and the first write on either side
// allocates a fresh zeroed frame.  (A host without the zero page
// allocates on the read: then these are ordinary copy-on-write pages.)
TEST_P(Fork, ZeroPageStaysZeroPage) {
  if (!zero_page()) GTEST_SKIP() << "the test host has no zero page";
  AddressSpace parent(opts());
  ASSERT_EQ(parent.mmap(P(0), 4 * kPage, kRW, kAnon), static_cast<long>(P(0)));
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(3), 0x77));  // the VMA gets an anon_vma: its PTEs are copied
  unsigned char buf[2 * kPage];
  ASSERT_TRUE(parent.read(P(0), buf, sizeof buf).ok());
  const mem::pfn_t zero = parent.phys()->zero_pfn();
  ASSERT_EQ(pfn_at(parent, P(0)), zero);
  ASSERT_EQ(pfn_at(parent, P(1)), zero);
  EXPECT_EQ(parent.rss_pages(), 1u);
  const std::int64_t base = free_pages();

  std::unique_ptr<AddressSpace> child = fork(parent);
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(pfn_at(*child, P(0)), zero);
  EXPECT_EQ(pfn_at(*child, P(1)), zero);
  EXPECT_EQ(pfn_at(*child, P(2)), mem::kNoFrame);
  EXPECT_EQ(child->rss_pages(), 1u) << "the zero page counts in nobody's rss";
  EXPECT_EQ(page_is(*child, P(0), 0), "");
  EXPECT_EQ(page_is(*child, P(1), 0), "");
  EXPECT_EQ(page_is(*child, P(2), 0), "");
  EXPECT_EQ(free_pages(), base);

  ASSERT_NO_FATAL_FAILURE(fill(*child, P(0), 0x55));
  EXPECT_NE(pfn_at(*child, P(0)), zero);
  EXPECT_EQ(free_pages(), base - 1);
  EXPECT_EQ(pfn_at(parent, P(0)), zero);
  EXPECT_EQ(page_is(parent, P(0), 0), "");
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(1), 0x66));
  EXPECT_EQ(free_pages(), base - 2);
  EXPECT_EQ(pfn_at(*child, P(1)), zero);
  EXPECT_EQ(page_is(*child, P(1), 0), "");
  EXPECT_EQ(child->rss_pages(), 2u);
  EXPECT_EQ(parent.rss_pages(), 2u);
  EXPECT_VALID(parent, "end");
  EXPECT_VALID(*child, "end");
}

// ---- shared and file mappings ---------------------------------------------------

// Shared anonymous memory and a MAP_SHARED memfd mapping stay shared (each
// side sees the other's writes, through the mapping and, for the file,
// through pread/pwrite on the inherited descriptor); a MAP_PRIVATE mapping
// of the file is copy-on-write (its private copies are inherited, its
// writes after fork are private, the file never changes).
TEST_P(Fork, SharedMappingsStaySharedPrivateFileMappingsCopy) {
  AddressSpace parent(opts());
  ASSERT_EQ(parent.mmap(P(0), 2 * kPage, kRW, kSharedAnon), static_cast<long>(P(0)));
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(0), 0x11, 2));
  const int fd = parent.memfd_create("forked");
  ASSERT_GE(fd, 0);
  ASSERT_EQ(parent.ftruncate(fd, 4 * kPage), 0);
  std::vector<unsigned char> file_data(4 * kPage);
  for (std::uint64_t i = 0; i < 4; ++i) std::memset(&file_data[i * kPage], 0x40 + static_cast<int>(i), kPage);
  ASSERT_EQ(parent.pwrite(fd, file_data.data(), file_data.size(), 0), static_cast<long>(file_data.size()));
  ASSERT_EQ(parent.mmap(P(4), 2 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(P(4)));
  ASSERT_EQ(parent.mmap(P(8), 2 * kPage, kRW, MAP_PRIVATE | MAP_FIXED, fd, 2 * kPage), static_cast<long>(P(8)));
  ASSERT_EQ(byte_at(parent, P(4)), 0x40);
  ASSERT_EQ(byte_at(parent, P(8)), 0x42);        // the file's page
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(9), 0x93));  // a private copy of file page 3

  std::unique_ptr<AddressSpace> child = fork(parent);
  ASSERT_NE(child, nullptr);
  // Shared anonymous memory.
  EXPECT_EQ(page_is(*child, P(0), 0x11), "");
  ASSERT_NO_FATAL_FAILURE(fill(*child, P(0), 0x12));
  EXPECT_EQ(page_is(parent, P(0), 0x12), "") << "the parent does not see the child's write to shared memory";
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(1), 0x13));
  EXPECT_EQ(page_is(*child, P(1), 0x13), "") << "the child does not see the parent's write to shared memory";
  EXPECT_EQ(pfn_at(parent, P(0)), pfn_at(*child, P(0)));
  // The shared file mapping, and the file through the inherited descriptor.
  EXPECT_EQ(page_is(*child, P(4), 0x40), "");
  ASSERT_NO_FATAL_FAILURE(fill(*child, P(4), 0x50));
  EXPECT_EQ(page_is(parent, P(4), 0x50), "");
  unsigned char b = 0;
  ASSERT_EQ(parent.pread(fd, &b, 1, 0), 1);
  EXPECT_EQ(b, 0x50);
  const unsigned char w = 0x51;
  ASSERT_EQ(parent.pwrite(fd, &w, 1, kPage + 7), 1);
  EXPECT_EQ(byte_at(*child, P(5) + 7), 0x51) << "the child's shared mapping does not see pwrite";
  ASSERT_EQ(child->pread(fd, &b, 1, kPage + 7), 1) << "the child has no descriptor " << fd;
  EXPECT_EQ(b, 0x51);
  // The private file mapping: the copy the parent made is inherited, the
  // page it only read is the file's.
  EXPECT_EQ(page_is(*child, P(8), 0x42), "");
  EXPECT_EQ(page_is(*child, P(9), 0x93), "");
  ASSERT_NO_FATAL_FAILURE(fill(*child, P(8), 0x60));
  ASSERT_NO_FATAL_FAILURE(fill(*child, P(9), 0x61));
  EXPECT_EQ(page_is(parent, P(8), 0x42), "") << "the child's private write reached the parent";
  EXPECT_EQ(page_is(parent, P(9), 0x93), "") << "the child's private write reached the parent";
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(9), 0x62));
  EXPECT_EQ(page_is(*child, P(9), 0x61), "");
  ASSERT_EQ(parent.pread(fd, &b, 1, 2 * kPage), 1);
  EXPECT_EQ(b, 0x42) << "a private write reached the file";
  ASSERT_EQ(parent.pread(fd, &b, 1, 3 * kPage), 1);
  EXPECT_EQ(b, 0x43) << "a private write reached the file";
  // The file outlives the parent's descriptor: closing it in one space
  // leaves the other's.
  ASSERT_EQ(parent.close(fd), 0);
  ASSERT_EQ(child->pread(fd, &b, 1, 0), 1);
  EXPECT_EQ(b, 0x50);
  EXPECT_VALID(parent, "end");
  EXPECT_VALID(*child, "end");
}

// ---- what is and is not inherited --------------------------------------------

TEST_P(Fork, DontforkAbsentWipeonforkEmpty) {
  AddressSpace parent(opts());
  ASSERT_EQ(parent.mmap(P(0), 6 * kPage, kRW, kAnon), static_cast<long>(P(0)));
  for (int i = 0; i < 6; ++i) ASSERT_NO_FATAL_FAILURE(fill(parent, P(i), static_cast<unsigned char>(0x30 + i)));
  ASSERT_EQ(parent.madvise(P(1), 2 * kPage, MADV_DONTFORK), 0);
  ASSERT_EQ(parent.madvise(P(4), kPage, MADV_WIPEONFORK), 0);
  // [0] [1,2 dontcopy] [3] [4 wipeonfork] [5]
  ASSERT_EQ(parent.map_count(), 5);
  const std::string parent_maps = parent.maps();

  std::unique_ptr<AddressSpace> child = fork(parent);
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->maps(), maps_without(parent_maps, {P(1)}));
  EXPECT_EQ(child->map_count(), 4);
  EXPECT_EQ(parent.maps(), parent_maps);
  Fault f = Fault::none;
  EXPECT_EQ(byte_at(*child, P(1), &f), -1);
  EXPECT_EQ(f, Fault::segv_maperr) << "a DONTFORK page is mapped in the child";
  EXPECT_EQ(byte_at(*child, P(2), &f), -1);
  EXPECT_EQ(f, Fault::segv_maperr);
  // WIPEONFORK: present, flag kept, empty in the child.
  EXPECT_TRUE(has_vmflag(*child, P(4), "wf"));
  EXPECT_EQ(anon_vma_at(*child, P(4)), nullptr) << "a WIPEONFORK VMA inherited anonymous state";
  EXPECT_EQ(pfn_at(*child, P(4)), mem::kNoFrame);
  EXPECT_EQ(page_is(*child, P(4), 0), "");
  EXPECT_EQ(page_is(parent, P(4), 0x34), "") << "the parent lost its WIPEONFORK data";
  EXPECT_EQ(page_is(parent, P(1), 0x31), "");
  for (int i : {0, 3, 5}) EXPECT_EQ(page_is(*child, P(i), static_cast<unsigned char>(0x30 + i)), "") << i;
  // The child's own writes to its wiped range are its own.
  ASSERT_NO_FATAL_FAILURE(fill(*child, P(4), 0x99));
  EXPECT_EQ(page_is(parent, P(4), 0x34), "");
  // A grandchild forked from the child wipes the child's data as well.
  std::unique_ptr<AddressSpace> grand = fork(*child);
  ASSERT_NE(grand, nullptr);
  EXPECT_EQ(page_is(*grand, P(4), 0), "");
  EXPECT_EQ(page_is(*child, P(4), 0x99), "");
  EXPECT_VALID(parent, "end");
  EXPECT_VALID(*child, "end");
  EXPECT_VALID(*grand, "end");
}

// mlock and mlockall(MCL_FUTURE) are not inherited: the child's VMAs are
// not locked (VmFlags, Locked:, locked_vm) and its new mappings are not
// locked either; the parent keeps both.  VMA boundaries stay as they were.
TEST_P(Fork, MemoryLocksNotInherited) {
  AddressSpace parent(opts());
  ASSERT_EQ(parent.mmap(P(0), 4 * kPage, kRW, kAnon), static_cast<long>(P(0)));
  ASSERT_EQ(parent.mlock(P(0), 2 * kPage), 0);
  ASSERT_EQ(parent.mmap(P(6), 2 * kPage, kRW, kAnon), static_cast<long>(P(6)));
  ASSERT_EQ(parent.mlock2(P(6), 2 * kPage, MLOCK_ONFAULT), 0);
  ASSERT_EQ(parent.mlockall(MCL_FUTURE), 0);
  ASSERT_EQ(parent.mmap(P(10), 2 * kPage, kRW, kAnon), static_cast<long>(P(10)));
  ASSERT_TRUE(has_vmflag(parent, P(0), "lo"));
  ASSERT_TRUE(has_vmflag(parent, P(6), "lf"));
  ASSERT_TRUE(has_vmflag(parent, P(10), "lo"));
  const std::string parent_maps = parent.maps();
  const std::uint64_t parent_locked = parent.mm()->locked_vm;
  EXPECT_EQ(parent_locked, 6u);

  std::unique_ptr<AddressSpace> child = fork(parent);
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->maps(), parent_maps);
  for (std::uint64_t start : {P(0), P(2), P(6), P(10)}) {
    EXPECT_FALSE(has_vmflag(*child, start, "lo")) << std::hex << start;
    EXPECT_FALSE(has_vmflag(*child, start, "lf")) << std::hex << start;
    EXPECT_EQ(smaps_line(*child, start, "Locked:"), "Locked:                0 kB") << std::hex << start;
  }
  EXPECT_EQ(child->mm()->locked_vm, 0u);
  // Locked: is the VMA's Pss: its two pages are shared with the child now.
  EXPECT_EQ(smaps_line(parent, P(0), "Locked:"), "Locked:                4 kB");
  EXPECT_EQ(parent.mm()->locked_vm, parent_locked);
  // The locked pages are the child's too (copy-on-write), readable.
  EXPECT_EQ(page_is(*child, P(0), 0), "");
  // MCL_FUTURE: not in the child.
  ASSERT_EQ(child->mmap(P(20), 2 * kPage, kRW, kAnon), static_cast<long>(P(20)));
  EXPECT_FALSE(has_vmflag(*child, P(20), "lo"));
  EXPECT_EQ(child->mm()->locked_vm, 0u);
  EXPECT_EQ(child->rss_pages(), 4u) << "(the parent's four populated locked pages; a new mapping is not populated)";
  ASSERT_EQ(parent.mmap(P(20), 2 * kPage, kRW, kAnon), static_cast<long>(P(20)));
  EXPECT_TRUE(has_vmflag(parent, P(20), "lo"));
  // Locking in the child works on its own count.
  ASSERT_EQ(child->mlock(P(0), kPage), 0);
  EXPECT_EQ(child->mm()->locked_vm, 1u);
  EXPECT_EQ(parent.mm()->locked_vm, parent_locked + 2);
  EXPECT_VALID(parent, "end");
  EXPECT_VALID(*child, "end");
}

// Seals and guard regions are inherited: the child cannot unmap or
// mprotect a sealed range, and its guard pages fault SEGV_MAPERR (in a VMA
// with anonymous pages and in one with nothing but the markers).
TEST_P(Fork, SealsAndGuardRegionsInherited) {
  AddressSpace parent(opts());
  ASSERT_EQ(parent.mmap(P(0), 4 * kPage, kRW, kAnon), static_cast<long>(P(0)));
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(0), 0x44, 4));
  ASSERT_EQ(parent.mseal(P(2), 2 * kPage), 0);
  ASSERT_EQ(parent.mmap(P(6), 4 * kPage, kRW, kAnon), static_cast<long>(P(6)));
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(6), 0x45, 4));
  ASSERT_EQ(parent.madvise(P(7), kPage, MADV_GUARD_INSTALL), 0);
  ASSERT_EQ(parent.mmap(P(12), 4 * kPage, kRW, kAnon), static_cast<long>(P(12)));  // never touched
  ASSERT_EQ(parent.madvise(P(13), 2 * kPage, MADV_GUARD_INSTALL), 0);
  const std::string parent_maps = parent.maps();

  std::unique_ptr<AddressSpace> child = fork(parent);
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->maps(), parent_maps);
  EXPECT_TRUE(has_vmflag(*child, P(2), "sl"));
  EXPECT_EQ(child->munmap(P(2), kPage), -EPERM);
  EXPECT_EQ(child->mprotect(P(2), kPage, PROT_READ), -EPERM);
  EXPECT_EQ(child->mmap(P(3), kPage, kRW, kAnon), -EPERM);
  EXPECT_EQ(page_is(*child, P(3), 0x44), "");
  EXPECT_EQ(child->munmap(P(0), 2 * kPage), 0) << "the unsealed part";
  EXPECT_EQ(parent.munmap(P(2), kPage), -EPERM);
  // Guards.
  Fault f = Fault::none;
  for (std::uint64_t g : {P(7), P(13), P(14)}) {
    EXPECT_EQ(byte_at(*child, g, &f), -1) << std::hex << g;
    EXPECT_EQ(f, Fault::segv_maperr) << std::hex << g;
    EXPECT_TRUE(mem::pte_is_guard(pte_at(*child, g))) << std::hex << g;
    unsigned char one = 1;
    EXPECT_EQ(child->write(g, &one, 1).fault, Fault::segv_maperr) << std::hex << g;
  }
  EXPECT_TRUE(has_vmflag(*child, P(6), "gu"));
  EXPECT_EQ(page_is(*child, P(6), 0x45), "");
  EXPECT_EQ(page_is(*child, P(8), 0x45), "");
  EXPECT_EQ(page_is(*child, P(12), 0), "");
  EXPECT_EQ(page_is(*child, P(15), 0), "");
  // Removing a guard in the child leaves the parent's.
  ASSERT_EQ(child->madvise(P(7), kPage, MADV_GUARD_REMOVE), 0);
  EXPECT_EQ(page_is(*child, P(7), 0), "");
  EXPECT_EQ(byte_at(parent, P(7), &f), -1);
  EXPECT_EQ(f, Fault::segv_maperr);
  EXPECT_VALID(parent, "end");
  EXPECT_VALID(*child, "end");
}

// The program break is inherited; afterwards each side moves its own.
TEST_P(Fork, ProgramBreakInherited) {
  AddressSpaceOptions o = opts();
  o.brk_start = P(100);
  AddressSpace parent(o);
  ASSERT_EQ(parent.brk(P(103) + 5), P(103) + 5);
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(100), 0x5a, 4));
  std::unique_ptr<AddressSpace> child = fork(parent);
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->brk(0), P(103) + 5);
  EXPECT_EQ(child->maps(), parent.maps());
  EXPECT_EQ(page_is(*child, P(103), 0x5a), "");
  EXPECT_EQ(child->brk(P(106)), P(106));
  ASSERT_NO_FATAL_FAILURE(fill(*child, P(105), 0x6b));
  EXPECT_EQ(parent.brk(0), P(103) + 5);
  EXPECT_EQ(child->brk(P(101)), P(101));  // shrinks the child's heap only
  EXPECT_EQ(page_is(parent, P(103), 0x5a), "");
  Fault f = Fault::none;
  EXPECT_EQ(byte_at(*child, P(102), &f), -1);
  EXPECT_EQ(f, Fault::segv_maperr);
  EXPECT_VALID(parent, "end");
  EXPECT_VALID(*child, "end");
}

// Overcommit::never: the commit charge counts parent and children together
// (Linux's system-wide count), so a fork whose private writable memory
// does not fit fails with -ENOMEM and changes nothing, a child's mappings
// count against the parent's room, and an exit gives its charge back.
TEST_P(Fork, CommitChargeCountsTheFamily) {
  AddressSpaceOptions o = opts();
  o.overcommit = Overcommit::never;
  o.overcommit_limit_pages = 16;
  AddressSpace parent(o);
  ASSERT_EQ(parent.mmap(P(0), 10 * kPage, kRW, kAnon), static_cast<long>(P(0)));
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(0), 0x11, 10));
  ASSERT_EQ(parent.mmap(P(20), 4 * kPage, PROT_READ, kAnon), static_cast<long>(P(20)));  // not charged
  EXPECT_EQ(parent.mm()->vm_committed->load(), 10);
  const std::string maps = parent.maps();
  int err = 0;
  EXPECT_EQ(parent.fork(&err), nullptr) << "20 pages committed with a limit of 16";
  EXPECT_EQ(err, -ENOMEM);
  EXPECT_EQ(parent.mm()->vm_committed->load(), 10);
  EXPECT_EQ(parent.maps(), maps);
  EXPECT_VALID(parent, "after the failed fork");
  EXPECT_EQ(page_is(parent, P(9), 0x11), "");

  ASSERT_EQ(parent.munmap(P(6), 4 * kPage), 0);
  EXPECT_EQ(parent.mm()->vm_committed->load(), 6);
  std::unique_ptr<AddressSpace> child = fork(parent);
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(parent.mm()->vm_committed->load(), 12);
  EXPECT_EQ(child->mmap(P(40), 5 * kPage, kRW, kAnon), -ENOMEM) << "17 pages committed in the family";
  EXPECT_EQ(child->mmap(P(40), 4 * kPage, kRW, kAnon), static_cast<long>(P(40)));
  EXPECT_EQ(parent.mmap(P(50), kPage, kRW, kAnon), -ENOMEM);
  child.reset();
  EXPECT_EQ(parent.mm()->vm_committed->load(), 6);
  EXPECT_EQ(parent.mmap(P(50), kPage, kRW, kAnon), static_cast<long>(P(50)));
  EXPECT_VALID(parent, "end");
}

// A family grown at random: spaces fork, exit, write, discard, unmap, map
// again, mprotect, move (mremap) and mark DONTFORK / WIPEONFORK pages of
// one region, each checked against a model of what every space must read
// (per page: unmapped, or its byte, its protection and its fork advice).
// validate() (the reverse map across the family's anon_vma tree, whose
// anon_vmas fork reuses) after every step.  VMSPACE_FORK_RANDOM=seeds,steps
// runs more.
struct ModelPage {
  int byte = -1;  // -1: unmapped
  bool ro = false;
  bool dontfork = false, wipe = false;  // VM_DONTCOPY, VM_WIPEONFORK
};
using Model = std::vector<ModelPage>;

void random_family(AddressSpaceOptions o, unsigned seed, int steps) {
  constexpr std::uint64_t kPages = 24;
  constexpr std::size_t kMaxSpaces = 6;
  std::mt19937 rng(seed);
  auto pick = [&rng](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  std::vector<std::unique_ptr<AddressSpace>> space;
  std::vector<Model> model;
  space.push_back(std::make_unique<AddressSpace>(o));
  ASSERT_EQ(space[0]->mmap(P(0), kPages * kPage, kRW, kAnon), static_cast<long>(P(0)));
  model.emplace_back(kPages, ModelPage{0, false, false, false});
  auto check = [&](std::size_t i, const std::string& where) {
    std::string why;
    ASSERT_TRUE(space[i]->validate(&why)) << where << ": space " << i << ": " << why;
    for (std::uint64_t p = 0; p < kPages; ++p) {
      Fault f = Fault::none;
      const int b = byte_at(*space[i], P(p) + 9, &f);
      ASSERT_EQ(b, model[i][p].byte) << where << ": space " << i << " page " << p;
      if (b < 0) {
        ASSERT_EQ(f, Fault::segv_maperr) << where;
      }
    }
  };
  for (int step = 0; step < steps; ++step) {
    const std::size_t i = pick(space.size());
    AddressSpace& as = *space[i];
    Model& m = model[i];
    const std::uint64_t p = pick(kPages);
    std::string what;
    switch (pick(14)) {
      case 0:
      case 1:
      case 2:
      case 3: {  // write a page
        const auto b = static_cast<unsigned char>(1 + pick(250));
        what = "write";
        const AccessResult r = as.fill(P(p), b, kPage);
        if (m[p].byte < 0) {
          ASSERT_EQ(r.fault, Fault::segv_maperr) << step;
        } else if (m[p].ro) {
          ASSERT_EQ(r.fault, Fault::segv_accerr) << step;
        } else {
          ASSERT_TRUE(r.ok()) << step;
          m[p].byte = b;
        }
        break;
      }
      case 4:  // discard
        what = "dontneed";
        if (m[p].byte >= 0) {
          ASSERT_EQ(as.madvise(P(p), kPage, MADV_DONTNEED), 0) << step;
          m[p].byte = 0;
        }
        break;
      case 5:  // unmap, or map again
        if (m[p].byte >= 0) {
          what = "munmap";
          ASSERT_EQ(as.munmap(P(p), kPage), 0) << step;
          m[p] = ModelPage{};
        } else {
          what = "mmap";
          ASSERT_EQ(as.mmap(P(p), kPage, kRW, kAnon), static_cast<long>(P(p))) << step;
          m[p] = ModelPage{0, false, false, false};
        }
        break;
      case 6:  // protection
        if (m[p].byte >= 0) {
          what = "mprotect";
          m[p].ro = !m[p].ro;
          ASSERT_EQ(as.mprotect(P(p), kPage, m[p].ro ? PROT_READ : kRW), 0) << step;
        }
        break;
      case 7: {  // fork advice
        if (m[p].byte >= 0) {
          what = "madvise";
          static constexpr int kAdvice[] = {MADV_DOFORK, MADV_DONTFORK, MADV_WIPEONFORK, MADV_KEEPONFORK};
          const int a = kAdvice[pick(4)];
          ASSERT_EQ(as.madvise(P(p), kPage, a), 0) << step;
          if (a == MADV_DOFORK || a == MADV_DONTFORK) m[p].dontfork = a == MADV_DONTFORK;
          if (a == MADV_KEEPONFORK || a == MADV_WIPEONFORK) m[p].wipe = a == MADV_WIPEONFORK;
        }
        break;
      }
      case 8: {  // move a page onto an unmapped one
        const std::uint64_t q = pick(kPages);
        if (m[p].byte >= 0 && m[q].byte < 0) {
          what = "mremap";
          ASSERT_EQ(as.mremap(P(p), kPage, kPage, MREMAP_MAYMOVE | MREMAP_FIXED, P(q)), static_cast<long>(P(q))) << step;
          m[q] = m[p];
          m[p] = ModelPage{};
        }
        break;
      }
      case 9:
      case 10:  // fork
        if (space.size() < kMaxSpaces) {
          what = "fork";
          int err = 1;
          std::unique_ptr<AddressSpace> c = as.fork(&err);
          ASSERT_NE(c, nullptr) << step << ": " << err;
          Model cm = m;
          for (ModelPage& pg : cm) {
            if (pg.dontfork) {
              pg = ModelPage{};
            } else if (pg.wipe) {
              pg.byte = 0;
            }
          }
          space.push_back(std::move(c));
          model.push_back(std::move(cm));
          ASSERT_NO_FATAL_FAILURE(check(space.size() - 1, "after fork, step " + std::to_string(step)));
        }
        break;
      default:  // exit
        if (space.size() > 1) {
          what = "exit";
          space.erase(space.begin() + static_cast<std::ptrdiff_t>(i));
          model.erase(model.begin() + static_cast<std::ptrdiff_t>(i));
        }
        break;
    }
    if (what.empty()) continue;
    const std::string where = "seed " + std::to_string(seed) + " step " + std::to_string(step) + " (" + what + ")";
    if (what == "exit" || step % 16 == 0) {
      for (std::size_t k = 0; k < space.size(); ++k) ASSERT_NO_FATAL_FAILURE(check(k, where));
    } else {
      ASSERT_NO_FATAL_FAILURE(check(i, where));
    }
  }
  for (std::size_t k = 0; k < space.size(); ++k) ASSERT_NO_FATAL_FAILURE(check(k, "end"));
}

TEST_P(Fork, RandomFamilyMatchesModel) {
  unsigned seeds = 1;
  int steps = 400;
  if (const char* env = std::getenv("VMSPACE_FORK_RANDOM")) {
    if (std::sscanf(env, "%u,%d", &seeds, &steps) != 2) FAIL() << "VMSPACE_FORK_RANDOM=seeds,steps";
  }
  for (unsigned k = 0; k < seeds; ++k) {
    ASSERT_NO_FATAL_FAILURE(random_family(opts(), 20240615u + 7919u * k + static_cast<unsigned>(GetParam()), steps));
  }
}

// fork is one of the calls an emulator thread may make inside an
// AccessScope (address_space.h: every call but destroying a space).  A
// fork that succeeds there gives a working child; one that fails (out of
// memory) must release its partial child without waiting for a grace
// period, which the scope would block: -ENOMEM, not an abort.
TEST_P(Fork, ForkInsideAccessScope) {
  AddressSpace parent(opts());
  ASSERT_EQ(parent.mmap(P(0), 4 * kPage, kRW, kAnon), static_cast<long>(P(0)));
  ASSERT_NO_FATAL_FAILURE(fill(parent, P(0), 0x42, 4));
  std::unique_ptr<AddressSpace> child;
  int err = 1;
  {
    AddressSpace::AccessScope scope(parent);
    child = parent.fork(&err);
    ASSERT_NE(scope.translate(P(0), false), nullptr);
  }
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(err, 0);
  EXPECT_EQ(page_is(*child, P(0), 0x42), "");
  EXPECT_VALID(*child, "child");
  child.reset();
  if (!fail_nth::armed()) GTEST_SKIP() << "allocation-failure injection is compiled out of release builds";
  // Fail the fork after its first VMA is linked (so that the partial child
  // has something to release), and at its first allocation.
  for (std::uint64_t nth : {std::uint64_t{4}, std::uint64_t{1}}) {
    std::unique_ptr<AddressSpace> failed;
    err = 1;
    {
      AddressSpace::AccessScope scope(parent);
      fail_nth::Scope inject(nth);
      failed = parent.fork(&err);
    }
    EXPECT_EQ(failed, nullptr) << "N=" << nth;
    EXPECT_EQ(err, -ENOMEM) << "N=" << nth;
    EXPECT_VALID(parent, "after the failed fork");
    EXPECT_EQ(page_is(parent, P(0), 0x42), "");
  }
}

// ---- a parent with one of everything --------------------------------------------

// Page numbers of the rich parent's regions (each its own VMA or VMAs,
// with gaps between them so that nothing merges).
struct Rich {
  static constexpr std::uint64_t kPriv = 0;       // 8 pages: 0..5 written, 6 read, 7 untouched
  static constexpr std::uint64_t kUntouched = 10; // 4 pages, never touched (no anon_vma)
  static constexpr std::uint64_t kShared = 16;    // 4 pages shared anonymous, 16..17 written
  static constexpr std::uint64_t kFileShared = 22;  // memfd pages 0..3, MAP_SHARED: 22..23 written
  static constexpr std::uint64_t kFilePriv = 28;  // memfd pages 4..7, MAP_PRIVATE: 28 read, 29 written
  static constexpr std::uint64_t kDontfork = 34;  // 4 pages written; 35..36 DONTFORK
  static constexpr std::uint64_t kWipe = 40;      // 4 pages written, WIPEONFORK
  static constexpr std::uint64_t kGuard = 46;     // 4 pages written, guard on 47
  static constexpr std::uint64_t kLocked = 52;    // 2 pages mlocked, written
  static constexpr std::uint64_t kSealed = 56;    // 2 pages sealed, untouched
  static constexpr std::uint64_t kGuardOnly = 60; // 2 pages untouched, guard on 61
  static constexpr std::uint64_t kSpan = 64;
};

unsigned char rich_byte(std::uint64_t page) { return static_cast<unsigned char>(0x80 + page); }

void make_rich(AddressSpace& as, int* fd_out) {
  auto map = [&](std::uint64_t page, std::uint64_t n, int flags, int fd = -1, std::uint64_t off = 0) {
    ASSERT_EQ(as.mmap(P(page), n * kPage, kRW, flags, fd, off), static_cast<long>(P(page))) << page;
  };
  ASSERT_NO_FATAL_FAILURE(map(Rich::kPriv, 8, kAnon));
  for (std::uint64_t p = 0; p < 6; ++p) ASSERT_NO_FATAL_FAILURE(fill(as, P(Rich::kPriv + p), rich_byte(Rich::kPriv + p)));
  ASSERT_EQ(byte_at(as, P(Rich::kPriv + 6)), 0);
  ASSERT_NO_FATAL_FAILURE(map(Rich::kUntouched, 4, kAnon));
  ASSERT_NO_FATAL_FAILURE(map(Rich::kShared, 4, kSharedAnon));
  for (std::uint64_t p = 0; p < 2; ++p) ASSERT_NO_FATAL_FAILURE(fill(as, P(Rich::kShared + p), rich_byte(Rich::kShared + p)));
  const int fd = as.memfd_create("rich");
  ASSERT_GE(fd, 0);
  *fd_out = fd;
  ASSERT_EQ(as.ftruncate(fd, 8 * kPage), 0);
  ASSERT_NO_FATAL_FAILURE(map(Rich::kFileShared, 4, MAP_SHARED | MAP_FIXED, fd, 0));
  for (std::uint64_t p = 0; p < 2; ++p)
    ASSERT_NO_FATAL_FAILURE(fill(as, P(Rich::kFileShared + p), rich_byte(Rich::kFileShared + p)));
  ASSERT_NO_FATAL_FAILURE(map(Rich::kFilePriv, 4, MAP_PRIVATE | MAP_FIXED, fd, 4 * kPage));
  ASSERT_EQ(byte_at(as, P(Rich::kFilePriv)), 0);
  ASSERT_NO_FATAL_FAILURE(fill(as, P(Rich::kFilePriv + 1), rich_byte(Rich::kFilePriv + 1)));
  ASSERT_NO_FATAL_FAILURE(map(Rich::kDontfork, 4, kAnon));
  for (std::uint64_t p = 0; p < 4; ++p) ASSERT_NO_FATAL_FAILURE(fill(as, P(Rich::kDontfork + p), rich_byte(Rich::kDontfork + p)));
  ASSERT_EQ(as.madvise(P(Rich::kDontfork + 1), 2 * kPage, MADV_DONTFORK), 0);
  ASSERT_NO_FATAL_FAILURE(map(Rich::kWipe, 4, kAnon));
  for (std::uint64_t p = 0; p < 4; ++p) ASSERT_NO_FATAL_FAILURE(fill(as, P(Rich::kWipe + p), rich_byte(Rich::kWipe + p)));
  ASSERT_EQ(as.madvise(P(Rich::kWipe), 4 * kPage, MADV_WIPEONFORK), 0);
  ASSERT_NO_FATAL_FAILURE(map(Rich::kGuard, 4, kAnon));
  for (std::uint64_t p = 0; p < 4; ++p) ASSERT_NO_FATAL_FAILURE(fill(as, P(Rich::kGuard + p), rich_byte(Rich::kGuard + p)));
  ASSERT_EQ(as.madvise(P(Rich::kGuard + 1), kPage, MADV_GUARD_INSTALL), 0);
  ASSERT_NO_FATAL_FAILURE(map(Rich::kLocked, 2, kAnon));
  ASSERT_EQ(as.mlock(P(Rich::kLocked), 2 * kPage), 0);
  for (std::uint64_t p = 0; p < 2; ++p) ASSERT_NO_FATAL_FAILURE(fill(as, P(Rich::kLocked + p), rich_byte(Rich::kLocked + p)));
  ASSERT_NO_FATAL_FAILURE(map(Rich::kSealed, 2, kAnon));
  ASSERT_EQ(as.mseal(P(Rich::kSealed), 2 * kPage), 0);
  ASSERT_NO_FATAL_FAILURE(map(Rich::kGuardOnly, 2, kAnon));
  ASSERT_EQ(as.madvise(P(Rich::kGuardOnly + 1), kPage, MADV_GUARD_INSTALL), 0);
  std::string why;
  ASSERT_TRUE(as.validate(&why)) << why;
}

// Every page of the rich layout as one string per page: "" unmapped, "G"
// a guard page, else the first byte and whether the whole page has it.
std::vector<std::string> contents(AddressSpace& as) {
  std::vector<std::string> v(Rich::kSpan);
  std::vector<unsigned char> buf(kPage);
  for (std::uint64_t p = 0; p < Rich::kSpan; ++p) {
    const AccessResult r = as.read(P(p), buf.data(), kPage);
    if (!r.ok()) {
      v[p] = r.fault == Fault::segv_maperr && mem::pte_is_guard(pte_at(as, P(p))) ? "G" : "";
      continue;
    }
    bool same = true;
    for (unsigned char c : buf) same = same && c == buf[0];
    v[p] = std::to_string(buf[0]) + (same ? "" : "+");
  }
  return v;
}

// What the child of a rich parent (not changed since make_rich) holds.
void expect_rich_child(AddressSpace& parent, AddressSpace& child) {
  std::vector<std::string> want = contents(parent);
  for (std::uint64_t p = Rich::kDontfork + 1; p < Rich::kDontfork + 3; ++p) want[p] = "";
  for (std::uint64_t p = Rich::kWipe; p < Rich::kWipe + 4; ++p) want[p] = "0";
  EXPECT_EQ(contents(child), want);
}

TEST_P(Fork, MapsCountsAndRssRightAfterFork) {
  AddressSpace parent(opts());
  int fd = -1;
  ASSERT_NO_FATAL_FAILURE(make_rich(parent, &fd));
  const std::uint64_t zp_extra = zero_page() ? 0 : 1;  // page 6's read allocated
  // Parent: priv 6 (+1), shared anon 2, shared file 2, private file 2 (the
  // file's page 4 read, a copy of page 5), dontfork 4, wipe 4, guard 3,
  // locked 2.
  EXPECT_EQ(parent.rss_pages(), 25 + zp_extra);
  const std::string parent_maps = parent.maps();
  const std::string parent_smaps = parent.smaps();
  const int parent_count = parent.map_count();
  // [kDontfork] [+1..+2 dontcopy] [+3]: 3 VMAs, one not copied.
  ASSERT_EQ(parent_count, 13);

  std::unique_ptr<AddressSpace> child = fork(parent);
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(parent.maps(), parent_maps);
  EXPECT_EQ(child->maps(), maps_without(parent_maps, {P(Rich::kDontfork + 1)}));
  EXPECT_EQ(child->map_count(), parent_count - 1);
  EXPECT_EQ(parent.map_count(), parent_count);
  // Copied page tables: the VMAs with anonymous memory (and guard
  // markers); shared and file pages come back through faults.  priv 6
  // (+1), private file 2, dontfork's two outer pages, guard 3, locked 2.
  EXPECT_EQ(child->rss_pages(), 15 + zp_extra);
  EXPECT_EQ(parent.rss_pages(), 25 + zp_extra);
  // The parent's figures change only in what sharing shows (Pss, Shared_,
  // Private_, and Locked:, which is a Pss): its maps lines and Rss, Size,
  // Anonymous, VmFlags do not.
  {
    std::istringstream a(parent_smaps), b(parent.smaps());
    std::string la, lb;
    while (std::getline(a, la) && std::getline(b, lb)) {
      for (const char* key : {"Size:", "Rss:", "Anonymous:", "VmFlags:"})
        if (la.compare(0, std::strlen(key), key) == 0) {
          EXPECT_EQ(lb, la);
        }
      if (la.find('-') == 12) {
        EXPECT_EQ(lb, la);
      }
    }
  }
  EXPECT_EQ(smaps_line(parent, P(Rich::kLocked), "Locked:"), "Locked:                4 kB") << "two pages, each shared";
  EXPECT_EQ(smaps_line(*child, P(Rich::kLocked), "Locked:"), "Locked:                0 kB");
  expect_rich_child(parent, *child);
  EXPECT_VALID(parent, "end");
  EXPECT_VALID(*child, "end");
}

// ---- teardown -------------------------------------------------------------------

// A family of spaces sharing one pool: a parent with one of everything,
// two children and a grandchild, written here and there, destroyed in
// each order.  Every frame (private copies, shared and file pages, the
// file's page cache) is back in the pool at the end, and each survivor
// stays valid and keeps its data as members go.
TEST_P(Fork, TeardownInAnyOrderReturnsEveryFrame) {
  enum Who { kParent, kChild1, kChild2, kGrand };
  const std::vector<std::vector<Who>> orders = {
      {kParent, kChild1, kChild2, kGrand},
      {kGrand, kChild2, kChild1, kParent},
      {kChild1, kParent, kGrand, kChild2},
      {kChild2, kGrand, kParent, kChild1},
  };
  for (const auto& order : orders) {
    SCOPED_TRACE(::testing::Message() << "order " << order[0] << order[1] << order[2] << order[3]);
    const std::uint64_t start = pool_->free_bytes();
    std::unique_ptr<AddressSpace> s[4];
    s[kParent] = std::make_unique<AddressSpace>(opts());
    int fd = -1;
    ASSERT_NO_FATAL_FAILURE(make_rich(*s[kParent], &fd));
    s[kChild1] = fork(*s[kParent]);
    ASSERT_NE(s[kChild1], nullptr);
    s[kChild2] = fork(*s[kParent]);
    ASSERT_NE(s[kChild2], nullptr);
    ASSERT_NO_FATAL_FAILURE(fill(*s[kChild1], P(Rich::kPriv), 0xc1));       // copies
    ASSERT_NO_FATAL_FAILURE(fill(*s[kChild1], P(Rich::kUntouched), 0xc1));  // new
    ASSERT_NO_FATAL_FAILURE(fill(*s[kChild1], P(Rich::kWipe), 0xc1));       // new in a wiped range
    s[kGrand] = fork(*s[kChild1]);
    ASSERT_NE(s[kGrand], nullptr);
    ASSERT_NO_FATAL_FAILURE(fill(*s[kGrand], P(Rich::kPriv + 1), 0xd1));
    ASSERT_NO_FATAL_FAILURE(fill(*s[kGrand], P(Rich::kFilePriv), 0xd1));
    ASSERT_NO_FATAL_FAILURE(fill(*s[kGrand], P(Rich::kShared + 2), 0xd1));  // a new shared page
    ASSERT_NO_FATAL_FAILURE(fill(*s[kParent], P(Rich::kPriv + 2), 0xa1));
    ASSERT_NO_FATAL_FAILURE(fill(*s[kParent], P(Rich::kFilePriv + 2), 0xa1));
    ASSERT_EQ(s[kChild2]->munmap(P(Rich::kPriv + 3), 2 * kPage), 0);
    ASSERT_NO_FATAL_FAILURE(fill(*s[kChild2], P(Rich::kFileShared + 3), 0xb1));  // a new file page
    const std::uint64_t pw = 0x1234;
    ASSERT_EQ(s[kChild2]->pwrite(fd, &pw, sizeof pw, 7 * kPage), static_cast<long>(sizeof pw));
    EXPECT_LT(pool_->free_bytes(), start);
    // What each member reads at a few places, to check after each exit.
    struct Seen {
      std::uint64_t va;
      int byte[4];
    };
    const std::vector<Seen> seen = {
        {P(Rich::kPriv), {rich_byte(Rich::kPriv), 0xc1, rich_byte(Rich::kPriv), 0xc1}},
        {P(Rich::kPriv + 1), {rich_byte(Rich::kPriv + 1), rich_byte(Rich::kPriv + 1), rich_byte(Rich::kPriv + 1), 0xd1}},
        {P(Rich::kPriv + 2), {0xa1, rich_byte(Rich::kPriv + 2), rich_byte(Rich::kPriv + 2), rich_byte(Rich::kPriv + 2)}},
        {P(Rich::kPriv + 4), {rich_byte(Rich::kPriv + 4), rich_byte(Rich::kPriv + 4), -1, rich_byte(Rich::kPriv + 4)}},
        {P(Rich::kShared + 2), {0xd1, 0xd1, 0xd1, 0xd1}},
        {P(Rich::kFileShared + 3), {0xb1, 0xb1, 0xb1, 0xb1}},
        {P(Rich::kFilePriv), {0, 0, 0, 0xd1}},
        {P(Rich::kFilePriv + 1), {rich_byte(Rich::kFilePriv + 1), rich_byte(Rich::kFilePriv + 1),
                                  rich_byte(Rich::kFilePriv + 1), rich_byte(Rich::kFilePriv + 1)}},
        {P(Rich::kWipe), {rich_byte(Rich::kWipe), 0xc1, 0, 0}},
        {P(Rich::kUntouched), {0, 0xc1, 0, 0xc1}},
    };
    auto check_all = [&](const char* when) {
      for (int w = 0; w < 4; ++w) {
        if (s[w] == nullptr) continue;
        EXPECT_VALID(*s[w], std::string(when) + ", member " + std::to_string(w));
        for (const Seen& x : seen)
          EXPECT_EQ(byte_at(*s[w], x.va), x.byte[w]) << when << ", member " << w << " at " << std::hex << x.va;
      }
    };
    check_all("all alive");
    for (Who w : order) {
      s[w].reset();
      check_all("after an exit");
    }
    pool_->internal()->drain_deferred();
    EXPECT_EQ(pool_->free_bytes(), start) << "frames leaked: " << (start - pool_->free_bytes()) / kPage;
  }
}

// ---- fork failing ---------------------------------------------------------------

// Everything fork may allocate (the child's VMAs, anon_vmas, reverse-map
// links, tree nodes, page tables) fails in turn: allocation N alone, then
// every allocation from N on.  Each failed fork returns nullptr with
// -ENOMEM and leaves the parent exactly as it was (maps, smaps, contents,
// rss, map_count, commit charge, locked_vm, validate) with no frame taken;
// afterwards the parent's writes to its write-protected pages reuse them
// (the failed child is gone).  The sweep ends at the first N that no
// allocation reaches: that fork succeeds and gives the full child.
TEST_P(Fork, FailingForkLeavesTheParentAsItWas) {
  if (!fail_nth::armed()) GTEST_SKIP() << "allocation-failure injection is compiled out of release builds";
  AddressSpace parent(opts());
  int fd = -1;
  ASSERT_NO_FATAL_FAILURE(make_rich(parent, &fd));
  const std::vector<std::string> data = contents(parent);  // faults in what reads fault in
  const std::string maps = parent.maps();
  const std::string smaps = parent.smaps();
  const std::uint64_t rss = parent.rss_pages();
  const int count = parent.map_count();
  const std::int64_t committed = parent.mm()->vm_committed->load();
  const std::uint64_t locked = parent.mm()->locked_vm;
  const std::uint64_t free_before = pool_->free_bytes();

  for (std::uint64_t burst : {std::uint64_t{1}, ~std::uint64_t{0}}) {
    std::uint64_t failed_forks = 0;
    bool succeeded = false;
    for (std::uint64_t nth = 1; nth < 10000 && !succeeded; ++nth) {
      const std::string where = "N=" + std::to_string(nth) + (burst == 1 ? " alone" : " onwards");
      int err = 1;
      std::unique_ptr<AddressSpace> child;
      std::uint64_t failures = 0;
      {
        fail_nth::Scope inject(nth, burst);
        child = parent.fork(&err);
        failures = fail_nth::failures();
      }
      if (failures == 0) {
        // No allocation was failed: the fork must have succeeded.
        ASSERT_NE(child, nullptr) << where << ": fork failed without an injected failure, err " << err;
        EXPECT_EQ(err, 0) << where;
        succeeded = true;
        EXPECT_GT(nth, 1u) << "fork allocated nothing";
        EXPECT_VALID(*child, where);
        expect_rich_child(parent, *child);
        EXPECT_EQ(child->maps(), maps_without(maps, {P(Rich::kDontfork + 1)})) << where;
        EXPECT_EQ(parent.maps(), maps) << where;
        EXPECT_VALID(parent, where);
        continue;
      }
      ASSERT_EQ(child, nullptr) << where << ": fork succeeded despite a failed allocation ("
                                << fail_nth::site_name(fail_nth::last_failed_site()) << ")";
      ++failed_forks;
      EXPECT_EQ(err, -ENOMEM) << where;
      std::string why;
      ASSERT_TRUE(parent.validate(&why)) << where << ": " << why;
      EXPECT_EQ(parent.maps(), maps) << where;
      EXPECT_EQ(parent.smaps(), smaps) << where;
      EXPECT_EQ(parent.rss_pages(), rss) << where;
      EXPECT_EQ(parent.map_count(), count) << where;
      EXPECT_EQ(parent.mm()->vm_committed->load(), committed) << where << ": commit charge";
      EXPECT_EQ(parent.mm()->locked_vm, locked) << where;
      EXPECT_EQ(pool_->free_bytes(), free_before) << where << ": frames taken";
      EXPECT_EQ(contents(parent), data) << where;
      // Written pages are the parent's alone again: a write reuses them.
      ASSERT_NO_FATAL_FAILURE(fill(parent, P(Rich::kPriv), rich_byte(Rich::kPriv)));
      ASSERT_NO_FATAL_FAILURE(fill(parent, P(Rich::kFilePriv + 1), rich_byte(Rich::kFilePriv + 1)));
      EXPECT_EQ(pool_->free_bytes(), free_before) << where << ": a write after the failed fork copied";
      if (::testing::Test::HasFailure()) {
        ADD_FAILURE() << "stopped at " << where;
        return;
      }
    }
    EXPECT_TRUE(succeeded) << "fork never succeeded";
    EXPECT_GT(failed_forks, 5u) << "fork should fail at several allocations";
    std::printf("burst %s: fork failed at %llu allocations\n", burst == 1 ? "1" : "all",
                static_cast<unsigned long long>(failed_forks));
  }
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, Fork, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace
