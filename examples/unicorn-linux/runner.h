// SPDX-License-Identifier: MIT
// runner.h - an x86-64 Linux user-mode CPU (Unicorn) whose memory is a
// vmspace::AddressSpace.
//
// Unicorn holds no memory of its own: every guest page it can touch is a
// 4 KiB region mapped with uc_mem_map_ptr onto the host address of the
// vmspace frame behind the page (AccessScope::translate), with the
// permissions the PTE gives now.  Pages come in on demand: Unicorn's
// UC_HOOK_MEM_UNMAPPED / UC_HOOK_MEM_PROT hooks call vmspace's fault path
// (fault_in) and map the result; what vmspace cannot resolve becomes
// SIGSEGV or SIGBUS for the guest.
//
// Coherence rules (why Unicorn never uses a dead translation):
//   1. A page is mapped writable in Unicorn only after a write fault_in, so
//      copy-on-write, the zero page and dirty bits all happen in vmspace:
//      after a read fault a private writable page is mapped read-only.
//   2. Every translation dies through an InvalidationNotifier: vmspace
//      calls invalidate_range_start before any PTE of the range changes,
//      and the runner unmaps its pages of the range from Unicorn there.
//      (Without notifiers, kVmspaceNotifiers == false: after each guest
//      memory syscall, and after each write the runner makes, the pages of
//      the affected ranges are unmapped instead.  That is enough for one
//      guest thread, whose own syscalls and the runner's own faults are the
//      only things that change its translations.)  So no AccessScope is
//      held while guest code runs: a frame is freed only after its PTE is
//      gone, and Unicorn's mapping of it is gone before the PTE (in the
//      fallback: right after, before the guest runs again); a scope is
//      open only between translate() and uc_mem_map_ptr.
//   3. Writable and executable are never both given to Unicorn (W^X): an
//      executable page is mapped readable + executable and write-watched
//      (write_watch_arm); the guest's first store to it faults into the
//      hook, whose write fault_in fires the watch (the callback drops
//      Unicorn's translated code for the page) and the page becomes
//      readable + writable; the next instruction fetch from it faults, and
//      the page is mapped readable + executable again with the watch
//      re-armed.  So every guest rewrite of code it has run goes through
//      vmspace's write fault and the watch.
//
// Unicorn 2.0.1 constraints the code works around (runner.cpp says where):
// a FETCH_PROT hook that handled the fault makes Unicorn fetch through a
// stale TLB entry, so fetch-permission faults are handled outside the
// emulation (run() restarts at the instruction, which is where Unicorn
// stops before translating it); a region made read-only with uc_mem_protect
// silently drops the store that faults on it even once the hook made it
// writable, so rights are only ever taken away by unmapping the page.  A
// store that faults into a signal is reported exactly (si_addr), but
// Unicorn finishes the translation block it was in before stopping; the
// handler starts after that (harmless for handlers that do not return,
// the only kind this runner supports: rt_sigreturn kills the guest).
// An atomic read-modify-write instruction (LOCK CMPXCHG, XCHG...) on a
// page Unicorn has read-only crashes Unicorn 2.0.1 once the fault hook
// makes the page writable (plain stores are fine).  Guests that use them
// on memory they read first, as every static glibc program does, need
// --eager-write (Runner's eager_write): a read fault on a writable page is
// then served as a write fault (the page is copied or dirtied at once
// instead of on its first store; rule 1 is given up for such pages).
// Each map or unmap costs Unicorn time that grows with its number of
// regions (one per page here), so at most a few hundred pages stay mapped:
// data pages beyond that are unmapped round-robin and fault back in when
// touched (evict_data_pages).
#pragma once

#include <unicorn/unicorn.h>

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "loader.h"
#include "vmspace/address_space.h"

// What of issue 17's API (address_space.h) the runner uses; set by CMake
// from what the library implements.  VMSPACE_UNICORN_NOTIFIERS: 1 =
// invalidation notifiers and write-watch; 0 = the single-threaded fallback
// of rule 2 above, with the write-watch of rule 3 emulated in the runner's
// own fault hook.  VMSPACE_UNICORN_FIND_VMA: 1 = a VMA's protection from
// find_vma; 0 = from maps().
#ifndef VMSPACE_UNICORN_NOTIFIERS
#define VMSPACE_UNICORN_NOTIFIERS 1
#endif
#ifndef VMSPACE_UNICORN_FIND_VMA
#define VMSPACE_UNICORN_FIND_VMA 1
#endif

