// SPDX-License-Identifier: MIT
// mm_types.h - the address space (MmStruct, Linux's mm_struct) and the VMA
// (Vma, Linux's vm_area_struct).
//
// Every field shared between threads says what must be held to write it and
// what is enough to read it.  "mmap W" = mmap_lock held for write, "mmap R"
// = held for read (or write), "vma W" = the VMA write-locked with
// vma_start_write() (which itself requires mmap W), "vma R" = a VMA read
// lock from lock_vma_under_rcu()/vma_start_read().  The lock order is in
// src/sync/lock_order.h; the protocol in src/mm/mmap_lock.cpp and
// docs/locking.md.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "mem/file.h"
#include "mem/page_table.h"
#include "mem/phys_mem.h"
#include "mm/mmu_notifier.h"
#include "mm/vm_event.h"
#include "mm/vm_flags.h"
#include "mm/write_watch.h"
#include "sync/range_lock.h"
#include "sync/rcu.h"
#include "sync/rwsem.h"
#include "sync/seqcount.h"
#include "sync/spinlock.h"
#include "tree/range_tree.h"
#include "vmspace/kernel_behavior.h"
#include "vmspace/lock_mode.h"

namespace vmspace::mm {

inline constexpr unsigned kPageShift = 12;
inline constexpr std::uint64_t kPageSize = std::uint64_t{1} << kPageShift;
inline constexpr std::uint64_t kPageMask = ~(kPageSize - 1);

constexpr std::uint64_t page_align(std::uint64_t x) { return (x + kPageSize - 1) & kPageMask; }
constexpr bool page_aligned(std::uint64_t x) { return (x & (kPageSize - 1)) == 0; }

// ---- the guest's user space (AddressSpaceOptions::task_size) ------------
// x86-64 TASK_SIZE with four-level paging; also DEFAULT_MAP_WINDOW, the
// part of a five-level space that mappings use unless asked to go higher.
inline constexpr std::uint64_t kTaskSize47 = (std::uint64_t{1} << 47) - kPageSize;
inline constexpr std::uint64_t kDefaultMapWindow = kTaskSize47;
// TASK_SIZE_MAX with five-level paging (LA57).
inline constexpr std::uint64_t kTaskSize57 = (std::uint64_t{1} << 56) - kPageSize;
// An ia32 task on x86-64 (IA32_PAGE_OFFSET).
inline constexpr std::uint64_t kTaskSize32 = 0xffffe000;
// The window the default (hint-less) searches use and mmap_base is
// computed from (Linux task_size_64bit(0) / task_size_32bit()).
constexpr std::uint64_t map_window(std::uint64_t task_size) {
  return task_size < kDefaultMapWindow ? task_size : kDefaultMapWindow;
}
// A 32-bit guest: its calls are compat syscalls (in_32bit_syscall()).
constexpr bool task_size_is_compat(std::uint64_t task_size) { return task_size <= kTaskSize32; }

struct AnonVma;  // reverse map of anonymous pages (mem layer)
struct MmStruct;

// The name prctl(PR_SET_VMA_ANON_NAME) gives anonymous memory (Linux's
// refcounted struct anon_vma_name).  Immutable once made, so VMAs share
// one by pointer: a split, a fork or an mremap copy takes a reference, not
// a copy.  Null = no name.  Two names are equal when both are null, or both
// are set and their text is equal (anon_vma_name_eq).
using AnonName = std::shared_ptr<const std::string>;
inline bool anon_name_eq(const AnonName& a, const AnonName& b) {
  return a == b || (a != nullptr && b != nullptr && *a == *b);
}

// vm_lock_seq value that never equals mm_lock_seq: "not write-locked".
inline constexpr std::uint64_t kVmaUnlockedSeq = UINT64_MAX;

// ---- vm_refcnt (per_vma_refcount mode) ------------------------------------
// The one table of legal values (other places point here):
//   0                          detached: not in the tree, no readers
//   1                          attached, no readers
//   1 + n                      attached, n readers (n < kVmaRefLimit)
//   kVmaLockOffset + 1 + n     a writer (vma_start_write) waits for the n
//                              readers to leave; no new reader can enter
//   kVmaLockOffset + n         a detaching writer (vma_mark_detached) waits
//                              for n transient readers to leave
inline constexpr std::uint32_t kVmaLockOffset = 0x40000000;
inline constexpr std::uint32_t kVmaRefLimit = kVmaLockOffset - 1;

// Laid out so that lock_vma_under_rcu touches one cache line: the lock
// words, the range it re-checks and the flags the fault checks come first.
struct alignas(64) Vma {
  Vma(MmStruct* mm, std::uint64_t start, std::uint64_t end, vm_flags_t flags, std::uint64_t pgoff)
      : vm_start(start), vm_end(end), vm_flags(flags), vm_pgoff(pgoff), vm_mm(mm) {}
  ~Vma() { mem::fput(vm_file); }
  Vma(const Vma&) = delete;
  Vma& operator=(const Vma&) = delete;
  // VMAs come from the block pool (vma.cpp; tree/node_pool.h): per-thread
  // caches, so a thread that maps and the RCU callback thread that frees
  // do not meet on a malloc arena lock.  `new (std::nothrow) Vma` returns
  // null when memory runs out.
  static void* operator new(std::size_t size);
  static void* operator new(std::size_t size, const std::nothrow_t&) noexcept;
  static void operator delete(void* p) noexcept;
  static void operator delete(void* p, const std::nothrow_t&) noexcept;
  // ---- the per-VMA lock (mmap_lock.cpp) ----
  // Equal to mm->mm_lock_seq (odd) while write-locked.  Write: mmap W (in
  // vma_start_write, under the rwsem / exclude-readers flag).  Read: anyone;
  // the unordered first check in vma_start_read is re-validated after the
  // read lock is held.
  std::atomic<std::uint64_t> vm_lock_seq{kVmaUnlockedSeq};
  // per_vma_refcount: see the table above.  RMW only.
  std::atomic<std::uint32_t> vm_refcnt{0};
  // per_vma_rwsem and mmap_lock modes: set by vma_mark_detached() under
  // vma W; read under vma R (a reader that finds it set retries the walk).
  // (per_vma_refcount encodes "detached" as vm_refcnt == 0.)
  std::atomic<bool> detached{true};
  // per_vma_range: removed by the writer that stamped it; that writer frees
  // it when it ends, after storing "unlocked" into it (range_writer.h).
  // Written and read only by that writer, under its stamp.  (It fills
  // padding.)
  bool writer_free = false;

