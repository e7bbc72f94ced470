// SPDX-License-Identifier: MIT
// seqcount.h - a sequence counter: odd while a writer is inside, even
// otherwise.  Writers must be serialized by the caller (for mm_lock_seq:
// the mmap_lock write side).  Readers never block writers and never write
// the counter.
//
//   reader:  do { s = read_begin(); ...ACQUIRE atomic loads...; }
//            while (read_retry(s));
//   writer:  write_begin(); ...RELEASE atomic stores...; write_end();
//
// Data read under a seqcount must itself be atomic (a reader may run
// concurrently with the writer and only discards what it read
// afterwards).  Writers store it with memory_order_release and readers load
// it with memory_order_acquire: on x86 these are plain moves, exactly like
// relaxed ones, and they are what makes the protocol correct under the C++
// memory model without fences.  (The classic alternative -- relaxed data,
// a release fence after write_begin's increment and an acquire fence before
// read_retry's load, as Linux's smp_wmb()/smp_rmb() -- is correct too, but
// GCC's ThreadSanitizer neither models atomic_thread_fence nor compiles it
// without -Wtsan; this formulation uses only edges tsan models, and every
// build runs the same code.)
//
// WHY A READER NEVER ACCEPTS A TORN READ
//
// Let read_begin() return s = 2j: its acquire load read the value written
// by write_end() of write section j (or the initial 0, j = 0).
//  - Nothing older than section j: that load synchronizes with section j's
//    write_end() (release), so every data store of sections <= j happens
//    before the reader's data loads, which therefore read those stores or
//    later ones (write-read coherence).
//  - Nothing newer, unless read_retry() says so: suppose a data load reads
//    a store D of section k > j.  D is a release store sequenced after
//    section k's write_begin(), and the load is an acquire load, so D
//    synchronizes with it: write_begin(k) happens before the data load and
//    so before read_retry()'s load, which is sequenced after it.  By
//    write-read coherence that load reads write_begin(k)'s value 2k-1 or a
//    later one, and the counter only grows: it is not 2j, retry.
// So "odd before the writer's data stores" is the data stores' release,
// and "the data loads before the re-check" is the data loads' acquire; an
// acquire load in read_retry() alone orders only what FOLLOWS it and would
// not be enough with relaxed data loads.
//
// WHY EVERY MODIFICATION IS A READ-MODIFY-WRITE
//
// raw_read() may return the odd value of a section in progress (mm_lock_seq:
// vma_start_read() re-checks vm_lock_seq against it).  A reader that gets
// 2k-1 must see everything sections < k wrote, i.e. its acquire load must
// synchronize with write_end(k-1).  It does only if write_begin(k)'s store
// is in write_end(k-1)'s release sequence, and since C++20 a release
// sequence continues through read-modify-writes only: write_begin() is a
// fetch_add.  write_end() is a fetch_add as well, so that every value the
// counter ever holds lies in the release sequence of the latest
// write_end() before it.  Neither needs more than its own ordering:
// write_begin() relaxed (the caller's lock orders it after the previous
// writer), write_end() release.
#pragma once

#include <atomic>
#include <cstdint>

#include "sync/futex.h"

namespace vmspace {

class SeqCount {
 public:
  // Writer side.  Odd from here on.  An RMW: the odd value continues the
  // release sequence of the previous write_end() (see above), so an acquire
  // load that reads it synchronizes with that write_end().  Ordering it
  // before this section's data stores is the data stores' release.
  void write_begin() { seq_.fetch_add(1, std::memory_order_relaxed); }
  // Even again.  Release: this section's data stores happen before the even
  // value is seen (pairs with the acquire loads of read_begin()/raw_read()/
  // read_retry()).
  void write_end() { seq_.fetch_add(1, std::memory_order_release); }

  // Reader side: wait out a writer in progress, return the (even) start.
  // Acquire: pairs with write_end()'s release (through its release
  // sequence).
  std::uint64_t read_begin() const {
    std::uint64_t s;
    while ((s = seq_.load(std::memory_order_acquire)) & 1) cpu_relax();
    return s;
  }
  // True if a writer ran since read_begin() returned `start`: discard
  // reads.  The reader's acquire data loads keep this load after them (see
  // above); acquire here costs nothing on x86 and makes the re-check
  // synchronize with any write_end() it observes.
  bool read_retry(std::uint64_t start) const {
    return seq_.load(std::memory_order_acquire) != start;
  }

  // The current value without waiting (may be odd).  Acquire: synchronizes
  // with the latest write_end() before the value read, odd values included
  // (write_begin() is an RMW).
  std::uint64_t raw_read() const { return seq_.load(std::memory_order_acquire); }
  // Unordered peek, for a quick check that is re-validated later.
  std::uint64_t raw_read_relaxed() const { return seq_.load(std::memory_order_relaxed); }

  bool write_in_progress() const { return raw_read_relaxed() & 1; }

 private:
  std::atomic<std::uint64_t> seq_{0};
};

}  // namespace vmspace
