// SPDX-License-Identifier: MIT
#include "mem/phys_mem.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "support/resident.h"
#include "sync/rcu.h"

namespace vmspace::mem {
namespace {

PhysMemOptions small(std::uint64_t frames, unsigned cache = 8, bool pretouch = false) {
  PhysMemOptions o;
  o.capacity_bytes = frames * kFrameSize;
  o.pretouch = pretouch;
  o.per_thread_cache = cache;
  return o;
}

TEST(PhysMem, AllocGetPutRefcounts) {
  PhysMem pm(small(64));
  EXPECT_EQ(pm.capacity_frames(), 64u);
  EXPECT_EQ(pm.free_frames(), 64u);
  pfn_t p = pm.alloc();
  ASSERT_NE(p, kNoFrame);
  ASSERT_TRUE(pm.valid(p));
  Frame& f = pm.frame(p);
  EXPECT_EQ(f.refcount.load(), 1);
  EXPECT_EQ(f.mapcount.load(), 0);
  EXPECT_EQ(f.mapping.load(), 0u);
  EXPECT_EQ(pm.free_frames(), 63u);
  pm.get(p);
  EXPECT_EQ(f.refcount.load(), 2);
  pm.put(p);
  EXPECT_EQ(f.refcount.load(), 1);
  EXPECT_EQ(pm.free_frames(), 63u);
  f.mapping.store(0x1234 | kMappingAnon);
  f.mapcount.store(3);
  pm.put(p);
  EXPECT_EQ(f.refcount.load(), 0);
  EXPECT_EQ(pm.free_frames(), 64u);  // freed, perhaps still waiting for RCU
  pm.drain_deferred();
  EXPECT_EQ(pm.reusable_frames(), 64u);
  // A recycled descriptor is reset.
  std::vector<pfn_t> all;
  for (pfn_t q; (q = pm.alloc()) != kNoFrame;) all.push_back(q);
  ASSERT_EQ(all.size(), 64u);
  for (pfn_t q : all) {
    EXPECT_EQ(pm.frame(q).refcount.load(), 1);
    EXPECT_EQ(pm.frame(q).mapcount.load(), 0);
    EXPECT_EQ(pm.frame(q).mapping.load(), 0u);
    pm.put(q);
  }
  pm.drain_deferred();
  EXPECT_EQ(pm.free_frames(), 64u);
}

TEST(PhysMem, DistinctFramesAndAddresses) {
  PhysMem pm(small(100, 16));
  std::set<pfn_t> seen;
  for (int i = 0; i < 100; ++i) {
    pfn_t p = pm.alloc();
    ASSERT_NE(p, kNoFrame);
    EXPECT_TRUE(seen.insert(p).second);
    auto* a = static_cast<char*>(pm.addr(p));
    EXPECT_EQ(pm.pfn_of(a), p);
    EXPECT_EQ(pm.pfn_of(a + 4095), p);
    std::memset(a, i, kFrameSize);  // the whole frame is usable
  }
  for (pfn_t p : seen) pm.put(p);
  pm.drain_deferred();
  EXPECT_EQ(pm.free_frames(), 100u);
}

TEST(PhysMem, AllocZeroed) {
  PhysMem pm(small(32, 4));
  std::vector<pfn_t> v;
  for (pfn_t p; (p = pm.alloc()) != kNoFrame;) {
    std::memset(pm.addr(p), 0xAB, kFrameSize);
    v.push_back(p);
  }
  for (pfn_t p : v) pm.put(p);
  pm.drain_deferred();
  v.clear();
  static const char zeros[kFrameSize] = {};
  for (pfn_t p; (p = pm.alloc_zeroed()) != kNoFrame;) {
    EXPECT_EQ(std::memcmp(pm.addr(p), zeros, kFrameSize), 0);
    v.push_back(p);
  }
  EXPECT_EQ(v.size(), 32u);
  for (pfn_t p : v) pm.put(p);
  pm.drain_deferred();
}

TEST(PhysMem, OutOfMemoryAndRecovery) {
  PhysMem pm(small(18, 4));
  std::vector<pfn_t> v;
  for (pfn_t p; (p = pm.alloc()) != kNoFrame;) v.push_back(p);
  EXPECT_EQ(v.size(), 18u);
  EXPECT_EQ(pm.alloc(), kNoFrame);
  EXPECT_EQ(pm.alloc_zeroed(), kNoFrame);
  EXPECT_EQ(pm.free_frames(), 0u);
  for (pfn_t p : v) pm.put(p);
  rcu::barrier();
  // Full batches went through the grace period: allocation works again.
  pfn_t p = pm.alloc();
  ASSERT_NE(p, kNoFrame);
  pm.put(p);
  pm.drain_deferred();
  EXPECT_EQ(pm.free_frames(), 18u);
  EXPECT_EQ(pm.reusable_frames(), 18u);

  // A partial batch: OOM submits it, so wait + retry succeeds.
  v.clear();
  for (pfn_t q; (q = pm.alloc()) != kNoFrame;) v.push_back(q);
  ASSERT_EQ(v.size(), 18u);
  pm.put(v.back());
  v.pop_back();
  rcu::barrier();
  EXPECT_EQ(pm.alloc(), kNoFrame);  // the freed frame is still in this thread's batch
  rcu::barrier();
  pfn_t q = pm.alloc();
  EXPECT_NE(q, kNoFrame);
  v.push_back(q);
  for (pfn_t r : v) pm.put(r);
  pm.drain_deferred();
  EXPECT_EQ(pm.reusable_frames(), 18u);
}

TEST(PhysMem, FramesNotReusedBeforeGracePeriod) {
  PhysMem pm(small(4, 1));  // batch size 1: every free is submitted at once
  std::vector<pfn_t> v;
  for (pfn_t p; (p = pm.alloc()) != kNoFrame;) v.push_back(p);
  ASSERT_EQ(v.size(), 4u);
  const pfn_t victim = v[0];
  auto* mem = static_cast<std::atomic<std::uint64_t>*>(pm.addr(victim));
  mem->store(0xfeedface);

  std::atomic<int> stage{0};
  std::atomic<bool> ok{true};
  std::thread reader([&] {
    {
      rcu::ReadGuard g;
      auto* seen = static_cast<std::atomic<std::uint64_t>*>(pm.addr(victim));
      stage.store(1);
      while (stage.load() != 2) {
        if (seen->load() != 0xfeedface) ok.store(false);
        std::this_thread::yield();
      }
      if (seen->load() != 0xfeedface) ok.store(false);
    }
    stage.store(3);
  });
  while (stage.load() != 1) std::this_thread::yield();
  pm.put(victim);
  // The only free frame is waiting for the reader's grace period.
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  while (std::chrono::steady_clock::now() < until) {
    pfn_t p = pm.alloc();
    ASSERT_EQ(p, kNoFrame);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  stage.store(2);
  while (stage.load() != 3) std::this_thread::yield();
  reader.join();
  EXPECT_TRUE(ok.load());
  rcu::barrier();
  pfn_t p = pm.alloc();
  EXPECT_EQ(p, victim);
  v[0] = p;
  for (pfn_t q : v) pm.put(q);
  pm.drain_deferred();
  EXPECT_EQ(pm.free_frames(), 4u);
}

TEST(PhysMem, ThreadCachesReturnAtThreadExit) {
  PhysMem pm(small(1024, 64));
  std::vector<pfn_t> handed[4];
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      std::vector<pfn_t> mine;
      for (int i = 0; i < 100; ++i) {
        pfn_t p = pm.alloc();
        ASSERT_NE(p, kNoFrame);
        mine.push_back(p);
      }
      // Put 37 (a partial batch stays pending), hand 20 to the main
      // thread, keep the rest cached-free by putting them too.
      for (int i = 0; i < 37; ++i) pm.put(mine[i]);
      for (int i = 37; i < 57; ++i) handed[t].push_back(mine[i]);
      for (int i = 57; i < 100; ++i) pm.put(mine[i]);
      pfn_t extra = pm.alloc();  // leaves frames in this thread's cache
      ASSERT_NE(extra, kNoFrame);
      pm.put(extra);
    });
  }
  for (auto& th : ts) th.join();
  EXPECT_EQ(pm.free_frames(), 1024u - 80u);
  for (auto& h : handed)
    for (pfn_t p : h) pm.put(p);
  EXPECT_EQ(pm.free_frames(), 1024u);
  pm.drain_deferred();
  EXPECT_EQ(pm.free_frames(), 1024u);
  EXPECT_EQ(pm.reusable_frames(), 1024u);
  // Everything can be allocated by this one thread now.
  std::vector<pfn_t> all;
  for (pfn_t p; (p = pm.alloc()) != kNoFrame;) all.push_back(p);
  EXPECT_EQ(all.size(), 1024u);
  for (pfn_t p : all) pm.put(p);
  pm.drain_deferred();
}

