// SPDX-License-Identifier: MIT
// range_tree.h - the VMA index: an RCU-safe B+tree of disjoint ranges.
//
// Maps disjoint half-open ranges [start, end) of 64-bit addresses to
// caller-owned pointers (the VMA layer stores Vma*).  Valid ranges satisfy
// start < end <= kMaxAddr (= UINT64_MAX), so the last byte UINT64_MAX itself
// can never be mapped.
//
// Concurrency model
// -----------------
// Writers (store, erase, clear, preallocate) run in one of two modes,
// chosen with set_concurrent_writers() before the tree is shared:
//
//  * Single writer (the default).  Writers are serialized by the CALLER
//    (the mmap_lock write side); the tree takes no lock of its own and its
//    store path has no atomic read-modify-write.
//  * Concurrent writers (set_concurrent_writers(true): issue 19's
//    per_vma_range mode, docs/range-writers.md section 5).  Writers may run
//    at the same time PROVIDED THE CALLER GUARANTEES that their key ranges
//    are disjoint.  An operation's key range is the [start, end) it passes
//    together with every entry it stores, trims or erases (clear(): all
//    keys).  The VMA layer gets that from its range lock.  store(), erase()
//    and clear() then take the tree's commit lock for the whole operation
//    (read the root, copy and rebalance the paths, publish the new root
//    with one release store, update the counters); nodes they retire are
//    queued to RCU after the lock is dropped.  The commit lock is a
//    test-and-test-and-set spinlock (CommitLock) held for one operation (tens to hundreds of ns) and a
//    leaf: only the node pool's internals (and a `displaced` vector's
//    growth: reserve it beforehand to keep malloc out) run under it; no
//    RCU queueing, no wake-up.  preallocate() fills a reserve that belongs
//    to the CALLING THREAD (one thread writes one tree at a time), outside
//    the lock, and that thread's next store()/erase() takes it.
//
//    Why the result is that of some serial order: the lock serializes
//    whole operations, each built from the newest root (read under the
//    lock) and published before the next begins, so the tree goes through
//    exactly the states of the single-writer tree under the lock order.
//    Disjointness makes that order irrelevant to every writer: an
//    operation reads and changes only the entries in its own key range,
//    which no other writer touches, so what it displaces and what it
//    leaves there are the same in any order.  Rebalancing may copy, shift
//    or merge nodes that hold other writers' entries, but it does so under
//    the lock, from the newest root: it moves those entries without
//    changing them, and no other writer's copy of the same node can be
//    published in between.
//
// Readers (find, find_vma, find_prev, next, prev, for_each, gap searches)
// never block and are the same in both modes: call them inside an
// rcu::ReadGuard, or while holding the writer's lock.
//
// Every mutation is copy-on-write: the nodes on the modified paths are
// copied, the copies are edited privately and the new root is published by
// one release store.  A published node is never written again.  So:
//
//  (A) A lookup that starts after store()/erase() returned (in the
//      happens-before sense, e.g. same thread or after taking the lock the
//      writer released) sees the result of that store.
//  (B) A lookup concurrent with a store sees the whole tree either before or
//      after it - for EVERY address, even when one store replaces, trims or
//      merges many entries.  An address covered both before and after the
//      store is therefore never reported unmapped.
//  (C) Tree nodes are freed only after an RCU grace period (rcu::call).  The
//      entries' pointees are the caller's objects: the tree never frees or
//      touches them.  A pointer displaced by store()/erase() may still be
//      returned to readers that started before the store completed, so the
//      caller must defer freeing it (rcu::call / rcu::defer_delete / after
//      rcu::synchronize()).
//  (D) Iteration.  for_each() walks ONE snapshot (one root load): it
//      returns exactly the entries of the tree as it was at one instant, in
//      order, with no duplicates, even under concurrent stores.  Step-wise
//      iteration (find_vma/next/find_prev/prev, one root load per step)
//      returns at each step an entry that was present at some moment during
//      that step.  Between steps the tree may change, so a walk may miss
//      entries stored behind it, or return an entry that overlaps or extends
//      past the previous one (e.g. a merge of it).  It still makes progress:
//      next() returns an entry whose end is above the previous end, prev()
//      one whose start is below the previous start.  No step ever returns
//      freed memory while the caller stays in one ReadGuard.  Under the
//      writer's lock all iteration is exact.
//  (E) Gap searches work on one snapshot (one root load).  size(),
//      stats() and validate() read writer-side state.  Single-writer
//      mode: call them under the writer's lock (or when no store can
//      run).  Concurrent mode: they take the commit lock themselves and see
//      the tree between two operations; validate() holds it for a whole
//      tree walk (tests and debug checks only).
//
// Structure: a B+tree.  Leaves (384 bytes) hold up to 15 entries as
// end[] keys plus (start, ptr) slots; inner nodes (1 KiB) hold up to 31
// children with, per child, its last end (the routing key), first start and
// the largest gap between entries inside it, so gap searches prune whole
// subtrees.  A lookup scans a node's keys without branches (AVX2 compares
// of four keys at a time where the CPU has them), so its cost is about one
// memory round trip per level: at 64K entries the tree is 4 levels and
// ~2 MiB, at 1M entries 5 levels and ~33 MiB.  Non-root nodes are at least
// half full; inserts first shift into a sibling with room (dense leaves:
// ~28 bytes/entry for sequential fills, ~34 for random).  Nodes come from a
// process-wide pool (node_pool.h).
//
// Destruction frees all nodes immediately: destroy the tree only when no
// reader can still be inside it (e.g. after rcu::synchronize()).  Nodes
// retired by earlier stores are queued to RCU in batches of ~40 (a batch is
// queued when full, at the latest by the destructor); their callbacks do not
// reference the tree, so they may still be pending after destruction and
// rcu::barrier() drains them.  So a tree that is no longer written may hold
// up to one batch (~40 nodes) of retired memory until it is destroyed.
// A thread's preallocate() reserve in concurrent mode is keyed by the
// tree's id, not its address: the destructor returns the calling thread's
// reserve to the pool; another thread's reserve for a destroyed tree is
// plain pool blocks, returned at that thread's next preallocate() for
// another tree or at its exit, and never mistaken for a reserve of a new
// tree built at the same address.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "sync/rcu.h"

