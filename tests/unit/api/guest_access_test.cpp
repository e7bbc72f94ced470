// The emulator-grade guest access API (issue 17): instruction fetches with
// x86-64 NX semantics, on the fault path and in the lockless translation
// (the PTE's NX bit kept in step by mprotect and fork); exact fault
// addresses and byte counts; atomics on guest memory (widths, alignment,
// faults as the CPU takes them, atomicity across threads and spaces, copy
// on write); futex keys.  One test runs the same instruction fetches on
// the host kernel, in a forked child, and compares.
#include <gtest/gtest.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kBase = 0x10000000;
constexpr int kAnon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
constexpr int kRW = PROT_READ | PROT_WRITE;

AddressSpaceOptions opts(LockMode mode, bool exec_only_pkey = false) {
  AddressSpaceOptions o;
  o.mode = mode;
  o.phys_bytes = 16ull << 20;
  o.exec_only_pkey = exec_only_pkey;
  return o;
}

class GuestAccess : public ::testing::TestWithParam<LockMode> {
 protected:
  AddressSpaceOptions o(bool exec_only_pkey = false) const { return opts(GetParam(), exec_only_pkey); }
};

bool resident(AddressSpace& as, std::uint64_t va) {
  unsigned char v = 0;
  EXPECT_EQ(as.mincore(va & ~(kPage - 1), kPage, &v), 0);
  return v != 0;
}

void* translate(AddressSpace& as, std::uint64_t va, AccessKind k) {
  AddressSpace::AccessScope scope(as);
  return scope.translate(va, k);
}

// ---- instruction fetch ------------------------------------------------------

struct ExecCase {
  const char* name;
  int prot;  // -1: unmapped
  bool pkey;
  Fault fetch, read;
};

// Linux x86-64 with NX: a fetch needs PROT_EXEC; a read any of R/W/X
// unless PROT_EXEC alone got the execute-only key; pkeys never stop
// fetches.
TEST_P(GuestAccess, FetchByProtection) {
  const ExecCase cases[] = {
      {"r--", PROT_READ, false, Fault::segv_accerr, Fault::none},
      {"rw-", kRW, false, Fault::segv_accerr, Fault::none},
      {"r-x", PROT_READ | PROT_EXEC, false, Fault::none, Fault::none},
      {"rwx", kRW | PROT_EXEC, false, Fault::none, Fault::none},
      {"--x", PROT_EXEC, false, Fault::none, Fault::none},
      {"--x pkey", PROT_EXEC, true, Fault::none, Fault::segv_accerr},
      {"-w-", PROT_WRITE, false, Fault::segv_accerr, Fault::none},
      {"---", PROT_NONE, false, Fault::segv_accerr, Fault::segv_accerr},
      {"unmapped", -1, false, Fault::segv_maperr, Fault::segv_maperr},
  };
  for (const ExecCase& c : cases) {
    SCOPED_TRACE(c.name);
    AddressSpace as(o(c.pkey));
    if (c.prot >= 0) {
      ASSERT_EQ(as.mmap(kBase, 2 * kPage, c.prot, kAnon), static_cast<long>(kBase));
    }
    unsigned char buf[8];
    std::memset(buf, 0xee, sizeof buf);
    const std::uint64_t va = kBase + kPage - 3;  // crossing into the second page
    AccessResult r = as.fetch(va, buf, 6);
    EXPECT_EQ(r.fault, c.fetch);
    if (c.fetch == Fault::none) {
      EXPECT_EQ(r.addr, 0u);
      EXPECT_EQ(r.done, 6u);
      EXPECT_EQ(buf[0], 0);  // never-written anonymous memory reads zero
      EXPECT_NE(translate(as, kBase, AccessKind::exec), nullptr);
      EXPECT_NE(translate(as, kBase + kPage, AccessKind::exec), nullptr);
    } else {
      EXPECT_EQ(r.addr, va);  // the fetch's first byte
      EXPECT_EQ(r.done, 0u);
      EXPECT_EQ(buf[0], 0xee);
      EXPECT_EQ(translate(as, kBase, AccessKind::exec), nullptr);
    }
    EXPECT_EQ(as.fault_in(va, AccessKind::exec), c.fetch);
    // x86: a fetch from an accessible VMA without VM_EXEC faults the page
    // in (as a read) before the NX protection fault: it is resident after.
    if (c.prot > 0) {
      EXPECT_TRUE(resident(as, va));
    }
    if (c.prot == PROT_NONE) {
      EXPECT_FALSE(resident(as, va));
    }
    EXPECT_EQ(as.read(va, buf, 6).fault, c.read);
    // An execute-only page is fetchable and yet not readable, also on the
    // lockless path (no data-access bit in its PTE).
    if (c.pkey) {
      EXPECT_EQ(translate(as, kBase, AccessKind::read), nullptr);
      EXPECT_NE(translate(as, kBase, AccessKind::exec), nullptr);
      EXPECT_TRUE(as.fetch(kBase, buf, 1).ok());
      EXPECT_EQ(translate(as, kBase, AccessKind::read), nullptr);  // the fetch did not make it readable
    }
    std::string why;
    EXPECT_TRUE(as.validate(&why)) << why;
  }
}