TEST(PhysMem, TwoInstancesAtOnce) {
  PhysMem a(small(40, 8)), b(small(24, 4));
  std::vector<pfn_t> va, vb;
  for (int i = 0; i < 20; ++i) {
    pfn_t p = a.alloc(), q = b.alloc();
    ASSERT_NE(p, kNoFrame);
    ASSERT_NE(q, kNoFrame);
    EXPECT_LT(p, 40u);
    EXPECT_LT(q, 24u);
    *static_cast<int*>(a.addr(p)) = 1;
    *static_cast<int*>(b.addr(q)) = 2;
    va.push_back(p);
    vb.push_back(q);
  }
  EXPECT_EQ(a.free_frames(), 20u);
  EXPECT_EQ(b.free_frames(), 4u);
  for (pfn_t p : va) EXPECT_EQ(*static_cast<int*>(a.addr(p)), 1);
  for (pfn_t q : vb) EXPECT_EQ(*static_cast<int*>(b.addr(q)), 2);
  for (pfn_t p : va) a.put(p);
  for (pfn_t q : vb) b.put(q);
  a.drain_deferred();
  b.drain_deferred();
  EXPECT_EQ(a.reusable_frames(), 40u);
  EXPECT_EQ(b.reusable_frames(), 24u);
}

TEST(PhysMem, DestroyedInstanceWhileThreadsHoldCaches) {
  std::atomic<int> stage{0};
  auto pm = std::make_unique<PhysMem>(small(64, 8));
  std::thread t([&] {
    pfn_t p = pm->alloc();  // creates this thread's cache for pm
    pm->put(p);
    stage.store(1);
    while (stage.load() != 2) std::this_thread::yield();
    // pm is gone; a new instance (maybe at the same address) works.
    PhysMem other(small(16, 4));
    pfn_t q = other.alloc();
    EXPECT_NE(q, kNoFrame);
    other.put(q);
    other.drain_deferred();
    EXPECT_EQ(other.free_frames(), 16u);
  });  // thread exit reclaims the orphaned cache
  while (stage.load() != 1) std::this_thread::yield();
  pfn_t mine = pm->alloc();
  ASSERT_NE(mine, kNoFrame);
  pm.reset();  // frames still allocated and cached: they vanish
  auto again = std::make_unique<PhysMem>(small(8, 2));
  for (int i = 0; i < 8; ++i) EXPECT_NE(again->alloc(), kNoFrame);
  EXPECT_EQ(again->alloc(), kNoFrame);
  stage.store(2);
  t.join();
  again.reset();
}

