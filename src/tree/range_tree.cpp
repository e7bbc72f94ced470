// SPDX-License-Identifier: MIT
// range_tree.cpp - writer side, gap search and validation of RangeTree.
//
// Why readers are safe
// --------------------
// 1. Publication.  Every mutation builds its result in nodes that no reader
//    can reach: the writer copies each node it is about to change
//    (make_writable) and edits only copies allocated by the current
//    operation (node->txn == txn_).  The operation ends with ONE release
//    store of the new root (commit_op).  Readers load the root with acquire,
//    so every plain write the writer made to the new nodes happens-before
//    the reader's plain reads of them.  A node, once published, is never
//    written again (the next operation has a new txn_ and must copy it), so
//    readers' plain reads never race with writes: data-race free in the C++
//    model, and tsan sees the release/acquire pair.
// 2. Atomicity of multi-entry changes.  All primitive steps of one store()
//    (trims, removals, the insert, splits, merges, root changes) edit the
//    same private copy; readers see either the old root or the new root,
//    hence the whole old tree or the whole new tree - guarantee (B).
// 3. Reclamation.  Nodes replaced by an operation were reachable from the
//    old root, so a reader that loaded the old root may still be walking
//    them.  They are collected in retired_ and freed in one rcu::call batch
//    after a grace period, i.e. after every reader that could have loaded
//    the old root has left its read-side section.  Nodes allocated and
//    dropped within one operation were never published and are freed at
//    once.  Readers that load a root never keep node pointers beyond their
//    read-side section (lookups copy the Entry out).
// 4. Reader traversal needs no validation: nodes are immutable, keys are
//    consistent inside one snapshot, so a descent always ends at a leaf of
//    the same snapshot and returns an entry of that snapshot.
// 5. Memory reuse.  Node memory comes from node_pool: a retired node goes
//    back to the pool only from the RCU callback, i.e. after the grace
//    period, and the pool hands it out again via a release push / acquire
//    take, so the writer's re-initialisation is ordered after every old
//    reader's last access (tsan builds bypass the pool and use new/delete;
//    rcu.cpp's annotations order the frees).  The tree never frees a node
//    directly unless it was never published, or in the destructor, whose
//    contract is that no reader can remain.
//
// 6. Concurrent writers (set_concurrent_writers(true)).  Points 1-5 hold
//    unchanged because every operation runs, whole, under the commit lock:
//    begin_op's root load, the copies (txn_ still means "this operation":
//    only the lock holder allocates with it), commit_op's release store
//    and the counters.  The lock's release/acquire orders one operation's
//    plain writes (private nodes, wroot_, path_, counters) before the next
//    holder's reads, so begin_op may load the root relaxed, as a single
//    writer does after the caller's lock.  Nodes the next holder reads are
//    reachable from the newest root, hence not retired.  A writer reads
//    and rewrites other writers' nodes only to rebalance, always from the
//    newest root.  rcu::call can wake the callback thread, so full batches
//    of retired nodes are detached under the lock (ready_) and queued by
//    the operation after unlocking: that only delays the start of their
//    grace period, as in point 3.  Writers outside the lock touch only
//    their thread's reserve (plain pool blocks, never published) and read
//    the root under RCU in preallocate().
//
// Gap bookkeeping: for every child an inner node stores the child's first
// start, last end and the largest gap between consecutive entries inside the
// child.  Gaps between children are derived from neighbouring first-start /
// last-end keys, the gaps before the first and after the last entry from the
// root summary.  So no gap is ever split between nodes.
#include "tree/range_tree.h"

#include "tree/node_pool.h"
#include "sync/fail_nth.h"
#include "sync/futex.h"
#include "sync/lockdep.h"
#include "sync/tls.h"

#include <sched.h>

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <new>
#include <sstream>

namespace vmspace::tree {

using namespace detail;

namespace {

using Ref = std::uintptr_t;

Ref tag(LeafNode* l) { return reinterpret_cast<Ref>(l) | 1u; }
Ref tag(InnerNode* n) { return reinterpret_cast<Ref>(n); }

unsigned count_of(Ref r) { return is_leaf(r) ? as_leaf(r)->count : as_inner(r)->count; }
std::uint64_t txn_of(Ref r) { return is_leaf(r) ? as_leaf(r)->txn : as_inner(r)->txn; }

static_assert(sizeof(LeafNode) == pool::kClassSize[pool::kSmall]);
static_assert(sizeof(InnerNode) == pool::kClassSize[pool::kLarge]);

pool::Class class_of(Ref r) { return is_leaf(r) ? pool::kSmall : pool::kLarge; }
void* block_of(Ref r) { return reinterpret_cast<void*>(r & ~Ref{1}); }

// Free a node no reader can reach (never published, or tree destruction).
void delete_node(Ref r) { pool::free_local(class_of(r), block_of(r)); }

// One grace-period callback frees the nodes an operation replaced.  The
// batch lives in a small pool block itself.  `next` links full batches
// waiting to be queued (concurrent mode: RangeTree::ready_).
struct RetireBatch {
  rcu::Head head;
  RetireBatch* next;
  std::size_t n;
  Ref nodes[(pool::kClassSize[pool::kSmall] - sizeof(rcu::Head) - sizeof(RetireBatch*) - sizeof(std::size_t)) /
            sizeof(Ref)];
};
static_assert(sizeof(RetireBatch) <= pool::kClassSize[pool::kSmall]);

void free_batch(rcu::Head* h) {
  auto* b = reinterpret_cast<RetireBatch*>(h);
  pool::Chain chain[2];
  // The nodes are cold here (the callback thread never touched them):
  // fetch a few ahead so that the misses overlap.  Without it this loop
  // ran slower than two writer threads retired nodes, and the backlog of
  // batches (pool slabs) grew without bound.
  constexpr std::size_t kAhead = 8;
  for (std::size_t i = 0; i < b->n && i < kAhead; ++i) __builtin_prefetch(block_of(b->nodes[i]), 1);
  for (std::size_t i = 0; i < b->n; ++i) {
    if (i + kAhead < b->n) __builtin_prefetch(block_of(b->nodes[i + kAhead]), 1);
    pool::chain_push(chain[class_of(b->nodes[i])], block_of(b->nodes[i]));
  }
  pool::chain_push(chain[pool::kSmall], b);  // liburcu no longer touches h
  pool::free_remote(pool::kSmall, chain[pool::kSmall]);
  pool::free_remote(pool::kLarge, chain[pool::kLarge]);
}

// Queue a chain of full batches (linked by `next`) for freeing.
void queue_batches(RetireBatch* b) {
  while (b != nullptr) {
    RetireBatch* next = b->next;
    rcu::call(&b->head, free_batch);
    b = next;
  }
}

// Height of the tree under root r (0 = empty).  r must stay valid during
// the walk: the writer's own root, or a root loaded under RCU.
unsigned height_of(Ref r) {
  unsigned h = 0;
  for (; r != 0; r = is_leaf(r) ? 0 : as_inner(r)->child[0]) ++h;
  return h;
}

// ---- Concurrent mode: the writers' reserves ----

// A thread's preallocate() reserve (concurrent mode): plain pool blocks,
// owned by the thread, sized for the tree whose id is `tree`.
struct WriterReserve {
  std::uint64_t tree = 0;  // RangeTree::id_ it was sized for; 0 = none
  std::vector<void*> leaf, inner;

