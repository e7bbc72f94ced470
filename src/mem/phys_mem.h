// SPDX-License-Identifier: MIT
// phys_mem.h - the simulated physical memory: a pool of 4 KiB frames carved
// out of ONE host reservation, each with a Frame descriptor (Linux's struct
// page), plus a shared, never-freed zero frame.
//
// Allocation:
//   alloc()/alloc_zeroed() hand out a frame with refcount 1.  Fast path: a
//   per-thread, per-PhysMem cache of free frames (no atomic RMW, no lock:
//   a handshake of relaxed/acquire/release loads and stores, see
//   phys_mem.cpp).  The cache refills in batches from a global free stack
//   guarded by a SpinLock of class frame_lock.  Out of memory is a return
//   value (kNoFrame), never an exception or a crash.
//
// Freeing (RCU-deferred):
//   put() drops a reference.  The last put does NOT make the frame
//   reusable at once: lockless walkers (page-table walks inside an
//   rcu::ReadGuard) may still read the frame's memory or descriptor.  The
//   frame joins a per-thread "pending" batch; a full batch (per_thread_cache
//   frames, at least 1) is handed to rcu::call() as ONE callback that, after
//   a grace period, pushes the whole batch back to the global stack.  So a
//   frame is never handed out again before every read-side section that
//   was open at its last put() has ended.
//
// Reclaim (nothing is stranded in another thread):
//   Every thread, liburcu's call_rcu worker included (RCU callbacks free
//   frames there: a shared mapping's pages when its VMA is freed), may hold
//   up to per_thread_cache free frames in its cache and as many freed ones
//   in its pending batch.  reclaim() takes them from EVERY thread, idle or
//   not, without its cooperation: cached free frames go back to the global
//   stack, pending batches are handed to rcu::call().  It never waits for
//   a grace period.  alloc() does the same before it reports out of memory
//   (and keeps one of the reclaimed frames for itself), so frames cached by
//   another thread never cause an OOM.  drain_deferred() is reclaim() plus
//   rcu::barrier() (twice if callbacks freed frames meanwhile): afterwards
//   every frame whose last put() came before the call, on any thread, is
//   reusable.
//
// Threads and instances:
//   Caches are keyed by a PhysMem generation number that is never reused,
//   so several PhysMem instances (even at the same address over time) can
//   be used by one thread.  When a thread exits, its caches give their free
//   frames back to the global stack and submit their pending batches.  When
//   a PhysMem is destroyed, the caches that threads still hold for it are
//   orphaned (the frames vanish with the reservation) and reclaimed by
//   their thread later.  The registry of caches is guarded by a global
//   mutex taken only on slow paths (first use by a thread, thread exit,
//   destruction, reclaim, free_frames()).
//
// Concurrency contract: all methods except the destructor may be called
// from any thread concurrently, but not from a signal handler.  The
// destructor must not run concurrently with any other use of the same
// instance and must not be called inside an RCU read-side section (it
// calls rcu::barrier()).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "sync/rcu.h"
#include "sync/spinlock.h"

namespace vmspace::mem {

using pfn_t = std::uint64_t;
inline constexpr pfn_t kNoFrame = ~pfn_t{0};
inline constexpr std::uint64_t kFrameSize = 4096;

class PhysMem;

// What Linux's struct page carries for us.  One per frame, plus one for the
// zero frame.  Fields and their protection rules:
struct Frame {
  // References.  0 = free (in a cache, the global stack or waiting for a
  // grace period); alloc() sets 1.  get()/put() are atomic RMWs; put()
  // uses acq_rel so the thread that drops the last reference sees every
  // other holder's accesses before the frame is recycled.  Never touched on
  // the zero frame (get/put are no-ops there).
  std::atomic<std::int32_t> refcount{0};
  // Number of PTEs mapping the frame.  Atomic; changed by the fault/unmap
  // code while it holds the pte_lock of the PTE it installs/clears.
  // alloc() resets it to 0.
  std::atomic<std::int32_t> mapcount{0};
  // Reverse-map link: AnonVma* | kMappingAnon, or File*; 0 = none.  Set by
  // the owner of the frame (the fault path, under the pte_lock, before the
  // PTE is published); alloc() resets it to 0.  Readers load with acquire.
  std::atomic<std::uintptr_t> mapping{0};
  // Page index within the anon_vma / file.  Same rules as `mapping`.
  std::atomic<std::uint64_t> index{0};
  // Page flags (Linux's folio flags), changed with atomic bit operations
  // (fetch_or / fetch_and), no lock; alloc() resets them to 0.
  //   kPgDirty: a page-cache page whose contents differ from what the
  //   file's backing holds (folio_test_dirty): set by pwrite and by write
  //   faults on shared mappings, cleared by write-back (which first
  //   write-protects every PTE mapping the page, so a later write faults
  //   and sets it again).  kPgWriteback: below.
  std::atomic<std::uint32_t> flags{0};

