// fork's window (fork.cpp step 5; found by a hostile review): a store
// through a translation taken before fork must not be lost for the parent
// when the parent copy-on-write faults the page after dup_mmap released
// the locks but before fork's grace period ended the older scope.  The
// parent's fault in that window keeps the frame and gives the pending
// child the copy.
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

class ForkLostStore : public ::testing::TestWithParam<LockMode> {};

TEST_P(ForkLostStore, StoreOfAnOlderTranslationIsKept) {
  AddressSpaceOptions o;
  o.mode = GetParam();
  o.phys_bytes = 16ull << 20;
  AddressSpace as(o);
  const long a = as.mmap(0, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  ASSERT_GT(a, 0);
  const auto va = static_cast<std::uint64_t>(a);
  ASSERT_TRUE(as.fill(va, 'A', kPage).ok());

  std::atomic<int> stage{0};
  char seen_by_writer = 0;
  std::thread writer([&] {
    {
      AddressSpace::AccessScope scope(as);
      auto* p = static_cast<char*>(scope.translate(va, /*write=*/true));
      ASSERT_NE(p, nullptr);
      stage = 1;
      while (stage.load() != 3) std::this_thread::yield();
      *p = 'B';  // racing fork (fork has not returned: it waits for this scope)
    }
    // Outside any scope, the writer reads its own store back.
    ASSERT_TRUE(as.read(va, &seen_by_writer, 1).ok());
  });
  while (stage.load() != 1) std::this_thread::yield();
  std::unique_ptr<AddressSpace> child;
  std::thread forker([&] { child = as.fork(); });
  // Wait until dup_mmap has shared the page (smaps takes the mmap_lock:
  // it returns once fork released it).
  for (;;) {
    const std::string s = as.smaps();
    if (s.find("Shared_Dirty:          4 kB") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // fork is now in rcu::synchronize(), waiting for the writer's scope.
  // The parent writes another byte of the page: copy-on-write fault.
  ASSERT_TRUE(as.fill(va + 100, 'M', 1).ok());
  stage = 3;
  writer.join();
  forker.join();
  ASSERT_NE(child, nullptr);
  char c = 0;
  ASSERT_TRUE(as.read(va, &c, 1).ok());
  char cc = 0;
  ASSERT_TRUE(child->read(va, &cc, 1).ok());
  EXPECT_EQ(seen_by_writer, 'B') << "the writer does not see its own store (child sees '" << cc << "')";
  EXPECT_EQ(c, 'B') << "parent lost a store made before fork returned (child sees '" << cc << "')";
}

INSTANTIATE_TEST_SUITE_P(AllModes, ForkLostStore,
                         ::testing::Values(LockMode::mmap_lock, LockMode::per_vma_rwsem,
                                           LockMode::per_vma_refcount),
                         [](const ::testing::TestParamInfo<LockMode>& i) {
                           return std::string(lock_mode_name(i.param));
                         });
}  // namespace
}  // namespace vmspace

namespace vmspace {
namespace {
// The same window without any AccessScope: AddressSpace::fill's own read
// section (translate, then memset) racing fork and a parent COW fault.
// The filling thread reads its own store back right after fill returns.
TEST(ForkLostStoreRepeated, PlainWriteIsNeverLostAcrossFork) {
  AddressSpaceOptions o;
  o.mode = LockMode::per_vma_refcount;
  o.phys_bytes = 64ull << 20;
  AddressSpace as(o);
  constexpr int kPages = 64;
  const long a = as.mmap(0, kPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  ASSERT_GT(a, 0);
  const auto va = static_cast<std::uint64_t>(a);
  ASSERT_TRUE(as.fill(va, 0, kPages * kPage).ok());
  std::atomic<bool> stop{false};
  std::atomic<long> lost{0}, fills{0};
  std::thread filler([&] {
    std::vector<unsigned char> buf(kPage);
    for (unsigned char k = 1; !stop.load(std::memory_order_relaxed); ++k) {
      if (k == 0) k = 1;
      for (int p = 0; p < kPages; ++p) {
        std::memset(buf.data(), k, 64);  // first 64 bytes: ours
        ASSERT_TRUE(as.write(va + p * kPage, buf.data(), 64).ok());
        unsigned char back = 0;
        ASSERT_TRUE(as.read(va + p * kPage, &back, 1).ok());
        if (back != k) lost++;
        fills++;
      }
    }
  });
  std::thread cow([&] {
    unsigned char x = 0;
    while (!stop.load(std::memory_order_relaxed))
      for (int p = 0; p < kPages; ++p) (void)as.write(va + p * kPage + 2048, &++x, 1);
  });
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  int forks = 0;
  while (std::chrono::steady_clock::now() < until && lost.load() == 0) {
    std::unique_ptr<AddressSpace> child = as.fork();
    ASSERT_NE(child, nullptr);
    ++forks;
  }
  stop = true;
  filler.join();
  cow.join();
  EXPECT_EQ(lost.load(), 0) << "a thread did not read back its own write (" << forks << " forks, " << fills.load()
                            << " writes)";
}
}  // namespace
}  // namespace vmspace