TEST(PhysMem, ZeroFrame) {
  PhysMem pm(small(8, 2, /*pretouch=*/true));
  EXPECT_TRUE(pm.pretouched());
  pfn_t z = pm.zero_pfn();
  EXPECT_EQ(z, pm.capacity_frames());
  EXPECT_TRUE(pm.valid(z));
  static const char zeros[kFrameSize] = {};
  EXPECT_EQ(std::memcmp(pm.addr(z), zeros, kFrameSize), 0);
  EXPECT_EQ(pm.pfn_of(pm.addr(z)), z);
  std::int32_t rc = pm.frame(z).refcount.load();
  for (int i = 0; i < 10; ++i) pm.put(z);
  pm.get(z);
  EXPECT_EQ(pm.frame(z).refcount.load(), rc);
  pm.drain_deferred();
  EXPECT_EQ(pm.free_frames(), 8u);
  std::vector<pfn_t> v;
  for (pfn_t p; (p = pm.alloc()) != kNoFrame;) {
    EXPECT_NE(p, z);
    v.push_back(p);
  }
  EXPECT_EQ(v.size(), 8u);
  for (pfn_t p : v) pm.put(p);
  pm.drain_deferred();
}

TEST(PhysMem, NoPretouch) {
  PhysMem pm(small(8, 2, false));
  EXPECT_FALSE(pm.pretouched());
  PhysMem empty(small(0, 2, false));
  EXPECT_EQ(empty.alloc(), kNoFrame);
  EXPECT_EQ(empty.free_frames(), 0u);
}

