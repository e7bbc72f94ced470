// SPDX-License-Identifier: MIT
#include "sync/rcu.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "sync/lockdep.h"
#include "test_util.h"

namespace vmspace {
namespace {

using test::kBlockedFor;
using test::wait_until;

struct Flagged {
  rcu::Head head;
  std::atomic<bool>* freed;
};

void free_flagged(rcu::Head* h) {
  auto* f = reinterpret_cast<Flagged*>(h);
  f->freed->store(true);
  delete f;
}

TEST(Rcu, ReadSectionsNest) {
  EXPECT_FALSE(rcu::in_read_section());
  {
    rcu::ReadGuard outer;
    EXPECT_TRUE(rcu::in_read_section());
    {
      rcu::ReadGuard inner;
      EXPECT_TRUE(rcu::in_read_section());
    }
    EXPECT_TRUE(rcu::in_read_section());
  }
  EXPECT_FALSE(rcu::in_read_section());
}

// A deferred free runs only after every reader that could see the object
// has left its read-side section.
TEST(Rcu, DeferredFreeWaitsForReaders) {
  std::atomic<bool> reader_inside{false}, reader_may_leave{false}, freed{false};
  std::thread reader([&] {
    rcu::ReadGuard g;
    reader_inside = true;
    while (!reader_may_leave) std::this_thread::yield();
  });
  ASSERT_TRUE(wait_until([&] { return reader_inside.load(); }));

  rcu::call(&(new Flagged{{}, &freed})->head, free_flagged);
  std::this_thread::sleep_for(kBlockedFor);
  EXPECT_FALSE(freed.load()) << "callback ran while a pre-existing reader was inside";

  reader_may_leave = true;
  reader.join();
  rcu::barrier();
  EXPECT_TRUE(freed.load());
}

TEST(Rcu, SynchronizeWaitsForReaders) {
  std::atomic<bool> reader_inside{false}, reader_may_leave{false}, synced{false};
  std::thread reader([&] {
    rcu::ReadGuard g;
    reader_inside = true;
    while (!reader_may_leave) std::this_thread::yield();
  });
  ASSERT_TRUE(wait_until([&] { return reader_inside.load(); }));
  std::thread updater([&] {
    rcu::synchronize();
    synced = true;
  });
  std::this_thread::sleep_for(kBlockedFor);
  EXPECT_FALSE(synced.load());
  reader_may_leave = true;
  reader.join();
  updater.join();
  EXPECT_TRUE(synced.load());
}

TEST(Rcu, SynchronizeDoesNotWaitForLaterReaders) {
  // A reader that enters after synchronize() started does not hold it up:
  // synchronize() from a thread with no readers at all returns promptly.
  rcu::synchronize();
  rcu::synchronize();
}

TEST(Rcu, DeferDeleteRunsDestructor) {
  struct Obj {
    std::atomic<int>* dtors;
    ~Obj() { ++*dtors; }
  };
  std::atomic<int> dtors{0};
  for (int i = 0; i < 100; ++i) rcu::defer_delete(new Obj{&dtors});
  rcu::barrier();
  EXPECT_EQ(dtors.load(), 100);
}

TEST(Rcu, ThreadsRegisterThemselves) {
  // Fresh threads use every entry point without registering by hand.
  std::atomic<int> done{0};
  std::thread t([&] {
    { rcu::ReadGuard g; }
    rcu::synchronize();
    rcu::defer_delete(new int(5));
    rcu::barrier();
    ++done;
  });
  t.join();
  EXPECT_EQ(done.load(), 1);
}

TEST(RcuDeathTest, SynchronizeInsideReadSectionAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        rcu::ReadGuard g;
        rcu::synchronize();
      },
      "synchronize\\(\\) called inside an RCU read-side section");
}

}  // namespace
}  // namespace vmspace