  // ---- range and attributes ----
  // Write: mmap W + vma W (or before the VMA is attached).  Read: mmap R, or
  // vma R.  Never read without one of those (lock_vma_under_rcu re-checks
  // the range only after it holds the VMA read lock).
  std::uint64_t vm_start;
  std::uint64_t vm_end;
  vm_flags_t vm_flags;
  std::uint64_t vm_pgoff;  // in pages; anonymous private: vm_start >> 12 at creation

  MmStruct* const vm_mm;  // static

  // Write: mmap W + vma W, or (first anonymous fault) mmap R or vma R plus
  // mm->page_table_lock, only from null to non-null (anon_vma_prepare).
  // Read: mmap R or vma R; acquire pairs with the installing release.
  std::atomic<AnonVma*> anon_vma{nullptr};
  // Every anon_vma this VMA is linked to (Linux's anon_vma_chain), oldest
  // ancestor first; anon_vma is in it whenever set.  Write: mmap W (clone,
  // fork, unlink), or with anon_vma (first anonymous fault) under mmap R
  // plus the page_table_lock and the root anon_vma lock, only from empty to
  // one entry.  Read: mmap R (W to read it while another thread may
  // prepare: a reader under mmap R reads it only after loading anon_vma
  // non-null with acquire, which orders it after that one write).
  std::vector<AnonVma*> anon_vma_chain;
  // The mapped file (shmem object for shared anonymous memory), or null for
  // private anonymous memory.  Static once the VMA is attached; the VMA
  // holds a reference.
  mem::File* vm_file = nullptr;
  // The anonymous name (set_anon_name; only private anonymous and shared
  // anonymous VMAs have one).  Part of the merge key (vma.cpp
  // is_mergeable_vma).  Write: mmap W + vma W (or before the VMA is
  // attached: splits, fork and mremap copy it into the new VMA).  Read:
  // mmap R, or vma R (the queries and maps copy it under one of them; the
  // shared_ptr object itself is never written while a reader may copy it).
  AnonName anon_name;