namespace vmspace::tree {

inline constexpr std::uint64_t kMaxAddr = UINT64_MAX;

// One mapping: [start, end) -> ptr.
struct Entry {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  void* ptr = nullptr;

  bool contains(std::uint64_t a) const { return start <= a && a < end; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr);
  }
  friend bool operator==(const Entry&, const Entry&) = default;
};

struct MemStats {
  std::size_t entries = 0;
  std::size_t leaf_nodes = 0;
  std::size_t inner_nodes = 0;
  std::size_t bytes = 0;  // sum of sizeof(node) over live nodes
  double bytes_per_entry = 0;
  unsigned height = 0;        // 0 = empty, 1 = root is a leaf
  std::size_t pool_bytes = 0;  // process-wide node pool footprint (all trees)
};

namespace detail {

inline constexpr unsigned kLeafSlots = 15;
inline constexpr unsigned kInnerSlots = 31;
inline constexpr unsigned kLeafMin = kLeafSlots / 2;    // non-root fill
inline constexpr unsigned kInnerMin = kInnerSlots / 2;  // non-root fill

// Nodes are immutable once published.  Key arrays have one slot more than
// the node has entries: the last key slot is a sentinel that always holds
// kMaxAddr, so a key array is a whole number of 32-byte vectors and a rank
// scan needs no tail.  Unused key slots hold kMaxAddr too, so the
// branch-free rank scans below never select them (no valid key lookup uses
// kMaxAddr).  Node references are tagged pointers: bit 0 set = leaf.
// Layout: a reader scans the key lines, then reads one more line (leaf:
// start and ptr of the found slot; inner: the child pointer, with the
// node's count beside the children).
inline constexpr unsigned kLeafKeys = kLeafSlots + 1;
inline constexpr unsigned kInnerKeys = kInnerSlots + 1;

struct alignas(64) LeafNode {
  std::uint64_t end[kLeafKeys];  // routing keys (sorted); unused and end[kLeafSlots] = kMaxAddr
  struct Slot {
    std::uint64_t start;  // unused = kMaxAddr
    void* ptr;
  } slot[kLeafSlots];
  std::uint32_t count;
  std::uint32_t pad_;
  std::uint64_t txn;  // writer-private: operation that allocated the node
};

struct alignas(64) InnerNode {
  std::uint64_t max_end[kInnerKeys];  // routing keys: last end in child i; max_end[kInnerSlots] = kMaxAddr
  std::uintptr_t child[kInnerSlots];
  std::uint32_t count;
  std::uint32_t pad_;
  std::uint64_t txn;
  std::uint64_t min_start[kInnerSlots];  // first start in child i
  std::uint64_t max_gap[kInnerSlots];  // largest gap inside child i
  std::uint64_t pad2_;
};

// Writer-side copies of a leaf slot / an inner slot.
struct LeafItem {
  std::uint64_t start, end;
  void* ptr;
};
struct Summary {
  std::uint64_t min_start, max_end, max_gap;
};
struct InnerItem {
  std::uintptr_t child;
  Summary s;
};

static_assert(sizeof(LeafNode) == 384);
static_assert(sizeof(InnerNode) == 1024);
static_assert(offsetof(InnerNode, child) == 256 && offsetof(InnerNode, count) < 512,
              "inner node: key lines, then child pointers with the count");

inline bool is_leaf(std::uintptr_t r) { return (r & 1u) != 0; }
inline LeafNode* as_leaf(std::uintptr_t r) { return reinterpret_cast<LeafNode*>(r & ~std::uintptr_t{1}); }
inline InnerNode* as_inner(std::uintptr_t r) { return reinterpret_cast<InnerNode*>(r); }

// Number of keys <= a among all N slots (unused slots are kMaxAddr > a).
// Fully unrolled with four accumulators: independent compares, no branches.
template <unsigned N>
inline unsigned rank_le(const std::uint64_t* keys, std::uint64_t a) {
  unsigned r[4] = {0, 0, 0, 0};
#pragma GCC unroll 32
  for (unsigned i = 0; i < N; ++i) r[i % 4] += keys[i] <= a ? 1u : 0u;
  return (r[0] + r[1]) + (r[2] + r[3]);
}

#if defined(__x86_64__)
#define VMSPACE_TREE_AVX2 1
// rank_le with AVX2: four keys per compare.  AVX2 compares 64-bit lanes
// as signed numbers, so keys and a are biased by 2^63 (unsigned order
// becomes signed order).  N is a multiple of 8 (key arrays with their
// sentinel).  Callable only from AVX2 code (see RangeTree::locate_avx2).
template <unsigned N>
__attribute__((target("avx2"), always_inline)) inline unsigned rank_le_avx2(const std::uint64_t* keys,
                                                                              std::uint64_t a) {
  static_assert(N % 8 == 0);
  const __m256i bias = _mm256_set1_epi64x(INT64_MIN);
  const __m256i av = _mm256_xor_si256(_mm256_set1_epi64x(static_cast<long long>(a)), bias);
  __m256i gt0 = _mm256_setzero_si256(), gt1 = _mm256_setzero_si256();  // -(keys > a) per lane
#pragma GCC unroll 8
  for (unsigned i = 0; i < N; i += 8) {
    __m256i k0 = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys + i)), bias);
    __m256i k1 = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys + i + 4)), bias);
    gt0 = _mm256_add_epi64(gt0, _mm256_cmpgt_epi64(k0, av));
    gt1 = _mm256_add_epi64(gt1, _mm256_cmpgt_epi64(k1, av));
  }
  __m256i gt = _mm256_add_epi64(gt0, gt1);
  __m128i h = _mm_add_epi64(_mm256_castsi256_si128(gt), _mm256_extracti128_si256(gt, 1));
  h = _mm_add_epi64(h, _mm_unpackhi_epi64(h, h));
  return N + static_cast<unsigned>(_mm_cvtsi128_si64(h));  // N - (number of keys > a)
}