  // ---- allocator-private; valid only while refcount == 0 ----
  // Next frame of a pending free batch (kNoFrame ends the list).  Written
  // by the thread that frees the frame (under its cache's fast-path
  // handshake or lock, see phys_mem.cpp); read by the RCU callback after
  // the happens-before edge of the rcu::call() that submitted the batch,
  // from whichever thread submitted it.  Stored in 32 bits (a pool has
  // fewer than 2^32 - 1 frames), which keeps a Frame in one cache line.
  void set_next_free(pfn_t p) { next_free_ = p == kNoFrame ? kNoNext : static_cast<std::uint32_t>(p); }
  pfn_t next_free() const { return next_free_ == kNoNext ? kNoFrame : pfn_t{next_free_}; }
  // (Public, so that Frame stays standard-layout for offsetof(rcu); use
  // the two accessors above.)
  static constexpr std::uint32_t kNoNext = ~std::uint32_t{0};
  std::uint32_t next_free_ = kNoNext;
  // On the first frame of a submitted batch: the RCU callback head and the
  // owning allocator.
  rcu::Head rcu{};
  PhysMem* owner = nullptr;
};

inline constexpr std::uint32_t kPgDirty = 1u << 0;
// kPgWriteback: claimed by a write-back (its kPgDirty cleared) and not
// written yet (Linux's PG_writeback); a write-back that cannot wait for
// that one (inside a read section) writes such pages too.
inline constexpr std::uint32_t kPgWriteback = 1u << 1;

static_assert(sizeof(Frame) == 64, "a frame's metadata is one cache line");

// Tag bit in Frame::mapping for anonymous frames (an AnonVma* is at least
// 2-byte aligned).
inline constexpr std::uintptr_t kMappingAnon = 1;

struct PhysMemOptions {
  // Frames available (rounded down to frames): the limit the pool grows to.
  // Only address space is reserved for them (and for their descriptors, 64
  // bytes each, and the free stack, 8 bytes each); host memory is
  // committed as frames are first used.  At most 2^32 - 2 frames (just
  // under 16 TiB): more throws std::length_error.
  std::uint64_t capacity_bytes = 256ull << 20;
  // Touch every frame's host page at construction (benchmarks: faults then
  // measure vmspace, not the host's first touch of the frame; descriptors
  // are still constructed on first use, a host page per 64 frames).
  bool pretouch = false;
  unsigned per_thread_cache = 64;  // frames cached per thread (also the put batch size); 0 acts as 1
};

class PhysMem {
 public:
  // Reserves (mmap, MAP_NORESERVE) the frames + the zero frame, their
  // descriptors and the free stack; nothing is touched unless pretouch.
  // Throws std::bad_alloc if a host reservation fails, std::length_error
  // for more than 2^32 - 2 frames (the only places that can throw); aborts
  // if the kernel lacks membarrier().  Host memory is committed as frames
  // are first used: if the host cannot commit it then (overcommit), the
  // process is killed, as for any touched MAP_NORESERVE memory.
  explicit PhysMem(const PhysMemOptions& = PhysMemOptions{});
  // Waits for the files of this pool released so far to be written back
  // and freed (flush_released_files), drains pending RCU frees
  // (rcu::barrier()) and releases the host reservations.  Frames may still
  // be allocated: they simply vanish.
  ~PhysMem();
  PhysMem(const PhysMem&) = delete;
  PhysMem& operator=(const PhysMem&) = delete;

  // refcount = 1, mapcount = 0, mapping = 0, index = 0; contents UNDEFINED.
  // kNoFrame when out of memory, after reclaim() found no free frame in any
  // thread's cache (frames it submitted become reusable after a grace
  // period: drain_deferred() and retry, outside read sections).  Never
  // throws and never waits for a grace period, so it may be called holding
  // mm locks or inside a read section; the refill takes frame_lock
  // spinlocks briefly, and the out-of-memory path also the cache registry
  // mutex and one membarrier() system call.
  pfn_t alloc();
  // Same, zero-filled.
  pfn_t alloc_zeroed();
  // refcount++.  The caller must already hold a reference (or otherwise
  // know the frame is allocated).  No-op on the zero frame.
  void get(pfn_t pfn);
  // refcount--; at zero the frame returns to the allocator after an RCU
  // grace period (batched, see the file comment).  No-op on the zero frame.
  // Callable under any lock down to pte_lock and inside read sections.
  void put(pfn_t pfn);

