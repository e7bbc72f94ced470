// SPDX-License-Identifier: MIT
// phys_mem.cpp - frame allocator: global free stack + per-thread caches +
// RCU-batched deferred frees.  See phys_mem.h for the contract.
//
// Correctness argument (short):
//  - A free frame is in exactly one place: the global stack, one cache's
//    frames[], one cache's pending list, or one submitted batch.  Moves
//    between places happen under the owner thread (caches: only their
//    thread touches frames[]/pending), under pool_lock_ (global stack), or
//    in the RCU callback (batch -> stack, under pool_lock_).
//  - Reuse after a grace period: a frame reaches refcount 0 in put(), goes
//    to a pending list, and only an RCU callback (queued after that put)
//    moves it to the stack.  Callbacks run after every reader that was
//    inside a read section at rcu::call() time has left; the pending delay
//    only lengthens that.
//  - Thread exit: ~ThreadCaches gives frames[] back and submits pending
//    batches, under the registry mutex, for caches whose owner is alive
//    (owner != nullptr; the destructor orphans caches under the same
//    mutex BEFORE its rcu::barrier(), so no batch for a dying instance can
//    be queued after that barrier).
//  - tsan: frame contents/descriptors written by the freeing thread are
//    ordered before the reuse by rcu::call's release -> callback acquire ->
//    pool_lock_ release -> next allocator's pool_lock_ acquire.
#include "mem/phys_mem.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>

namespace vmspace::mem {

struct PhysMem::Cache {
  Cache(std::uint64_t g, PhysMem* o, unsigned size)
      : gen(g), owner(o), frames(new pfn_t[size]) {}
  const std::uint64_t gen;  // immutable: which PhysMem instance
  PhysMem* owner;           // guarded by g_registry_mu; nullptr = orphaned
  // Written only by the owning thread (relaxed stores); read by
  // free_frames() from other threads.
  std::atomic<std::uint32_t> n{0};       // free frames in frames[0..n)
  std::atomic<std::uint32_t> pend_n{0};  // frames on the pending list
  pfn_t pend_head = kNoFrame;            // owning thread only
  std::unique_ptr<pfn_t[]> frames;       // owning thread only
};

namespace {

std::mutex g_registry_mu;  // guards Cache::owner, PhysMem::caches_, cache creation/destruction
std::atomic<std::uint64_t> g_next_gen{1};

// Fast-path TLS: trivially destructible, so no guard cost.
thread_local PhysMem::Cache* tls_last = nullptr;
thread_local bool tls_dead = false;  // ThreadCaches destroyed (thread exiting)

[[noreturn]] void die(const char* msg, pfn_t pfn) {
  std::fprintf(stderr, "vmspace: PhysMem: %s (pfn %llu)\n", msg,
               static_cast<unsigned long long>(pfn));
  std::abort();
}

}  // namespace

// All caches of the calling thread, one per PhysMem it used.
struct ThreadCaches {
  std::vector<PhysMem::Cache*> list;