// mprotect changes what the lockless path allows at once: adding PROT_EXEC
// makes present pages fetchable without a fault, removing it makes
// translate(va, exec) fail before mprotect returns.
TEST_P(GuestAccess, MprotectFollowsExec) {
  AddressSpace as(o());
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, kAnon), static_cast<long>(kBase));
  const unsigned char code[4] = {0x90, 0x90, 0x0f, 0x0b};
  ASSERT_TRUE(as.write(kBase + kPage + 100, code, 4).ok());
  EXPECT_NE(translate(as, kBase + kPage, AccessKind::read), nullptr);
  EXPECT_EQ(translate(as, kBase + kPage, AccessKind::exec), nullptr);

  ASSERT_EQ(as.mprotect(kBase + kPage, kPage, PROT_READ | PROT_EXEC), 0);
  const std::uint64_t faults = as.vm_stat(VmStat::pgfault);
  auto* p = static_cast<unsigned char*>(translate(as, kBase + kPage + 100, AccessKind::exec));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p[2], 0x0f);
  EXPECT_EQ(translate(as, kBase + kPage, AccessKind::write), nullptr);
  unsigned char buf[4] = {};
  ASSERT_TRUE(as.fetch(kBase + kPage + 100, buf, 4).ok());
  EXPECT_EQ(std::memcmp(buf, code, 4), 0);
  EXPECT_EQ(as.vm_stat(VmStat::pgfault), faults);  // no fault was needed

  ASSERT_EQ(as.mprotect(kBase + kPage, kPage, PROT_READ), 0);
  EXPECT_EQ(translate(as, kBase + kPage + 100, AccessKind::exec), nullptr);
  EXPECT_NE(translate(as, kBase + kPage + 100, AccessKind::read), nullptr);
  AccessResult r = as.fetch(kBase + kPage + 100, buf, 4);
  EXPECT_EQ(r.fault, Fault::segv_accerr);
  EXPECT_EQ(r.addr, kBase + kPage + 100);

  // PROT_NONE and back: the frame is kept, neither readable nor fetchable.
  ASSERT_EQ(as.mprotect(kBase + kPage, kPage, PROT_EXEC | PROT_READ), 0);
  ASSERT_EQ(as.mprotect(kBase + kPage, kPage, PROT_NONE), 0);
  EXPECT_EQ(translate(as, kBase + kPage, AccessKind::exec), nullptr);
  EXPECT_EQ(translate(as, kBase + kPage, AccessKind::read), nullptr);
  ASSERT_EQ(as.mprotect(kBase + kPage, kPage, PROT_EXEC), 0);
  EXPECT_NE(translate(as, kBase + kPage, AccessKind::exec), nullptr);
  EXPECT_NE(translate(as, kBase + kPage, AccessKind::read), nullptr);  // no pkey: readable

  // A writable and executable page: all three.
  ASSERT_EQ(as.mprotect(kBase + kPage, kPage, kRW | PROT_EXEC), 0);
  ASSERT_TRUE(as.fault_in(kBase + kPage, AccessKind::write) == Fault::none);
  EXPECT_NE(translate(as, kBase + kPage, AccessKind::write), nullptr);
  EXPECT_NE(translate(as, kBase + kPage, AccessKind::exec), nullptr);
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

// With execute-only keys, mprotect to PROT_EXEC takes the data-access bit
// but leaves the page fetchable; back to r-x makes it readable again.
TEST_P(GuestAccess, ExecOnlyKeyAfterTheFact) {
  AddressSpace as(o(/*exec_only_pkey=*/true));
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, kAnon), static_cast<long>(kBase));
  ASSERT_TRUE(as.fill(kBase, 0xc3, 16).ok());
  ASSERT_EQ(as.mprotect(kBase, kPage, PROT_EXEC), 0);
  EXPECT_EQ(translate(as, kBase, AccessKind::read), nullptr);
  EXPECT_NE(translate(as, kBase, AccessKind::exec), nullptr);
  unsigned char b = 0;
  EXPECT_EQ(as.read(kBase, &b, 1).fault, Fault::segv_accerr);
  ASSERT_TRUE(as.fetch(kBase + 3, &b, 1).ok());
  EXPECT_EQ(b, 0xc3);
  ASSERT_EQ(as.mprotect(kBase, kPage, PROT_READ | PROT_EXEC), 0);
  EXPECT_NE(translate(as, kBase, AccessKind::read), nullptr);
}

// fork copies PTEs with their NX bit: the child's lockless path refuses a
// fetch from its copy of non-executable memory and allows it from
// executable memory, without faulting.
TEST_P(GuestAccess, ForkKeepsNx) {
  AddressSpace as(o());
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, kAnon), static_cast<long>(kBase));
  ASSERT_EQ(as.mmap(kBase + kPage, kPage, kRW | PROT_EXEC, kAnon), static_cast<long>(kBase + kPage));
  ASSERT_TRUE(as.fill(kBase, 1, 2 * kPage).ok());
  ASSERT_EQ(as.mprotect(kBase + kPage, kPage, PROT_READ | PROT_EXEC), 0);
  int err = 0;
  std::unique_ptr<AddressSpace> child = as.fork(&err);
  ASSERT_NE(child, nullptr) << err;
  EXPECT_NE(translate(*child, kBase, AccessKind::read), nullptr);
  EXPECT_EQ(translate(*child, kBase, AccessKind::exec), nullptr);
  EXPECT_NE(translate(*child, kBase + kPage, AccessKind::exec), nullptr);
  unsigned char b = 0;
  EXPECT_EQ(child->fetch(kBase, &b, 1).fault, Fault::segv_accerr);
  EXPECT_TRUE(child->fetch(kBase + kPage, &b, 1).ok());
  EXPECT_EQ(b, 1);
  // The parent's PTEs kept theirs too (fork write-protected them only).
  EXPECT_EQ(translate(as, kBase, AccessKind::exec), nullptr);
  EXPECT_NE(translate(as, kBase + kPage, AccessKind::exec), nullptr);
  // A copy-on-write copy of a non-executable page stays non-executable.
  ASSERT_TRUE(child->fill(kBase, 2, 1).ok());
  EXPECT_EQ(translate(*child, kBase, AccessKind::exec), nullptr);
  EXPECT_NE(translate(*child, kBase, AccessKind::write), nullptr);
}