// Lookups use rank_le_avx2 when set: initially, whether this CPU runs AVX2
// code.  Tests clear it to run the portable scan on the same trees.
// (__builtin_cpu_init first: this may run before libgcc's own constructor.)
inline bool use_avx2 = (__builtin_cpu_init(), __builtin_cpu_supports("avx2"));
#endif

// The concurrent-writer mode's commit lock (code in range_tree.cpp): a
// test-and-test-and-set lock that yields after a bounded spin.  Not a FIFO
// ticket lock: in user space a lock holder or the next ticket's owner can
// lose its CPU, and with more writers than CPUs a ticket lock then stalls
// every writer behind a thread that is not running (measured: disjoint-mmap
// at 4 threads on 2 cores fell to a seventh of 1 thread).  The lock is held
// for one store or erase; a writer that loses the race retries at once, so
// none waits longer than the others' next few stores in practice.
struct CommitLock {
  std::atomic<std::uint32_t> locked{0};  // 1 while held: acquire RMW by lock, release store by unlock
};

}  // namespace detail

class RangeTree {
 public:
  RangeTree() = default;
  ~RangeTree();  // frees every node directly: no reader may remain
  RangeTree(const RangeTree&) = delete;
  RangeTree& operator=(const RangeTree&) = delete;

  // ---- Readers: inside an rcu::ReadGuard or under the writer's lock ----

