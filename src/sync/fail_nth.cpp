// SPDX-License-Identifier: MIT
#include "sync/fail_nth.h"

namespace vmspace::fail_nth {

const char* site_name(Site s) {
  switch (s) {
    case Site::frame: return "frame";
    case Site::page_table: return "page_table";
    case Site::vma: return "vma";
    case Site::anon_vma: return "anon_vma";
    case Site::rmap_link: return "rmap_link";
    case Site::tree: return "tree";
    case Site::file: return "file";
  }
  return "?";
}

#if defined(VMSPACE_DEBUG_CHECKS)
namespace {
// Per thread; trivially destructible.
thread_local std::uint64_t t_first = 0;  // 0 = disarmed
thread_local std::uint64_t t_count = 0;
thread_local std::uint64_t t_calls = 0;
thread_local std::uint64_t t_failures = 0;
thread_local Site t_last = Site::frame;
}  // namespace

void set(std::uint64_t nth, std::uint64_t count) {
  t_first = nth;
  t_count = count;
  t_calls = 0;
  t_failures = 0;
}

std::uint64_t calls() { return t_calls; }
std::uint64_t failures() { return t_failures; }
Site last_failed_site() { return t_last; }

bool should_fail(Site s) {
  if (t_first == 0) return false;
  const std::uint64_t n = ++t_calls;
  if (n < t_first || n - t_first >= t_count) return false;
  ++t_failures;
  t_last = s;
  return true;
}
#endif

}  // namespace vmspace::fail_nth