// File pages: a shared mapping without PROT_EXEC is not fetchable, a
// private r-x one is, and a copy-on-write copy in an rwx mapping too.
TEST_P(GuestAccess, FetchFromFiles) {
  AddressSpace as(o());
  const int fd = as.memfd_create("code");
  ASSERT_GE(fd, 0);
  ASSERT_EQ(as.ftruncate(fd, 2 * kPage), 0);
  const unsigned char ret = 0xc3;
  ASSERT_EQ(as.pwrite(fd, &ret, 1, 10), 1);
  ASSERT_EQ(as.mmap(kBase, 2 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  ASSERT_EQ(as.mmap(kBase + 4 * kPage, 2 * kPage, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_FIXED, fd, 0),
            static_cast<long>(kBase + 4 * kPage));
  ASSERT_EQ(as.mmap(kBase + 8 * kPage, 2 * kPage, kRW | PROT_EXEC, MAP_PRIVATE | MAP_FIXED, fd, 0),
            static_cast<long>(kBase + 8 * kPage));
  unsigned char b = 0;
  EXPECT_EQ(as.fetch(kBase + 10, &b, 1).fault, Fault::segv_accerr);
  ASSERT_TRUE(as.fetch(kBase + 4 * kPage + 10, &b, 1).ok());
  EXPECT_EQ(b, 0xc3);
  // The file's page is mapped as the VMA says: not NX.
  EXPECT_NE(translate(as, kBase + 4 * kPage, AccessKind::exec), nullptr);
  ASSERT_TRUE(as.fill(kBase + 8 * kPage + 11, 0x90, 1).ok());  // a private copy
  ASSERT_TRUE(as.fetch(kBase + 8 * kPage + 10, &b, 1).ok());
  EXPECT_EQ(b, 0xc3);
  EXPECT_NE(translate(as, kBase + 8 * kPage, AccessKind::exec), nullptr);
  EXPECT_NE(translate(as, kBase + 8 * kPage, AccessKind::write), nullptr);
  // Past the end of the file: SIGBUS comes before NX.
  ASSERT_EQ(as.ftruncate(fd, kPage), 0);
  EXPECT_EQ(as.fetch(kBase + kPage, &b, 1).fault, Fault::sigbus);
  EXPECT_EQ(as.fetch(kBase + 5 * kPage, &b, 1).fault, Fault::sigbus);
}

// ---- exact fault addresses ----------------------------------------------------

TEST_P(GuestAccess, ExactFaultAddressAndBytesDone) {
  AddressSpace as(o());
  ASSERT_EQ(as.mmap(kBase, 2 * kPage, kRW, kAnon), static_cast<long>(kBase));
  ASSERT_EQ(as.mmap(kBase + 2 * kPage, kPage, PROT_READ, kAnon), static_cast<long>(kBase + 2 * kPage));
  std::vector<unsigned char> src(3 * kPage);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<unsigned char>(i * 7 + 1);

  // A write crossing from rw- into r--: stops at the read-only page's first
  // byte, having written the bytes before it.
  const std::uint64_t va = kBase + kPage + 1000;
  AccessResult r = as.write(va, src.data(), 2 * kPage);
  EXPECT_EQ(r.fault, Fault::segv_accerr);
  EXPECT_EQ(r.addr, kBase + 2 * kPage);
  EXPECT_EQ(r.done, kPage - 1000);
  std::vector<unsigned char> back(kPage - 1000);
  ASSERT_TRUE(as.read(va, back.data(), back.size()).ok());
  EXPECT_EQ(std::memcmp(back.data(), src.data(), back.size()), 0);

  // A read crossing into the hole after the r-- page, from mid-page.
  std::vector<unsigned char> dst(3 * kPage, 0xee);
  r = as.read(kBase + 5, dst.data(), 3 * kPage);
  EXPECT_EQ(r.fault, Fault::segv_maperr);
  EXPECT_EQ(r.addr, kBase + 3 * kPage);
  EXPECT_EQ(r.done, 3 * kPage - 5);
  EXPECT_EQ(dst[3 * kPage - 5], 0xee);  // untouched past what was done

  // Starting inside the faulting page: the first byte itself, nothing done.
  r = as.fill(kBase + 2 * kPage + 77, 1, 10);
  EXPECT_EQ(r.fault, Fault::segv_accerr);
  EXPECT_EQ(r.addr, kBase + 2 * kPage + 77);
  EXPECT_EQ(r.done, 0u);
  r = as.read(kBase + 3 * kPage + 4095, dst.data(), 1);
  EXPECT_EQ(r.fault, Fault::segv_maperr);
  EXPECT_EQ(r.addr, kBase + 3 * kPage + 4095);

  // Success: addr 0, done n (also for n == 0).
  r = as.read(kBase + 3, dst.data(), 2 * kPage);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.addr, 0u);
  EXPECT_EQ(r.done, 2 * kPage);
  r = as.write(kBase + 3 * kPage, src.data(), 0);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.done, 0u);
}

// ---- atomics ------------------------------------------------------------------

