// SPDX-License-Identifier: MIT
// fault.h - page faults (Linux's arch/x86/mm/fault.c do_user_addr_fault and
// mm/memory.c handle_mm_fault): the per-VMA-lock fast path, the mmap_lock
// fallback, anonymous, zero-page, copy-on-write and shmem faults.
#pragma once

#include <cstdint>

#include "mm/mm_types.h"

namespace vmspace::fault {

// What the faulting access was (the x86 error code's W and I/D bits): a
// data read, a data write, or an instruction fetch.  A fetch faults pages
// in as a read does (never copy on write); only the NX bit of the PTE
// (kPteNx, from VM_EXEC) tells it apart, as on x86 (see handle_fault).
enum class Access { read, write, exec };

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
// An instruction fetch (Access::exec) behaves as on Linux x86-64, where
// access_error() has no VM_EXEC test and NX is the CPU's business: the
// fetch faults the page in as a read when the VMA is accessible (any of
// VM_READ/WRITE/EXEC; an execute-only protection key does not stop
// fetches), and when the VMA lacks VM_EXEC the retried fetch hits the NX
// PTE and faults again with the protection bit: SEGV_ACCERR, with the page
// left mapped (mincore sees it).  So: segv_accerr for a VMA without
// VM_EXEC unless the fault itself failed (maperr, sigbus, oom first).
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
  // do_read_fault: a write to a shared mapping has just made its PTE
  // writable; the PTE lock is still held.
  void (*shared_write_mapped)(void* arg) = nullptr;
  void* arg = nullptr;
};
void set_fault_hooks(const FaultHooks* hooks);

// Linux __mm_populate(): fault in every page of [start, end) for the
// access the VMAs allow: write faults for private writable VMAs, read
// faults otherwise.  Holes and VM_LOCKONFAULT VMAs are skipped.  An
// inaccessible VMA (PROT_NONE, execute-only under a protection key) or a
// fault that fails is an error: -EFAULT, or -ENOMEM when out of memory.
// With ignore_errors (mmap MAP_POPULATE/MAP_LOCKED, mremap, mlockall) the
// walk goes on with the next VMA and returns 0; without (mlock) it stops
// there and returns the error.  Requires mmap R (the write side
// downgraded, so no VMA found earlier can go away: seed 003).
int mm_populate_locked(mm::MmStruct* mm, std::uint64_t start, std::uint64_t end, bool ignore_errors);
// mm_populate_locked(..., ignore_errors = true).
void populate_range_locked(mm::MmStruct* mm, std::uint64_t start, std::uint64_t end);

// Linux faultin_page_range() for one page (MADV_POPULATE_READ/WRITE): fault
// the page at addr of `vma` in until its PTE allows a read (or a write).
// The caller has checked that the VMA allows the access.  Requires mmap R.
// 0, -EFAULT (the access would signal: a guard marker, SIGBUS) or -ENOMEM
// (out of memory; nothing waits for frames a grace period would free).
int faultin_page_locked(mm::MmStruct* mm, mm::Vma* vma, std::uint64_t addr, bool write);

}  // namespace vmspace::fault