namespace unicorn_linux {

inline constexpr bool kVmspaceNotifiers = VMSPACE_UNICORN_NOTIFIERS != 0;

struct RunStats {
  std::uint64_t faults[3] = {};       // hooks taken, by AccessKind (read, write, exec)
  std::uint64_t pages_mapped = 0;     // uc_mem_map_ptr calls
  std::uint64_t pages_unmapped = 0;   // uc_mem_unmap calls
  std::uint64_t reprotects = 0;       // uc_mem_protect calls (same frame, other rights)
  std::uint64_t evictions = 0;        // pages unmapped to bound Unicorn's region count
  std::uint64_t invalidations = 0;    // invalidate_range_start calls (or fallback drops)
  std::uint64_t write_watch_events = 0;
  std::uint64_t syscalls = 0;
  std::uint64_t signals = 0;          // signals delivered to a guest handler
  std::uint64_t max_pages_resident = 0;  // most pages mapped in Unicorn at once
};

class Runner
#if VMSPACE_UNICORN_NOTIFIERS
    : private vmspace::InvalidationNotifier
#endif
{
 public:
  // The space must outlive the runner.  Throws std::runtime_error when
  // Unicorn cannot be set up.  `eager_write`: see the Unicorn constraints
  // above.
  explicit Runner(vmspace::AddressSpace& as, bool eager_write = false);
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Run from `entry` with RSP = `sp` until the guest exits or dies.
  // Returns the exit status as a shell reports it: the guest's status, or
  // 128 + signal number when a signal killed it.
  int run(std::uint64_t entry, std::uint64_t sp);

  const RunStats& stats() const { return stats_; }

 private:
  enum class Kind { read = 0, write = 1, exec = 2 };
  struct Sigaction {
    std::uint64_t handler = 0, flags = 0, restorer = 0, mask = 0;
  };
  struct PendingSignal {
    int signo = 0, code = 0;
    std::uint64_t addr = 0;
  };

  // Unicorn callbacks.
  static bool on_mem_fault(uc_engine* uc, uc_mem_type type, std::uint64_t address, int size,
                           std::int64_t value, void* user);
  static void on_syscall(uc_engine* uc, void* user);
  static void on_write_watch(void* arg, vmspace::AddressSpace& as, std::uint64_t page);

#if VMSPACE_UNICORN_NOTIFIERS
  void invalidate_range_start(const vmspace::InvalidateRange& r) override;
#endif

  bool handle_fault(Kind kind, std::uint64_t address, int size);
  // Fault `page` in for `kind` and map it into Unicorn.  Fault::none or
  // what the guest gets.
  vmspace::Fault fault_and_map(std::uint64_t page, Kind kind);
  vmspace::Fault map_page(std::uint64_t page, Kind kind);
  int vma_prot(std::uint64_t va) const;  // PROT_* of the VMA holding va, or -1
  void evict_data_pages(std::uint64_t keep);
  // Unmap the runner's pages of [start, end) from Unicorn, all but `keep`
  // (whose translated code is dropped all the same).
  void unmap_range(std::uint64_t start, std::uint64_t end, std::uint64_t keep = UINT64_MAX);
  // Fallback (rule 2): after the guest's memory syscalls and the runner's
  // own writes; nothing with notifiers.
  void changed(std::uint64_t start, std::uint64_t end);

  void do_syscall();
  long sys_write(int fd, std::uint64_t buf, std::uint64_t n);
  long sys_rt_sigaction(std::uint64_t sig, std::uint64_t act, std::uint64_t oact, std::uint64_t setsize);
  long sys_arch_prctl(std::uint64_t code, std::uint64_t addr);
  void exit_guest(int status);

  // Deliver pending_ (the emulation has stopped): start the guest's
  // handler, or end the run as the default action does.  Returns the RIP to
  // continue at, or 0 when the run is over.
  std::uint64_t deliver_signal();
  void kill_guest(int signo);

  std::uint64_t reg(int r) const;
  void set_reg(int r, std::uint64_t v);

  vmspace::AddressSpace& as_;
  const bool eager_write_;
  uc_engine* uc_ = nullptr;
  uc_hook fault_hook_ = 0, syscall_hook_ = 0;
  // The pages mapped into Unicorn: page address -> the host address of
  // its frame and the UC_PROT_* bits Unicorn has.
  struct Mapping {
    void* host = nullptr;
    std::uint32_t perms = 0;
  };
  std::map<std::uint64_t, Mapping> mapped_;
  std::uint64_t evict_hand_ = 0;  // evict_data_pages' clock hand
  std::array<Sigaction, 65> sigactions_{};
  PendingSignal pending_;
  int in_handler_ = 0;  // the signal whose handler runs (it is blocked meanwhile)
  // The page a write fault is mapping (UINT64_MAX: none), and whether a
  // notifier ended its translation meanwhile (fault_and_map).
  std::uint64_t write_fault_page_ = UINT64_MAX;
  bool write_fault_stale_ = false;
  std::uint64_t deferred_fetch_ = 0;  // a UC_MEM_FETCH_PROT fault left to run()
  bool has_deferred_fetch_ = false;
  std::uint64_t last_fault_page_ = 0;  // the no-progress check of handle_fault
  Kind last_fault_kind_ = Kind::read;
  int fault_repeats_ = 0;
  bool internal_error_ = false;
  bool trace_ = false;  // VMSPACE_UNICORN_TRACE=1: every fault on stderr
  bool exited_ = false;
  int exit_status_ = 0;
  RunStats stats_;
};

}  // namespace unicorn_linux
