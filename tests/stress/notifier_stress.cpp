// SPDX-License-Identifier: MIT
// Stress tier: invalidation notifiers and write-watch under concurrency,
// in all three lock modes.  Two changer threads munmap/re-mmap, mprotect
// and MADV_DONTNEED random sub-ranges of a region; two accessor threads
// fault pages in and write them (through write() and through a
// generation-validated translation cache); one thread registers and
// unregisters a second notifier; one thread arms and re-arms write-watch
// by scanning.  Checked: every start has its end on the same thread with
// the same range (callbacks never nest on one thread), ranges are page
// aligned and non-empty, a notifier gets no callback after its
// unregistration returned, the generation moved at least twice per
// notified pair, write-watch callbacks run with no space lock (they read
// the generation and sleep briefly), and validate() holds at the end.
// Run under tsan for the orderings.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x310000000000;
constexpr std::uint64_t kPage = 4096;
constexpr unsigned kPages = 64;
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr int kFixed = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;

std::chrono::milliseconds budget() {
  if (const char* s = std::getenv("VMSPACE_STRESS_MS")) return std::chrono::milliseconds(std::atol(s));
  return std::chrono::milliseconds(2000);
}

// Pairs starts with ends per thread: a change runs its start and end on
// one thread, with nothing of this space's in between on that thread.
class PairChecker : public InvalidationNotifier {
 public:
  std::atomic<long> starts{0}, ends{0}, bad{0}, late{0};
  std::atomic<bool> gone{false};

  void invalidate_range_start(const InvalidateRange& r) override {
    check(r);
    for (const auto& [who, range] : open_)
      if (who == id_) bad.fetch_add(1);  // nested start on one thread
    open_.emplace_back(id_, r);
    starts.fetch_add(1, std::memory_order_relaxed);
  }
  void invalidate_range_end(const InvalidateRange& r) override {
    check(r);
    // An end without our start: registered between a change's start and
    // end (allowed); with it: the same range and reason.
    for (auto it = open_.begin(); it != open_.end(); ++it) {
      if (it->first != id_) continue;
      if (it->second.start != r.start || it->second.end != r.end || it->second.reason != r.reason) bad.fetch_add(1);
      open_.erase(it);
      break;
    }
    ends.fetch_add(1, std::memory_order_relaxed);
  }

 private:
  void check(const InvalidateRange& r) {
    if (gone.load(std::memory_order_relaxed)) late.fetch_add(1);
    if (r.start >= r.end || (r.start | r.end) % kPage != 0) bad.fetch_add(1);
  }
  // This thread's open pairs, per checker (one thread may have a pair of
  // each registered checker open at once), by a unique id: a checker
  // unregistered between a start and its end leaves its entry behind, and
  // the next checker may live at the same address.
  inline static std::atomic<std::uint64_t> next_id_{1};
  const std::uint64_t id_ = next_id_.fetch_add(1);
  static thread_local std::vector<std::pair<std::uint64_t, InvalidateRange>> open_;
};
thread_local std::vector<std::pair<std::uint64_t, InvalidateRange>> PairChecker::open_;

struct WatchCounter {
  std::atomic<long> reports{0};
  static void cb(void* arg, AddressSpace& as, std::uint64_t page) {
    auto* w = static_cast<WatchCounter*>(arg);
    (void)as.translation_generation();
    if (page % kPage != 0) std::abort();
    w->reports.fetch_add(1, std::memory_order_relaxed);
    std::this_thread::yield();
  }
};

class NotifierStress : public ::testing::TestWithParam<LockMode> {};

