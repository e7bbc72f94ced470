// SPDX-License-Identifier: MIT
// A read through a translation looked up without a lock -- inside read(),
// or through a pointer from AccessScope::translate -- must never return
// another space's data.  The frame behind it may stop being this space's
// while the read runs: a copy-on-write fault or a discard (MADV_DONTNEED,
// munmap) in another thread of this space drops the mapping, and a fork
// relative that still maps the frame may then reuse it in place and write
// to it.  The release waits for this space's translation holders
// (src/mm/tlb.h, the soft MMU's TLB shootdown).  Found by
// tests/stress/fork_stress.cpp.
//
// read() is stopped inside its copy deterministically: the caller's buffer
// starts PROT_NONE, and the SIGSEGV handler of the library's memcpy waits
// until the test lets it go (then makes the buffer accessible and
// returns, and the copy resumes).  Those tests are skipped under
// ThreadSanitizer (a handler that blocks on a semaphore).
#include <semaphore.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "support/smaps.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x300000000000;
constexpr std::uint64_t kPage = 4096;

AddressSpaceOptions options(LockMode mode) {
  AddressSpaceOptions o;
  o.mode = mode;
  o.phys_bytes = 16ull << 20;
  return o;
}

// The smaps figure `name` of the test's mapping, in kB.
long smaps_kb(const AddressSpace& as, const std::string& name) { return test::smaps_kb(as, kBase, name + ":"); }