  // The entry containing addr.
  std::optional<Entry> find(std::uint64_t addr) const {
    const detail::LeafNode* l;
    unsigned i;
    if (!locate(root_.load(std::memory_order_acquire), addr, l, i)) return std::nullopt;
    if (l->slot[i].start > addr) return std::nullopt;
    return Entry{l->slot[i].start, l->end[i], l->slot[i].ptr};
  }
  // Just the pointer of the entry containing addr (nullptr if none).
  void* lookup(std::uint64_t addr) const {
    const detail::LeafNode* l;
    unsigned i;
    if (!locate(root_.load(std::memory_order_acquire), addr, l, i)) return nullptr;
    return l->slot[i].start <= addr ? l->slot[i].ptr : nullptr;
  }
  // The first entry whose end is above addr (Linux find_vma()).
  std::optional<Entry> find_vma(std::uint64_t addr) const {
    const detail::LeafNode* l;
    unsigned i;
    if (!locate(root_.load(std::memory_order_acquire), addr, l, i)) return std::nullopt;
    return Entry{l->slot[i].start, l->end[i], l->slot[i].ptr};
  }
  // The last entry whose start is below addr.
  std::optional<Entry> find_prev(std::uint64_t addr) const;
  // The first and the last entry meeting [lo, hi), from one snapshot (one
  // root load); nullopt when none meets it.  Two lookups, whatever lies
  // between them.
  std::optional<std::pair<Entry, Entry>> edges(std::uint64_t lo, std::uint64_t hi) const;
  // The identity of the tree's contents: every change publishes a new root
  // node (copy-on-write, (A)), and a root node is freed only after a grace
  // period.  So two equal values read inside ONE rcu::ReadGuard mean that
  // no change was published between the two reads (an empty tree is 0
  // whatever happened in between, and it is empty both times).
  std::uintptr_t snapshot() const { return root_.load(std::memory_order_acquire); }
  // The entry after / before e (by address); see (D) for concurrent use.
  std::optional<Entry> next(const Entry& e) const { return find_vma(e.end); }
  std::optional<Entry> prev(const Entry& e) const { return find_prev(e.start); }
  std::optional<Entry> first() const { return find_vma(0); }
  std::optional<Entry> last() const { return find_prev(kMaxAddr); }

  // In-order cursor: starts at find_vma(addr); ++ is next(), -- is prev().
  // Each step is one lookup (see (D) for use under RCU only).  Usable in a
  // range-for:  for (const Entry& e : tree.from(addr)) ...
  class Cursor {
   public:
    Cursor() = default;
    Cursor(const RangeTree* t, std::optional<Entry> e) : t_(t), e_(e) {}
    bool valid() const { return e_.has_value(); }
    explicit operator bool() const { return valid(); }
    const Entry& operator*() const { return *e_; }
    const Entry* operator->() const { return &*e_; }
    Cursor& operator++() {
      e_ = t_->next(*e_);
      return *this;
    }
    Cursor& operator--() {
      e_ = t_->prev(*e_);
      return *this;
    }
    struct End {};
    friend bool operator==(const Cursor& c, End) { return !c.valid(); }