// ---- Reclaim: frames freed or cached by OTHER threads (issue 12, bug 3) ----

// A thread that stays alive, parked until released, after running `body`.
class Parked {
 public:
  template <class F>
  explicit Parked(F body) : t_([this, body] {
          body();
          ready_.store(true);
          while (!go_.load()) std::this_thread::yield();
        }) {
    while (!ready_.load()) std::this_thread::yield();
  }
  ~Parked() { release(); }
  void release() {
    go_.store(true);
    if (t_.joinable()) t_.join();
  }

 private:
  std::atomic<bool> ready_{false}, go_{false};
  std::thread t_;
};

std::vector<pfn_t> alloc_all(PhysMem& pm) {
  std::vector<pfn_t> v;
  for (pfn_t p; (p = pm.alloc()) != kNoFrame;) v.push_back(p);
  return v;
}

void put_all(PhysMem& pm, const std::vector<pfn_t>& v) {
  for (pfn_t p : v) pm.put(p);
}

// (a) A live, idle thread freed 16 frames (its pending batch, not full)
// and caches 16 free ones (its refill took the whole 32-frame pool).
// After drain_deferred() on this thread all 32 are ours.
TEST(PhysMemReclaim, LiveThreadsPendingAndCachedFramesReusableAfterDrain) {
  PhysMem pm(small(32, 64));
  Parked other([&] {
    std::vector<pfn_t> v;
    for (int i = 0; i < 16; ++i) v.push_back(pm.alloc());
    for (pfn_t p : v) ASSERT_NE(p, kNoFrame);
    put_all(pm, v);
  });
  EXPECT_EQ(pm.free_frames(), 32u);
  pm.drain_deferred();
  EXPECT_EQ(pm.reusable_frames(), 32u);
  std::vector<pfn_t> mine = alloc_all(pm);
  EXPECT_EQ(mine.size(), 32u);
  put_all(pm, mine);
  other.release();
  pm.drain_deferred();
  EXPECT_EQ(pm.free_frames(), 32u);
  EXPECT_EQ(pm.reusable_frames(), 32u);
}

// (a) The same with every frame freed by the live thread: its whole
// pending batch (32 < 64, never submitted by the thread itself).
TEST(PhysMemReclaim, LiveThreadsFullPoolOfFreesReusableAfterDrain) {
  PhysMem pm(small(32, 64));
  Parked other([&] {
    std::vector<pfn_t> v = alloc_all(pm);
    ASSERT_EQ(v.size(), 32u);
    put_all(pm, v);
  });
  EXPECT_EQ(pm.alloc(), kNoFrame);  // still waiting for their grace period
  pm.drain_deferred();
  std::vector<pfn_t> mine = alloc_all(pm);
  EXPECT_EQ(mine.size(), 32u);
  put_all(pm, mine);
  pm.drain_deferred();
  EXPECT_EQ(pm.reusable_frames(), 32u);
}

// (a) Frames whose last reference is dropped inside an RCU callback, i.e.
// on liburcu's call_rcu worker thread (how a shared mapping's pages are
// freed after munmap).  Both orders: the callback has already run when
// drain_deferred() starts, or it runs during drain_deferred().
struct PutLater {
  rcu::Head head;
  PhysMem* pm;
  std::vector<pfn_t> frames;
  static void run(rcu::Head* h) {
    auto* self = reinterpret_cast<PutLater*>(h);
    put_all(*self->pm, self->frames);
    delete self;
  }
};