TEST_P(GuestAccess, AtomicsOfEachSize) {
  AddressSpace as(o());
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, kAnon), static_cast<long>(kBase));
  for (unsigned size : {1u, 2u, 4u, 8u}) {
    SCOPED_TRACE(size);
    const std::uint64_t mask = size == 8 ? ~std::uint64_t{0} : (std::uint64_t{1} << (8 * size)) - 1;
    const std::uint64_t va = kBase + 64 * size;
    ASSERT_TRUE(as.fill(va - 8, 0xaa, size + 16).ok());
    // Wider bits of the input are ignored; the neighbours are untouched.
    AccessResult r = as.atomic_store(va, size, 0x1122334455667788ull);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.addr, 0u);
    EXPECT_EQ(r.done, size);
    unsigned char bytes[8] = {};
    ASSERT_TRUE(as.read(va, bytes, size).ok());
    EXPECT_EQ(bytes[0], 0x88);  // little-endian
    unsigned char edge[2] = {};
    ASSERT_TRUE(as.read(va - 1, &edge[0], 1).ok());
    ASSERT_TRUE(as.read(va + size, &edge[1], 1).ok());
    EXPECT_EQ(edge[0], 0xaa);
    EXPECT_EQ(edge[1], 0xaa);
    std::uint64_t v = 0xdead;
    ASSERT_TRUE(as.atomic_load(va, size, &v).ok());
    EXPECT_EQ(v, 0x1122334455667788ull & mask);  // zero-extended
    // Guest bytes in, little-endian value out.
    const unsigned char le[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ASSERT_TRUE(as.write(va, le, size).ok());
    ASSERT_TRUE(as.atomic_load(va, size, &v).ok());
    EXPECT_EQ(v, 0x0807060504030201ull & mask);

    std::uint64_t old = 0;
    ASSERT_TRUE(as.atomic_exchange(va, size, 0x42, &old).ok());
    EXPECT_EQ(old, 0x0807060504030201ull & mask);
    ASSERT_TRUE(as.atomic_fetch_add(va, size, 5, &old).ok());
    EXPECT_EQ(old, 0x42u);
    ASSERT_TRUE(as.atomic_load(va, size, &v).ok());
    EXPECT_EQ(v, 0x47u);
    // Wraps at the width.
    ASSERT_TRUE(as.atomic_store(va, size, mask).ok());
    ASSERT_TRUE(as.atomic_fetch_add(va, size, 2, &old).ok());
    EXPECT_EQ(old, mask);
    ASSERT_TRUE(as.atomic_load(va, size, &v).ok());
    EXPECT_EQ(v, 1u);
    ASSERT_TRUE(as.atomic_fetch_add(va, size, ~std::uint64_t{0}, nullptr).ok());  // - 1
    ASSERT_TRUE(as.atomic_load(va, size, &v).ok());
    EXPECT_EQ(v, 0u);

    // compare-exchange: success stores, failure reports what it found.
    std::uint64_t expected = 0;
    bool success = false;
    ASSERT_TRUE(as.atomic_compare_exchange(va, size, &expected, 0x77, &success).ok());
    EXPECT_TRUE(success);
    EXPECT_EQ(expected, 0u);
    expected = 0x12;
    ASSERT_TRUE(as.atomic_compare_exchange(va, size, &expected, 0x99, &success).ok());
    EXPECT_FALSE(success);
    EXPECT_EQ(expected, 0x77u);
    ASSERT_TRUE(as.atomic_load(va, size, &v).ok());
    EXPECT_EQ(v, 0x77u);
    // The comparison is at the width too (wider bits of *expected ignored).
    expected = 0x77 | ~mask;
    ASSERT_TRUE(as.atomic_compare_exchange(va, size, &expected, 0x66, &success).ok());
    EXPECT_TRUE(success);
    EXPECT_EQ(expected, 0x77 | ~mask);  // untouched on success
  }
}

TEST_P(GuestAccess, AtomicAlignmentAndSize) {
  AddressSpace as(o());
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, kAnon), static_cast<long>(kBase));
  ASSERT_TRUE(as.fill(kBase, 0x5a, 64).ok());
  for (unsigned size : {2u, 4u, 8u}) {
    for (std::uint64_t off = 1; off < size; ++off) {
      SCOPED_TRACE(size * 100 + off);
      const std::uint64_t va = kBase + 16 + off;
      std::uint64_t v = 0xdead, expected = 0x5a5a, old = 0xdead;
      bool success = true;
      for (const AccessResult& r :
           {as.atomic_load(va, size, &v), as.atomic_store(va, size, 1), as.atomic_exchange(va, size, 1, &old),
            as.atomic_compare_exchange(va, size, &expected, 1, &success), as.atomic_fetch_add(va, size, 1, &old)}) {
        EXPECT_EQ(r.fault, Fault::sigbus);
        EXPECT_EQ(r.addr, va);
        EXPECT_EQ(r.done, 0u);
      }
      EXPECT_EQ(v, 0xdeadu);
      EXPECT_EQ(old, 0xdeadu);
      EXPECT_EQ(expected, 0x5a5au);
      EXPECT_TRUE(success);
    }
  }
  // Alignment is checked before the mapping: unmapped and misaligned is SIGBUS.
  EXPECT_EQ(as.atomic_store(kBase + 3 * kPage + 2, 4, 1).fault, Fault::sigbus);
  unsigned char b[64];
  ASSERT_TRUE(as.read(kBase, b, 64).ok());
  for (unsigned char x : b) EXPECT_EQ(x, 0x5a);
  std::uint64_t v = 0;
  for (unsigned size : {0u, 3u, 5u, 16u}) {
    EXPECT_THROW(as.atomic_load(kBase, size, &v), std::invalid_argument) << size;
    EXPECT_THROW(as.atomic_store(kBase, size, 1), std::invalid_argument) << size;
  }
  // One byte: any address.
  ASSERT_TRUE(as.atomic_store(kBase + 7, 1, 0x100 + 9).ok());
  ASSERT_TRUE(as.atomic_load(kBase + 7, 1, &v).ok());
  EXPECT_EQ(v, 9u);
}

