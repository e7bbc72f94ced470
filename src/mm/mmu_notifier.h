// SPDX-License-Identifier: MIT
// mmu_notifier.h - telling an embedder's translation caches that
// translations die (Linux's mmu_notifier invalidate_range_start/end), and
// the translation generation, a counter such caches validate against.
//
// The protocol, for every change that ends translations of a range (a PTE
// cleared, write-protected, made inaccessible, moved or pointed at another
// frame):
//
//   mmu_notifier_invalidate_range_start(mm, range)   generation += 1, then
//                                                    every start callback
//   ... the PTEs of the range change (under their pte_locks) ...
//   mmu_notifier_invalidate_range_end(mm, range)     generation += 1, then
//                                                    every end callback
//
// Callbacks run on the changing thread with whatever mm locks the change
// holds (mmap_lock, a VMA lock, a file's i_mmap_rwsem) but NEVER a
// spinlock: no page_table_lock, no pte_lock (a callback may block on the
// embedder's own locks).  docs/locking.md has the table per operation.
//
// Why the generation moves twice.  A cache records g = generation
// (acquire), translates inside an AccessScope, and uses the pointer while
// generation == g.  Bumped only at start, a reader could load the bumped
// value, then still translate the OLD PTE (the change has not stored it
// yet), and keep that translation forever.  The end bump (release, after
// the PTE stores) makes such a record stale; a reader whose acquire load
// sees the end bump sees the new PTEs.  The start bump makes a cache stop
// trusting its records before any PTE changes: the PTE stores are releases
// after it, so a walker that sees a new PTE also sees the bumped counter.
//
// Registry: a reader-writer lock around a small vector.  Invalidations
// hold it shared across their callbacks; register/unregister take it
// exclusive, so unregister returns only after every callback of the
// notifier it removes has returned (an SRCU-like "no reader left" wait
// that needs no grace period, hence is legal inside an AccessScope).
// With nothing registered an invalidation costs one atomic increment and
// one relaxed load at start and at end.
#pragma once

#include <atomic>
#include <cstdint>
#include <shared_mutex>
#include <vector>

namespace vmspace {
class InvalidationNotifier;
enum class InvalidateReason : unsigned char;
}  // namespace vmspace

namespace vmspace::mm {

struct MmStruct;

struct MmuNotifiers {
  // The translation generation.  No lock: RMW only (release, see above),
  // read with acquire (AddressSpace::translation_generation).
  std::atomic<std::uint64_t> generation{0};
  // How many notifiers are registered.  Write: with `lock` held exclusive.
  // Read: anyone, relaxed (the fast path's "anyone listening?"): a
  // notifier registered concurrently with a change may miss that change's
  // start, which the API allows; it then sees its end or nothing.
  std::atomic<unsigned> count{0};
  // Write: exclusive; read (and call): shared, held across callbacks.  A
  // leaf among vmspace's locks except for the callbacks it is held
  // around, which take no vmspace lock (the API forbids calling back).
  // Not in the lock-order checker: never taken while a spinlock is held.
  std::shared_mutex lock;
  // Registered notifiers, in registration order.  Write: `lock` exclusive.
  // Read: `lock` shared.
  std::vector<InvalidationNotifier*> list;
};

// 0, -EEXIST, -ENOMEM.  Must not be called from a callback of this mm.
int mmu_notifier_register(MmStruct* mm, InvalidationNotifier* n);
// 0, -ENOENT.  Returns after every running callback of `n` returned.
int mmu_notifier_unregister(MmStruct* mm, InvalidationNotifier* n);

void mmu_notifier_invalidate_range_start(MmStruct* mm, std::uint64_t start, std::uint64_t end,
                                         InvalidateReason reason);
void mmu_notifier_invalidate_range_end(MmStruct* mm, std::uint64_t start, std::uint64_t end,
                                       InvalidateReason reason);

// A start/end pair around a scope: start in the constructor (or at the
// first begin() when `lazy`), end in the destructor when started.  For
// operations that may turn out to change nothing (mprotect to the same
// flags): begin() just before the first PTE change.
class MmuNotifierRange {
 public:
  MmuNotifierRange(MmStruct* mm, std::uint64_t start, std::uint64_t end, InvalidateReason reason,
                   bool lazy = false)
      : mm_(mm), start_(start), end_(end), reason_(reason) {
    if (!lazy) begin();
  }
  ~MmuNotifierRange() {
    if (started_) mmu_notifier_invalidate_range_end(mm_, start_, end_, reason_);
  }
  MmuNotifierRange(const MmuNotifierRange&) = delete;
  MmuNotifierRange& operator=(const MmuNotifierRange&) = delete;
  void begin() {
    if (started_) return;
    started_ = true;
    mmu_notifier_invalidate_range_start(mm_, start_, end_, reason_);
  }

 private:
  MmStruct* mm_;
  std::uint64_t start_, end_;
  InvalidateReason reason_;
  bool started_ = false;
};

}  // namespace vmspace::mm
