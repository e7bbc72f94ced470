// SPDX-License-Identifier: MIT
// phys_mem.cpp - frame allocator: global free stack + per-thread caches +
// RCU-batched deferred frees + reclaim from other threads.  See phys_mem.h
// for the contract.
//
// WHERE A FREE FRAME IS
//
// A frame with refcount 0 is in exactly one place: the global stack, one
// cache's frames[], one cache's pending list, one detached Batch being
// submitted, or one batch handed to rcu::call() (counted in inflight_) --
// or it was never used: pfns [hwm_, capacity_), whose descriptors are not
// constructed yet (zero-filled reserved memory), taken in order when the
// stack is empty (take_fresh_locked, construct_fresh).
// Only an RCU callback (batch_done) moves a frame from a freed batch to the
// stack, so a frame is reused only after a grace period that started after
// its last put(): the pending delay and reclaim() only move the moment the
// batch is handed to RCU, never its grace period.
//
// WHO TOUCHES WHAT
//
//   pool_, pool_n_          holders of pool_lock_ (frame_lock/1)
//   caches_, Cache::owner   holders of g_registry_mu
//   Cache::frames[], n,     the owning thread in its fast path (below), or
//   pend_head, pend_n,      whoever holds Cache::lock (frame_lock/0): the
//   and Frame::next_free    owner's slow paths and stealers.  n and pend_n
//   of frames on the list   are atomics only so free_frames() may read them
//                           unlocked (relaxed); every writer is excluded.
//   Cache::busy             written by the owning thread only
//   Cache::steal            written by the stealer only (stealers hold
//                           g_registry_mu, so there is one at a time)
//
// Stealers are reclaim()/sweep() (alloc()'s out-of-memory path,
// drain_deferred()) and thread exit.  All of them hold g_registry_mu, which
// also keeps every cache in caches_ alive (caches are deleted only under
// it).  Lock order: g_registry_mu -> Cache::lock -> pool_lock_.
//
// THE FAST-PATH HANDSHAKE (why alloc()/put() need no RMW and no lock)
//
// The owner's fast path (alloc from frames[], put onto the pending list):
//   O1 busy.store(true, relaxed)
//   O2 atomic_signal_fence(seq_cst)       compiler barrier only
//   O3 if (steal.load(acquire)) -> slow path (clears busy, takes the lock)
//   O4 ...touch frames[]/n or pend_head/pend_n/next_free...
//   O5 busy.store(false, release)
// A stealer, holding g_registry_mu:
//   S1 steal.store(true, relaxed)         (on every cache of the instance)
//   S2 heavy_barrier(): sys_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
//   S3 lock Cache::lock; spin while busy.load(acquire)
//   S4 ...take frames[0..n) and the pending list...
//   S5 steal.store(false, release); unlock
// Mutual exclusion of O4 and S4 is Dekker's pattern (O1;O3 against S1;S3),
// which needs store->load ordering on BOTH sides.  Any owner operation
// that can fail against a concurrent steal needs a store->load fence or an
// atomic RMW (Attiya et al., "Laws of Order", POPL 2011), and both cost
// about as much as the rest of the fast path.  So the fence is made
// asymmetric, exactly as liburcu's memb flavor does for rcu_read_lock()
// (which vmspace already relies on): the owner side is a compiler barrier
// (O2), the stealer side is membarrier(), which runs a full memory barrier
// on every running thread of the process (a thread that is not running is
// already in that state) before it returns.  Let P be the point in the
// owner's program order where that barrier hits it:
//   - O1 before P: the store is globally visible before S2 returns, so S3
//     reads O1's true or a later store.  It proceeds only on reading false,
//     i.e. O5 of the same operation: acquire/release, O4 happens before S4.
//   - O1 after P: then O3 is after P too, and S1 was visible before P
//     (membarrier is a full barrier for the caller as well), so O3 reads
//     true (nothing but S5 stores false) and the owner takes the slow path,
//     which waits for the lock: S4 happens before it (S5/unlock release,
//     lock acquire).
// And O3 reading false from an earlier stealer's S5 (release, acquire)
// orders that stealer's S4 before this O4.  The owner's slow paths take
// Cache::lock and ignore busy/steal.  This is the one ordering argument
// outside the C++ memory model (membarrier is an OS guarantee); everything
// ThreadSanitizer sees is ordinary acquire/release and locks, and in every
// real execution the edges it needs exist (above), so tsan checks the same
// code that ships.  A stealer never waits long at S3: O1..O5 is a few
// instructions that never block (an owner preempted there is waited out
// with sched_yield).  A signal handler that allocates could interrupt its
// own thread's O1..O5 and spin forever: PhysMem is not async-signal-safe.
// If the kernel lacks MEMBARRIER_CMD_PRIVATE_EXPEDITED, MEMBARRIER_CMD_GLOBAL
// is used (slower: it waits for a kernel RCU grace period, not for ours);
// without either, liburcu's memb flavor does not work either and we abort.
//
// THREAD EXIT AND DESTRUCTION
//
//  - ~ThreadCaches gives frames[] back and submits pending batches, under
//    g_registry_mu, for caches whose owner is alive (owner != nullptr; the
//    destructor orphans caches under the same mutex BEFORE its
//    rcu::barrier(), so no batch for a dying instance can be queued after
//    that barrier, and no stealer can be sweeping an orphaned cache).
//  - tsan: frame contents/descriptors written by the freeing thread are
//    ordered before the reuse by (the handshake or Cache::lock when a
//    stealer submits) -> rcu::call's release -> callback acquire ->
//    pool_lock_ release -> next allocator's pool_lock_ acquire.  Frames a
//    stealer moves from a cache to the stack were free already: Cache::lock
//    / the handshake, then pool_lock_, order the owner's last accesses
//    before the next allocator's.
#include "mem/phys_mem.h"

