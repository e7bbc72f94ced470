// SPDX-License-Identifier: MIT
// mmu_notifier.cpp - the notifier registry and the invalidation calls
// (the protocol and why the generation moves twice: mmu_notifier.h).
#include "mm/mmu_notifier.h"

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <new>

#include "mm/mm_types.h"
#include "vmspace/address_space.h"

namespace vmspace::mm {

int mmu_notifier_register(MmStruct* mm, InvalidationNotifier* n) {
  MmuNotifiers& s = mm->notifiers;
  // Exclusive: waits for running callbacks (they hold it shared); the
  // list is never changed under an iterating invalidation.
  std::unique_lock<std::shared_mutex> g(s.lock);
  if (std::find(s.list.begin(), s.list.end(), n) != s.list.end()) return -EEXIST;
  try {
    s.list.push_back(n);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
  // Relaxed: the fast path only decides whether to take `lock`; a change
  // that misses this store misses the new notifier's start, as allowed.
  s.count.store(static_cast<unsigned>(s.list.size()), std::memory_order_relaxed);
  return 0;
}

int mmu_notifier_unregister(MmStruct* mm, InvalidationNotifier* n) {
  MmuNotifiers& s = mm->notifiers;
  // Taking the lock exclusive is the wait: every invalidation that may
  // call `n` holds it shared across its callbacks, and one that starts
  // after we release it no longer finds `n`.
  std::unique_lock<std::shared_mutex> g(s.lock);
  auto it = std::find(s.list.begin(), s.list.end(), n);
  if (it == s.list.end()) return -ENOENT;
  s.list.erase(it);
  s.count.store(static_cast<unsigned>(s.list.size()), std::memory_order_relaxed);
  return 0;
}

namespace {

// Bump the generation, then call `call` of every registered notifier.
// Release: pairs with the acquire load in translation_generation().  At
// start, the PTE stores that follow are releases too, so a walker that
// sees one of them (acquire) also sees this increment; at end, the bump
// follows the change's PTE stores, so a reader whose acquire load returns
// it translates the new PTEs, and one that recorded an older value
// (possibly the start bump, with an old PTE) finds its record stale
// (mmu_notifier.h).
void notify(MmStruct* mm, std::uint64_t start, std::uint64_t end, InvalidateReason reason,
            void (InvalidationNotifier::*call)(const InvalidateRange&)) {
  MmuNotifiers& s = mm->notifiers;
  s.generation.fetch_add(1, std::memory_order_release);
  if (s.count.load(std::memory_order_relaxed) == 0) return;
  const InvalidateRange r{start, end, reason};
  std::shared_lock<std::shared_mutex> g(s.lock);
  for (InvalidationNotifier* n : s.list) (n->*call)(r);
}

}  // namespace

void mmu_notifier_invalidate_range_start(MmStruct* mm, std::uint64_t start, std::uint64_t end,
                                         InvalidateReason reason) {
  notify(mm, start, end, reason, &InvalidationNotifier::invalidate_range_start);
}

void mmu_notifier_invalidate_range_end(MmStruct* mm, std::uint64_t start, std::uint64_t end,
                                       InvalidateReason reason) {
  notify(mm, start, end, reason, &InvalidationNotifier::invalidate_range_end);
}

}  // namespace vmspace::mm