  // per_vma_rwsem: readers try_lock_shared(); vma_start_write() takes and
  // releases the write side around setting vm_lock_seq.
  RwSemaphore vm_lock{LockClass::vma_lock};

  // Deferred free after removal (rcu::call): RCU readers may still hold
  // the pointer from a tree lookup.
  rcu::Head rcu;
  // The link of the one intrusive list the VMA is on, if any (it fills
  // padding: the object stays 192 bytes):
  //  - per_vma_range, while stamped by a writer: that writer's list of the
  //    VMAs it stamped (RangeHold::locked).  Written by the writer in
  //    vma_start_write, read by it when it ends (before the range is
  //    released, so the next writer to stamp the VMA relinks it after);
  //  - once freed: the freeing thread's batch (vma.cpp vm_area_free_now),
  //    written by that thread once the VMA is detached and no writer will
  //    touch it again, read by the batch's RCU callback after the grace
  //    period.
  Vma* list_next = nullptr;

  std::uint64_t pages() const { return (vm_end - vm_start) >> kPageShift; }
  // Linux vma_is_anonymous(): private anonymous memory (no file, no ops).
  bool is_anonymous() const { return vm_file == nullptr; }
};
static_assert(offsetof(Vma, vm_mm) + sizeof(void*) <= 64, "the fast-path fields share one cache line");

// Limits and host behaviour, fixed at construction (AddressSpaceOptions
// documents each one).
struct MmConfig {
  LockMode mode = kDefaultLockMode;
  // Hint rounding and the search floor (Linux's internal mmap_min_addr:
  // max(vm.mmap_min_addr, CONFIG_LSM_MMAP_MIN_ADDR)).
  std::uint64_t mmap_min_addr = 65536;
  // vm.mmap_min_addr: fixed mappings below it need CAP_SYS_RAWIO (-EPERM).
  std::uint64_t dac_mmap_min_addr = 65536;
  bool cap_sys_rawio = false;
  // TASK_SIZE: kTaskSize47, kTaskSize57 or kTaskSize32 (the AddressSpace
  // checks the value).
  std::uint64_t task_size = kTaskSize47;
  // Top of the top-down search; 0 = derived from rlimit_stack as Linux's
  // mmap_base() without randomization (mmap_base_for()).
  std::uint64_t mmap_base = 0;
  // Start of the bottom-up fallback search (PAGE_ALIGN(window / 3), the
  // window being map_window(task_size)).
  std::uint64_t mmap_legacy_base = 0x2aaaaaaab000;
  int max_map_count = 65530;                        // vm.max_map_count
  std::uint64_t stack_guard_gap = 256 * kPageSize;  // stack_guard_gap
  std::uint64_t rlimit_stack = 8ull << 20;          // RLIMIT_STACK, bytes
  std::uint64_t rlimit_memlock = 8ull << 20;        // RLIMIT_MEMLOCK, bytes
  bool cap_ipc_lock = false;                        // CAP_IPC_LOCK
  bool zero_page = true;                            // !mm_forbids_zeropage()
  bool exec_only_pkey = false;                      // x86 protection keys
  ThpMode thp = ThpMode::always;                    // transparent_hugepage/enabled
  bool thp_align = true;                            // CONFIG_TRANSPARENT_HUGEPAGE
  Overcommit overcommit = Overcommit::guess;        // vm.overcommit_memory
  // guess: the largest single accountable request (RAM + swap, in pages);
  // never: the most the space may have committed.  0 = no limit.
  std::uint64_t overcommit_limit_pages = 0;
  // The program break's start (Linux mm->start_brk, page aligned); 0 = the
  // space has no heap: brk() changes nothing and returns 0.
  std::uint64_t start_brk = 0;
  // RLIMIT_DATA (bytes; UINT64_MAX = unlimited), as brk checks it: the
  // heap's size (check_data_rlimit; there is no ELF data segment) and the
  // pages of private writable mappings (may_expand_vm's data_vm).
  std::uint64_t rlimit_data = UINT64_MAX;
};

// Linux's x86 mmap_base() without randomization.
std::uint64_t mmap_base_for(const MmConfig& cfg);
// The TASK_SIZE an AddressSpaceOptions::task_size asks for (0 = the
// 47-bit default); throws std::invalid_argument for any other value than
// 0, kTaskSize47, kTaskSize57 and kTaskSize32.
std::uint64_t task_size_from_option(std::uint64_t option);

struct MmStruct {
  MmStruct(const MmConfig& cfg, mem::PhysMem* phys);
  ~MmStruct();
  MmStruct(const MmStruct&) = delete;
  MmStruct& operator=(const MmStruct&) = delete;

