// SPDX-License-Identifier: MIT
#include "mm/vm_event.h"
#include "sync/tls.h"

namespace vmspace::mm {

namespace {

// Bit i set = slot i is owned by a live thread.
std::atomic<std::uint64_t> slots_in_use{0};

struct SlotOwner {
  unsigned slot;
  SlotOwner() : slot(take()) {}
  ~SlotOwner() {
    // Release: the counts this thread stored are visible to the next owner,
    // whose acquire in take() pairs with this.
    if (slot < 64) slots_in_use.fetch_and(~(std::uint64_t{1} << slot), std::memory_order_release);
  }
  static unsigned take() {
    std::uint64_t used = slots_in_use.load(std::memory_order_relaxed);
    while (~used != 0) {
      unsigned s = static_cast<unsigned>(__builtin_ctzll(~used));
      if (slots_in_use.compare_exchange_weak(used, used | (std::uint64_t{1} << s),
                                             std::memory_order_acquire, std::memory_order_relaxed))
        return s;
    }
    return 64;  // all owned: use the shared overflow shard
  }
};

}  // namespace

unsigned VmEvents::thread_slot() {
  static_assert(kShards == 64, "the slot bitmap is one 64-bit word");
  VMSPACE_TLS_FAST static thread_local SlotOwner owner;
  return owner.slot;
}

}  // namespace vmspace::mm