   private:
    const RangeTree* t_ = nullptr;
    std::optional<Entry> e_;
  };
  struct CursorRange {
    Cursor first;
    Cursor begin() const { return first; }
    Cursor::End end() const { return {}; }
  };
  Cursor cursor(std::uint64_t addr) const { return Cursor(this, find_vma(addr)); }
  CursorRange from(std::uint64_t addr) const { return CursorRange{cursor(addr)}; }

  // Calls f(const Entry&) for every entry intersecting [lo, hi), in order,
  // from one snapshot.  f returns void, or bool (false stops the walk).
  template <class F>
  void for_each(std::uint64_t lo, std::uint64_t hi, F&& f) const;

  // Gap search for get_unmapped_area.  Returns the highest (top-down) or
  // lowest (bottom-up) start s, a multiple of align (a power of two), such
  // that low <= s, s + length <= high and [s, s + length) is unmapped.
  // length == 0 or an empty window gives nullopt.  O(log n) plus the gaps
  // that are big enough but fail only because of alignment.
  std::optional<std::uint64_t> gap_top_down(std::uint64_t length, std::uint64_t align,
                                            std::uint64_t low, std::uint64_t high) const;
  std::optional<std::uint64_t> gap_bottom_up(std::uint64_t length, std::uint64_t align,
                                             std::uint64_t low, std::uint64_t high) const;

  bool empty() const { return root_.load(std::memory_order_acquire) == 0; }

  // ---- Writers: serialized by the caller, or disjoint (concurrent mode) ----

  // Switch between the single-writer mode (false, the default) and the
  // concurrent-writer mode (true); see "Concurrency model" above.  Call
  // while no other thread can be writing the tree (normally right after
  // construction, before it is shared); readers may run, the tree may
  // hold entries.  Switching on returns the tree's own preallocate()
  // reserve to the pool (reserves are per thread from then on); switching
  // off returns the calling thread's.
  void set_concurrent_writers(bool on);
  bool concurrent_writers() const { return concurrent_; }

  // Make [start, end) map to ptr (ptr may be anything, nullptr included),
  // replacing or trimming whatever overlapped.  Appends the overlapped
  // entries, as they were before trimming, to *displaced if non-null.
  // Readers see the whole change as one step (B).  start < end required.
  void store(std::uint64_t start, std::uint64_t end, void* ptr,
             std::vector<Entry>* displaced = nullptr);
  // Remove [start, end): drop or trim every overlapping entry.
  void erase(std::uint64_t start, std::uint64_t end, std::vector<Entry>* displaced = nullptr);
  // Remove everything (nodes freed after a grace period).
  void clear(std::vector<Entry>* displaced = nullptr);
  // Make sure the next store() or erase() finds the nodes it needs in a
  // writer-private reserve, so that a caller can fail cleanly (-ENOMEM)
  // before it changes anything else (Linux's mas_preallocate).  False when
  // memory for the reserve cannot be had (or a test injects the failure,
  // sync/fail_nth.h; only when the reserve needs topping up); nothing is
  // changed then.  `changes`: how many store()/erase() calls the reserve
  // must cover.  The reserve covers any one
  // change on paths of the current height; should a change need more, it
  // allocates the rest as before.  Concurrent mode: the reserve is the
  // calling thread's (two writers that each preallocated find their own
  // nodes); only that thread's store()/erase() on this tree draw on it.  A
  // thread that last preallocated for another tree returns that reserve to
  // the pool first.  Takes no lock (the height is read under RCU).
  bool preallocate(unsigned changes = 1);
  // Blocks in the reserve the calling writer would use for this tree
  // (single-writer mode: the tree's; concurrent mode: this thread's).
  // For tests.
  std::size_t reserved_nodes() const;