// Faults as the CPU takes them: loads read-fault, everything else
// write-faults (a failing compare-exchange too); nothing changes on a
// fault.
TEST_P(GuestAccess, AtomicFaults) {
  AddressSpace as(o());
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, kAnon), static_cast<long>(kBase));
  ASSERT_TRUE(as.atomic_store(kBase + 8, 8, 0x1234).ok());
  ASSERT_EQ(as.mprotect(kBase, kPage, PROT_READ), 0);
  std::uint64_t v = 0;
  AccessResult r = as.atomic_load(kBase + 8, 8, &v);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(v, 0x1234u);
  std::uint64_t old = 0xdead, expected = 0x1, expected_match = 0x1234;
  bool success = true;
  for (const AccessResult& f :
       {as.atomic_store(kBase + 8, 8, 1), as.atomic_exchange(kBase + 8, 8, 1, &old),
        as.atomic_compare_exchange(kBase + 8, 8, &expected, 2, &success),
        as.atomic_compare_exchange(kBase + 8, 8, &expected_match, 2, &success),
        as.atomic_fetch_add(kBase + 8, 8, 1, &old)}) {
    EXPECT_EQ(f.fault, Fault::segv_accerr);
    EXPECT_EQ(f.addr, kBase + 8);
    EXPECT_EQ(f.done, 0u);
  }
  EXPECT_EQ(old, 0xdeadu);
  EXPECT_EQ(expected, 0x1u);
  EXPECT_TRUE(success);
  ASSERT_TRUE(as.atomic_load(kBase + 8, 8, &v).ok());
  EXPECT_EQ(v, 0x1234u);

  // Unmapped: SEGV_MAPERR for all of them, the load too.
  const std::uint64_t hole = kBase + 4 * kPage + 16;
  EXPECT_EQ(as.atomic_load(hole, 4, &v).fault, Fault::segv_maperr);
  EXPECT_EQ(as.atomic_load(hole, 4, &v).addr, hole);
  EXPECT_EQ(as.atomic_store(hole, 4, 1).fault, Fault::segv_maperr);
  EXPECT_EQ(as.atomic_fetch_add(hole, 4, 1, &old).fault, Fault::segv_maperr);
  // PROT_NONE: even the load.
  ASSERT_EQ(as.mprotect(kBase, kPage, PROT_NONE), 0);
  EXPECT_EQ(as.atomic_load(kBase + 8, 8, &v).fault, Fault::segv_accerr);
  // Execute-only memory is readable without protection keys.
  ASSERT_EQ(as.mprotect(kBase, kPage, PROT_EXEC), 0);
  EXPECT_TRUE(as.atomic_load(kBase + 8, 8, &v).ok());
}

// A failing compare-exchange write-faults as the CPU's CMPXCHG does: on
// never-touched private memory it allocates a page (a load maps the shared
// zero page, which is not counted).
TEST_P(GuestAccess, FailingCompareExchangeWriteFaults) {
  AddressSpaceOptions opt = o();
  opt.zero_page = true;
  AddressSpace as(opt);
  ASSERT_EQ(as.mmap(kBase, 2 * kPage, kRW, kAnon), static_cast<long>(kBase));
  std::uint64_t v = 1;
  ASSERT_TRUE(as.atomic_load(kBase, 4, &v).ok());
  EXPECT_EQ(v, 0u);
  EXPECT_EQ(as.rss_pages(), 0u);  // the zero page
  EXPECT_EQ(translate(as, kBase, AccessKind::write), nullptr);
  std::uint64_t expected = 5;
  bool success = true;
  ASSERT_TRUE(as.atomic_compare_exchange(kBase + kPage, 4, &expected, 6, &success).ok());
  EXPECT_FALSE(success);
  EXPECT_EQ(expected, 0u);
  EXPECT_EQ(as.rss_pages(), 1u);
  EXPECT_NE(translate(as, kBase + kPage, AccessKind::write), nullptr);
  // And it dirtied the PTE as a write does (smaps Private_Dirty).
  EXPECT_NE(as.smaps().find("Private_Dirty:         4 kB"), std::string::npos) << as.smaps();
}

TEST_P(GuestAccess, ConcurrentFetchAddIsExact) {
  AddressSpace as(o());
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, kAnon), static_cast<long>(kBase));
  constexpr int kIters = 20000;
  auto worker = [&] {
    for (int i = 0; i < kIters; ++i) {
      ASSERT_TRUE(as.atomic_fetch_add(kBase + 8, 8, 1, nullptr).ok());
      ASSERT_TRUE(as.atomic_fetch_add(kBase + 20, 2, 3, nullptr).ok());
    }
  };
  std::thread t1(worker), t2(worker);
  t1.join();
  t2.join();
  std::uint64_t v = 0;
  ASSERT_TRUE(as.atomic_load(kBase + 8, 8, &v).ok());
  EXPECT_EQ(v, 2u * kIters);
  ASSERT_TRUE(as.atomic_load(kBase + 20, 2, &v).ok());
  EXPECT_EQ(v, (2u * 3 * kIters) & 0xffff);
}