void frames_put_in_rcu_callback(bool callback_ran_before_drain) {
  PhysMem pm(small(32, 64));
  auto* later = new PutLater{{}, &pm, {}};
  for (int i = 0; i < 16; ++i) later->frames.push_back(pm.alloc());
  for (pfn_t p : later->frames) ASSERT_NE(p, kNoFrame);
  rcu::call(&later->head, &PutLater::run);
  if (callback_ran_before_drain) rcu::barrier();
  pm.drain_deferred();
  std::vector<pfn_t> mine = alloc_all(pm);
  EXPECT_EQ(mine.size(), 32u);
  put_all(pm, mine);
  pm.drain_deferred();
  EXPECT_EQ(pm.free_frames(), 32u);
  EXPECT_EQ(pm.reusable_frames(), 32u);
}

TEST(PhysMemReclaim, FramesPutInRcuCallbackReusableAfterDrain) {
  frames_put_in_rcu_callback(/*callback_ran_before_drain=*/true);
}

TEST(PhysMemReclaim, FramesPutInRcuCallbackDuringDrainReusableAfterIt) {
  frames_put_in_rcu_callback(/*callback_ran_before_drain=*/false);
}

// (b) A live thread holding free frames in its cache does not make this
// thread run out: alloc() alone (no drain) takes them.
TEST(PhysMemReclaim, AllocTakesFramesCachedByAnotherLiveThread) {
  PhysMem pm(small(32, 64));
  pfn_t held = kNoFrame;
  Parked other([&] { held = pm.alloc(); });  // its refill took all 32
  ASSERT_NE(held, kNoFrame);
  std::vector<pfn_t> mine = alloc_all(pm);
  EXPECT_EQ(mine.size(), 31u);
  std::set<pfn_t> distinct(mine.begin(), mine.end());
  distinct.insert(held);
  EXPECT_EQ(distinct.size(), 32u);
  put_all(pm, mine);
  pm.put(held);  // from this thread: fine, frames are not thread-bound
  other.release();
  pm.drain_deferred();
  EXPECT_EQ(pm.reusable_frames(), 32u);
}

// (b) With frees pending in the other thread as well: alloc() gets the
// cached ones at once; the pending ones after drain_deferred().
TEST(PhysMemReclaim, AllocTakesCachedFramesThenDrainTheFreedOnes) {
  PhysMem pm(small(32, 64));
  pfn_t held = kNoFrame;
  Parked other([&] {
    std::vector<pfn_t> v;
    for (int i = 0; i < 9; ++i) v.push_back(pm.alloc());
    for (pfn_t p : v) ASSERT_NE(p, kNoFrame);
    held = v.back();
    v.pop_back();
    put_all(pm, v);  // 8 pending, 23 cached free
  });
  std::vector<pfn_t> mine = alloc_all(pm);
  EXPECT_GE(mine.size(), 23u);  // + the 8 if their grace period already ended
  pm.drain_deferred();
  for (pfn_t p; (p = pm.alloc()) != kNoFrame;) mine.push_back(p);
  EXPECT_EQ(mine.size(), 31u);
  put_all(pm, mine);
  pm.put(held);
  other.release();
  pm.drain_deferred();
  EXPECT_EQ(pm.free_frames(), 32u);
  EXPECT_EQ(pm.reusable_frames(), 32u);
}