  // ---- Statistics and checking (writer's lock, or quiescent tree; ----
  // ---- concurrent mode: they take the commit lock)                 ----
  std::size_t size() const { return concurrent_ ? size_locked() : size_; }
  MemStats stats() const;
  // Checks ordering, non-overlap, key/summary consistency between parents
  // and children, gap bookkeeping, node fill, uniform depth, counters.
  // Returns false (and describes the first problem in *why) on failure.
  bool validate(std::string* why = nullptr) const;
  // validate(), printing the problem and aborting on failure.
  void check_or_die() const;

 private:
  using Ref = std::uintptr_t;
  struct PathStep {
    Ref node;
    unsigned slot;
  };
  using Summary = detail::Summary;
  static constexpr unsigned kMaxDepth = 40;

  // Descend to the first entry with end > addr.  Reader-safe.  Uses the
  // AVX2 key scan when the CPU has it (one dispatch per lookup: a node
  // scan of 32 keys is 8 vector compares instead of 31 scalar ones).
  static bool locate(Ref r, std::uint64_t addr, const detail::LeafNode*& leaf, unsigned& idx) {
#if VMSPACE_TREE_AVX2
    if (detail::use_avx2) return locate_avx2(r, addr, leaf, idx);
#endif
    return locate_generic(r, addr, leaf, idx);
  }
  // The two bodies are the same walk; only the key scan differs.
  static bool locate_generic(Ref r, std::uint64_t addr, const detail::LeafNode*& leaf, unsigned& idx) {
    if (r == 0 || addr == kMaxAddr) return false;
    while (!detail::is_leaf(r)) {
      const detail::InnerNode* n = detail::as_inner(r);
      // Fetch the child-pointer lines while the key lines are scanned: one
      // memory round trip per level instead of two.
      for (unsigned k = 0; k < detail::kInnerSlots; k += 8) __builtin_prefetch(&n->child[k]);
      unsigned i = detail::rank_le<detail::kInnerKeys>(n->max_end, addr);
      if (i >= n->count) return false;
      r = n->child[i];
    }
    const detail::LeafNode* l = detail::as_leaf(r);
    for (unsigned k = 0; k < detail::kLeafSlots; k += 4) __builtin_prefetch(&l->slot[k]);
    unsigned i = detail::rank_le<detail::kLeafKeys>(l->end, addr);
    if (i >= l->count) return false;
    leaf = l;
    idx = i;
    return true;
  }
#if VMSPACE_TREE_AVX2
  __attribute__((target("avx2"), noinline)) static bool locate_avx2(Ref r, std::uint64_t addr,
                                                                    const detail::LeafNode*& leaf, unsigned& idx) {
    if (r == 0 || addr == kMaxAddr) return false;
    while (!detail::is_leaf(r)) {
      const detail::InnerNode* n = detail::as_inner(r);
      for (unsigned k = 0; k < detail::kInnerSlots; k += 8) __builtin_prefetch(&n->child[k]);
      unsigned i = detail::rank_le_avx2<detail::kInnerKeys>(n->max_end, addr);
      if (i >= n->count) return false;
      r = n->child[i];
    }
    const detail::LeafNode* l = detail::as_leaf(r);
    for (unsigned k = 0; k < detail::kLeafSlots; k += 4) __builtin_prefetch(&l->slot[k]);
    unsigned i = detail::rank_le_avx2<detail::kLeafKeys>(l->end, addr);
    if (i >= l->count) return false;
    leaf = l;
    idx = i;
    return true;
  }
#endif

  static std::optional<Entry> find_prev_in(Ref r, std::uint64_t addr);

