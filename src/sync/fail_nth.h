// SPDX-License-Identifier: MIT
// fail_nth.h - allocation-failure injection (Linux's fault injection with
// /proc/self/fail-nth): make the N-th allocation the calling thread makes on
// the library's behalf fail, so tests can walk every failure point of a
// sequence of calls.
//
// Every allocation a call makes goes through should_fail(site) first:
// frames (PhysMem), page-table pages, VMAs, anon_vmas, reverse-map links,
// the VMA tree's node preallocation, shmem objects.  Only the calling
// thread's allocations count (RCU callbacks and other threads are not
// affected), so a single-threaded sequence is deterministic.
//
// Debug builds only (VMSPACE_DEBUG_CHECKS): in release builds should_fail()
// is a constant false and set() has no effect (armed() says whether it
// works).
#pragma once

#include <cstdint>

namespace vmspace::fail_nth {

enum class Site : std::uint8_t { frame, page_table, vma, anon_vma, rmap_link, tree, file };
const char* site_name(Site s);

#if defined(VMSPACE_DEBUG_CHECKS)
// Fail the calling thread's allocations number nth .. nth + count - 1
// (1-based, counted from this call); nth = 0 disarms.
void set(std::uint64_t nth, std::uint64_t count = 1);
// Allocations counted on this thread since set(), and how many failed.
std::uint64_t calls();
std::uint64_t failures();
// The site of the last injected failure on this thread.
Site last_failed_site();
bool should_fail(Site s);
inline constexpr bool armed() { return true; }
#else
inline void set(std::uint64_t, std::uint64_t = 1) {}
inline std::uint64_t calls() { return 0; }
inline std::uint64_t failures() { return 0; }
inline Site last_failed_site() { return Site::frame; }
inline constexpr bool should_fail(Site) { return false; }
inline constexpr bool armed() { return false; }
#endif

// RAII: arm for a scope, disarm after.
class Scope {
 public:
  explicit Scope(std::uint64_t nth, std::uint64_t count = 1) { set(nth, count); }
  ~Scope() { set(0); }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
};

}  // namespace vmspace::fail_nth