  // Host pointer to the frame's 4 KiB.
  void* addr(pfn_t pfn) const {
    return base_ + static_cast<std::size_t>(pfn) * kFrameSize;
  }
  Frame& frame(pfn_t pfn) const { return frames_[pfn]; }
  // The frame containing host_ptr (which must point into a frame).
  pfn_t pfn_of(const void* host_ptr) const {
    return static_cast<pfn_t>(
        (static_cast<const std::byte*>(host_ptr) - base_) / kFrameSize);
  }
  // True if pfn names a frame of this instance (the zero frame included).
  bool valid(pfn_t pfn) const { return pfn <= capacity_; }

  // The shared zero frame: never freed, contents always zero (writing to
  // it is a bug); get/put on it are no-ops.
  pfn_t zero_pfn() const { return capacity_; }
  std::uint64_t capacity_frames() const { return capacity_; }
  // Frames whose refcount is 0: in the global stack, in per-thread caches,
  // in pending put batches, or waiting for their grace period.  Approximate
  // while other threads run; exact when they are quiescent.
  std::uint64_t free_frames() const;
  // Frames alloc() can hand out right now (global stack + per-thread
  // caches; excludes frames still waiting for a grace period).
  std::uint64_t reusable_frames() const;
  bool pretouched() const { return pretouched_; }

  // Submit the calling thread's pending put batch to RCU now.
  void flush_deferred();
  // Non-blocking: move every thread's cached free frames (this thread's,
  // other threads', liburcu's call_rcu worker's) back to the global stack,
  // where any thread's alloc() finds them, and hand every thread's pending
  // put batch to rcu::call().  Never waits for a grace period; callable
  // holding mm locks and inside a read section (not holding a frame_lock).
  // Returns the number of frames it handed to RCU (reusable after a grace
  // period).
  std::uint64_t reclaim();
  // reclaim(), rcu::barrier(), and once more if frames were freed in the
  // meantime: afterwards every frame whose last put() happened before this
  // call -- on any thread -- or inside an RCU callback queued before this
  // call is reusable (a callback queued by such a callback may be missed,
  // as with Linux's rcu_barrier()).  Blocks for one or two grace periods:
  // NOT inside a read section (debug builds abort) and not holding
  // spinlocks.
  void drain_deferred();

  struct Cache;  // per-thread, per-instance (phys_mem.cpp)

 private:
  // A detached pending list: `n` frames linked through Frame::next_free.
  struct Batch {
    pfn_t head = kNoFrame;
    std::uint32_t n = 0;
  };
  pfn_t alloc_slow();
  void put_slow(pfn_t pfn);
  Cache* cache_slow();
  Cache* cache();
  static Batch detach_pending(Cache* c);
  void submit(Batch b);
  void refill(Cache* c);
  pfn_t pop_pool();
  void push_pool(const pfn_t* pfns, std::size_t n, bool from_inflight = false);
  std::size_t take_fresh_locked(std::size_t want, pfn_t* first);
  void construct_fresh(pfn_t first, std::size_t k, pfn_t* out);
  void sync_count_locked();
  std::uint64_t sweep(pfn_t* take);
  static void batch_done(rcu::Head* h);
  friend struct ThreadCaches;

  std::byte* base_ = nullptr;       // host reservation: capacity_ + 1 frames
  std::size_t map_bytes_ = 0;
  std::size_t meta_bytes_ = 0;      // the frames_ reservation
  std::size_t stack_bytes_ = 0;     // the pool_ reservation
  std::uint64_t capacity_ = 0;      // allocatable frames; pfn capacity_ = zero frame
  Frame* frames_ = nullptr;         // capacity_ + 1 descriptors (reserved; see hwm_)
  unsigned cache_size_ = 1;         // per-thread cache size and put batch size
  bool pretouched_ = false;
  std::uint64_t gen_;               // unique id keying the per-thread caches

  // Global free stack.  pool_[0..pool_n_) are free pfns; guarded by
  // pool_lock_ (class frame_lock, always taken as subclass 1: it nests
  // inside a cache lock, frame_lock subclass 0).  Frames [hwm_, capacity_)
  // were never handed out (their descriptors are not constructed yet, their
  // host memory not touched): taken when the stack is empty, so the pool
  // grows on demand up to capacity_.  pool_count_ mirrors pool_n_ +
  // capacity_ - hwm_ for lock-free statistics.
  mutable SpinLock pool_lock_{LockClass::frame_lock};
  pfn_t* pool_ = nullptr;  // capacity_ slots (reserved)
  std::size_t pool_n_ = 0;
  pfn_t hwm_ = 0;
  std::atomic<std::uint64_t> pool_count_{0};
  // Frames in batches handed to rcu::call() not yet back on the stack
  // (decremented under pool_lock_ as each chunk is pushed; incremented
  // atomically when a batch is submitted).
  std::atomic<std::uint64_t> inflight_{0};
  // Caches threads hold for this instance; guarded by the global registry
  // mutex (phys_mem.cpp).
  std::vector<Cache*> caches_;
};

}  // namespace vmspace::mem