  ~ThreadCaches() {
    tls_dead = true;
    tls_last = nullptr;
    std::lock_guard<std::mutex> g(g_registry_mu);
    for (PhysMem::Cache* c : list) {
      if (PhysMem* pm = c->owner) {
        pm->push_pool(c->frames.get(), c->n.load(std::memory_order_relaxed));
        c->n.store(0, std::memory_order_relaxed);
        pm->submit(c);
        auto& v = pm->caches_;
        v.erase(std::find(v.begin(), v.end(), c));
      }
      delete c;
    }
    list.clear();
  }
};

PhysMem::PhysMem(const PhysMemOptions& o)
    : capacity_(o.capacity_bytes / kFrameSize),
      cache_size_(std::max(1u, o.per_thread_cache)),
      gen_(g_next_gen.fetch_add(1, std::memory_order_relaxed)) {
  map_bytes_ = static_cast<std::size_t>(capacity_ + 1) * kFrameSize;
  void* p = ::mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  base_ = static_cast<std::byte*>(p);
  try {
    frames_ = new Frame[capacity_ + 1];
    pool_.resize(capacity_);
  } catch (...) {
    delete[] frames_;
    ::munmap(p, map_bytes_);
    throw;
  }
  if (o.pretouch) {
    // Write (not read: a read would map the host's zero page) one byte per
    // host page so every later access is a plain memory access.
    for (std::size_t off = 0; off < map_bytes_; off += kFrameSize)
      static_cast<volatile std::byte*>(p)[off] = std::byte{0};
    pretouched_ = true;
  }
  // Lowest pfns on top of the stack, so a fresh allocator hands out 0, 1, ...
  for (std::uint64_t i = 0; i < capacity_; ++i) pool_[i] = capacity_ - 1 - i;
  pool_n_ = capacity_;
  pool_count_.store(capacity_, std::memory_order_relaxed);
  frames_[capacity_].refcount.store(1, std::memory_order_relaxed);  // zero frame
}

PhysMem::~PhysMem() {
  {
    // Orphan every cache first: afterwards no exiting thread can queue a
    // batch for this instance, so the barrier below drains them all.
    std::lock_guard<std::mutex> g(g_registry_mu);
    for (Cache* c : caches_) c->owner = nullptr;
    caches_.clear();
  }
  rcu::barrier();
  // rcu::barrier() gives tsan no happens-before edge from the callbacks it
  // waited for; take one from their last actions (pool_lock_ release, the
  // release RMW on inflight_).  Costs nothing worth mentioning.
  pool_lock_.lock();
  pool_lock_.unlock();
  if (inflight_.load(std::memory_order_acquire) != 0) die("destroyed with RCU frees in flight", 0);
  delete[] frames_;
  ::munmap(base_, map_bytes_);
}

PhysMem::Cache* PhysMem::cache() {
  Cache* c = tls_last;
  if (__builtin_expect(c != nullptr && c->gen == gen_, 1)) return c;
  return cache_slow();
}

PhysMem::Cache* PhysMem::cache_slow() {
  if (tls_dead) return nullptr;  // called from a later thread_local destructor
  // Register with RCU before constructing `tc`, so RCU's per-thread
  // destructor runs after ours (ours submits batches with rcu::call()).
  rcu::ensure_registered();
  static thread_local ThreadCaches tc;
  for (Cache* c : tc.list) {
    if (c->gen == gen_) {
      tls_last = c;
      return c;
    }
  }
  auto* c = new (std::nothrow) Cache(gen_, this, cache_size_);
  if (c == nullptr) return nullptr;
  std::lock_guard<std::mutex> g(g_registry_mu);
  // Reclaim caches of destroyed instances.
  for (auto it = tc.list.begin(); it != tc.list.end();) {
    if ((*it)->owner == nullptr) {
      if (tls_last == *it) tls_last = nullptr;
      delete *it;
      it = tc.list.erase(it);
    } else {
      ++it;
    }
  }
  tc.list.push_back(c);
  caches_.push_back(c);
  tls_last = c;
  return c;
}

namespace {
inline void init_frame(Frame& f, [[maybe_unused]] pfn_t pfn) {
#ifdef VMSPACE_DEBUG_CHECKS
  if (f.refcount.load(std::memory_order_relaxed) != 0) die("allocating a frame in use", pfn);
#endif
  f.refcount.store(1, std::memory_order_relaxed);
  f.mapcount.store(0, std::memory_order_relaxed);
  f.mapping.store(0, std::memory_order_relaxed);
  f.index.store(0, std::memory_order_relaxed);
}
}  // namespace

pfn_t PhysMem::alloc() {
  Cache* c = tls_last;
  if (__builtin_expect(c != nullptr && c->gen == gen_, 1)) {
    std::uint32_t n = c->n.load(std::memory_order_relaxed);
    if (__builtin_expect(n != 0, 1)) {
      pfn_t pfn = c->frames[n - 1];
      c->n.store(n - 1, std::memory_order_relaxed);
      init_frame(frames_[pfn], pfn);
      return pfn;
    }
  }
  return alloc_slow();
}

pfn_t PhysMem::alloc_slow() {
  Cache* c = cache();
  pfn_t pfn = kNoFrame;
  if (c == nullptr) {
    // No cache (thread exiting or out of host memory): one frame directly.
    pool_lock_.lock();
    if (pool_n_ != 0) {
      pfn = pool_[--pool_n_];
      pool_count_.store(pool_n_, std::memory_order_relaxed);
    }
    pool_lock_.unlock();
  } else {
    if (c->n.load(std::memory_order_relaxed) == 0) refill(c);
    std::uint32_t n = c->n.load(std::memory_order_relaxed);
    if (n != 0) {
      pfn = c->frames[n - 1];
      c->n.store(n - 1, std::memory_order_relaxed);
    } else {
      // Out of memory.  Start the grace period for what this thread has
      // freed, so a retry after rcu::barrier() succeeds.
      submit(c);
    }
  }
  if (pfn != kNoFrame) init_frame(frames_[pfn], pfn);
  return pfn;
}

pfn_t PhysMem::alloc_zeroed() {
  pfn_t pfn = alloc();
  if (pfn != kNoFrame) std::memset(addr(pfn), 0, kFrameSize);
  return pfn;
}

void PhysMem::refill(Cache* c) {
  pool_lock_.lock();
  std::size_t k = std::min<std::size_t>(pool_n_, cache_size_);
  if (k != 0) std::memcpy(c->frames.get(), pool_.data() + (pool_n_ - k), k * sizeof(pfn_t));
  pool_n_ -= k;
  pool_count_.store(pool_n_, std::memory_order_relaxed);
  pool_lock_.unlock();
  // Stack order: frames[k-1] (popped first) is the lowest pfn of the chunk.
  std::reverse(c->frames.get(), c->frames.get() + k);
  c->n.store(static_cast<std::uint32_t>(k), std::memory_order_relaxed);
}

void PhysMem::push_pool(const pfn_t* pfns, std::size_t n) {
  if (n == 0) return;
  pool_lock_.lock();
#ifdef VMSPACE_DEBUG_CHECKS
  if (pool_n_ + n > capacity_) die("free stack overflow (double free?)", pfns[0]);
#endif
  std::memcpy(pool_.data() + pool_n_, pfns, n * sizeof(pfn_t));
  pool_n_ += n;
  pool_count_.store(pool_n_, std::memory_order_relaxed);
  pool_lock_.unlock();
}

void PhysMem::get(pfn_t pfn) {
  if (pfn == capacity_) return;  // zero frame
#ifdef VMSPACE_DEBUG_CHECKS
  if (pfn > capacity_) die("get: bad pfn", pfn);
  if (frames_[pfn].refcount.fetch_add(1, std::memory_order_relaxed) <= 0)
    die("get on a free frame", pfn);
#else
  frames_[pfn].refcount.fetch_add(1, std::memory_order_relaxed);
#endif
}

void PhysMem::put(pfn_t pfn) {
  if (pfn == capacity_) return;  // zero frame
#ifdef VMSPACE_DEBUG_CHECKS
  if (pfn > capacity_) die("put: bad pfn", pfn);
#endif
  Frame& f = frames_[pfn];
  std::int32_t old = f.refcount.fetch_sub(1, std::memory_order_acq_rel);
  if (__builtin_expect(old != 1, 1)) {
#ifdef VMSPACE_DEBUG_CHECKS
    if (old <= 0) die("put on a free frame (refcount underflow)", pfn);
#endif
    return;
  }
  Cache* c = tls_last;
  if (__builtin_expect(c != nullptr && c->gen == gen_, 1)) {
    f.next_free = c->pend_head;
    c->pend_head = pfn;
    std::uint32_t n = c->pend_n.load(std::memory_order_relaxed) + 1;
    c->pend_n.store(n, std::memory_order_relaxed);
    if (n >= cache_size_) submit(c);
    return;
  }
  put_slow(pfn);
}

void PhysMem::put_slow(pfn_t pfn) {
  Frame& f = frames_[pfn];
  Cache* c = cache();
  if (c == nullptr) {
    // No cache: a batch of one.
    f.next_free = kNoFrame;
    f.owner = this;
    inflight_.fetch_add(1, std::memory_order_relaxed);
    rcu::call(&f.rcu, &PhysMem::batch_done);
    return;
  }
  f.next_free = c->pend_head;
  c->pend_head = pfn;
  std::uint32_t n = c->pend_n.load(std::memory_order_relaxed) + 1;
  c->pend_n.store(n, std::memory_order_relaxed);
  if (n >= cache_size_) submit(c);
}

void PhysMem::submit(Cache* c) {
  std::uint32_t n = c->pend_n.load(std::memory_order_relaxed);
  if (n == 0) return;
  Frame& head = frames_[c->pend_head];
  head.owner = this;
  inflight_.fetch_add(n, std::memory_order_relaxed);
  c->pend_head = kNoFrame;
  c->pend_n.store(0, std::memory_order_relaxed);
  rcu::call(&head.rcu, &PhysMem::batch_done);
}

void PhysMem::batch_done(rcu::Head* h) {
  auto* head = reinterpret_cast<Frame*>(reinterpret_cast<char*>(h) - offsetof(Frame, rcu));
  PhysMem* pm = head->owner;
  constexpr std::size_t kChunk = 64;
  pfn_t buf[kChunk];
  std::size_t k = 0, total = 0;
  for (pfn_t p = static_cast<pfn_t>(head - pm->frames_); p != kNoFrame;) {
    pfn_t next = pm->frames_[p].next_free;
    buf[k++] = p;
    if (k == kChunk) {
      pm->push_pool(buf, k);
      total += k;
      k = 0;
    }
    p = next;
  }
  pm->push_pool(buf, k);
  total += k;
  // Release: the callback's last touch of *pm; ~PhysMem acquires it.
  pm->inflight_.fetch_sub(total, std::memory_order_release);
}

void PhysMem::flush_deferred() {
  if (Cache* c = cache()) submit(c);
}

void PhysMem::drain_deferred() {
  flush_deferred();
  rcu::barrier();
}

std::uint64_t PhysMem::free_frames() const {
  std::uint64_t sum = pool_count_.load(std::memory_order_relaxed) +
                      inflight_.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> g(g_registry_mu);
  for (const Cache* c : caches_)
    sum += c->n.load(std::memory_order_relaxed) + c->pend_n.load(std::memory_order_relaxed);
  return sum;
}

std::uint64_t PhysMem::reusable_frames() const {
  std::uint64_t sum = pool_count_.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> g(g_registry_mu);
  for (const Cache* c : caches_) sum += c->n.load(std::memory_order_relaxed);
  return sum;
}

}  // namespace vmspace::mem