// One memfd mapped twice (at different offsets), and shared anonymous
// memory across fork: an atomic through one mapping is seen through the
// other, and concurrent fetch_adds through both spaces add up exactly.
TEST_P(GuestAccess, AtomicsOnSharedMemory) {
  AddressSpace as(o());
  const int fd = as.memfd_create("shared");
  ASSERT_GE(fd, 0);
  ASSERT_EQ(as.ftruncate(fd, 2 * kPage), 0);
  ASSERT_EQ(as.mmap(kBase, 2 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  ASSERT_EQ(as.mmap(kBase + 8 * kPage, kPage, kRW, MAP_SHARED | MAP_FIXED, fd, kPage),
            static_cast<long>(kBase + 8 * kPage));
  ASSERT_TRUE(as.atomic_store(kBase + kPage + 40, 4, 0xabcdef01).ok());
  std::uint64_t v = 0;
  ASSERT_TRUE(as.atomic_load(kBase + 8 * kPage + 40, 4, &v).ok());
  EXPECT_EQ(v, 0xabcdef01u);
  std::uint64_t expected = 0xabcdef01;
  bool success = false;
  ASSERT_TRUE(as.atomic_compare_exchange(kBase + 8 * kPage + 40, 4, &expected, 7, &success).ok());
  EXPECT_TRUE(success);
  ASSERT_TRUE(as.atomic_load(kBase + kPage + 40, 4, &v).ok());
  EXPECT_EQ(v, 7u);

  ASSERT_EQ(as.mmap(kBase + 16 * kPage, kPage, kRW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED),
            static_cast<long>(kBase + 16 * kPage));
  const std::uint64_t word = kBase + 16 * kPage + 64;
  ASSERT_TRUE(as.atomic_store(word, 8, 100).ok());
  int err = 0;
  std::unique_ptr<AddressSpace> child = as.fork(&err);
  ASSERT_NE(child, nullptr) << err;
  ASSERT_TRUE(child->atomic_load(word, 8, &v).ok());
  EXPECT_EQ(v, 100u);
  constexpr int kIters = 10000;
  std::thread tp([&] {
    for (int i = 0; i < kIters; ++i) ASSERT_TRUE(as.atomic_fetch_add(word, 8, 1, nullptr).ok());
  });
  std::thread tc([&] {
    for (int i = 0; i < kIters; ++i) ASSERT_TRUE(child->atomic_fetch_add(word, 8, 2, nullptr).ok());
  });
  tp.join();
  tc.join();
  ASSERT_TRUE(as.atomic_load(word, 8, &v).ok());
  EXPECT_EQ(v, 100u + 3u * kIters);
  ASSERT_TRUE(child->atomic_load(word, 8, &v).ok());
  EXPECT_EQ(v, 100u + 3u * kIters);
  // The memfd's mappings are shared with the child too.
  ASSERT_TRUE(child->atomic_fetch_add(kBase + 8 * kPage + 40, 4, 1, nullptr).ok());
  ASSERT_TRUE(as.atomic_load(kBase + kPage + 40, 4, &v).ok());
  EXPECT_EQ(v, 8u);
}

// Private memory shared copy-on-write with a fork child: an atomic write
// on either side copies first; the other side keeps its value.
TEST_P(GuestAccess, AtomicsCopyOnWrite) {
  AddressSpace as(o());
  ASSERT_EQ(as.mmap(kBase, 2 * kPage, kRW, kAnon), static_cast<long>(kBase));
  ASSERT_TRUE(as.atomic_store(kBase + 8, 8, 11).ok());
  ASSERT_TRUE(as.atomic_store(kBase + kPage + 8, 8, 22).ok());
  int err = 0;
  std::unique_ptr<AddressSpace> child = as.fork(&err);
  ASSERT_NE(child, nullptr) << err;
  std::uint64_t v = 0, old = 0;
  ASSERT_TRUE(as.atomic_store(kBase + 8, 8, 12).ok());
  ASSERT_TRUE(child->atomic_load(kBase + 8, 8, &v).ok());
  EXPECT_EQ(v, 11u);
  ASSERT_TRUE(child->atomic_fetch_add(kBase + kPage + 8, 8, 1, &old).ok());
  EXPECT_EQ(old, 22u);
  ASSERT_TRUE(as.atomic_load(kBase + kPage + 8, 8, &v).ok());
  EXPECT_EQ(v, 22u);
  std::uint64_t expected = 11;
  bool success = false;
  ASSERT_TRUE(child->atomic_compare_exchange(kBase + 8, 8, &expected, 13, &success).ok());
  EXPECT_TRUE(success);
  ASSERT_TRUE(as.atomic_load(kBase + 8, 8, &v).ok());
  EXPECT_EQ(v, 12u);
  ASSERT_TRUE(child->atomic_load(kBase + 8, 8, &v).ok());
  EXPECT_EQ(v, 13u);
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
  EXPECT_TRUE(child->validate(&why)) << why;
}

// Increments racing with fork (which write-protects the page and shares
// it copy-on-write) and with mprotect taking write access away and giving
// it back: every increment that reported success is in the parent's word
// (none lost to a copy made meanwhile), none that faulted is, and each
// child sees a value the parent had.
TEST_P(GuestAccess, AtomicsRacingForkAndMprotect) {
  AddressSpace as(o());
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, kAnon), static_cast<long>(kBase));
  ASSERT_EQ(as.mmap(kBase + kPage, kPage, kRW, kAnon), static_cast<long>(kBase + kPage));
  ASSERT_TRUE(as.atomic_store(kBase + 8, 8, 0).ok());
  ASSERT_TRUE(as.atomic_store(kBase + kPage + 8, 8, 0).ok());
  std::atomic<bool> stop{false};
  std::uint64_t forked_ok = 0, prot_ok = 0, prot_faults = 0;
  std::thread t([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      ASSERT_TRUE(as.atomic_fetch_add(kBase + 8, 8, 1, nullptr).ok());
      ++forked_ok;
      const AccessResult r = as.atomic_fetch_add(kBase + kPage + 8, 8, 1, nullptr);
      if (r.ok()) {
        ++prot_ok;
      } else {
        ASSERT_EQ(r.fault, Fault::segv_accerr);
        ++prot_faults;
      }
    }
  });
  for (int i = 0; i < 20; ++i) {
    int err = 0;
    std::unique_ptr<AddressSpace> child = as.fork(&err);
    ASSERT_NE(child, nullptr) << err;
    std::uint64_t seen = 0, now = 0;
    ASSERT_TRUE(child->atomic_load(kBase + 8, 8, &seen).ok());
    ASSERT_TRUE(as.atomic_load(kBase + 8, 8, &now).ok());
    EXPECT_LE(seen, now);
    ASSERT_EQ(as.mprotect(kBase + kPage, kPage, PROT_READ), 0);
    ASSERT_EQ(as.mprotect(kBase + kPage, kPage, kRW), 0);
  }
  stop.store(true);
  t.join();
  std::uint64_t v = 0;
  ASSERT_TRUE(as.atomic_load(kBase + 8, 8, &v).ok());
  EXPECT_EQ(v, forked_ok);
  ASSERT_TRUE(as.atomic_load(kBase + kPage + 8, 8, &v).ok());
  EXPECT_EQ(v, prot_ok);
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

// ---- futex keys ----------------------------------------------------------------

