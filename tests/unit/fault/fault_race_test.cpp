// SPDX-License-Identifier: MIT
// Regression tests for races around the fault path (issue 12), each forcing
// its interleaving with a test hook (fault.h FaultHooks; compiled out of
// release builds, where these tests skip):
//   - MADV_REMOVE punching a hole while a shared-memory fault holds a frame
//     it took from the page cache (bug 1);
//   - a fault that runs out of frames waiting for a grace period while it
//     holds a VMA read lock or the mmap_lock, against a thread that calls
//     munmap inside an AccessScope (bug 2), and a write() inside a scope
//     when the pool is empty (it aborted).
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <thread>

#include "fault/fault.h"
#include "mem/phys_mem.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kPage = 4096;
constexpr int kRW = PROT_READ | PROT_WRITE;

#if defined(VMSPACE_DEBUG_CHECKS)
constexpr bool kHooks = true;
#else
constexpr bool kHooks = false;
#endif

class FaultRace : public ::testing::TestWithParam<LockMode> {
 protected:
  void SetUp() override {
    if (!kHooks) GTEST_SKIP() << "test hooks are compiled out of release builds";
  }
  AddressSpaceOptions opts(std::uint64_t frames) const {
    AddressSpaceOptions o = test::test_options(GetParam());
    o.phys_bytes = frames * kPage;
    o.phys_pretouch = false;
    return o;
  }
};

// A one-shot gate: the hooked thread announces it arrived and waits to be
// let go.
struct Gate {
  std::promise<void> arrived, go;
  std::shared_future<void> go_f = go.get_future().share();
  std::atomic<int> calls{0};
  static void hook(void* arg) {
    auto* g = static_cast<Gate*>(arg);
    if (g->calls.fetch_add(1) != 0) return;  // only the first time
    g->arrived.set_value();
    g->go_f.wait();
  }
};

// Bug 1.  The page has data in the shmem object but no PTE (DONTNEED).  A
// read fault takes the cached frame; before it maps it, MADV_REMOVE punches
// the hole (nothing to zap yet) and returns.  Linux then reads zeros, and
// later writes stay in the object.  Before the fix the fault mapped the
// orphaned frame: the read saw the old data, and a write after it was lost
// at the next DONTNEED.
TEST_P(FaultRace, MadvRemoveRacingSharedFault) {
  AddressSpace as(opts(64));
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(kBase));
  ASSERT_TRUE(as.fill(kBase, 0xaa, kPage).ok());
  ASSERT_EQ(as.madvise(kBase, kPage, MADV_DONTNEED), 0);  // cached, unmapped

  Gate gate;
  fault::FaultHooks hooks;
  hooks.shared_page_taken = &Gate::hook;
  hooks.arg = &gate;
  unsigned char got = 0x11;
  std::thread reader([&] {
    fault::set_fault_hooks(&hooks);
    EXPECT_TRUE(as.read(kBase, &got, 1).ok());
    fault::set_fault_hooks(nullptr);
  });
  gate.arrived.get_future().wait();
  ASSERT_EQ(as.madvise(kBase, kPage, MADV_REMOVE), 0);  // returns before the fault maps anything
  gate.go.set_value();
  reader.join();
  EXPECT_EQ(got, 0) << "read the data MADV_REMOVE had already discarded";
  EXPECT_GE(gate.calls.load(), 2) << "the fault did not take a fresh page";

  // What is written now is in the shared object, so it survives DONTNEED.
  ASSERT_TRUE(as.fill(kBase, 0x5c, kPage).ok());
  ASSERT_EQ(as.madvise(kBase, kPage, MADV_DONTNEED), 0);
  unsigned char b = 0;
  ASSERT_TRUE(as.read(kBase + 100, &b, 1).ok());
  EXPECT_EQ(b, 0x5c) << "a write went to a frame the shared object no longer holds";
}

// Fill every frame of the pool through `region`, then unmap it: the frames
// are free but wait for a grace period before they can be reused.
void exhaust_then_free(AddressSpace& as, std::uint64_t region, std::uint64_t frames) {
  ASSERT_EQ(as.mmap(region, frames * kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(region));
  ASSERT_TRUE(as.fill(region, 1, frames * kPage).ok());
  ASSERT_EQ(as.munmap(region, frames * kPage), 0);
}

// Bug 2.  A fault that finds the pool empty (its frames waiting for a grace
// period) used to wait for the grace period (rcu::barrier) while holding
// its VMA read lock (per-VMA modes) or the mmap_lock.  A thread inside an
// AccessScope (an RCU read section) calling munmap of that VMA waits for the
// lock: each waited for the other forever.  Now the fault drops its locks
// before it waits, so munmap completes, the scope ends, the grace period
// ends, and the fault retries (and finds the page unmapped).
TEST_P(FaultRace, OomFaultDoesNotWaitForGracePeriodHoldingLocks) {
  constexpr std::uint64_t kFrames = 16;
  AddressSpace as(opts(kFrames));
  const std::uint64_t target = kBase + 64 * kPage;
  ASSERT_EQ(as.mmap(target, kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(target));
  exhaust_then_free(as, kBase, kFrames);

  std::promise<void> in_scope, scope_may_end;
  std::promise<int> munmapped;
  std::thread emulator([&] {
    AddressSpace::AccessScope scope(as);  // an emulator thread holds one across guest code
    in_scope.set_value();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the fault reach its wait
    munmapped.set_value(as.munmap(target, kPage));                // the guest's munmap
    scope_may_end.get_future().wait();
  });
  in_scope.get_future().wait();
  std::future<Fault> fault = std::async(std::launch::async, [&] { return as.fault_in(target, true); });
  std::future<int> m = munmapped.get_future();
  if (m.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << "munmap inside an AccessScope deadlocked against an out-of-memory fault";
    std::fflush(nullptr);
    std::_Exit(1);  // the threads are stuck for good
  }
  EXPECT_EQ(m.get(), 0);
  scope_may_end.set_value();
  emulator.join();
  // The fault waited for the grace period with no lock held, then retried:
  // the page is gone by then.
  EXPECT_EQ(fault.get(), Fault::segv_maperr);
  // And the memory is usable again.
  ASSERT_EQ(as.mmap(kBase, kFrames * kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(kBase));
  EXPECT_TRUE(as.fill(kBase, 3, kFrames * kPage).ok());
}

// Bug 2, inside a scope: with the pool's frames waiting for a grace period,
// a write() inside an AccessScope cannot wait for them (the grace period
// waits for the scope).  It used to abort the process (rcu::barrier inside
// a read section); now it reports OOM, and succeeds once the scope is over.
TEST_P(FaultRace, OomInsideAccessScopeIsAResult) {
  constexpr std::uint64_t kFrames = 16;
  AddressSpace as(opts(kFrames));
  exhaust_then_free(as, kBase, kFrames);
  const std::uint64_t target = kBase + 64 * kPage;
  ASSERT_EQ(as.mmap(target, kFrames * kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
            static_cast<long>(target));
  const unsigned char byte = 7;
  {
    AddressSpace::AccessScope scope(as);
    AccessResult r = as.write(target, &byte, 1);
    EXPECT_EQ(r.fault, Fault::oom);
    EXPECT_EQ(r.addr, target);
  }
  EXPECT_TRUE(as.fill(target, byte, kFrames * kPage).ok());
}

std::string race_mode_name(const ::testing::TestParamInfo<LockMode>& p) { return std::string(lock_mode_name(p.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, FaultRace, ::testing::ValuesIn(kAllLockModes), race_mode_name);

}  // namespace
}  // namespace vmspace