#include "mem/file.h"  // flush_released_files

#include "sync/fail_nth.h"
#include "sync/tls.h"

#include <linux/membarrier.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>

namespace vmspace::mem {

struct alignas(64) PhysMem::Cache {
  Cache(std::uint64_t g, PhysMem* o, unsigned size)
      : gen(g), owner(o), frames(new pfn_t[size]) {}
  const std::uint64_t gen;  // immutable: which PhysMem instance
  PhysMem* owner;           // guarded by g_registry_mu; nullptr = orphaned
  // The handshake (file comment): busy is written by the owning thread
  // only, steal by the (single) stealer only.
  std::atomic<bool> busy{false};
  std::atomic<bool> steal{false};
  // Owner fast path under the handshake, or a holder of `lock` (file
  // comment).  n/pend_n: relaxed atomics so free_frames() can read them.
  std::atomic<std::uint32_t> n{0};       // free frames in frames[0..n)
  std::atomic<std::uint32_t> pend_n{0};  // frames on the pending list
  pfn_t pend_head = kNoFrame;
  std::unique_ptr<pfn_t[]> frames;
  // The owner's slow paths and stealers.  frame_lock subclass 0: pool_lock_
  // (subclass 1) nests inside it.
  SpinLock lock{LockClass::frame_lock};
};

namespace {

std::mutex g_registry_mu;  // guards Cache::owner, PhysMem::caches_, cache creation/destruction; serializes stealers
std::atomic<std::uint64_t> g_next_gen{1};

// Fast-path TLS: trivially destructible, so no guard cost.
VMSPACE_TLS_FAST thread_local PhysMem::Cache* tls_last = nullptr;
VMSPACE_TLS_FAST thread_local bool tls_dead = false;  // ThreadCaches destroyed (thread exiting)

constexpr unsigned kPoolSub = 1;  // pool_lock_'s lockdep subclass (inside a cache lock)

[[noreturn]] void die(const char* msg, pfn_t pfn) {
  std::fprintf(stderr, "vmspace: PhysMem: %s (pfn %llu)\n", msg,
               static_cast<unsigned long long>(pfn));
  std::abort();
}

long sys_membarrier(int cmd) { return ::syscall(__NR_membarrier, cmd, 0, 0); }

// The membarrier command heavy_barrier() uses (chosen once per process;
// registering is a no-op when liburcu already did it).
int membarrier_cmd() {
  static const int cmd = [] {
    const long mask = sys_membarrier(MEMBARRIER_CMD_QUERY);
    if (mask < 0) return -1;
    if ((mask & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
        sys_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0)
      return static_cast<int>(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
    if (mask & MEMBARRIER_CMD_GLOBAL) return static_cast<int>(MEMBARRIER_CMD_GLOBAL);
    return -1;
  }();
  return cmd;
}

// The stealer's half of the asymmetric fence (file comment, S2): a full
// barrier on every running thread of the process, and on the caller (the
// kernel issues smp_mb() at entry and exit of membarrier()).  The signal
// fences only keep the compiler from moving our accesses across the call
// (atomic_thread_fence would be redundant, and GCC's tsan rejects it).
void heavy_barrier() {
  const int cmd = membarrier_cmd();
  if (cmd < 0) die("membarrier() is unavailable", 0);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (sys_membarrier(cmd) != 0) die("membarrier() failed", 0);
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

// S3: wait until the owner is outside its fast path.
void wait_not_busy(const PhysMem::Cache* c) {
  unsigned spins = 0;
  while (c->busy.load(std::memory_order_acquire)) {  // pairs with O5
    if (++spins < 1024)
      cpu_relax();
    else
      sched_yield();
  }
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
        // We are the owner and outside any fast path; the lock is for the
        // rule "fields change only under the lock or in the fast path".
        c->lock.lock();
        pm->push_pool(c->frames.get(), c->n.load(std::memory_order_relaxed));
        c->n.store(0, std::memory_order_relaxed);
        PhysMem::Batch b = PhysMem::detach_pending(c);
        c->lock.unlock();
        pm->submit(b);
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
  // Choose (and register) the stealers' membarrier command now, so no
  // out-of-memory path pays for it and a kernel without it fails early.
  if (membarrier_cmd() < 0) die("membarrier() is unavailable", 0);
  // Every pfn, the zero frame's (capacity_) included, fits the 32-bit
  // free-list link without being its end marker (0xffffffff).
  if (capacity_ > 0xfffffffe) throw std::length_error("PhysMem: more than 2^32 - 2 frames");
  map_bytes_ = static_cast<std::size_t>(capacity_ + 1) * kFrameSize;
  void* p = ::mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  base_ = static_cast<std::byte*>(p);
  // The descriptors and the free stack are reserved too, not touched:
  // a frame's descriptor is constructed when the frame is first handed
  // out (construct_fresh), a stack slot written when a frame is freed.  Host
  // memory is committed as frames are used: a new pool costs nothing.
  meta_bytes_ = static_cast<std::size_t>(capacity_ + 1) * sizeof(Frame);
  void* m = ::mmap(nullptr, meta_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    ::munmap(p, map_bytes_);
    throw std::bad_alloc();
  }
  frames_ = static_cast<Frame*>(m);
  stack_bytes_ = std::max<std::size_t>(1, static_cast<std::size_t>(capacity_) * sizeof(pfn_t));
  void* st = ::mmap(nullptr, stack_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (st == MAP_FAILED) {
    ::munmap(m, meta_bytes_);
    ::munmap(p, map_bytes_);
    throw std::bad_alloc();
  }
  pool_ = static_cast<pfn_t*>(st);
  if (o.pretouch) {
    // Write (not read: a read would map the host's zero page) one byte per
    // host page so every later access is a plain memory access.
    for (std::size_t off = 0; off < map_bytes_; off += kFrameSize)
      static_cast<volatile std::byte*>(p)[off] = std::byte{0};
    pretouched_ = true;
  }
  new (&frames_[capacity_]) Frame();
  frames_[capacity_].refcount.store(1, std::memory_order_relaxed);  // zero frame
  pool_count_.store(capacity_, std::memory_order_relaxed);  // all of them, never used yet
}

// Reserve up to `want` frames never used before, [*first, *first + k);
// returns k.  Caller holds pool_lock_.  Their descriptors are constructed
// by the caller after it drops the lock (construct_fresh): constructing
// touches fresh host pages, which may fault and reclaim, not to be done
// under a spinlock; and nobody else can name those frames before the
// caller hands them on (into its cache, under Cache::lock, or to its
// caller).
std::size_t PhysMem::take_fresh_locked(std::size_t want, pfn_t* first) {
  const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(want, capacity_ - hwm_));
  *first = hwm_;
  hwm_ += k;
  return k;
}

// Construct the descriptors of fresh frames [first, first + k) and list
// them in out[] in stack order (out[k - 1], popped first, is the lowest).
void PhysMem::construct_fresh(pfn_t first, std::size_t k, pfn_t* out) {
  for (std::size_t i = 0; i < k; ++i) {
    new (&frames_[first + i]) Frame();
    out[k - 1 - i] = first + i;
  }
}

void PhysMem::sync_count_locked() { pool_count_.store(pool_n_ + (capacity_ - hwm_), std::memory_order_relaxed); }

PhysMem::~PhysMem() {
  // Files of this pool let go of (their VMAs freed by RCU callbacks, then
  // written back and freed on the flusher thread) return their frames
  // first.
  rcu::barrier();
  flush_released_files(this);
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
  pool_lock_.lock(kPoolSub);
  pool_lock_.unlock();
  if (inflight_.load(std::memory_order_acquire) != 0) die("destroyed with RCU frees in flight", 0);
  // (Frame is trivially destructible.)
  ::munmap(pool_, stack_bytes_);
  ::munmap(frames_, meta_bytes_);
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
  f.flags.store(0, std::memory_order_relaxed);
}
}  // namespace

pfn_t PhysMem::alloc() {
#if defined(VMSPACE_DEBUG_CHECKS)
  if (fail_nth::should_fail(fail_nth::Site::frame)) return kNoFrame;  // injected (tests)
#endif
  Cache* c = tls_last;
  if (__builtin_expect(c != nullptr && c->gen == gen_, 1)) {
    // The handshake, owner side (file comment: O1..O5).
    c->busy.store(true, std::memory_order_relaxed);           // O1
    std::atomic_signal_fence(std::memory_order_seq_cst);      // O2
    if (__builtin_expect(!c->steal.load(std::memory_order_acquire), 1)) {  // O3
      std::uint32_t n = c->n.load(std::memory_order_relaxed);
      if (__builtin_expect(n != 0, 1)) {
        pfn_t pfn = c->frames[n - 1];
        c->n.store(n - 1, std::memory_order_relaxed);
        c->busy.store(false, std::memory_order_release);      // O5
        init_frame(frames_[pfn], pfn);
        return pfn;
      }
    }
    c->busy.store(false, std::memory_order_release);          // O5
  }
  return alloc_slow();
}

pfn_t PhysMem::alloc_slow() {
  Cache* c = cache();
  pfn_t pfn = kNoFrame;
  if (c == nullptr) {
    // No cache (thread exiting or out of host memory): one frame directly.
    pfn = pop_pool();
  } else {
    c->lock.lock();
    if (c->n.load(std::memory_order_relaxed) == 0) refill(c);
    std::uint32_t n = c->n.load(std::memory_order_relaxed);
    if (n != 0) {
      pfn = c->frames[n - 1];
      c->n.store(n - 1, std::memory_order_relaxed);
    }
    c->lock.unlock();
  }
  // Our cache and the global stack are empty.  Before reporting OOM, take
  // back what every thread caches (keeping one frame for us) and start the
  // grace period for every thread's pending frees, so that a retry after
  // drain_deferred() succeeds.  Never waits for a grace period.
  if (pfn == kNoFrame) sweep(&pfn);
  if (pfn != kNoFrame) init_frame(frames_[pfn], pfn);
  return pfn;
}

pfn_t PhysMem::alloc_zeroed() {
  pfn_t pfn = alloc();
  if (pfn != kNoFrame) std::memset(addr(pfn), 0, kFrameSize);
  return pfn;
}

// Caller holds c->lock.
void PhysMem::refill(Cache* c) {
  c->lock.assert_locked();
  pool_lock_.lock(kPoolSub);
  std::size_t k = std::min<std::size_t>(pool_n_, cache_size_);
  pfn_t fresh = kNoFrame;
  if (k != 0) {
    std::memcpy(c->frames.get(), pool_ + (pool_n_ - k), k * sizeof(pfn_t));
    pool_n_ -= k;
    // Stack order: frames[k-1] (popped first) is the lowest pfn of the chunk.
    std::reverse(c->frames.get(), c->frames.get() + k);
  } else {
    k = take_fresh_locked(cache_size_, &fresh);  // the stack is empty: frames never used
  }
  sync_count_locked();
  pool_lock_.unlock();
  if (k != 0 && fresh != kNoFrame) construct_fresh(fresh, k, c->frames.get());  // under c->lock only
  c->n.store(static_cast<std::uint32_t>(k), std::memory_order_relaxed);
}

pfn_t PhysMem::pop_pool() {
  pfn_t pfn = kNoFrame;
  pfn_t fresh = kNoFrame;
  pool_lock_.lock(kPoolSub);
  if (pool_n_ != 0)
    pfn = pool_[--pool_n_];
  else if (take_fresh_locked(1, &fresh) == 0)
    fresh = kNoFrame;
  sync_count_locked();
  pool_lock_.unlock();
  if (fresh != kNoFrame) construct_fresh(fresh, 1, &pfn);
  return pfn;
}

void PhysMem::push_pool(const pfn_t* pfns, std::size_t n, bool from_inflight) {
  if (n == 0) return;
  pool_lock_.lock(kPoolSub);
#ifdef VMSPACE_DEBUG_CHECKS
  if (pool_n_ + n > hwm_) die("free stack overflow (double free?)", pfns[0]);
#endif
  std::memcpy(pool_ + pool_n_, pfns, n * sizeof(pfn_t));
  pool_n_ += n;
  sync_count_locked();
  // Frames of a batch leave inflight_ as they enter the stack, in one
  // pool_lock_ section: free_frames() (which reads both under it) never
  // counts them twice.  Release: for ~PhysMem, the callback's last touch
  // of *this is this section (it takes pool_lock_, then acquires).
  if (from_inflight) inflight_.fetch_sub(n, std::memory_order_release);
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
    // The handshake, owner side (file comment: O1..O5).  A put that fills
    // the batch takes the slow path, which submits it.
    c->busy.store(true, std::memory_order_relaxed);           // O1
    std::atomic_signal_fence(std::memory_order_seq_cst);      // O2
    if (__builtin_expect(!c->steal.load(std::memory_order_acquire), 1)) {  // O3
      std::uint32_t n = c->pend_n.load(std::memory_order_relaxed) + 1;
      if (__builtin_expect(n < cache_size_, 1)) {
        f.set_next_free(c->pend_head);
        c->pend_head = pfn;
        c->pend_n.store(n, std::memory_order_relaxed);
        c->busy.store(false, std::memory_order_release);      // O5
        return;
      }
    }
    c->busy.store(false, std::memory_order_release);          // O5
  }
  put_slow(pfn);
}

void PhysMem::put_slow(pfn_t pfn) {
  Frame& f = frames_[pfn];
  Cache* c = cache();
  if (c == nullptr) {
    // No cache: a batch of one.
    f.set_next_free(kNoFrame);
    submit(Batch{pfn, 1});
    return;
  }
  c->lock.lock();
  f.set_next_free(c->pend_head);
  c->pend_head = pfn;
  std::uint32_t n = c->pend_n.load(std::memory_order_relaxed) + 1;
  c->pend_n.store(n, std::memory_order_relaxed);
  Batch b = n >= cache_size_ ? detach_pending(c) : Batch{};
  c->lock.unlock();
  submit(b);
}

// Caller excludes everyone else from c (holds c->lock).
PhysMem::Batch PhysMem::detach_pending(Cache* c) {
  Batch b{c->pend_head, c->pend_n.load(std::memory_order_relaxed)};
  c->pend_head = kNoFrame;
  c->pend_n.store(0, std::memory_order_relaxed);
  return b;
}

void PhysMem::submit(Batch b) {
  if (b.n == 0) return;
  Frame& head = frames_[b.head];
  head.owner = this;
  inflight_.fetch_add(b.n, std::memory_order_relaxed);
  rcu::call(&head.rcu, &PhysMem::batch_done);
}

// The stealer (file comment: S1..S5).  Moves every cache's free frames to
// the global stack -- except one for the caller if `take` is non-null and
// *take is kNoFrame -- and submits every cache's pending list.  Returns the
// number of frames submitted.
std::uint64_t PhysMem::sweep(pfn_t* take) {
  std::uint64_t submitted = 0;
  {
    std::lock_guard<std::mutex> g(g_registry_mu);
    if (!caches_.empty()) {
      for (Cache* c : caches_) c->steal.store(true, std::memory_order_relaxed);  // S1
      heavy_barrier();                                                            // S2
      for (Cache* c : caches_) {
        c->lock.lock();                                                           // S3
        wait_not_busy(c);
        // S4.  (The caller's own cache is among them: harmless.)
        std::uint32_t n = c->n.load(std::memory_order_relaxed);
        if (take != nullptr && *take == kNoFrame && n != 0) *take = c->frames[--n];
        push_pool(c->frames.get(), n);
        c->n.store(0, std::memory_order_relaxed);
        Batch b = detach_pending(c);
        c->steal.store(false, std::memory_order_release);                        // S5
        c->lock.unlock();
        submitted += b.n;
        submit(b);
      }
    }
  }
  // A batch may have come back meanwhile.
  if (take != nullptr && *take == kNoFrame) *take = pop_pool();
  return submitted;
}

void PhysMem::batch_done(rcu::Head* h) {
  auto* head = reinterpret_cast<Frame*>(reinterpret_cast<char*>(h) - offsetof(Frame, rcu));
  PhysMem* pm = head->owner;
  constexpr std::size_t kChunk = 64;
  pfn_t buf[kChunk];
  std::size_t k = 0;
  for (pfn_t p = static_cast<pfn_t>(head - pm->frames_); p != kNoFrame;) {
    pfn_t next = pm->frames_[p].next_free();
    buf[k++] = p;
    if (k == kChunk) {
      pm->push_pool(buf, k, /*from_inflight=*/true);
      k = 0;
    }
    p = next;
  }
  pm->push_pool(buf, k, /*from_inflight=*/true);  // the last touch of *pm
}

void PhysMem::flush_deferred() {
  Cache* c = cache();
  if (c == nullptr) return;
  c->lock.lock();
  Batch b = detach_pending(c);
  c->lock.unlock();
  submit(b);
}

std::uint64_t PhysMem::reclaim() { return sweep(nullptr); }

void PhysMem::drain_deferred() {
  if constexpr (lockdep::enabled)
    if (rcu::in_read_section()) die("drain_deferred() inside an RCU read-side section", 0);
  reclaim();
  // Every batch queued so far has run, and so has every other callback
  // queued before this call -- some of those free frames (a VMA freed after
  // munmap drops its shared pages) into the call_rcu worker's cache.
  rcu::barrier();
  // Submit what those callbacks (or other threads, meanwhile) freed, and
  // wait for it too if anything is in flight (the worker also submits
  // full batches itself).
  reclaim();
  if (inflight_.load(std::memory_order_relaxed) != 0) rcu::barrier();
}

std::uint64_t PhysMem::free_frames() const {
  // Registry mutex: no stealer or exiting thread moves frames between the
  // caches and the rest meanwhile.  pool_lock_: the stack and inflight_
  // change together as a freed batch comes back (push_pool), so a batch
  // returning from its grace period is never counted twice.  Owners'
  // refills and batch submissions still move frames unlocked: exact only
  // when no other thread allocates or frees (phys_mem.h).
  std::lock_guard<std::mutex> g(g_registry_mu);
  pool_lock_.lock(kPoolSub);
  std::uint64_t sum = pool_n_ + (capacity_ - hwm_) + inflight_.load(std::memory_order_relaxed);
  pool_lock_.unlock();
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
