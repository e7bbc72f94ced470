// SPDX-License-Identifier: MIT
// write_watch.h - write-watch: report the first write to armed pages
// (self-modifying-code detection for JITs; Linux's uffd-wp and
// PAGEMAP_SCAN with PAGE_IS_WRITTEN / PM_SCAN_WP_MATCHING).
//
// Design.  The arming lives in the MmStruct, not in the PTEs: two sets of
// page intervals under one mutex,
//   tracked  pages armed since the last disarm/munmap (armed or written),
//   armed    pages whose next write must be reported first,
// plus `reporting`, the few pages whose report is running right now.
// written = tracked \ armed.  The PTE of every page in armed ∪ reporting is
// never writable:
//   - arming (and re-arming by a scan) adds to `armed` with the mmap_lock
//     held for write and every VMA of the range write-locked, then
//     write-protects the present PTEs (notifiers: reason protection); no
//     fault can run on those VMAs meanwhile, and every fault that runs
//     afterwards takes a VMA lock or the mmap_lock, which orders it after
//     the change, so it sees the new sets;
//   - a fault about to map a page writable for a READ (shared memory,
//     anonymous memory without the zero page, fault-around) asks
//     ww_protected() and maps it read-only instead;
//   - mprotect adding PROT_WRITE leaves such PTEs read-only
//     (change_protection asks ww_protected_ranges());
//   - a WRITE fault asks ww_claim_write() first, before any other work:
//     an armed page moves from `armed` to `reporting` (claimed by this
//     fault), the fault drops every lock, calls the callback, removes the
//     page from `reporting` (it is now written: in tracked, not in armed)
//     and retries, taking the normal write-protect fault (reuse or copy on
//     write, or a shared page made writable).  A second writer of the same
//     page finds it in `reporting` and waits, without locks, until the
//     report is over: the callback runs once, before any write lands.
// Only additions to armed ∪ reporting need the exclusion above; removals
// (a claim moves a page from one to the other; a report's end, disarm,
// munmap) can only make a stale answer over-protective, which costs an
// extra write-protect fault and nothing else.
//
// Why not a PTE bit: a page not yet faulted in must be armed too, and
// zaps (DONTNEED, truncation) would lose the bit; Linux needs PTE markers
// and a VMA flag (VM_UFFD_WP) for that.  Intervals keep the VMAs (and so
// maps()) unchanged, and write-watch costs one relaxed load of `active` per
// fault when unused.
//
// Forked children start with empty sets (their MmStruct is new): no watch.
// munmap (and MAP_FIXED over, brk shrinking, mremap's source) drops the
// range from both sets (ww_forget).  mremap does not move the arming: the
// moved pages stay read-only and their next write is a normal fault.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <condition_variable>
#include <mutex>
#include <vector>

namespace vmspace {
class AddressSpace;
}  // namespace vmspace

namespace vmspace::mm {

struct MmStruct;

// Disjoint, non-adjacent page intervals [start, end).  Not thread-safe.
// add/remove may throw std::bad_alloc (a split allocates a node).
class PageIntervals {
 public:
  void add(std::uint64_t start, std::uint64_t end);
  void remove(std::uint64_t start, std::uint64_t end);
  bool contains(std::uint64_t addr) const;
  bool intersects(std::uint64_t start, std::uint64_t end) const;
  // The parts inside [start, end), in order, appended to *out.
  void collect(std::uint64_t start, std::uint64_t end, std::vector<std::pair<std::uint64_t, std::uint64_t>>* out) const;
  bool empty() const { return m_.empty(); }

 private:
  std::map<std::uint64_t, std::uint64_t> m_;  // start -> end
};

using WriteWatchCallback = void (*)(void* arg, AddressSpace& as, std::uint64_t page);

struct WriteWatch {
  // The space to hand to the callback.  Static (set by the AddressSpace).
  AddressSpace* owner = nullptr;
  // Leaf mutex: taken under the mmap_lock or a VMA read lock, never
  // around a PTE lock or a callback.  Not in the lock-order checker.
  std::mutex lock;
  // All four below: write and read under `lock`.  Additions to `armed`
  // (and to `tracked`) also need mmap W with the VMAs write-locked (see
  // the top of the file).
  PageIntervals tracked;
  PageIntervals armed;
  std::vector<std::uint64_t> reporting;  // pages, each claimed by one fault
  WriteWatchCallback fn = nullptr;
  void* arg = nullptr;
  // `lock`: the callback pair's epoch (bumped by ww_set_callback) and, by
  // the epoch's parity, how many reports are calling a pair they copied:
  // ww_set_callback returns only once no report still calls the old pair.
  std::uint64_t fn_epoch = 0;
  int fn_running[2] = {0, 0};
  // Notified (after `lock` is released) whenever a report ends: a second
  // writer of a page being reported waits on it (ww_wait), no space lock
  // held.
  std::condition_variable reported;
  // True while tracked or reporting may be non-empty: set under `lock`
  // with mmap W before anything is armed; cleared under `lock` when all
  // are empty.  Read relaxed by faults holding a VMA lock or the
  // mmap_lock: a stale true costs a look under `lock`; a stale false is
  // impossible for what matters (arming sets it under mmap W with the
  // VMAs write-locked, which every later fault is ordered after).
  std::atomic<bool> active{false};
};

// What a write fault must do first.
enum class WwClaim { none, report, wait };

// A write fault at `page` (page aligned), holding a VMA lock or the
// mmap_lock: none (not armed: go on), report (claimed: drop every lock,
// then ww_report), wait (another fault reports it: drop every lock, then
// ww_wait).
WwClaim ww_claim_write(MmStruct* mm, std::uint64_t page);
// With NO lock held: call the callback for `page`, then end its claim.
void ww_report(MmStruct* mm, std::uint64_t page);
// With NO lock held: wait until nobody reports `page`.
void ww_wait(MmStruct* mm, std::uint64_t page);
// Must a fault map `page` read-only (armed or being reported)?  Holding a
// VMA lock or the mmap_lock.
bool ww_protected(MmStruct* mm, std::uint64_t page);
bool ww_protected_any(MmStruct* mm, std::uint64_t start, std::uint64_t end);
// Append the protected intervals inside [start, end) (unsorted) to *out;
// false when out of memory: treat the whole range as protected.  mmap W
// with the VMA write-locked (mprotect).
bool ww_protected_ranges(MmStruct* mm, std::uint64_t start, std::uint64_t end,
                         std::vector<std::pair<std::uint64_t, std::uint64_t>>* out);
// munmap of [start, end): drop the arming.  mmap W.
void ww_forget(MmStruct* mm, std::uint64_t start, std::uint64_t end);

// The API (AddressSpace::set_write_watch and the write_watch_* calls).
void ww_set_callback(MmStruct* mm, WriteWatchCallback fn, void* arg);
int ww_arm(MmStruct* mm, std::uint64_t addr, std::uint64_t len);
int ww_disarm(MmStruct* mm, std::uint64_t addr, std::uint64_t len);
long ww_scan(MmStruct* mm, std::uint64_t addr, std::uint64_t len, bool rearm, std::vector<std::uint64_t>* written);

}  // namespace vmspace::mm