TEST_P(NotifierStress, ChangesFaultsRegistrationAndWatches) {
  AddressSpaceOptions o = test::test_options(GetParam());
  o.phys_bytes = 64ull << 20;
  o.phys_pretouch = false;
  AddressSpace as(o);
  ASSERT_EQ(as.mmap(kBase, kPages * kPage, kRW, kFixed), static_cast<long>(kBase));
  PairChecker main;
  ASSERT_EQ(as.register_notifier(&main), 0);
  WatchCounter wc;
  as.set_write_watch(&WatchCounter::cb, &wc);

  const auto deadline = std::chrono::steady_clock::now() + budget();
  auto running = [&] { return std::chrono::steady_clock::now() < deadline; };
  std::atomic<long> stale{0};
  std::vector<std::thread> threads;

  for (unsigned c = 0; c < 2; ++c)
    threads.emplace_back([&, c] {
      std::mt19937 rng(17 + c);
      while (running()) {
        const unsigned p = rng() % kPages;
        const unsigned n = 1 + rng() % std::min(8u, kPages - p);
        const std::uint64_t va = kBase + p * kPage, len = n * kPage;
        switch (rng() % 4) {
          case 0:
            (void)as.munmap(va, len);
            (void)as.mmap(va, len, kRW, kFixed);
            break;
          case 1:
            (void)as.mprotect(va, len, PROT_READ);
            (void)as.mprotect(va, len, kRW);
            break;
          case 2:
            (void)as.madvise(va, len, MADV_DONTNEED);
            break;
          case 3:
            (void)as.madvise(va, len, MADV_FREE);
            break;
        }
      }
    });

  for (unsigned a = 0; a < 2; ++a)
    threads.emplace_back([&, a] {
      std::mt19937 rng(101 + a);
      while (running()) {
        const std::uint64_t va = kBase + (rng() % kPages) * kPage;
        const std::uint64_t v = rng() | 1;
        (void)as.write(va + 8 * a, &v, sizeof v);  // may fault SEGV_ACCERR / MAPERR for a moment
        // A generation-validated cached translation, used while the
        // changers run: a hit reads what this thread wrote through it
        // (the frame stays this scope's, whatever happens to the PTE).
        AddressSpace::AccessScope scope(as);
        const std::uint64_t g = as.translation_generation();
        auto* p = static_cast<std::uint64_t*>(scope.translate(va, true));
        if (p == nullptr) continue;
        __atomic_store_n(p + 2 + a, v, __ATOMIC_RELAXED);
        for (int k = 0; k < 20; ++k) {
          const std::uint64_t seen = __atomic_load_n(p + 2 + a, __ATOMIC_RELAXED);
          if (as.translation_generation() != g) break;
          if (seen != v) stale.fetch_add(1);
        }
      }
    });

  threads.emplace_back([&] {
    while (running()) {
      PairChecker extra;
      if (as.register_notifier(&extra) != 0) std::abort();
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      if (as.unregister_notifier(&extra) != 0) std::abort();
      extra.gone.store(true);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      if (extra.late.load() != 0 || extra.bad.load() != 0) std::abort();
    }  // extra dies here: a callback after unregister would touch freed memory
  });

  threads.emplace_back([&] {
    std::mt19937 rng(7);
    std::vector<std::uint64_t> written;
    while (running()) {
      const unsigned p = rng() % kPages;
      const unsigned n = 1 + rng() % std::min(16u, kPages - p);
      switch (rng() % 3) {
        case 0: (void)as.write_watch_arm(kBase + p * kPage, n * kPage); break;
        case 1:
          written.clear();
          (void)as.write_watch_scan(kBase + p * kPage, n * kPage, true, &written);
          break;
        case 2: (void)as.write_watch_disarm(kBase + p * kPage, n * kPage); break;
      }
      std::this_thread::yield();
    }
  });

  for (auto& t : threads) t.join();
  ASSERT_EQ(as.unregister_notifier(&main), 0);
  EXPECT_EQ(main.bad.load(), 0);
  EXPECT_EQ(main.starts.load(), main.ends.load());
  EXPECT_GT(main.starts.load(), 0);
  EXPECT_GE(as.translation_generation(), 2u * static_cast<std::uint64_t>(main.starts.load()));
  EXPECT_EQ(stale.load(), 0);
  EXPECT_GT(wc.reports.load(), 0);  // the watch thread armed pages the writers then wrote
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
}

INSTANTIATE_TEST_SUITE_P(Modes, NotifierStress,
                         ::testing::Values(LockMode::mmap_lock, LockMode::per_vma_rwsem, LockMode::per_vma_refcount),
                         [](const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); });

}  // namespace
}  // namespace vmspace