  // Give every block back to the pool.  free_remote (the global return
  // stack) rather than free_local: at thread exit this may run after the
  // pool's own thread-local cache was torn down.
  void drop() {
    pool::Chain ch[2];
    for (void* b : leaf) pool::chain_push(ch[pool::kSmall], b);
    for (void* b : inner) pool::chain_push(ch[pool::kLarge], b);
    pool::free_remote(pool::kSmall, ch[pool::kSmall]);
    pool::free_remote(pool::kLarge, ch[pool::kLarge]);
    leaf.clear();
    inner.clear();
    tree = 0;
  }
  ~WriterReserve() { drop(); }
};

// Thread-private.  A pointer (8 bytes of the library's static TLS block,
// sync/tls.h), the reserve created on first use; its destructor returns
// the blocks at thread exit.
VMSPACE_TLS_FAST thread_local std::unique_ptr<WriterReserve> t_reserve;

// Tree ids for the reserves' keys: unique for the life of the process, so
// a reserve sized for a destroyed tree never passes for one of a new tree
// at the same address.  Relaxed: only uniqueness matters.
std::atomic<std::uint64_t> g_next_tree_id{0};

// The commit lock's bounded spin before yielding: a preempted holder needs
// the CPU more than the waiters do.
constexpr unsigned kCommitSpinsBeforeYield = 512;

Summary summarize_ref(Ref r) {
  Summary s;
  if (is_leaf(r)) {
    const LeafNode* l = as_leaf(r);
    s.min_start = l->slot[0].start;
    s.max_end = l->end[l->count - 1];
    s.max_gap = 0;
    for (unsigned i = 0; i + 1 < l->count; ++i) s.max_gap = std::max(s.max_gap, l->slot[i + 1].start - l->end[i]);
  } else {
    const InnerNode* n = as_inner(r);
    s.min_start = n->min_start[0];
    s.max_end = n->max_end[n->count - 1];
    s.max_gap = n->max_gap[0];
    for (unsigned i = 1; i < n->count; ++i) {
      s.max_gap = std::max({s.max_gap, n->max_gap[i], n->min_start[i] - n->max_end[i - 1]});
    }
  }
  return s;
}

void set_child(InnerNode* p, unsigned i, Ref child) {
  Summary s = summarize_ref(child);
  p->child[i] = child;
  p->min_start[i] = s.min_start;
  p->max_end[i] = s.max_end;
  p->max_gap[i] = s.max_gap;
}

InnerItem item_of(Ref child) { return InnerItem{child, summarize_ref(child)}; }

unsigned load_items(const InnerNode* n, InnerItem* buf) {
  for (unsigned i = 0; i < n->count; ++i) {
    buf[i] = InnerItem{n->child[i], Summary{n->min_start[i], n->max_end[i], n->max_gap[i]}};
  }
  return n->count;
}

void store_items(InnerNode* n, const InnerItem* buf, unsigned cnt) {
  for (unsigned i = 0; i < cnt; ++i) {
    n->child[i] = buf[i].child;
    n->min_start[i] = buf[i].s.min_start;
    n->max_end[i] = buf[i].s.max_end;
    n->max_gap[i] = buf[i].s.max_gap;
  }
  for (unsigned i = cnt; i < kInnerSlots; ++i) {
    n->child[i] = 0;
    n->min_start[i] = kMaxAddr;
    n->max_end[i] = kMaxAddr;
    n->max_gap[i] = 0;
  }
  n->count = cnt;
}

unsigned load_items(const LeafNode* l, LeafItem* buf) {
  for (unsigned i = 0; i < l->count; ++i) buf[i] = LeafItem{l->slot[i].start, l->end[i], l->slot[i].ptr};
  return l->count;
}

void store_items(LeafNode* l, const LeafItem* buf, unsigned n) {
  for (unsigned i = 0; i < n; ++i) {
    l->slot[i].start = buf[i].start;
    l->end[i] = buf[i].end;
    l->slot[i].ptr = buf[i].ptr;
  }
  for (unsigned i = n; i < kLeafSlots; ++i) {
    l->slot[i].start = kMaxAddr;
    l->end[i] = kMaxAddr;
    l->slot[i].ptr = nullptr;
  }
  l->count = n;
}

std::uint64_t align_up_checked(std::uint64_t x, std::uint64_t align, bool& ok) {
  std::uint64_t m = align - 1;
  if (x > kMaxAddr - m) {
    ok = false;
    return 0;
  }
  ok = true;
  return (x + m) & ~m;
}

struct GapReq {
  std::uint64_t length, align, low, high;
  bool top;
};

// Does [gs, ge) clipped to [low, high) hold an aligned [s, s + length)?
bool fit(const GapReq& r, std::uint64_t gs, std::uint64_t ge, std::uint64_t& out) {
  gs = std::max(gs, r.low);
  ge = std::min(ge, r.high);
  if (ge <= gs || ge - gs < r.length) return false;
  if (r.top) {
    std::uint64_t s = (ge - r.length) & ~(r.align - 1);
    if (s < gs) return false;
    out = s;
    return true;
  }
  bool ok;
  std::uint64_t s = align_up_checked(gs, r.align, ok);
  if (!ok || s > ge || ge - s < r.length) return false;
  out = s;
  return true;
}

bool gap_up(Ref ref, const GapReq& r, std::uint64_t& out) {
  if (is_leaf(ref)) {
    const LeafNode* l = as_leaf(ref);
    for (unsigned i = 0; i + 1 < l->count; ++i) {
      std::uint64_t gs = l->end[i], ge = l->slot[i + 1].start;
      if (ge <= r.low) continue;
      if (gs >= r.high) return false;
      if (fit(r, gs, ge, out)) return true;
    }
    return false;
  }
  const InnerNode* n = as_inner(ref);
  for (unsigned i = 0; i < n->count; ++i) {
    if (n->min_start[i] >= r.high) return false;
    if (n->max_end[i] > r.low && n->max_gap[i] >= r.length && gap_up(n->child[i], r, out)) return true;
    if (i + 1 < n->count) {
      std::uint64_t gs = n->max_end[i], ge = n->min_start[i + 1];
      if (gs >= r.high) return false;
      if (ge > r.low && fit(r, gs, ge, out)) return true;
    }
  }
  return false;
}

bool gap_down(Ref ref, const GapReq& r, std::uint64_t& out) {
  if (is_leaf(ref)) {
    const LeafNode* l = as_leaf(ref);
    for (unsigned i = l->count; i-- > 1;) {
      std::uint64_t gs = l->end[i - 1], ge = l->slot[i].start;
      if (gs >= r.high) continue;
      if (ge <= r.low) return false;
      if (fit(r, gs, ge, out)) return true;
    }
    return false;
  }
  const InnerNode* n = as_inner(ref);
  for (unsigned i = n->count; i-- > 0;) {
    if (n->max_end[i] <= r.low) return false;
    if (n->min_start[i] < r.high && n->max_gap[i] >= r.length && gap_down(n->child[i], r, out)) return true;
    if (i > 0) {
      std::uint64_t gs = n->max_end[i - 1], ge = n->min_start[i];
      if (ge <= r.low) return false;
      if (gs < r.high && fit(r, gs, ge, out)) return true;
    }
  }
  return false;
}

}  // namespace

// ---------------------------------------------------------------------------
// Node lifetime

RangeTree::Summary RangeTree::summarize(Ref r) { return summarize_ref(r); }

namespace {

// Top up a reserve for `changes` changes on paths of height `height`.
bool fill_reserve(std::vector<void*>& leaf, std::vector<void*>& inner, unsigned height, unsigned changes) {
  // A change copies, splits or rebalances a bounded number of nodes on the
  // (at most two) paths to its ends: a few leaves, a few inner nodes per
  // level, and maybe a new root.
  const std::size_t want_leaf = 8 * std::size_t{changes};
  const std::size_t want_inner = (6 * static_cast<std::size_t>(height) + 4) * changes;
  if (leaf.size() >= want_leaf && inner.size() >= want_inner) return true;  // nothing to allocate
  if (fail_nth::should_fail(fail_nth::Site::tree)) return false;  // injected (tests)
  try {
    leaf.reserve(want_leaf);
    inner.reserve(want_inner);
  } catch (const std::bad_alloc&) {
    return false;
  }
  while (leaf.size() < want_leaf) leaf.push_back(pool::alloc(pool::kSmall));
  while (inner.size() < want_inner) inner.push_back(pool::alloc(pool::kLarge));
  return true;
}

}  // namespace

bool RangeTree::preallocate(unsigned changes) {
  if (!concurrent_) {
    return fill_reserve(spare_leaf_, spare_inner_,
                        height_of(wroot_ != 0 ? wroot_ : root_.load(std::memory_order_relaxed)), changes);
  }
  // Concurrent mode: the calling thread's reserve, outside the lock.
  if (!t_reserve) {
    try {
      t_reserve = std::make_unique<WriterReserve>();
    } catch (const std::bad_alloc&) {
      return false;
    }
  }
  WriterReserve& r = *t_reserve;
  if (r.tree != id_) {
    r.drop();  // sized for another tree: its blocks go back first
    r.tree = id_;
  }
  unsigned height;
  {
    // Other writers may retire (and, after a grace period, free) the nodes
    // of this root: walk it as a reader.  Acquire pairs with commit_op's
    // release store.
    rcu::ReadGuard g;
    height = height_of(root_.load(std::memory_order_acquire));
  }
  return fill_reserve(r.leaf, r.inner, height, changes);
}

std::size_t RangeTree::reserved_nodes() const {
  if (!concurrent_) return spare_leaf_.size() + spare_inner_.size();
  const WriterReserve* r = t_reserve.get();
  return r != nullptr && r->tree == id_ ? r->leaf.size() + r->inner.size() : 0;
}

void RangeTree::set_concurrent_writers(bool on) {
  if (on == concurrent_) return;
  if (on) {
    // Filled by a single writer; from now on each thread has its own.
    for (void* b : spare_leaf_) pool::free_local(pool::kSmall, b);
    for (void* b : spare_inner_) pool::free_local(pool::kLarge, b);
    spare_leaf_.clear();
    spare_inner_.clear();
    id_ = g_next_tree_id.fetch_add(1, std::memory_order_relaxed) + 1;
  } else {
    // Other threads' reserves keyed by id_ are dropped lazily (next
    // preallocate for another tree, or thread exit); id_ is never reused.
    if (t_reserve && t_reserve->tree == id_) t_reserve->drop();
    id_ = 0;
  }
  concurrent_ = on;
}

// ---------------------------------------------------------------------------
// The commit lock (concurrent mode)

// Lockdep records it (class none: not order-checked; a new lock class
// belongs in sync/lock_order.h) so that recursion and unlocking a lock
// not held abort in debug builds, and it counts as a spinlock for
// futex.h's check: a futex wake-up under it aborts.
void RangeTree::commit_lock() const {
  lockdep::acquire(&commit_, LockClass::none, lockdep::Mode::exclusive, 0, /*trylock=*/false);
  unsigned spins = 0;
  // Acquire pairs with the release in commit_unlock() of the previous
  // holder: its operation (nodes, counters, root) happens-before ours.
  while (commit_.locked.exchange(1, std::memory_order_acquire) != 0) {
    while (commit_.locked.load(std::memory_order_relaxed) != 0) {
      if (++spins < kCommitSpinsBeforeYield) {
        cpu_relax();
      } else {
        sched_yield();
      }
    }
  }
#if defined(VMSPACE_DEBUG_CHECKS)
  ++spinlocks_held;
#endif
}

void RangeTree::commit_unlock() const {
  lockdep::release(&commit_);
#if defined(VMSPACE_DEBUG_CHECKS)
  --spinlocks_held;
#endif
  // Release pairs with the acquire exchange in commit_lock() of the next
  // holder.
  commit_.locked.store(0, std::memory_order_release);
}

// One store/erase/clear in concurrent mode: lock, lend the calling
// thread's reserve to new_leaf()/new_inner(), run the operation; then take
// the reserve back, detach the full retire batches, unlock, queue them.
class RangeTree::ConcurrentOp {
 public:
  // Out of line, so that the single-writer callers keep their lean frame.
  template <class Body>
  [[gnu::noinline]] static void run(RangeTree& t, Body body) {
    ConcurrentOp op(t);
    body();
  }