// reclaim(): non-blocking; cached frames of every thread come back to the
// global stack at once, pending ones are handed to RCU (and counted).
TEST(PhysMemReclaim, ReclaimReturnsCachesAndSubmitsPendingBatches) {
  PhysMem pm(small(64, 16));
  pfn_t held = kNoFrame;
  Parked other([&] {
    std::vector<pfn_t> v;
    for (int i = 0; i < 6; ++i) v.push_back(pm.alloc());  // refill: 16
    held = v.back();
    v.pop_back();
    put_all(pm, v);  // 5 pending, 10 cached
  });
  pfn_t mine = pm.alloc();  // refill: 16, 15 cached
  ASSERT_NE(mine, kNoFrame);
  pm.put(mine);  // 1 pending here
  EXPECT_EQ(pm.reusable_frames(), 64u - 16u - 16u + 10u + 15u);
  EXPECT_EQ(pm.reclaim(), 6u);
  EXPECT_EQ(pm.free_frames(), 63u);
  EXPECT_EQ(pm.reusable_frames(), 63u - 6u);  // all in the global stack now
  rcu::barrier();
  EXPECT_EQ(pm.reusable_frames(), 63u);
  EXPECT_EQ(pm.reclaim(), 0u);
  pm.put(held);
  other.release();
  pm.drain_deferred();
  EXPECT_EQ(pm.reusable_frames(), 64u);
}

// reclaim() is legal inside a read section (it never waits for a grace
// period); what it submits stays unusable until the section ends.
TEST(PhysMemReclaim, ReclaimInsideReadSection) {
  PhysMem pm(small(8, 16));  // 8 frees do not fill a batch
  std::vector<pfn_t> v = alloc_all(pm);
  ASSERT_EQ(v.size(), 8u);
  {
    rcu::ReadGuard g;
    put_all(pm, v);
    EXPECT_EQ(pm.reclaim(), 8u);
    EXPECT_EQ(pm.alloc(), kNoFrame);
  }
  pm.drain_deferred();
  EXPECT_EQ(alloc_all(pm).size(), 8u);
}

TEST(PhysMem, DefaultOptions) {
  PhysMemOptions o;
  EXPECT_EQ(o.capacity_bytes, 256ull << 20);
  EXPECT_FALSE(o.pretouch);  // nothing touched until used
  EXPECT_EQ(o.per_thread_cache, 64u);
}

using test::resident_bytes;

// A pool only reserves address space: its frames, their descriptors and
// its free stack cost host memory as they are used.  (With the descriptors
// constructed and the stack filled up front, a 1 GiB pool took 18 MiB.)
TEST(PhysMem, ANewPoolCommitsNoMemory) {
  const std::uint64_t before = resident_bytes();
  PhysMemOptions o;
  o.capacity_bytes = 1ull << 30;
  PhysMem pm(o);
  const std::uint64_t after = resident_bytes();
  EXPECT_LT(after - std::min(after, before), 1ull << 20);
  EXPECT_EQ(pm.free_frames(), pm.capacity_frames());
  EXPECT_EQ(pm.reusable_frames(), pm.capacity_frames());
  // Using a frame commits about its page and its descriptor's.
  const pfn_t p = pm.alloc_zeroed();
  ASSERT_NE(p, kNoFrame);
  EXPECT_EQ(pm.free_frames(), pm.capacity_frames() - 1);
  pm.put(p);
  pm.drain_deferred();
}

// The pool grows on demand, frame by frame, up to its limit, and no
// further; freed frames are reused before new ones are taken.
TEST(PhysMem, GrowsOnDemandUpToItsLimit) {
  PhysMemOptions o;
  o.capacity_bytes = 200 * kFrameSize;  // not a multiple of the cache size
  o.per_thread_cache = 64;
  PhysMem pm(o);
  std::vector<pfn_t> got;
  for (;;) {
    const pfn_t p = pm.alloc();
    if (p == kNoFrame) break;
    got.push_back(p);
    ASSERT_LE(got.size(), 200u);
  }
  ASSERT_EQ(got.size(), 200u);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(std::unique(got.begin(), got.end()), got.end());
  EXPECT_EQ(got.back(), 199u);
  EXPECT_EQ(pm.free_frames(), 0u);
  for (pfn_t p : got) pm.put(p);
  pm.drain_deferred();
  EXPECT_EQ(pm.free_frames(), 200u);
  const pfn_t again = pm.alloc();
  EXPECT_LT(again, 200u);
  pm.put(again);
  pm.drain_deferred();
}

}  // namespace
}  // namespace vmspace::mem
