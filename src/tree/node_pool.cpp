// SPDX-License-Identifier: MIT
#include "tree/node_pool.h"
#include "sync/tls.h"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <new>
#include <vector>

#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define VMSPACE_POOL_BYPASS 1
#endif

namespace vmspace::tree::pool {
namespace {

struct Block {
  Block* next;
};

constexpr std::size_t kAlign = 64;

std::atomic<std::size_t> g_slab_bytes{0};

#ifndef VMSPACE_POOL_BYPASS
struct Global {
  std::atomic<Block*> returned{nullptr};
  std::mutex mu;
  std::vector<void*> slabs;  // mu; keeps heap slabs reachable (leak checkers)
  // mu: the free lists of threads that exited, each a whole chain (its
  // tail is unknown, and finding it would walk the list: one cold miss
  // per block, for every thread exit).
  std::vector<Block*> orphans;
  std::atomic<std::size_t> bytes{0};
};
// Never destroyed: RCU callbacks may still return blocks during exit.
Global& pool_of(unsigned c) {
  static Global* g = new Global[kClasses];
  return g[c];
}

void push_chain(Class c, Block* head, Block* tail) {
  Block* old = pool_of(c).returned.load(std::memory_order_relaxed);
  do {
    tail->next = old;
  } while (!pool_of(c).returned.compare_exchange_weak(old, head, std::memory_order_release,
                                                      std::memory_order_relaxed));
}

struct Local {
  Block* head[kClasses] = {};
  // A thread's free list outlives it as an orphan chain, in O(1): a
  // thread that freed many nodes (or took a long chain in refill) used to
  // walk its whole list to find the tail here, and short-lived threads
  // then spent most of their time exiting (CortenMM's bench: 41% of all
  // samples).
  ~Local() {
    for (unsigned c = 0; c < kClasses; ++c) {
      Block* h = head[c];
      if (h == nullptr) continue;
      Global& g = pool_of(Class(c));
      std::lock_guard<std::mutex> lk(g.mu);
      g.orphans.push_back(h);
      head[c] = nullptr;
    }
  }
};
VMSPACE_TLS_FAST thread_local Local t_local;

// Small slabs first; once a class holds more than kSmallSlabLimit bytes
// (a tree of a few hundred entries), 2 MiB slabs backed by transparent huge
// pages: a lookup in a big tree otherwise pays TLB misses (nested paging
// in a VM makes them dear).  Measured at 64K entries: find median 81 ns
// with a 1 MiB small-slab allowance, 67 ns with none.
constexpr std::size_t kSmallSlabBlocks = 64;
constexpr std::size_t kSmallSlabLimit = std::size_t{64} << 10;
constexpr std::size_t kHugeSlab = std::size_t{2} << 20;

char* new_huge_slab() {
  // Over-map, then trim to a 2 MiB aligned 2 MiB range.
  void* m = mmap(nullptr, 2 * kHugeSlab, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  auto base = reinterpret_cast<std::uintptr_t>(m);
  std::uintptr_t aligned = (base + kHugeSlab - 1) & ~(kHugeSlab - 1);
  if (aligned > base) munmap(m, aligned - base);
  std::uintptr_t end = aligned + kHugeSlab;
  if (base + 2 * kHugeSlab > end) munmap(reinterpret_cast<void*>(end), base + 2 * kHugeSlab - end);
  madvise(reinterpret_cast<void*>(aligned), kHugeSlab, MADV_HUGEPAGE);
  return reinterpret_cast<char*>(aligned);
}

Block* refill(Class c) {
  Block* h = pool_of(c).returned.exchange(nullptr, std::memory_order_acquire);
  if (h != nullptr) return h;
  const std::size_t sz = kClassSize[c];
  Global& g = pool_of(c);
  {
    std::lock_guard<std::mutex> lk(g.mu);
    if (!g.orphans.empty()) {
      h = g.orphans.back();
      g.orphans.pop_back();
      return h;
    }
  }
  char* slab = nullptr;
  std::size_t blocks = kSmallSlabBlocks;
  if (g.bytes.load(std::memory_order_relaxed) >= kSmallSlabLimit) {
    slab = new_huge_slab();
    if (slab != nullptr) blocks = kHugeSlab / sz;
  }
  if (slab == nullptr) {
    slab = static_cast<char*>(::operator new(sz * blocks, std::align_val_t(kAlign)));
    std::lock_guard<std::mutex> lk(g.mu);
    g.slabs.push_back(slab);
  }
  g.bytes.fetch_add(sz * blocks, std::memory_order_relaxed);
  g_slab_bytes.fetch_add(sz * blocks, std::memory_order_relaxed);
  for (std::size_t i = 0; i < blocks; ++i) {
    auto* b = reinterpret_cast<Block*>(slab + i * sz);
    b->next = i + 1 < blocks ? reinterpret_cast<Block*>(slab + (i + 1) * sz) : nullptr;
  }
  return reinterpret_cast<Block*>(slab);
}
#endif

}  // namespace

#ifndef VMSPACE_POOL_BYPASS

void* alloc(Class c) {
  Block*& h = t_local.head[c];
  if (h == nullptr) h = refill(c);
  Block* b = h;
  h = b->next;
  // Blocks come back cold from the RCU callback thread; start fetching the
  // next one (a store allocates several nodes in a row).
  if (h != nullptr) {
    const char* q = reinterpret_cast<const char*>(h);
    for (std::size_t off = 0; off < kClassSize[c]; off += 64) __builtin_prefetch(q + off, 1);
  }
  return b;
}

void free_local(Class c, void* p) {
  auto* b = static_cast<Block*>(p);
  b->next = t_local.head[c];
  t_local.head[c] = b;
}

void chain_push(Chain& ch, void* p) {
  auto* b = static_cast<Block*>(p);
  b->next = static_cast<Block*>(ch.head);
  ch.head = b;
  if (ch.tail == nullptr) ch.tail = b;
}

void free_remote(Class c, Chain& ch) {
  if (ch.head == nullptr) return;
  push_chain(c, static_cast<Block*>(ch.head), static_cast<Block*>(ch.tail));
  ch = Chain{};
}

#else  // sanitizers: every block is a separate allocation

void* alloc(Class c) {
  g_slab_bytes.fetch_add(kClassSize[c], std::memory_order_relaxed);
  return ::operator new(kClassSize[c], std::align_val_t(kAlign));
}

void free_local(Class c, void* p) {
  g_slab_bytes.fetch_sub(kClassSize[c], std::memory_order_relaxed);
  ::operator delete(p, std::align_val_t(kAlign));
}

void chain_push(Chain& ch, void* p) {
  auto* b = static_cast<Block*>(p);
  b->next = static_cast<Block*>(ch.head);
  ch.head = b;
  if (ch.tail == nullptr) ch.tail = b;
}

void free_remote(Class c, Chain& ch) {
  auto* b = static_cast<Block*>(ch.head);
  while (b != nullptr) {
    Block* n = b->next;
    free_local(c, b);
    b = n;
  }
  ch = Chain{};
}

#endif

std::size_t slab_bytes() { return g_slab_bytes.load(std::memory_order_relaxed); }

}  // namespace vmspace::tree::pool