  const LockMode mode;
  bool per_vma_locks() const { return mode != LockMode::mmap_lock; }

  // The read side of the VMA lock is the reference count (vm_refcnt).
  bool vma_refcounted() const { return mode == LockMode::per_vma_refcount || mode == LockMode::per_vma_range; }

  // The address-space lock.  See lock_order.h.  Unused in per_vma_range.
  RwSemaphore mmap_lock{LockClass::mmap_lock};
  // per_vma_range: the mmap_lock's replacement (docs/range-writers.md 3.1);
  // its requests belong to the thread-local holds of range_writer.h.
  // Unused in the other modes.
  RangeLock range_lock{LockClass::range_lock};
  // Odd while mmap_lock is write-held.  Write: mmap W holder only
  // (mmap_write_lock / vma_end_write_all).  Read: anyone (speculatively by
  // vma_start_read; acquire pairs with vma_end_write_all's release).
  SeqCount mm_lock_seq;
  // The VMA index.  Write: mmap W, after write-locking every VMA whose
  // entry changes.  Read: under RCU (lock_vma_under_rcu) or mmap R.
  tree::RangeTree mm_mt;
  // per_vma_refcount: the event count a writer sleeps on (futex) while the
  // readers of a VMA drain; a reader leaving while a writer waits bumps it
  // and wakes.  No lock: atomic RMW/loads, seq_cst (mmap_lock.cpp,
  // refcnt_wait_for).  Linux: mm->vma_writer_wait.
  std::atomic<std::uint32_t> vma_writer_wait{0};
  // Number of VMAs.  Changed by atomic RMW by the VMA layer's link, split
  // and remove under mmap W, which in per_vma_range may be held by
  // several writers of disjoint ranges at once.  Read: mmap R; by a ranged
  // writer, only through the reservation below (its checks then pass in
  // every order: range_writer.cpp, "map_count").  Relaxed: nothing else
  // is published through it.
  std::atomic<int> map_count{0};
  // per_vma_range: the map_count slack reserved by the ranged writers in
  // flight (kRangedMapSlack each).  Atomic RMW.
  std::atomic<int> map_count_reserved{0};
  // Pages of VM_LOCKED VMAs (Linux's mm->locked_vm), checked against
  // RLIMIT_MEMLOCK.  Write: mmap W, whole space (per_vma_range: a change
  // that would change it takes the whole space).  Read: mmap R, or a
  // ranged write hold (range_has_vma_with).
  std::uint64_t locked_vm = 0;
  // Flags every new mapping gets (Linux's mm->def_flags): VM_LOCKED, plus
  // VM_LOCKONFAULT, after mlockall(MCL_FUTURE [| MCL_ONFAULT]); cleared by
  // munlockall() and by an mlockall() without MCL_FUTURE.  do_mmap and brk
  // OR them into a new VMA's flags (mremap and stack growth take the VMA's
  // own).  Write: mmap W.  Read: mmap R.
  vm_flags_t def_flags = 0;
  // The program break (Linux mm->start_brk, mm->brk; brk.cpp).  start_brk
  // is fixed at construction; brk is the last break set, not page aligned.
  // Write: mmap W.  Read: mmap R; or, for the "[heap]" name only, a relaxed
  // load under just a VMA read lock (the queries, as Linux's
  // vma_is_initial_heap under the per-VMA /proc/pid/maps walk): a break
  // move that changes whether that VMA is the heap write-locks the VMA, so
  // the answer is stable while the VMA is read-locked.
  std::uint64_t start_brk = 0;
  std::atomic<std::uint64_t> brk{0};
  // Pages committed under VM_ACCOUNT and by shared anonymous memory
  // (Linux's vm_committed_as, with this space as the whole system),
  // checked in Overcommit::never (vm_enough_memory / vm_unacct_memory).
  // Atomic RMW only: a shmem object gives its charge back when its last
  // mapping is freed, outside any mm lock and possibly after the MmStruct
  // is gone (hence shared ownership).
  std::shared_ptr<std::atomic<std::int64_t>> vm_committed = std::make_shared<std::atomic<std::int64_t>>(0);
  // Upper page-table levels; anon_vma installation (seed 004).
  SpinLock page_table_lock{LockClass::page_table_lock};