  explicit ConcurrentOp(RangeTree& t) : t_(t) {
    WriterReserve* r = t_reserve.get();
    if (r != nullptr && r->tree == t.id_ && !(r->leaf.empty() && r->inner.empty())) r_ = r;
    t_.commit_lock();
    if (r_ != nullptr) {  // the tree's spare vectors are empty between operations
      t_.spare_leaf_.swap(r_->leaf);
      t_.spare_inner_.swap(r_->inner);
    }
  }
  ~ConcurrentOp() {
    if (r_ != nullptr) {
      t_.spare_leaf_.swap(r_->leaf);
      t_.spare_inner_.swap(r_->inner);
    }
    auto* ready = static_cast<RetireBatch*>(t_.ready_);
    t_.ready_ = nullptr;
    t_.commit_unlock();
    queue_batches(ready);  // may wake the RCU callback thread: not under the lock
  }
  ConcurrentOp(const ConcurrentOp&) = delete;
  ConcurrentOp& operator=(const ConcurrentOp&) = delete;

 private:
  RangeTree& t_;
  WriterReserve* r_ = nullptr;
};

std::size_t RangeTree::size_locked() const {
  commit_lock();
  std::size_t n = size_;
  commit_unlock();
  return n;
}

LeafNode* RangeTree::new_leaf() {
  void* block;
  if (!spare_leaf_.empty()) {
    block = spare_leaf_.back();
    spare_leaf_.pop_back();
  } else {
    block = pool::alloc(pool::kSmall);
  }
  auto* l = new (block) LeafNode;
  l->end[kLeafSlots] = kMaxAddr;  // the sentinel key (see range_tree.h)
  l->count = 0;
  l->pad_ = 0;
  l->txn = txn_;
  ++leaves_;
  return l;
}

InnerNode* RangeTree::new_inner() {
  void* block;
  if (!spare_inner_.empty()) {
    block = spare_inner_.back();
    spare_inner_.pop_back();
  } else {
    block = pool::alloc(pool::kLarge);
  }
  auto* n = new (block) InnerNode;
  n->max_end[kInnerSlots] = kMaxAddr;  // the sentinel key (see range_tree.h)
  n->count = 0;
  n->pad_ = 0;
  n->pad2_ = 0;
  n->txn = txn_;
  ++inners_;
  return n;
}

// Drop a node from the working tree.  Private nodes go at once; published
// ones after a grace period.
void RangeTree::free_node(Ref r) {
  if (is_leaf(r)) {
    --leaves_;
  } else {
    --inners_;
  }
  if (txn_of(r) == txn_) {
    delete_node(r);
  } else {
    retired_.push_back(r);
  }
}

// A private copy of r that this operation may edit (r itself if private).
RangeTree::Ref RangeTree::make_writable(Ref r) {
  if (txn_of(r) == txn_) return r;
  Ref c;
  if (is_leaf(r)) {
    LeafNode* l = new_leaf();
    std::memcpy(static_cast<void*>(l), as_leaf(r), sizeof(LeafNode));
    l->txn = txn_;
    c = tag(l);
  } else {
    InnerNode* n = new_inner();
    std::memcpy(static_cast<void*>(n), as_inner(r), sizeof(InnerNode));
    n->txn = txn_;
    c = tag(n);
  }
  free_node(r);
  return c;
}

void RangeTree::free_subtree(Ref r) {
  if (r == 0) return;
  if (!is_leaf(r)) {
    const InnerNode* n = as_inner(r);
    for (unsigned i = 0; i < n->count; ++i) free_subtree(n->child[i]);
  }
  delete_node(r);
}

RangeTree::~RangeTree() {
  if (concurrent_ && t_reserve && t_reserve->tree == id_) t_reserve->drop();
  for (void* b : spare_leaf_) pool::free_local(pool::kSmall, b);
  for (void* b : spare_inner_) pool::free_local(pool::kLarge, b);
  flush_retired();
  free_subtree(root_.load(std::memory_order_relaxed));
}

// Queue the pending batch of retired nodes for freeing after a grace period.
// Never under the commit lock (rcu::call may wake a thread).
void RangeTree::flush_retired() {
  if constexpr (lockdep::enabled) {
    if (concurrent_ && lockdep::held(&commit_))
      lockdep::fail(&commit_, LockClass::none, "RangeTree: rcu::call under the commit lock");
  }
  queue_batches(static_cast<RetireBatch*>(ready_));
  ready_ = nullptr;
  if (pending_ == nullptr) return;
  auto* b = static_cast<RetireBatch*>(pending_);
  pending_ = nullptr;
  b->next = nullptr;
  queue_batches(b);
}

// ---------------------------------------------------------------------------
// Operations

void RangeTree::begin_op() {
  wroot_ = root_.load(std::memory_order_relaxed);
  retired_.clear();
}

void RangeTree::commit_op() {
  root_.store(wroot_, std::memory_order_release);
  ++txn_;
  // Retired nodes collect in a batch shared by consecutive operations; one
  // rcu::call per full batch (~10 single-entry stores).  Queuing later than
  // the commit only delays the free: the grace period still starts after
  // every reader that could see these nodes began.
  // Concurrent mode: under the commit lock, so a full batch goes to ready_
  // and the operation queues it after unlocking (ConcurrentOp).
  for (Ref r : retired_) {
    auto* b = static_cast<RetireBatch*>(pending_);
    if (b == nullptr) {
      b = new (pool::alloc(pool::kSmall)) RetireBatch;
      b->next = nullptr;
      b->n = 0;
      pending_ = b;
    }
    b->nodes[b->n++] = r;
    if (b->n == std::size(b->nodes)) {
      if (concurrent_) {
        b->next = static_cast<RetireBatch*>(ready_);
        ready_ = b;
        pending_ = nullptr;
      } else {
        flush_retired();
      }
    }
  }
  retired_.clear();
}

// Copy the path from the root to the leaf that holds (or would hold) the
// first entry with end > key; record it in path_.  Returns the leaf level.
unsigned RangeTree::descend(std::uint64_t key) {
  Ref* slotp = &wroot_;
  unsigned d = 0;
  for (;;) {
    if (d >= kMaxDepth) {
      std::fprintf(stderr, "vmspace: range tree deeper than %u\n", kMaxDepth);
      std::abort();
    }
    Ref r = make_writable(*slotp);
    *slotp = r;
    path_[d].node = r;
    path_[d].slot = 0;
    if (is_leaf(r)) {
      return d;
    }
    InnerNode* n = as_inner(r);
    unsigned i = rank_le<kInnerSlots>(n->max_end, key);
    if (i >= n->count) i = n->count - 1;
    path_[d].slot = i;
    slotp = &n->child[i];
    ++d;
  }
}

// Refresh the keys of the path nodes above level d after level d changed.
void RangeTree::propagate(unsigned d) {
  for (unsigned k = d; k > 0; --k) {
    set_child(as_inner(path_[k - 1].node), path_[k - 1].slot, path_[k].node);
  }
}

// The node at path level d (private) must now hold buf[0..n), where n may be
// one above capacity or below the minimum fill.  Rebalance with siblings,
// split or merge, and fix the levels above.
template <class Item>
void RangeTree::put_level(unsigned d, Item* buf, unsigned n) {
  constexpr bool kLeaf = std::is_same_v<Item, LeafItem>;
  using N = std::conditional_t<kLeaf, LeafNode, InnerNode>;
  constexpr unsigned kCap = kLeaf ? kLeafSlots : kInnerSlots;
  constexpr unsigned kMin = kLeaf ? kLeafMin : kInnerMin;
  auto node_of = [](Ref r) -> N* {
    if constexpr (kLeaf) {
      return as_leaf(r);
    } else {
      return as_inner(r);
    }
  };
  auto alloc = [this]() -> N* {
    if constexpr (kLeaf) {
      return new_leaf();
    } else {
      return new_inner();
    }
  };

  N* node = node_of(path_[d].node);
  if (d == 0) {  // root
    if (n == 0) {
      free_node(path_[0].node);
      wroot_ = 0;
      return;
    }
    if constexpr (!kLeaf) {
      if (n == 1) {  // collapse a one-child root
        free_node(path_[0].node);
        wroot_ = buf[0].child;
        return;
      }
    }
    if (n <= kCap) {
      store_items(node, buf, n);
      return;
    }
    N* right = alloc();
    unsigned h = n / 2;
    store_items(node, buf, h);
    store_items(right, buf + h, n - h);
    InnerNode* root = new_inner();
    InnerItem items[2] = {item_of(tag(node)), item_of(tag(right))};
    store_items(root, items, 2);
    wroot_ = tag(root);
    return;
  }

  InnerNode* parent = as_inner(path_[d - 1].node);
  unsigned idx = path_[d - 1].slot;
  Item all[2 * kCap + 1];

  if (n > kCap) {
    // Shift into a sibling with room (keeps nodes dense), else split.
    for (int side = -1; side <= 1; side += 2) {
      if (side < 0 && idx == 0) continue;
      if (side > 0 && idx + 1 >= parent->count) continue;
      unsigned sidx = side < 0 ? idx - 1 : idx + 1;
      if (count_of(parent->child[sidx]) >= kCap) continue;
      Ref sref = make_writable(parent->child[sidx]);
      parent->child[sidx] = sref;
      N* sib = node_of(sref);
      unsigned total;
      N *left, *right;
      if (side < 0) {
        total = load_items(sib, all);
        std::copy(buf, buf + n, all + total);
        total += n;
        left = sib;
        right = node;
      } else {
        std::copy(buf, buf + n, all);
        total = n + load_items(sib, all + n);
        left = node;
        right = sib;
      }
      unsigned h = (total + 1) / 2;
      store_items(left, all, h);
      store_items(right, all + h, total - h);
      unsigned li = std::min(idx, sidx);
      set_child(parent, li, tag(left));
      set_child(parent, li + 1, tag(right));
      propagate(d - 1);
      return;
    }
    N* right = alloc();
    unsigned h = n / 2;
    store_items(node, buf, h);
    store_items(right, buf + h, n - h);
    InnerItem pbuf[kInnerSlots + 1];
    unsigned pn = load_items(parent, pbuf);
    pbuf[idx] = item_of(tag(node));
    std::copy_backward(pbuf + idx + 1, pbuf + pn, pbuf + pn + 1);
    pbuf[idx + 1] = item_of(tag(right));
    put_level<InnerItem>(d - 1, pbuf, pn + 1);
    return;
  }

  if (n < kMin) {
    // A non-root node's parent has at least two children.
    unsigned sidx = idx > 0 ? idx - 1 : idx + 1;
    Ref sref = parent->child[sidx];
    N* sib = node_of(sref);
    unsigned total;
    if (sidx < idx) {
      total = load_items(sib, all);
      std::copy(buf, buf + n, all + total);
      total += n;
    } else {
      std::copy(buf, buf + n, all);
      total = n + load_items(sib, all + n);
    }
    if (total <= kCap) {  // merge into `node`, drop the sibling
      store_items(node, all, total);
      free_node(sref);
      InnerItem pbuf[kInnerSlots + 1];
      unsigned pn = load_items(parent, pbuf);
      pbuf[idx] = item_of(tag(node));
      std::copy(pbuf + sidx + 1, pbuf + pn, pbuf + sidx);
      put_level<InnerItem>(d - 1, pbuf, pn - 1);
      return;
    }
    sref = make_writable(sref);
    parent->child[sidx] = sref;
    sib = node_of(sref);
    N* left = sidx < idx ? sib : node;
    N* right = sidx < idx ? node : sib;
    unsigned h = (total + 1) / 2;
    store_items(left, all, h);
    store_items(right, all + h, total - h);
    unsigned li = std::min(idx, sidx);
    set_child(parent, li, tag(left));
    set_child(parent, li + 1, tag(right));
    propagate(d - 1);
    return;
  }

  store_items(node, buf, n);
  set_child(parent, idx, tag(node));
  propagate(d - 1);
}

template void RangeTree::put_level<LeafItem>(unsigned, LeafItem*, unsigned);
template void RangeTree::put_level<InnerItem>(unsigned, InnerItem*, unsigned);

// Insert e into the working tree; [e.start, e.end) must be free there.
void RangeTree::insert_entry(const Entry& e) {
  ++size_;
  if (wroot_ == 0) {
    LeafNode* l = new_leaf();
    LeafItem it{e.start, e.end, e.ptr};
    store_items(l, &it, 1);
    wroot_ = tag(l);
    return;
  }
  unsigned d = descend(e.start);
  LeafNode* l = as_leaf(path_[d].node);
  LeafItem buf[kLeafSlots + 1];
  unsigned n = load_items(l, buf);
  unsigned pos = rank_le<kLeafSlots>(l->end, e.start);
  std::copy_backward(buf + pos, buf + n, buf + n + 1);
  buf[pos] = LeafItem{e.start, e.end, e.ptr};
  put_level<LeafItem>(d, buf, n + 1);
}

// Remove the entry containing key from the working tree.
void RangeTree::remove_at(std::uint64_t key) {
  --size_;
  unsigned d = descend(key);
  LeafNode* l = as_leaf(path_[d].node);
  LeafItem buf[kLeafSlots + 1];
  unsigned n = load_items(l, buf);
  unsigned pos = rank_le<kLeafSlots>(l->end, key);
  assert(pos < n && l->slot[pos].start <= key);
  std::copy(buf + pos + 1, buf + n, buf + pos);
  put_level<LeafItem>(d, buf, n - 1);
}

// Replace the entry containing key by e (same position in the order).
void RangeTree::modify_at(std::uint64_t key, const Entry& e) {
  unsigned d = descend(key);
  LeafNode* l = as_leaf(path_[d].node);
  unsigned pos = rank_le<kLeafSlots>(l->end, key);
  assert(pos < l->count && l->slot[pos].start <= key);
  l->slot[pos].start = e.start;
  l->end[pos] = e.end;
  l->slot[pos].ptr = e.ptr;
  if (d > 0) propagate(d);
}

// Trim or remove everything in the working tree overlapping [start, end).
// scratch_ holds the overlapping entries (collected by the caller).
void RangeTree::remove_overlaps(std::uint64_t start, std::uint64_t end, std::vector<Entry>* displaced) {
  for (const Entry& e : scratch_) {
    if (displaced) displaced->push_back(e);
    if (e.start < start && e.end > end) {
      modify_at(e.start, Entry{e.start, start, e.ptr});
      insert_entry(Entry{end, e.end, e.ptr});
    } else if (e.start < start) {
      modify_at(e.start, Entry{e.start, start, e.ptr});
    } else if (e.end > end) {
      modify_at(e.start, Entry{end, e.end, e.ptr});
    } else {
      remove_at(e.start);
    }
  }
}

static void check_range(std::uint64_t start, std::uint64_t end, const char* what) {
  if (start >= end) {
    std::fprintf(stderr, "vmspace: RangeTree::%s: empty or inverted range [%#llx, %#llx)\n", what,
                 static_cast<unsigned long long>(start), static_cast<unsigned long long>(end));
    std::abort();
  }
}

// The operations' bodies: under the caller's serialization of writers, or
// under the commit lock (concurrent mode).  Inlined into both callers, so
// the single-writer path is today's function with one more branch.
[[gnu::always_inline]] inline void RangeTree::store_op(std::uint64_t start, std::uint64_t end, void* ptr,
                                                     std::vector<Entry>* displaced) {
  begin_op();
  if (wroot_ != 0) {
    // Fast paths, one descent: the leaf reached holds the first entry with
    // end > start, if any entry has.
    unsigned d = descend(start);
    LeafNode* l = as_leaf(path_[d].node);
    unsigned pos = rank_le<kLeafSlots>(l->end, start);
    if (pos == l->count || l->slot[pos].start >= end) {  // nothing overlaps
      LeafItem buf[kLeafSlots + 1];
      unsigned n = load_items(l, buf);
      std::copy_backward(buf + pos, buf + n, buf + n + 1);
      buf[pos] = LeafItem{start, end, ptr};
      ++size_;
      put_level<LeafItem>(d, buf, n + 1);
      commit_op();
      return;
    }
    if (l->slot[pos].start == start && l->end[pos] == end) {  // exact replacement
      if (displaced) displaced->push_back(Entry{start, end, l->slot[pos].ptr});
      l->slot[pos].ptr = ptr;  // keys unchanged: nothing to propagate
      commit_op();
      return;
    }
  }
  // General case (the copies made above are private and simply reused).
  scratch_.clear();
  auto collect = [this](const Entry& e) { scratch_.push_back(e); };
  if (wroot_ != 0) walk(wroot_, start, end, collect);
  remove_overlaps(start, end, displaced);
  insert_entry(Entry{start, end, ptr});
  commit_op();
}

[[gnu::always_inline]] inline void RangeTree::erase_op(std::uint64_t start, std::uint64_t end,
                                                     std::vector<Entry>* displaced) {
  begin_op();
  scratch_.clear();
  auto collect = [this](const Entry& e) { scratch_.push_back(e); };
  if (wroot_ != 0) walk(wroot_, start, end, collect);
  if (scratch_.empty()) return;  // nothing to publish
  remove_overlaps(start, end, displaced);
  commit_op();
}

[[gnu::always_inline]] inline void RangeTree::clear_op(std::vector<Entry>* displaced) {
  begin_op();
  if (wroot_ == 0) return;
  if (displaced) {
    auto collect = [displaced](const Entry& e) { displaced->push_back(e); };
    walk(wroot_, 0, kMaxAddr, collect);
  }
  // Every node is published: retire them all.
  std::vector<Ref> stack{wroot_};
  while (!stack.empty()) {
    Ref r = stack.back();
    stack.pop_back();
    if (!is_leaf(r)) {
      const InnerNode* n = as_inner(r);
      for (unsigned i = 0; i < n->count; ++i) stack.push_back(n->child[i]);
    }
    free_node(r);
  }
  wroot_ = 0;
  size_ = 0;
  commit_op();
}

void RangeTree::store(std::uint64_t start, std::uint64_t end, void* ptr, std::vector<Entry>* displaced) {
  check_range(start, end, "store");
  if (__builtin_expect(concurrent_, 0)) {
    ConcurrentOp::run(*this, [&] { store_op(start, end, ptr, displaced); });
    return;
  }
  store_op(start, end, ptr, displaced);
}

void RangeTree::erase(std::uint64_t start, std::uint64_t end, std::vector<Entry>* displaced) {
  check_range(start, end, "erase");
  if (__builtin_expect(concurrent_, 0)) {
    ConcurrentOp::run(*this, [&] { erase_op(start, end, displaced); });
    return;
  }
  erase_op(start, end, displaced);
}

void RangeTree::clear(std::vector<Entry>* displaced) {
  if (__builtin_expect(concurrent_, 0)) {
    ConcurrentOp::run(*this, [&] { clear_op(displaced); });
    return;
  }
  clear_op(displaced);
}

// ---------------------------------------------------------------------------
// Readers

std::optional<Entry> RangeTree::find_prev(std::uint64_t addr) const {
  return find_prev_in(root_.load(std::memory_order_acquire), addr);
}

std::optional<std::pair<Entry, Entry>> RangeTree::edges(std::uint64_t lo, std::uint64_t hi) const {
  const Ref r = root_.load(std::memory_order_acquire);
  const LeafNode* l;
  unsigned i;
  if (lo >= hi || !locate(r, lo, l, i) || l->slot[i].start >= hi) return std::nullopt;
  const Entry first{l->slot[i].start, l->end[i], l->slot[i].ptr};
  // Usually the last one is in the same leaf: it is, if an entry of this
  // leaf starts at or above hi (entries are sorted and do not overlap).
  for (unsigned j = i + 1; j < l->count; ++j) {
    if (l->slot[j].start >= hi) {
      const unsigned k = j - 1;
      return std::pair{first, Entry{l->slot[k].start, l->end[k], l->slot[k].ptr}};
    }
  }
  const auto last = find_prev_in(r, hi);  // there is one: `first` meets [lo, hi)
  return std::pair{first, last ? *last : first};
}

std::optional<Entry> RangeTree::find_prev_in(Ref r, std::uint64_t addr) {
  if (r == 0 || addr == 0) return std::nullopt;
  std::uint64_t key = addr - 1;  // last entry with start <= key
  while (!is_leaf(r)) {
    const InnerNode* n = as_inner(r);
    unsigned i = rank_le<kInnerSlots>(n->min_start, key);
    if (i == 0) return std::nullopt;
    r = n->child[i - 1];
  }
  const LeafNode* l = as_leaf(r);
  unsigned i = 0;
  while (i < l->count && l->slot[i].start <= key) ++i;
  if (i == 0) return std::nullopt;
  return Entry{l->slot[i - 1].start, l->end[i - 1], l->slot[i - 1].ptr};
}

std::optional<std::uint64_t> RangeTree::gap_bottom_up(std::uint64_t length, std::uint64_t align,
                                                      std::uint64_t low, std::uint64_t high) const {
  if (length == 0 || align == 0 || (align & (align - 1)) != 0 || low >= high) return std::nullopt;
  GapReq req{length, align, low, high, false};
  std::uint64_t out;
  Ref r = root_.load(std::memory_order_acquire);
  if (r == 0) {
    if (fit(req, 0, kMaxAddr, out)) return out;
    return std::nullopt;
  }
  Summary s = summarize_ref(r);
  if (fit(req, 0, s.min_start, out)) return out;
  if (s.max_gap >= length && s.max_end > low && s.min_start < high && gap_up(r, req, out)) return out;
  if (fit(req, s.max_end, kMaxAddr, out)) return out;
  return std::nullopt;
}

std::optional<std::uint64_t> RangeTree::gap_top_down(std::uint64_t length, std::uint64_t align,
                                                     std::uint64_t low, std::uint64_t high) const {
  if (length == 0 || align == 0 || (align & (align - 1)) != 0 || low >= high) return std::nullopt;
  GapReq req{length, align, low, high, true};
  std::uint64_t out;
  Ref r = root_.load(std::memory_order_acquire);
  if (r == 0) {
    if (fit(req, 0, kMaxAddr, out)) return out;
    return std::nullopt;
  }
  Summary s = summarize_ref(r);
  if (fit(req, s.max_end, kMaxAddr, out)) return out;
  if (s.max_gap >= length && s.max_end > low && s.min_start < high && gap_down(r, req, out)) return out;
  if (fit(req, 0, s.min_start, out)) return out;
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Statistics and validation

MemStats RangeTree::stats() const {
  if (concurrent_) commit_lock();
  MemStats m;
  m.entries = size_;
  m.leaf_nodes = leaves_;
  m.inner_nodes = inners_;
  m.bytes = leaves_ * sizeof(LeafNode) + inners_ * sizeof(InnerNode);
  m.bytes_per_entry = size_ ? static_cast<double>(m.bytes) / static_cast<double>(size_) : 0.0;
  m.pool_bytes = pool::slab_bytes();
  Ref r = root_.load(std::memory_order_acquire);
  while (r != 0) {
    ++m.height;
    if (is_leaf(r)) break;
    r = as_inner(r)->child[0];
  }
  if (concurrent_) commit_unlock();
  return m;
}

namespace {

bool fail(std::string* why, const std::string& msg) {
  if (why) *why = msg;
  return false;
}

std::string hex(std::uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "%#llx", static_cast<unsigned long long>(v));
  return b;
}

}  // namespace

bool RangeTree::validate_node(Ref r, unsigned depth, unsigned leaf_depth, bool is_root, Summary& out,
                              std::size_t& entries, std::size_t& leaves, std::size_t& inners,
                              std::string* why) const {
  if (txn_of(r) >= txn_) return fail(why, "node from an uncommitted operation is reachable");
  if (is_leaf(r)) {
    const LeafNode* l = as_leaf(r);
    ++leaves;
    if (depth != leaf_depth) return fail(why, "leaves at different depths");
    if (l->count == 0 || l->count > kLeafSlots) return fail(why, "leaf count out of range");
    if (l->end[kLeafSlots] != kMaxAddr) return fail(why, "leaf sentinel key overwritten");
    if (!is_root && l->count < kLeafMin) return fail(why, "leaf underfull: " + std::to_string(l->count));
    for (unsigned i = 0; i < l->count; ++i) {
      if (l->slot[i].start >= l->end[i]) return fail(why, "empty entry at " + hex(l->slot[i].start));
      if (i > 0 && l->end[i - 1] > l->slot[i].start) return fail(why, "entries overlap or unordered at " + hex(l->slot[i].start));
    }
    for (unsigned i = l->count; i < kLeafSlots; ++i) {
      if (l->end[i] != kMaxAddr || l->slot[i].start != kMaxAddr) return fail(why, "leaf unused slot not cleared");
    }
    entries += l->count;
    out = summarize_ref(r);
    return true;
  }
  const InnerNode* n = as_inner(r);
  ++inners;
  if (depth >= leaf_depth) return fail(why, "inner node at leaf depth");
  if (n->count < 2 || n->count > kInnerSlots) return fail(why, "inner count out of range");
  if (n->max_end[kInnerSlots] != kMaxAddr) return fail(why, "inner sentinel key overwritten");
  if (!is_root && n->count < kInnerMin) return fail(why, "inner underfull: " + std::to_string(n->count));
  for (unsigned i = n->count; i < kInnerSlots; ++i) {
    if (n->max_end[i] != kMaxAddr || n->min_start[i] != kMaxAddr) return fail(why, "inner unused slot not cleared");
  }
  for (unsigned i = 0; i < n->count; ++i) {
    Summary cs;
    if (n->child[i] == 0) return fail(why, "null child");
    if (!validate_node(n->child[i], depth + 1, leaf_depth, false, cs, entries, leaves, inners, why)) return false;
    if (cs.min_start != n->min_start[i]) return fail(why, "min_start key mismatch at " + hex(cs.min_start));
    if (cs.max_end != n->max_end[i]) return fail(why, "max_end key mismatch at " + hex(cs.max_end));
    if (cs.max_gap != n->max_gap[i]) return fail(why, "max_gap mismatch under " + hex(cs.min_start));
    if (i > 0 && n->max_end[i - 1] > n->min_start[i]) return fail(why, "children overlap at " + hex(cs.min_start));
  }
  out = summarize_ref(r);
  return true;
}

bool RangeTree::validate(std::string* why) const {
  if (!concurrent_) return validate_locked(why);
  commit_lock();
  bool ok = validate_locked(why);
  commit_unlock();
  return ok;
}

bool RangeTree::validate_locked(std::string* why) const {
  Ref r = root_.load(std::memory_order_acquire);
  if (r == 0) {
    if (size_ != 0) return fail(why, "empty tree but size " + std::to_string(size_));
    if (leaves_ != 0 || inners_ != 0) return fail(why, "empty tree but nodes counted");
    return true;
  }
  unsigned leaf_depth = 0;
  for (Ref x = r; !is_leaf(x); x = as_inner(x)->child[0]) ++leaf_depth;
  if (leaf_depth >= kMaxDepth) return fail(why, "tree too deep");
  Summary s;
  std::size_t entries = 0, leaves = 0, inners = 0;
  if (!validate_node(r, 0, leaf_depth, true, s, entries, leaves, inners, why)) return false;
  if (entries != size_) return fail(why, "size " + std::to_string(size_) + " but " + std::to_string(entries) + " entries");
  if (leaves != leaves_ || inners != inners_) return fail(why, "node counters disagree with the tree");
  return true;
}

void RangeTree::check_or_die() const {
  std::string why;
  if (validate(&why)) return;
  std::fprintf(stderr, "vmspace: RangeTree invariant violated: %s\n", why.c_str());
  std::abort();
}

}  // namespace vmspace::tree