TEST_P(GuestAccess, FutexKeys) {
  AddressSpace as(o());
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, kAnon), static_cast<long>(kBase));
  FutexKey k{}, k2{};
  // Private: the space and the address, whether or not the futex is shared.
  ASSERT_EQ(as.futex_key(kBase + 8, false, &k), 0);
  EXPECT_EQ(k.object, static_cast<const void*>(as.mm()));
  EXPECT_EQ(k.offset, kBase + 8);
  ASSERT_EQ(as.futex_key(kBase + 8, true, &k2), 0);
  EXPECT_EQ(k, k2);
  // Errors: alignment first, then the mapping; nothing faulted in.
  EXPECT_EQ(as.futex_key(kBase + 2, false, &k), -EINVAL);
  EXPECT_EQ(as.futex_key(kBase + 5 * kPage + 2, true, &k), -EINVAL);
  EXPECT_EQ(as.futex_key(kBase + 5 * kPage, false, &k), -EFAULT);
  EXPECT_EQ(as.futex_key(kBase + 8, false, nullptr), -EINVAL);  // it wrote through the null pointer
  EXPECT_EQ(as.futex_key(kBase + 5 * kPage, true, &k), -EFAULT);
  EXPECT_EQ(as.rss_pages(), 0u);
  ASSERT_EQ(as.mmap(kBase + 2 * kPage, kPage, PROT_NONE, kAnon), static_cast<long>(kBase + 2 * kPage));
  EXPECT_EQ(as.futex_key(kBase + 2 * kPage, false, &k), -EFAULT);

  // Two spaces (a fork child): private keys differ.
  int err = 0;
  std::unique_ptr<AddressSpace> child = as.fork(&err);
  ASSERT_NE(child, nullptr) << err;
  ASSERT_EQ(as.futex_key(kBase + 8, true, &k), 0);
  ASSERT_EQ(child->futex_key(kBase + 8, true, &k2), 0);
  EXPECT_NE(k, k2);

  // One memfd mapped at two addresses and offsets: equal shared keys.
  const int fd = as.memfd_create("futex");
  ASSERT_GE(fd, 0);
  ASSERT_EQ(as.ftruncate(fd, 4 * kPage), 0);
  ASSERT_EQ(as.mmap(kBase + 16 * kPage, 4 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0),
            static_cast<long>(kBase + 16 * kPage));
  ASSERT_EQ(as.mmap(kBase + 32 * kPage, 2 * kPage, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 2 * kPage),
            static_cast<long>(kBase + 32 * kPage));
  ASSERT_EQ(as.futex_key(kBase + 18 * kPage + 100, true, &k), 0);
  ASSERT_EQ(as.futex_key(kBase + 32 * kPage + 100, true, &k2), 0);
  EXPECT_EQ(k, k2);
  EXPECT_EQ(k.offset, 2 * kPage + 100);
  EXPECT_NE(k.object, static_cast<const void*>(as.mm()));
  // ... but private futexes there are keyed by address.
  ASSERT_EQ(as.futex_key(kBase + 18 * kPage + 100, false, &k), 0);
  ASSERT_EQ(as.futex_key(kBase + 32 * kPage + 100, false, &k2), 0);
  EXPECT_NE(k, k2);
  // A private mapping of the file: keyed by address even for a shared futex.
  ASSERT_EQ(as.mmap(kBase + 40 * kPage, kPage, kRW, MAP_PRIVATE | MAP_FIXED, fd, 2 * kPage),
            static_cast<long>(kBase + 40 * kPage));
  ASSERT_EQ(as.futex_key(kBase + 40 * kPage + 100, true, &k), 0);
  EXPECT_EQ(k, (FutexKey{as.mm(), kBase + 40 * kPage + 100}));

  // Shared anonymous memory across fork: equal in parent and child, also
  // after the parent's mapping was split.
  ASSERT_EQ(as.mmap(kBase + 48 * kPage, 4 * kPage, kRW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED),
            static_cast<long>(kBase + 48 * kPage));
  std::unique_ptr<AddressSpace> child2 = as.fork(&err);
  ASSERT_NE(child2, nullptr) << err;
  ASSERT_EQ(as.mprotect(kBase + 49 * kPage, kPage, PROT_READ), 0);
  for (std::uint64_t off : {std::uint64_t{4}, kPage + 12, 3 * kPage + 4092}) {
    ASSERT_EQ(as.futex_key(kBase + 48 * kPage + off, true, &k), 0);
    ASSERT_EQ(child2->futex_key(kBase + 48 * kPage + off, true, &k2), 0);
    EXPECT_EQ(k, k2) << off;
    EXPECT_EQ(k.offset, off);
  }
  ASSERT_EQ(as.futex_key(kBase + 48 * kPage, false, &k), 0);
  ASSERT_EQ(child2->futex_key(kBase + 48 * kPage, false, &k2), 0);
  EXPECT_NE(k, k2);
}

INSTANTIATE_TEST_SUITE_P(AllModes, GuestAccess,
                         ::testing::Values(LockMode::mmap_lock, LockMode::per_vma_rwsem,
                                           LockMode::per_vma_refcount),
                         [](const ::testing::TestParamInfo<LockMode>& i) {
                           return std::string(lock_mode_name(i.param));
                         });

// ---- the host kernel: NX as the oracle ------------------------------------------
// (Not under ThreadSanitizer, which does not support fork well.)

#if !defined(__SANITIZE_THREAD__)
sigjmp_buf g_jmp;
volatile sig_atomic_t g_signo = 0;
volatile int g_code = 0;
volatile std::uintptr_t g_addr = 0;

void on_fault(int sig, siginfo_t* si, void*) {
  g_signo = sig;
  g_code = si->si_code;
  g_addr = reinterpret_cast<std::uintptr_t>(si->si_addr);
  siglongjmp(g_jmp, 1);
}

