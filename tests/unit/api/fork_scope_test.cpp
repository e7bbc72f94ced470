// fork against lockless access (AccessScope): a store through a
// translation taken before fork must not reach a page shared with the
// child once fork has returned (fork waits for older scopes, as Linux
// flushes the parent's TLB), a fork made inside a scope copies writable
// pages instead of waiting, and a fork that fails inside a scope returns
// an error instead of waiting for a grace period it would never see.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kPage = 4096;

AddressSpaceOptions opts(LockMode mode) {
  AddressSpaceOptions o;
  o.mode = mode;
  o.phys_bytes = 16ull << 20;
  return o;
}

class ForkScope : public ::testing::TestWithParam<LockMode> {};

// A thread holds a writable translation of a private page across a fork
// made by another thread: fork must not return before that scope ends,
// so the store lands while fork is still running.  Afterwards the parent
// lets go of the page and the child's write reuses it in place: the
// child's data must stay the child's.
TEST_P(ForkScope, ForkWaitsForOlderWritableTranslations) {
  AddressSpace as(opts(GetParam()));
  const long a = as.mmap(0, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  ASSERT_GT(a, 0);
  const auto va = static_cast<std::uint64_t>(a);
  ASSERT_TRUE(as.fill(va, 'A', 1).ok());

  std::atomic<int> stage{0};
  std::atomic<bool> fork_returned{false};
  bool returned_while_scope_open = false;
  std::thread writer([&] {
    AddressSpace::AccessScope scope(as);
    auto* p = static_cast<char*>(scope.translate(va, /*write=*/true));
    ASSERT_NE(p, nullptr);
    stage = 1;
    // Give fork time to write-protect the page and (wrongly) return.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    returned_while_scope_open = fork_returned.load();
    *p = 'B';  // a store racing fork: before fork returns
  });
  while (stage.load() != 1) std::this_thread::yield();
  std::unique_ptr<AddressSpace> child = as.fork();
  fork_returned = true;
  writer.join();
  ASSERT_NE(child, nullptr);
  EXPECT_FALSE(returned_while_scope_open) << "fork returned while an older writable translation was live";

  // The parent lets go; the child writes (reusing the page) and keeps it.
  ASSERT_EQ(as.munmap(va, kPage), 0);
  ASSERT_TRUE(child->fill(va, 'C', 1).ok());
  char c = 0;
  ASSERT_TRUE(child->read(va, &c, 1).ok());
  EXPECT_EQ(c, 'C');
  std::string why;
  EXPECT_TRUE(child->validate(&why)) << why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

// fork inside a scope: the caller's own translation stays usable and its
// stores stay the parent's; the child has the contents as of the fork.
TEST_P(ForkScope, ForkInsideAScopeCopiesWritablePages) {
  AddressSpace as(opts(GetParam()));
  const long a = as.mmap(0, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  ASSERT_GT(a, 0);
  const auto va = static_cast<std::uint64_t>(a);
  ASSERT_TRUE(as.fill(va, 'A', 4 * kPage).ok());
  std::unique_ptr<AddressSpace> child;
  {
    AddressSpace::AccessScope scope(as);
    auto* p = static_cast<char*>(scope.translate(va, /*write=*/true));
    ASSERT_NE(p, nullptr);
    child = as.fork();
    ASSERT_NE(child, nullptr);
    *p = 'P';  // through the translation taken before fork
    // The parent's page is still writable in place (it was not shared).
    EXPECT_EQ(scope.translate(va, /*write=*/true), p);
  }
  char c = 0;
  ASSERT_TRUE(child->read(va, &c, 1).ok());
  EXPECT_EQ(c, 'A');
  ASSERT_TRUE(as.read(va, &c, 1).ok());
  EXPECT_EQ(c, 'P');
  ASSERT_TRUE(child->fill(va + kPage, 'C', 1).ok());
  ASSERT_TRUE(as.read(va + kPage, &c, 1).ok());
  EXPECT_EQ(c, 'A');
  std::string why;
  EXPECT_TRUE(child->validate(&why)) << why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

// A fork that fails (the commit charge of Overcommit::never) inside a
// scope: -ENOMEM, the parent intact, no wait for a grace period.
TEST_P(ForkScope, FailedForkInsideAScopeReturnsAnError) {
  AddressSpaceOptions o = opts(GetParam());
  o.overcommit = Overcommit::never;
  o.overcommit_limit_pages = 40;
  AddressSpace as(o);
  const long a = as.mmap(0, 32 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  ASSERT_GT(a, 0);
  const auto va = static_cast<std::uint64_t>(a);
  ASSERT_TRUE(as.fill(va, 'A', 32 * kPage).ok());
  {
    AddressSpace::AccessScope scope(as);
    int err = 0;
    std::unique_ptr<AddressSpace> child = as.fork(&err);
    EXPECT_EQ(child, nullptr);
    EXPECT_EQ(err, -ENOMEM);
  }
  int err = 0;
  EXPECT_EQ(as.fork(&err), nullptr);  // the same outside a scope
  EXPECT_EQ(err, -ENOMEM);
  char c = 0;
  ASSERT_TRUE(as.read(va + 31 * kPage, &c, 1).ok());
  EXPECT_EQ(c, 'A');
  ASSERT_TRUE(as.fill(va, 'B', kPage).ok());  // still writable in place
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

INSTANTIATE_TEST_SUITE_P(AllModes, ForkScope,
                         ::testing::Values(LockMode::mmap_lock, LockMode::per_vma_rwsem,
                                           LockMode::per_vma_refcount),
                         [](const ::testing::TestParamInfo<LockMode>& i) {
                           return std::string(lock_mode_name(i.param));
                         });

}  // namespace
}  // namespace vmspace
