// SPDX-License-Identifier: MIT
// seqcount.h - a sequence counter: odd while a writer is inside, even
// otherwise.  Writers must be serialized by the caller (for mm_lock_seq:
// the mmap_lock write side).  Readers never block writers.
//
//   reader:  do { s = read_begin(); ...relaxed atomic reads...; }
//            while (read_retry(s));
//   writer:  write_begin(); ...relaxed atomic writes...; write_end();
//
// Data read under a seqcount must itself be atomic (relaxed is enough): a
// reader may run concurrently with the writer and only discards what it
// read afterwards.
#pragma once

#include <atomic>
#include <cstdint>

#include "sync/futex.h"

namespace vmspace {

class SeqCount {
 public:
  // Writer side.  The fence orders the odd value before the writer's data
  // stores; pairs with the acquire fence in read_retry().
  void write_begin() {
#if defined(__SANITIZE_THREAD__)
    // tsan does not model fences; a locked RMW is a full barrier on x86.
    seq_.fetch_add(1, std::memory_order_acq_rel);
#else
    seq_.store(seq_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
#endif
  }
  // Release: the writer's data stores happen before the even value is seen
  // (pairs with the acquire load in read_begin()/raw_read()).
  void write_end() {
    seq_.store(seq_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }

  // Reader side: wait out a writer in progress, return the (even) start.
  std::uint64_t read_begin() const {
    std::uint64_t s;
    while ((s = seq_.load(std::memory_order_acquire)) & 1) cpu_relax();
    return s;
  }
  // True if a writer ran since read_begin() returned `start`: discard reads.
  // The acquire fence keeps the reader's data loads before the re-load.
  bool read_retry(std::uint64_t start) const {
#if defined(__SANITIZE_THREAD__)
    // tsan does not model fences; x86 does not reorder loads with loads.
    return seq_.load(std::memory_order_acquire) != start;
#else
    std::atomic_thread_fence(std::memory_order_acquire);
    return seq_.load(std::memory_order_relaxed) != start;
#endif
  }

  // The current value without waiting (may be odd).  Acquire: pairs with
  // write_end()'s release.
  std::uint64_t raw_read() const { return seq_.load(std::memory_order_acquire); }
  // Unordered peek, for a quick check that is re-validated later.
  std::uint64_t raw_read_relaxed() const { return seq_.load(std::memory_order_relaxed); }

  bool write_in_progress() const { return raw_read_relaxed() & 1; }

 private:
  std::atomic<std::uint64_t> seq_{0};
};

}  // namespace vmspace
