// SPDX-License-Identifier: MIT
// vm_event.h - per-AddressSpace event counters, named as /proc/vmstat names
// them.  Cheap to bump on hot paths: each live thread owns a cache-line
// shard (a slot number it takes on first use and returns at exit), so a
// bump is a plain load+store with no read-modify-write.  When more than
// kShards threads are alive, the extra ones share one overflow shard with
// fetch_add.  Reading sums the shards: exact once the counting threads are
// quiescent, approximate while they run.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace vmspace::mm {

enum class VmEvent : unsigned {
  pgfault,
  vma_lock_success,
  vma_lock_abort,
  vma_lock_retry,
  vma_lock_miss,
  // madvise DONTNEED / DONTNEED_LOCKED / FREE (vmspace's own counters; not
  // in /proc/vmstat): applied under one VMA's read lock, or under the
  // mmap_lock (the range was not inside one VMA, the VMA could not be
  // locked, or the space is in mmap_lock mode).
  madvise_vma_lock,
  madvise_mmap_lock,
  // per_vma_range: layout changes (mmap, munmap, mprotect) that locked a
  // range; those that took the whole space (not eligible, or sent there
  // by what they found); range requests redone wider (a neighbour changed
  // between the snapshot and the grant).
  range_write_ranged,
  range_write_whole,
  range_lock_retry,
  nr_events,
};

constexpr std::string_view vm_event_name(VmEvent e) {
  switch (e) {
    case VmEvent::pgfault: return "pgfault";
    case VmEvent::vma_lock_success: return "vma_lock_success";
    case VmEvent::vma_lock_abort: return "vma_lock_abort";
    case VmEvent::vma_lock_retry: return "vma_lock_retry";
    case VmEvent::vma_lock_miss: return "vma_lock_miss";
    case VmEvent::madvise_vma_lock: return "madvise_vma_lock";
    case VmEvent::madvise_mmap_lock: return "madvise_mmap_lock";
    case VmEvent::range_write_ranged: return "range_write_ranged";
    case VmEvent::range_write_whole: return "range_write_whole";
    case VmEvent::range_lock_retry: return "range_lock_retry";
    case VmEvent::nr_events: break;
  }
  return "?";
}

inline constexpr unsigned kNrVmEvents = static_cast<unsigned>(VmEvent::nr_events);

class VmEvents {
 public:
  void count(VmEvent e) {
    unsigned slot = thread_slot();
    std::atomic<std::uint64_t>& c = shards_[slot].v[static_cast<unsigned>(e)];
    if (slot < kShards)  // this thread owns the shard: no RMW needed
      c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    else
      c.fetch_add(1, std::memory_order_relaxed);
  }

  std::uint64_t read(VmEvent e) const {
    std::uint64_t sum = 0;
    for (const Shard& s : shards_) sum += s.v[static_cast<unsigned>(e)].load(std::memory_order_relaxed);
    return sum;
  }

 private:
  static constexpr unsigned kShards = 64;  // owned shards; index kShards = overflow
  struct alignas(64) Shard {
    std::array<std::atomic<std::uint64_t>, kNrVmEvents> v{};
  };
  // The calling thread's slot, the same in every VmEvents (vm_event.cpp).
  static unsigned thread_slot();
  std::array<Shard, kShards + 1> shards_{};
};

}  // namespace vmspace::mm
