// SPDX-License-Identifier: MIT
// lock_mode.h - how an AddressSpace synchronizes page faults with changes
// to its mappings.  Chosen when the AddressSpace is created.
#pragma once

#include <array>
#include <optional>
#include <string_view>

namespace vmspace {

enum class LockMode {
  // Baseline (Linux before 6.4, every user-space peer): faults take the
  // mmap_lock for read; there are no VMA locks.
  mmap_lock,
  // The seeds' design (Linux 6.4-6.14): a per-VMA rw-semaphore plus
  // vm_lock_seq / mm_lock_seq sequence numbers.
  per_vma_rwsem,
  // Linux 6.15+ (the default): a per-VMA reference count with an
  // exclude-readers flag replaces the semaphore.
  per_vma_refcount,
  // Beyond Linux (docs/range-writers.md): faults as per_vma_refcount, and
  // the mmap_lock is a range lock, so that changes of the layout in
  // disjoint parts of the space can run concurrently.
  per_vma_range,
};

inline constexpr LockMode kDefaultLockMode = LockMode::per_vma_refcount;

inline constexpr std::array<LockMode, 4> kAllLockModes = {
    LockMode::mmap_lock, LockMode::per_vma_rwsem, LockMode::per_vma_refcount, LockMode::per_vma_range};

constexpr std::string_view lock_mode_name(LockMode m) {
  switch (m) {
    case LockMode::mmap_lock: return "mmap_lock";
    case LockMode::per_vma_rwsem: return "per_vma_rwsem";
    case LockMode::per_vma_refcount: return "per_vma_refcount";
    case LockMode::per_vma_range: return "per_vma_range";
  }
  return "?";
}

constexpr std::string_view lock_mode_summary(LockMode m) {
  switch (m) {
    case LockMode::mmap_lock:
      return "faults take the address-space-wide mmap_lock for read (Linux < 6.4)";
    case LockMode::per_vma_rwsem:
      return "faults read-lock one VMA's rw-semaphore under RCU (Linux 6.4-6.14)";
    case LockMode::per_vma_refcount:
      return "faults take a reference on one VMA under RCU (Linux 6.15+, default)";
    case LockMode::per_vma_range:
      return "as per_vma_refcount, with a range lock instead of the mmap_lock (beyond Linux)";
  }
  return "?";
}

constexpr std::optional<LockMode> parse_lock_mode(std::string_view s) {
  for (LockMode m : kAllLockModes)
    if (lock_mode_name(m) == s) return m;
  return std::nullopt;
}

}  // namespace vmspace