// Until `pred` holds (a release after a grace period), at most 10 s.
bool eventually(const std::function<bool()>& pred) {
  for (int i = 0; i < 10000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

class StaleRead : public ::testing::TestWithParam<LockMode> {
 protected:
  void SetUp() override {
    parent_ = std::make_unique<AddressSpace>(options(GetParam()));
    ASSERT_EQ(parent_->mmap(kBase, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
              static_cast<long>(kBase));
    ASSERT_TRUE(parent_->fill(kBase, 0x11, 4 * kPage).ok());  // the parent's own pages
    child_ = parent_->fork();  // now shared copy-on-write
    ASSERT_NE(child_, nullptr);
  }
  void expect_valid() {
    std::string why;
    EXPECT_TRUE(parent_->validate(&why)) << why;
    EXPECT_TRUE(child_->validate(&why)) << why;
  }
  std::unique_ptr<AddressSpace> parent_, child_;
};

// ---- through AccessScope pointers (every build) ----

// The parent holds a read translation of a shared page, then copies the
// page on write (the old frame is the child's alone); the child writes
// its page, which without the deferred release it reuses in place.
TEST_P(StaleRead, ScopePointerAcrossCopyOnWrite) {
  {
    AddressSpace::AccessScope scope(*parent_);
    const auto* p = static_cast<const volatile unsigned char*>(scope.translate(kBase, false));
    ASSERT_NE(p, nullptr);
    ASSERT_TRUE(parent_->fill(kBase + kPage - 1, 0x22, 1).ok());  // copy on write: pages 0 and 1
    ASSERT_TRUE(parent_->fill(kBase + kPage, 0x22, 1).ok());
    ASSERT_TRUE(child_->fill(kBase, 0x77, kPage).ok());  // the child's page 0
    int leaked = 0;
    for (std::uint64_t i = 0; i < kPage; ++i) leaked += p[i] != 0x11;
    EXPECT_EQ(leaked, 0) << "the parent's old translation shows the child's data";
    // Until the scope ends the old frame of page 1 still counts the
    // parent's mapping: shared in the child's smaps (page 0 it copied).
    EXPECT_EQ(smaps_kb(*child_, "Private_Dirty"), 4);
    EXPECT_EQ(smaps_kb(*child_, "Shared_Dirty"), 12);
  }
  unsigned char b[2] = {};
  ASSERT_TRUE(parent_->read(kBase + kPage - 1, b, 2).ok());
  EXPECT_EQ(b[0], 0x22);
  EXPECT_EQ(b[1], 0x22);
  ASSERT_TRUE(child_->read(kBase, b, 1).ok());
  EXPECT_EQ(b[0], 0x77);
  // After a grace period page 1 is the child's own.
  EXPECT_TRUE(eventually([&] { return smaps_kb(*child_, "Private_Dirty") == 8; }));
  EXPECT_EQ(smaps_kb(*child_, "Shared_Dirty"), 8);
  expect_valid();
}

TEST_P(StaleRead, ScopePointerAcrossDontneedAndMunmap) {
  {
    AddressSpace::AccessScope scope(*parent_);
    const auto* p0 = static_cast<const volatile unsigned char*>(scope.translate(kBase, false));
    const auto* p1 = static_cast<const volatile unsigned char*>(scope.translate(kBase + kPage, false));
    ASSERT_NE(p0, nullptr);
    ASSERT_NE(p1, nullptr);
    ASSERT_EQ(parent_->madvise(kBase, kPage, MADV_DONTNEED), 0);
    ASSERT_EQ(parent_->munmap(kBase + kPage, kPage), 0);
    ASSERT_TRUE(child_->fill(kBase, 0x77, 2 * kPage).ok());
    int leaked = 0;
    for (std::uint64_t i = 0; i < kPage; ++i) leaked += (p0[i] != 0x11) + (p1[i] != 0x11);
    EXPECT_EQ(leaked, 0) << "the parent's old translations show the child's data";
  }
  unsigned char b = 0xff;
  ASSERT_TRUE(parent_->read(kBase, &b, 1).ok());
  EXPECT_EQ(b, 0);  // discarded: zero-fill
  expect_valid();
}

// A scope in another space of the family does not delay anything: the
// release waits only for translation holders of the space that lets go.
TEST_P(StaleRead, OtherSpacesScopeDoesNotDelayTheRelease) {
  AddressSpace::AccessScope scope(*child_);
  ASSERT_TRUE(parent_->fill(kBase, 0x22, kPage).ok());
  EXPECT_EQ(smaps_kb(*child_, "Private_Dirty"), 4);
  EXPECT_EQ(smaps_kb(*child_, "Shared_Dirty"), 12);
}

// Without translation holders the release is immediate: counts are
// Linux's at once (the differential tests compare smaps right after).
TEST_P(StaleRead, NoHolderReleasesAtOnce) {
  ASSERT_TRUE(parent_->fill(kBase, 0x22, kPage).ok());
  ASSERT_EQ(parent_->madvise(kBase + kPage, kPage, MADV_DONTNEED), 0);
  EXPECT_EQ(smaps_kb(*child_, "Private_Dirty"), 8);
  EXPECT_EQ(smaps_kb(*child_, "Shared_Dirty"), 8);
  expect_valid();
}

// ---- inside read() (not under ThreadSanitizer) ----

unsigned char* g_buf = nullptr;
sem_t g_in_handler, g_resume;

void on_segv(int, siginfo_t* si, void*) {
  auto* a = static_cast<unsigned char*>(si->si_addr);
  if (a < g_buf || a >= g_buf + kPage) _exit(3);  // not ours: a real crash
  sem_post(&g_in_handler);
  while (sem_wait(&g_resume) != 0) {
  }
  mprotect(g_buf, kPage, PROT_READ | PROT_WRITE);
}

void wait_sem(sem_t* s) {
  while (sem_wait(s) != 0) {
  }
}

class StaleReadInCopy : public StaleRead {
 protected:
  void SetUp() override {
#if defined(__SANITIZE_THREAD__)
    GTEST_SKIP() << "a SIGSEGV handler that blocks";
#endif
    StaleRead::SetUp();
    g_buf = static_cast<unsigned char*>(mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(g_buf, MAP_FAILED);
    sem_init(&g_in_handler, 0, 0);
    sem_init(&g_resume, 0, 0);
    struct sigaction sa = {};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    ASSERT_EQ(sigaction(SIGSEGV, &sa, &old_), 0);
  }
  void TearDown() override {
    if (g_buf == nullptr) return;
    sigaction(SIGSEGV, &old_, nullptr);
    munmap(g_buf, kPage);
    g_buf = nullptr;
    sem_destroy(&g_in_handler);
    sem_destroy(&g_resume);
  }
  // parent_->read(kBase, g_buf, kPage), stopped inside its copy while
  // `meanwhile` runs on this thread; true if none of the child's 0x77
  // reached the buffer.
  void read_while(const std::function<void()>& meanwhile) {
    std::memset(g_buf, 0, kPage);
    ASSERT_EQ(mprotect(g_buf, kPage, PROT_NONE), 0);
    AccessResult rd;
    std::thread reader([&] { rd = parent_->read(kBase, g_buf, kPage); });
    wait_sem(&g_in_handler);  // inside read(), holding the translation
    meanwhile();
    sem_post(&g_resume);
    reader.join();
    ASSERT_TRUE(rd.ok());
    int leaked = 0;
    for (std::uint64_t i = 0; i < kPage; ++i) leaked += g_buf[i] != 0x11;
    EXPECT_EQ(leaked, 0) << "the parent's read returned the child's data";
  }
  struct sigaction old_ = {};
};

TEST_P(StaleReadInCopy, ReadAcrossCopyOnWrite) {
  read_while([&] {
    ASSERT_TRUE(parent_->fill(kBase + kPage - 1, 0x22, 1).ok());  // the old frame is the child's alone
    ASSERT_TRUE(child_->fill(kBase, 0x77, kPage).ok());           // without the fix: reused in place
  });
  expect_valid();
}

TEST_P(StaleReadInCopy, ReadAcrossDontneed) {
  read_while([&] {
    ASSERT_EQ(parent_->madvise(kBase, kPage, MADV_DONTNEED), 0);
    ASSERT_TRUE(child_->fill(kBase, 0x77, kPage).ok());
  });
  expect_valid();
}

TEST_P(StaleReadInCopy, ReadAcrossMunmap) {
  read_while([&] {
    ASSERT_EQ(parent_->munmap(kBase, kPage), 0);
    ASSERT_TRUE(child_->fill(kBase, 0x77, kPage).ok());
  });
  expect_valid();
}

const auto kModes = ::testing::Values(LockMode::per_vma_refcount, LockMode::per_vma_rwsem, LockMode::mmap_lock);
std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, StaleRead, kModes, mode_name);
INSTANTIATE_TEST_SUITE_P(AllModes, StaleReadInCopy, kModes, mode_name);

}  // namespace
}  // namespace vmspace