// What one access did on the host: 0 = completed, else the signal's code
// (SEGV_MAPERR 1, SEGV_ACCERR 2, SEGV_PKUERR 4), and whether si_addr was
// the address accessed.
struct HostOutcome {
  int code = -1;
  int addr_exact = 0;
  int resident_after = -1;
};

// In the child: call `p` (a `ret`), or read a byte of it.
HostOutcome host_try(unsigned char* p, bool call) {
  HostOutcome o;
  g_signo = 0;
  if (sigsetjmp(g_jmp, 1) == 0) {
    if (call) {
      reinterpret_cast<void (*)()>(p)();
    } else {
      volatile unsigned char x = *static_cast<volatile unsigned char*>(p);
      (void)x;
    }
    o.code = 0;
  } else {
    o.code = g_code;
    o.addr_exact = g_addr == reinterpret_cast<std::uintptr_t>(p);
  }
  unsigned char v = 0;
  o.resident_after = ::mincore(p, 4096, &v) == 0 ? (v & 1) : -1;
  return o;
}
#endif

// An instruction fetch from PROT_READ memory (fresh, and holding a `ret`),
// from PROT_EXEC and PROT_READ|PROT_EXEC memory, on this host (a forked
// child, so a wrong guess costs only the child), against vmspace.  Confirms
// NX (SEGV_ACCERR at the fetched address, not SEGV_MAPERR, not success),
// and that Linux faults a fresh page in before the NX fault (resident
// after), as vmspace does.  PROT_EXEC alone: the call works on every host;
// a read of it faults only on hosts with execute-only protection keys
// (SEGV_PKUERR), which vmspace follows with exec_only_pkey.
TEST(GuestAccessHost, FetchMatchesTheHostKernel) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "fork under ThreadSanitizer";
#else
  enum { kFreshRead, kRetRead, kRetExec, kReadExecOnly, kRetReadExec, kCases };
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    HostOutcome out[kCases];
    struct sigaction sa {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGSEGV, &sa, nullptr);
    ::sigaction(SIGBUS, &sa, nullptr);
    auto page = [](int prot, bool ret) -> unsigned char* {
      void* m = ::mmap(nullptr, 4096, ret ? PROT_READ | PROT_WRITE : prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED) ::_exit(3);
      auto* p = static_cast<unsigned char*>(m);
      if (ret) {
        p[0] = 0xc3;  // ret
        if (::mprotect(p, 4096, prot) != 0) ::_exit(4);  // (a W^X policy: skipped)
      }
      return p;
    };
    out[kFreshRead] = host_try(page(PROT_READ, false), true);
    out[kRetRead] = host_try(page(PROT_READ, true), true);
    unsigned char* x = page(PROT_EXEC, true);
    out[kRetExec] = host_try(x, true);
    out[kReadExecOnly] = host_try(x, false);
    out[kRetReadExec] = host_try(page(PROT_READ | PROT_EXEC, true), true);
    const ssize_t w = ::write(fds[1], out, sizeof out);
    ::_exit(w == static_cast<ssize_t>(sizeof out) ? 0 : 5);
  }
  ::close(fds[1]);
  HostOutcome host[kCases];
  const ssize_t got = ::read(fds[0], host, sizeof host);
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 4) GTEST_SKIP() << "the host refuses PROT_EXEC on anonymous memory";
  ASSERT_EQ(WEXITSTATUS(status), 0);
  ASSERT_EQ(got, static_cast<ssize_t>(sizeof host));

  // The host first.
  EXPECT_EQ(host[kFreshRead].code, SEGV_ACCERR);
  EXPECT_EQ(host[kFreshRead].addr_exact, 1);
  EXPECT_EQ(host[kFreshRead].resident_after, 1);
  EXPECT_EQ(host[kRetRead].code, SEGV_ACCERR);
  EXPECT_EQ(host[kRetRead].addr_exact, 1);
  EXPECT_EQ(host[kRetExec].code, 0);
  EXPECT_EQ(host[kRetReadExec].code, 0);
  constexpr int kSegvPkuerr = 4;
  const bool host_pkey = host[kReadExecOnly].code == kSegvPkuerr;
  EXPECT_TRUE(host[kReadExecOnly].code == 0 || host_pkey) << host[kReadExecOnly].code;

  // vmspace, configured as the host.
  AddressSpace as(opts(kDefaultLockMode, host_pkey));
  ASSERT_EQ(as.mmap(kBase, kPage, PROT_READ, kAnon), static_cast<long>(kBase));
  unsigned char b = 0;
  AccessResult r = as.fetch(kBase, &b, 1);
  EXPECT_EQ(r.fault, Fault::segv_accerr);
  EXPECT_EQ(r.addr, kBase);
  EXPECT_EQ(resident(as, kBase), host[kFreshRead].resident_after == 1);
  ASSERT_EQ(as.mmap(kBase + kPage, kPage, kRW, kAnon), static_cast<long>(kBase + kPage));
  ASSERT_TRUE(as.fill(kBase + kPage, 0xc3, 1).ok());
  ASSERT_EQ(as.mprotect(kBase + kPage, kPage, PROT_READ), 0);
  EXPECT_EQ(as.fetch(kBase + kPage, &b, 1).fault, Fault::segv_accerr);
  ASSERT_EQ(as.mprotect(kBase + kPage, kPage, PROT_EXEC), 0);
  EXPECT_TRUE(as.fetch(kBase + kPage, &b, 1).ok());
  EXPECT_EQ(b, 0xc3);
  EXPECT_EQ(as.read(kBase + kPage, &b, 1).fault, host_pkey ? Fault::segv_accerr : Fault::none);
  ASSERT_EQ(as.mprotect(kBase + kPage, kPage, PROT_READ | PROT_EXEC), 0);
  EXPECT_TRUE(as.fetch(kBase + kPage, &b, 1).ok());
#endif
}

}  // namespace
}  // namespace vmspace
