// SPDX-License-Identifier: MIT
// The tree's node pool: a thread's free list outlives the thread (as an
// orphan chain handed over in O(1) at exit) and is reused by others
// without new slabs.
#include "tree/node_pool.h"

#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

namespace vmspace::tree::pool {
namespace {

TEST(NodePool, BlocksFreedByAnExitedThreadAreReused) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "sanitizer builds allocate every block separately";
#endif
  constexpr int kBlocks = 20000;  // several slabs' worth, and a long list to hand over
  std::set<void*> freed;
  // Several threads in turn: each allocates, frees into its own list and
  // exits; the lists must come back to the next threads.
  for (int round = 0; round < 4; ++round) {
    std::thread t([&] {
      std::vector<void*> v;
      for (int i = 0; i < kBlocks; ++i) v.push_back(alloc(kSmall));
      for (void* p : v) {
        freed.insert(p);
        free_local(kSmall, p);
      }
    });
    t.join();
  }
  const std::size_t bytes = slab_bytes();
  std::thread t([&] {
    int reused = 0;
    std::vector<void*> v;
    for (int i = 0; i < kBlocks; ++i) {
      v.push_back(alloc(kSmall));
      reused += freed.count(v.back()) != 0;
    }
    EXPECT_EQ(reused, kBlocks);
    for (void* p : v) free_local(kSmall, p);
  });
  t.join();
  EXPECT_EQ(slab_bytes(), bytes) << "new slabs although exited threads' blocks were free";
}

}  // namespace
}  // namespace vmspace::tree::pool