  // Writer internals (range_tree.cpp).
  class ConcurrentOp;  // concurrent mode: one operation under the commit lock
  void store_op(std::uint64_t start, std::uint64_t end, void* ptr, std::vector<Entry>* displaced);
  void erase_op(std::uint64_t start, std::uint64_t end, std::vector<Entry>* displaced);
  void clear_op(std::vector<Entry>* displaced);
  void commit_lock() const;
  void commit_unlock() const;
  std::size_t size_locked() const;
  bool validate_locked(std::string* why) const;
  void begin_op();
  void commit_op();
  void flush_retired();
  void remove_overlaps(std::uint64_t start, std::uint64_t end, std::vector<Entry>* displaced);
  void insert_entry(const Entry& e);
  void remove_at(std::uint64_t start);
  void modify_at(std::uint64_t key, const Entry& e);
  unsigned descend(std::uint64_t key);
  Ref make_writable(Ref r);
  void free_node(Ref r);
  detail::LeafNode* new_leaf();
  detail::InnerNode* new_inner();
  static Summary summarize(Ref r);
  template <class Item>
  void put_level(unsigned d, Item* buf, unsigned n);
  void propagate(unsigned d);
  static void free_subtree(Ref r);
  bool validate_node(Ref r, unsigned depth, unsigned leaf_depth, bool is_root, Summary& out,
                     std::size_t& entries, std::size_t& leaves, std::size_t& inners,
                     std::string* why) const;
  template <class F>
  static bool walk(Ref r, std::uint64_t lo, std::uint64_t hi, F& f);

  // The only field readers touch; on its own cache line so that lookups do
  // not bounce with the writer's bookkeeping below.  Written by commit_op
  // (release) under the writers' serialization; see range_tree.cpp 1.
  alignas(64) std::atomic<Ref> root_{0};
  // The writer mode and the key of the threads' reserves (concurrent mode;
  // 0 otherwise, never reused).  Written only by set_concurrent_writers()
  // (no writer may run then), read by writers without a lock; beside
  // root_, which begin_op loads anyway, so the mode test costs no line.
  bool concurrent_ = false;
  std::uint64_t id_ = 0;
  // Concurrent mode only; on its own line (every writer's RMW lands here).
  // mutable: size()/stats()/validate() take it too.
  alignas(64) mutable detail::CommitLock commit_;
  // Writer-only state: protected by the caller's serialization of writers
  // (single-writer mode) or by commit_ (concurrent mode).
  alignas(64) Ref wroot_ = 0;  // working root during an operation
  std::uint64_t txn_ = 1;  // nodes with txn == txn_ are private to this op
  std::size_t size_ = 0;
  std::size_t leaves_ = 0;
  std::size_t inners_ = 0;
  PathStep path_[kMaxDepth];
  std::vector<Ref> retired_;  // replaced by the current operation
  void* pending_ = nullptr;   // batch of retired nodes not yet queued to RCU
  // Concurrent mode: full batches commit_op detached, queued to RCU by the
  // operation after it drops commit_ (null between operations).
  void* ready_ = nullptr;
  std::vector<Entry> scratch_;
  // The reserve new_leaf()/new_inner() draw from first.  Single-writer
  // mode: preallocate()'s reserve.  Concurrent mode: empty between
  // operations; during one, it holds the calling thread's reserve (swapped
  // in and out under commit_, see ConcurrentOp).
  std::vector<void*> spare_leaf_, spare_inner_;
};

template <class F>
bool RangeTree::walk(Ref r, std::uint64_t lo, std::uint64_t hi, F& f) {
  using namespace detail;
  if (is_leaf(r)) {
    const LeafNode* l = as_leaf(r);
    for (unsigned i = rank_le<kLeafSlots>(l->end, lo); i < l->count; ++i) {
      if (l->slot[i].start >= hi) return false;
      Entry e{l->slot[i].start, l->end[i], l->slot[i].ptr};
      if constexpr (std::is_same_v<decltype(f(e)), bool>) {
        if (!f(e)) return false;
      } else {
        f(e);
      }
    }
    return true;
  }
  const InnerNode* n = as_inner(r);
  for (unsigned i = rank_le<kInnerSlots>(n->max_end, lo); i < n->count; ++i) {
    if (n->min_start[i] >= hi) return false;
    if (!walk(n->child[i], lo, hi, f)) return false;
  }
  return true;
}

template <class F>
void RangeTree::for_each(std::uint64_t lo, std::uint64_t hi, F&& f) const {
  Ref r = root_.load(std::memory_order_acquire);
  if (r == 0 || lo >= hi || lo == kMaxAddr) return;
  walk(r, lo, hi, f);
}

}  // namespace vmspace::tree
