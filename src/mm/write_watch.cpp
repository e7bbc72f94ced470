// SPDX-License-Identifier: MIT
// write_watch.cpp - the armed/tracked page sets and the calls that change
// them (the design and the exclusion argument: write_watch.h).
#include "mm/write_watch.h"

#include "sync/rcu.h"

#include <algorithm>
#include <cerrno>
#include <new>
#include <thread>

#include "mm/mm_types.h"
#include "mm/mmap_lock.h"
#include "mm/mmu_notifier.h"
#include "mm/vma.h"
#include "vmspace/address_space.h"

namespace vmspace::mm {

// ---- PageIntervals ---------------------------------------------------------

void PageIntervals::add(std::uint64_t start, std::uint64_t end) {
  if (start >= end) return;
  // A node of an interval merged away is reused for the result, so that
  // only a merge-free add allocates, before anything changed (a throw
  // leaves the set as it was).
  decltype(m_)::node_type node;
  auto it = m_.upper_bound(start);
  if (it != m_.begin()) {
    auto p = std::prev(it);
    if (p->second >= start) {  // overlaps or touches on the left
      start = p->first;
      end = std::max(end, p->second);
      node = m_.extract(p);
    }
  }
  while (it != m_.end() && it->first <= end) {
    end = std::max(end, it->second);
    if (node.empty()) {
      auto next = std::next(it);
      node = m_.extract(it);
      it = next;
    } else {
      it = m_.erase(it);
    }
  }
  if (node.empty()) {
    m_.emplace_hint(it, start, end);
    return;
  }
  node.key() = start;
  node.mapped() = end;
  m_.insert(it, std::move(node));
}

void PageIntervals::remove(std::uint64_t start, std::uint64_t end) {
  if (start >= end) return;
  auto it = m_.upper_bound(start);
  if (it != m_.begin()) {
    auto p = std::prev(it);
    if (p->second > start) {
      const std::uint64_t pend = p->second;
      if (p->first < start) {
        // [p.first, start) stays; a tail past `end` becomes a new interval
        // (allocated first: a throw changes nothing).
        if (pend > end) {
          m_.emplace_hint(it, end, pend);
          p->second = start;
          return;
        }
        p->second = start;
      } else {
        // p starts at `start`: keep only a tail past `end`, moved (the
        // same node, re-keyed: no allocation).
        auto node = m_.extract(p);
        if (pend > end) {
          node.key() = end;
          m_.insert(std::move(node));
          return;
        }
      }
    }
  }
  it = m_.lower_bound(start);
  while (it != m_.end() && it->first < end) {
    if (it->second > end) {
      auto node = m_.extract(it);
      node.key() = end;
      m_.insert(std::move(node));
      return;
    }
    it = m_.erase(it);
  }
}

bool PageIntervals::contains(std::uint64_t addr) const {
  auto it = m_.upper_bound(addr);
  if (it == m_.begin()) return false;
  return std::prev(it)->second > addr;
}

bool PageIntervals::intersects(std::uint64_t start, std::uint64_t end) const {
  auto it = m_.upper_bound(start);
  if (it != m_.begin() && std::prev(it)->second > start) return true;
  return it != m_.end() && it->first < end;
}

void PageIntervals::collect(std::uint64_t start, std::uint64_t end,
                            std::vector<std::pair<std::uint64_t, std::uint64_t>>* out) const {
  auto it = m_.upper_bound(start);
  if (it != m_.begin()) --it;
  for (; it != m_.end() && it->first < end; ++it) {
    const std::uint64_t s = std::max(start, it->first), e = std::min(end, it->second);
    if (s < e) out->emplace_back(s, e);
  }
}

// ---- the fault side --------------------------------------------------------

namespace {

bool is_reporting(const WriteWatch& w, std::uint64_t page) {
  return std::find(w.reporting.begin(), w.reporting.end(), page) != w.reporting.end();
}

// Under w.lock: clear `active` once nothing is tracked or being reported.
void update_active(WriteWatch& w) {
  if (w.tracked.empty() && w.reporting.empty()) w.active.store(false, std::memory_order_relaxed);
}

bool valid_range(const MmStruct* mm, std::uint64_t addr, std::uint64_t len, std::uint64_t* end) {
  if (!page_aligned(addr)) return false;
  const std::uint64_t plen = page_align(len);
  if (plen < len || addr + plen < addr || addr + plen > mm->task_size) return false;
  *end = addr + plen;
  return true;
}

}  // namespace

WwClaim ww_claim_write(MmStruct* mm, std::uint64_t page) {
  WriteWatch& w = mm->ww;
  // Relaxed: see `active` (an arming is ordered before us by the VMA lock
  // or mmap_lock we hold).
  if (!w.active.load(std::memory_order_relaxed)) return WwClaim::none;
  std::lock_guard<std::mutex> g(w.lock);
  if (is_reporting(w, page)) return WwClaim::wait;
  if (!w.armed.contains(page)) return WwClaim::none;
  try {
    w.reporting.push_back(page);
  } catch (const std::bad_alloc&) {
    return WwClaim::wait;  // nothing claimed: retried after a yield
  }
  try {
    w.armed.remove(page, page + kPageSize);
  } catch (const std::bad_alloc&) {
    w.reporting.pop_back();
    return WwClaim::wait;
  }
  return WwClaim::report;
}

void ww_report(MmStruct* mm, std::uint64_t page) {
  WriteWatch& w = mm->ww;
  WriteWatchCallback fn;
  void* arg;
  unsigned parity;
  {
    std::lock_guard<std::mutex> g(w.lock);
    fn = w.fn;
    arg = w.arg;
    parity = static_cast<unsigned>(w.fn_epoch & 1);
    ++w.fn_running[parity];
  }
  // No lock of the space is held here (the fault dropped them all): the
  // callback may block, invalidate the embedder's caches, or read
  // translation_generation().
  if (fn != nullptr) fn(arg, *w.owner, page);
  {
    std::lock_guard<std::mutex> g(w.lock);
    --w.fn_running[parity];
    auto it = std::find(w.reporting.begin(), w.reporting.end(), page);
    if (it != w.reporting.end()) w.reporting.erase(it);
    update_active(w);
  }
  w.reported.notify_all();
}

void ww_wait(MmStruct* mm, std::uint64_t page) {
  WriteWatch& w = mm->ww;
  std::unique_lock<std::mutex> g(w.lock);
  // A claim that failed to allocate also lands here: yield once then.
  if (!is_reporting(w, page)) {
    g.unlock();
    std::this_thread::yield();
    return;
  }
  w.reported.wait(g, [&] { return !is_reporting(w, page); });
}

bool ww_protected(MmStruct* mm, std::uint64_t page) {
  WriteWatch& w = mm->ww;
  if (!w.active.load(std::memory_order_relaxed)) return false;
  std::lock_guard<std::mutex> g(w.lock);
  return w.armed.contains(page) || is_reporting(w, page);
}

bool ww_protected_any(MmStruct* mm, std::uint64_t start, std::uint64_t end) {
  WriteWatch& w = mm->ww;
  if (!w.active.load(std::memory_order_relaxed)) return false;
  std::lock_guard<std::mutex> g(w.lock);
  if (w.armed.intersects(start, end)) return true;
  for (std::uint64_t p : w.reporting)
    if (p >= start && p < end) return true;
  return false;
}

bool ww_protected_ranges(MmStruct* mm, std::uint64_t start, std::uint64_t end,
                         std::vector<std::pair<std::uint64_t, std::uint64_t>>* out) {
  WriteWatch& w = mm->ww;
  if (!w.active.load(std::memory_order_relaxed)) return true;
  std::lock_guard<std::mutex> g(w.lock);
  try {
    w.armed.collect(start, end, out);
    for (std::uint64_t p : w.reporting)
      if (p >= start && p < end) out->emplace_back(p, p + kPageSize);
  } catch (const std::bad_alloc&) {
    return false;
  }
  return true;
}

void ww_forget(MmStruct* mm, std::uint64_t start, std::uint64_t end) {
  WriteWatch& w = mm->ww;
  if (!w.active.load(std::memory_order_relaxed)) return;
  std::lock_guard<std::mutex> g(w.lock);
  // Removing from the middle of an interval allocates; out of memory, the
  // arming of the unmapped range stays (harmless: nothing is mapped
  // there, and a new mapping there would start armed).
  try {
    w.armed.remove(start, end);
    w.tracked.remove(start, end);
  } catch (const std::bad_alloc&) {
  }
  update_active(w);
}

// ---- the API ---------------------------------------------------------------

// The new pair is used by every report that starts from now on; then wait
// until the reports still calling the old one have returned (ww_report
// notifies `reported` after each), so that the embedder may free what the
// old `arg` points to once this returns (as unregister_notifier).  Must
// not be called from a callback (it would wait for itself).
void ww_set_callback(MmStruct* mm, WriteWatchCallback fn, void* arg) {
  WriteWatch& w = mm->ww;
  std::unique_lock<std::mutex> g(w.lock);
  w.fn = fn;
  w.arg = arg;
  const unsigned old = static_cast<unsigned>(w.fn_epoch & 1);
  ++w.fn_epoch;
  w.reported.wait(g, [&] { return w.fn_running[old] == 0; });
}

namespace {

// Write-lock every VMA meeting [start, end) and collect the mapped parts;
// false when the range has a hole.  mmap W.
bool lock_mapped_parts(MmStruct* mm, std::uint64_t start, std::uint64_t end,
                       std::vector<std::pair<std::uint64_t, std::uint64_t>>* parts) {
  std::uint64_t a = start;
  bool hole = false;
  for (Vma* v = find_vma(mm, start); v != nullptr && v->vm_start < end; v = vma_next(mm, v)) {
    if (v->vm_start > a) hole = true;
    vma_start_write(v);
    const std::uint64_t s = std::max(a, v->vm_start), e = std::min(end, v->vm_end);
    parts->emplace_back(s, e);
    a = e;
  }
  return !hole && a >= end;
}

// Write-protect the present PTEs of `parts` (each inside one VMA
// write-locked by the caller, mmap W).  ptep_modify: a lockless writer may
// still set the dirty bit until the new value is in (page_table.h rule I).
void wrprotect_parts(MmStruct* mm, const std::vector<std::pair<std::uint64_t, std::uint64_t>>& parts) {
  for (const auto& [s, e] : parts)
    mm->pgtables.for_each_present(s, e, [](std::uint64_t, std::atomic<mem::pte_t>& slot, mem::pte_t old) {
      mem::ptep_modify(slot, old, [](mem::pte_t p) { return mem::pte_wrprotect(p); });
    });
}

// After write-protecting armed pages (mmap W dropped): wait for the
// copies that may still hold a writable translation taken before
// (AddressSpace::read/write/fill and the guest atomics copy inside an RCU
// read section), so that no store through an old translation lands after
// arming returns; later stores fault and report.  Linux's uffd-wp gets
// the same from its TLB flush.  Inside a read section (an AccessScope) we
// cannot wait: the contract says so.
void wait_for_old_writers(bool protected_any) {
  if (protected_any && !rcu::in_read_section()) rcu::synchronize();
}

}  // namespace

int ww_arm(MmStruct* mm, std::uint64_t addr, std::uint64_t len) {
  std::uint64_t end;
  if (!valid_range(mm, addr, len, &end)) return -EINVAL;
  if (addr == end) return 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> parts;
  mmap_write_lock(mm);
  bool whole;
  try {
    whole = lock_mapped_parts(mm, addr, end, &parts);
  } catch (const std::bad_alloc&) {
    mmap_write_unlock(mm);
    return -ENOMEM;
  }
  int err = whole ? 0 : -ENOMEM;
  std::size_t added = 0;
  {
    // Every VMA of the range is write-locked: no fault runs there until
    // mmap_write_unlock, and every later one sees these sets.
    WriteWatch& w = mm->ww;
    std::lock_guard<std::mutex> g(w.lock);
    w.active.store(true, std::memory_order_relaxed);
    try {
      for (; added < parts.size(); ++added) {
        w.tracked.add(parts[added].first, parts[added].second);
        w.armed.add(parts[added].first, parts[added].second);
      }
    } catch (const std::bad_alloc&) {
      err = -ENOMEM;
    }
    update_active(w);
  }
  parts.resize(added);
  if (!parts.empty()) {
    MmuNotifierRange inv(mm, parts.front().first, parts.back().second, InvalidateReason::protection);
    wrprotect_parts(mm, parts);
  }
  mmap_write_unlock(mm);
  wait_for_old_writers(!parts.empty());
  return err;
}

int ww_disarm(MmStruct* mm, std::uint64_t addr, std::uint64_t len) {
  std::uint64_t end;
  if (!valid_range(mm, addr, len, &end)) return -EINVAL;
  WriteWatch& w = mm->ww;
  // Removals need no exclusion of faults (write_watch.h).  The PTEs stay
  // read-only: the next write takes the ordinary write-protect fault.
  std::lock_guard<std::mutex> g(w.lock);
  try {
    w.armed.remove(addr, end);
    w.tracked.remove(addr, end);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
  update_active(w);
  return 0;
}

long ww_scan(MmStruct* mm, std::uint64_t addr, std::uint64_t len, bool rearm, std::vector<std::uint64_t>* written) {
  std::uint64_t end;
  if (!valid_range(mm, addr, len, &end) || written == nullptr) return -EINVAL;
  if (addr == end) return 0;
  WriteWatch& w = mm->ww;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> parts, tracked, armed, dirty;
  // Re-arming adds to `armed`: every VMA of the range write-locked first.
  if (rearm) mmap_write_lock(mm);
  long count = 0;
  int err = 0;
  try {
    if (rearm) (void)lock_mapped_parts(mm, addr, end, &parts);
    std::lock_guard<std::mutex> g(w.lock);
    w.tracked.collect(addr, end, &tracked);
    w.armed.collect(addr, end, &armed);
    // written = tracked \ armed (armed is a subset of tracked; both sorted).
    std::size_t j = 0;
    auto emit = [&](std::uint64_t s, std::uint64_t e) {
      dirty.emplace_back(s, e);
      for (std::uint64_t p = s; p < e; p += kPageSize) written->push_back(p);
      count += static_cast<long>((e - s) >> kPageShift);
    };
    // A page being reported is not written yet: its write lands after
    // the callback returns (PAGEMAP_SCAN does not see a write still held
    // by its uffd-wp fault either).  It counts as armed here, so it is
    // neither listed nor re-armed (re-arming it would make the retried
    // write claim it again: a second callback for one write); the scan
    // after the write lists it.
    for (std::uint64_t p : w.reporting)
      if (p >= addr && p < end) armed.emplace_back(p, p + kPageSize);
    std::sort(armed.begin(), armed.end());
    for (const auto& [ts, te] : tracked) {
      std::uint64_t a = ts;
      while (j < armed.size() && armed[j].second <= ts) ++j;
      for (; j < armed.size() && armed[j].first < te; ++j) {
        if (armed[j].first > a) emit(a, armed[j].first);
        a = std::max(a, armed[j].second);
      }
      if (a < te) emit(a, te);
    }
    if (rearm)
      for (const auto& [s, e] : dirty) w.armed.add(s, e);
  } catch (const std::bad_alloc&) {
    err = -ENOMEM;
  }
  if (rearm) {
    // Also after a failure part-way: pages added to `armed` must not stay
    // writable (over-protecting the rest costs faults only).
    if (!dirty.empty()) {
      MmuNotifierRange inv(mm, dirty.front().first, dirty.back().second, InvalidateReason::protection);
      wrprotect_parts(mm, dirty);
    }
    mmap_write_unlock(mm);
    wait_for_old_writers(!dirty.empty());
  }
  return err != 0 ? err : count;
}

}  // namespace vmspace::mm
