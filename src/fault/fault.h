// SPDX-License-Identifier: MIT
// fault.h - page faults (Linux's arch/x86/mm/fault.c do_user_addr_fault and
// mm/memory.c handle_mm_fault): the per-VMA-lock fast path, the mmap_lock
// fallback, anonymous, zero-page, copy-on-write and shmem faults.
#pragma once

#include <cstdint>

#include "mm/mm_types.h"

namespace vmspace::fault {

enum class Access { read, write };

// How a fault ended; what a signal handler would be told.
enum class FaultResult {
  ok,           // the page is mapped now; retry the access
  segv_maperr,  // no VMA at the address (SIGSEGV, SEGV_MAPERR)
  segv_accerr,  // the VMA forbids the access (SIGSEGV, SEGV_ACCERR)
  sigbus,       // the mapping has no page there (SIGBUS)
  oom,          // out of memory (VM_FAULT_OOM)
};

const char* fault_result_name(FaultResult r);

// Resolve a fault at `addr`.  The caller holds no mm lock.  It may be
// inside an RCU read section (an AccessScope): then an out-of-memory fault
// is reported without waiting for frames that a grace period would free.
FaultResult handle_fault(mm::MmStruct* mm, std::uint64_t addr, Access access);

// Test hook points (deterministic interleaving tests), called on the
// faulting thread; compiled out of release builds.  Install for the calling
// thread only (nullptr to remove).
struct FaultHooks {
  // do_shared_fault: the page-cache frame is taken and referenced, the PTE
  // lock not yet held.
  void (*shared_page_taken)(void* arg) = nullptr;
  // handle_fault: the first attempt ran out of memory and dropped its
  // locks; the drain is next.
  void (*before_drain)(void* arg) = nullptr;
  // handle_fault, on either path, just before handle_mm_fault: the fault
  // holds its VMA read lock (or mmap R) and has done nothing yet.  (Not
  // called by populate_range_locked.)
  void (*fault_locked)(void* arg) = nullptr;
  // vmf_anon_prepare: the VMA has no anon_vma; the fault (VMA-locked: before
  // it tries the mmap_lock) is about to prepare one.
  void (*anon_prepare)(void* arg) = nullptr;
  // handle_fault's fallback, growing a stack: mmap R dropped, mmap W not
  // taken yet (no mm lock held).
  void (*stack_relock)(void* arg) = nullptr;
  // expand_downwards: mmap W held and the stack VMA write-locked
  // (vma_start_write), its range not changed yet.
  void (*stack_write_locked)(void* arg) = nullptr;
  // populate_range_locked: mmap R (or W) held, before each page.
  void (*populate_page)(void* arg) = nullptr;
  void* arg = nullptr;
};
void set_fault_hooks(const FaultHooks* hooks);

// Fault in every page of [start, end) (MAP_POPULATE, MAP_LOCKED) for the
// access the VMAs allow.  Requires mmap R (the write side downgraded, so no
// VMA found earlier can go away: seed 003).  Stops at the first failure.
void populate_range_locked(mm::MmStruct* mm, std::uint64_t start, std::uint64_t end);

}  // namespace vmspace::fault