  // Limits and policy: fixed at construction.
  const MmConfig cfg;
  const std::uint64_t task_size;
  const int max_map_count;
  const std::uint64_t mmap_base;  // resolved (never 0)

  // /proc/vmstat-style counters (vm_event.h).
  VmEvents events;

  // Physical memory behind the space (owned by the AddressSpace or shared
  // between spaces).  Static.
  mem::PhysMem* const phys;
  // The page tables: upper levels under page_table_lock, PTEs under each
  // table's pte_lock, walked locklessly under RCU (mem/page_table.h).
  // Five levels for a 57-bit task size (LA57), four otherwise.
  mem::PageTables pgtables{page_table_lock, cfg.task_size > kTaskSize47 ? 5u : 4u};
  // Resident pages (MM_ANONPAGES, MM_SHMEMPAGES): atomic, changed under the
  // pte_lock of the PTE that maps/unmaps the page.
  std::atomic<std::int64_t> rss_anon{0};
  std::atomic<std::int64_t> rss_shmem{0};

  // ---- fork's window (fork.cpp, step 5) ----
  // Between the moment fork unlocks this (parent) space and the end of the
  // grace period it then waits for, a lockless writer may still store
  // through a translation taken before fork write-protected its page.  A
  // copy-on-write fault of the parent in that window must therefore keep
  // the frame those stores go to and give the pending child the copy
  // (do_wp_page).  fork_child: that child while the window is open, else
  // null; set under mmap W by dup_mmap, cleared by the forking thread after
  // the grace period.  fork_window_users: faults using fork_child (the
  // forking thread waits for 0 after clearing it, Dekker-style, seq_cst
  // both sides, before it hands the child out).  fork_mutex: one fork of
  // this space at a time, held across the window (a fork inside an
  // AccessScope only tries it).
  std::atomic<MmStruct*> fork_child{nullptr};
  std::atomic<int> fork_window_users{0};
  std::mutex fork_mutex;

  // ---- the soft MMU's TLB (tlb.h) ----
  // Threads holding translations of this space (AccessScope, or
  // AddressSpace::access around its copies), counted in shards of one
  // cache line (a thread always uses the same one).  Raised with a fence
  // after it, read after a fence by MmuGather::finish: Dekker-style with
  // the PTE change before that fence.
  struct alignas(64) TlbShard {
    std::atomic<std::int64_t> n{0};
  };
  static constexpr unsigned kTlbShards = 16;
  TlbShard tlb_holders[kTlbShards];

  // ---- invalidation notifiers and the translation generation ----
  // (mmu_notifier.h: each field says what protects it.)  Not copied by
  // fork: a child starts with none registered.
  MmuNotifiers notifiers;
  // ---- write-watch ----
  // (write_watch.h: the armed and tracked page sets under their own
  // mutex.)  Not copied by fork: a child has no watches.
  WriteWatch ww;

  // Fault pages in over [start, end) with the mmap_lock held (the fault
  // layer's populate_range_locked, installed by the AddressSpace: mm sits
  // below the fault layer and cannot call it directly).  Static.
  void (*populate)(MmStruct* mm, std::uint64_t start, std::uint64_t end) = nullptr;
  // Fault one page of `vma` in for reading or writing with the mmap_lock
  // held (the fault layer's faultin_page_locked, for MADV_POPULATE_*):
  // 0, -EFAULT or -ENOMEM.  Installed like `populate`.  Static.
  int (*faultin_page)(MmStruct* mm, Vma* vma, std::uint64_t addr, bool write) = nullptr;
};

}  // namespace vmspace::mm
