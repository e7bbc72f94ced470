// SPDX-License-Identifier: MIT
// vmspace touch: fault every page of one private anonymous region in, R
// times, with MADV_DONTNEED between rounds -- the bench's `fault` workload
// without the clock, small and deterministic enough to run under
// callgrind (scripts/callgrind-fault.sh counts the instructions of one
// fault in each lock mode with it).
#include "touch.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string_view>
#include <vector>

#include "vmspace/lock_mode.h"

namespace vmspace::cli {
namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kMiB = 1ull << 20;
constexpr std::uint64_t kBase = 0x200000000000;  // the bench's guest address
constexpr std::uint64_t kMaxPages = 1ull << 24;  // 64 GiB

std::vector<std::string> mode_names() {
  std::vector<std::string> names;
  for (LockMode m : kAllLockModes) names.emplace_back(lock_mode_name(m));
  return names;
}

}  // namespace

TouchRoundResult touch_round(AddressSpace& as, std::uint64_t base, std::uint64_t pages, bool discard) {
  TouchRoundResult r;
  if (discard) {
    r.madvise_error = as.madvise(base, pages * kPage, MADV_DONTNEED);
    if (r.madvise_error != 0) return r;
  }
  for (std::uint64_t i = 0; i < pages; ++i) {
    const std::uint64_t va = base + i * kPage;
    if (Fault f = as.fault_in(va, true); f != Fault::none) {
      r.fault = f;
      r.addr = va;
      return r;
    }
  }
  return r;
}

void add_touch(CLI::App& app, TouchArgs& args) {
  auto* sub = app.add_subcommand(
      "touch", "Write-fault every page of one anonymous region in, then MADV_DONTNEED and fault again per round");
  sub->add_option("--mode", args.mode, "Lock mode: mmap_lock, per_vma_rwsem, per_vma_refcount or per_vma_range")
      ->check(CLI::IsMember(mode_names()))
      ->capture_default_str();
  sub->add_option("--pages", args.pages, "Size of the region in 4 KiB pages")
      ->required()
      ->check(CLI::Range(std::uint64_t{1}, kMaxPages));
  sub->add_option("--rounds", args.rounds, "Rounds: the first touch, then R-1 times MADV_DONTNEED + touch")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

int cmd_touch(const TouchArgs& args) {
  auto mode = parse_lock_mode(args.mode);
  if (!mode) {  // CLI::IsMember already refused it; kept for direct callers
    std::fprintf(stderr, "vmspace touch: unknown lock mode '%s'\n", args.mode.c_str());
    return 2;
  }
  const std::uint64_t len = args.pages * kPage;
  AddressSpaceOptions o;
  o.mode = *mode;
  // As the bench: the region, room for a whole discarded round whose
  // frames are still waiting for their RCU grace period, and slack.
  o.phys_bytes = 2 * len + 64 * kMiB;
  o.phys_pretouch = true;
  // Pretouching more than the host has would end in the OOM killer, not
  // in an exception: refuse up front.
  const long host_pages = ::sysconf(_SC_PHYS_PAGES), host_page = ::sysconf(_SC_PAGESIZE);
  if (host_pages > 0 && host_page > 0 &&
      o.phys_bytes > static_cast<std::uint64_t>(host_pages) * static_cast<std::uint64_t>(host_page) / 2) {
    std::fprintf(stderr,
                 "vmspace touch: %llu pages need %llu MiB of simulated physical memory, more than half of this "
                 "machine's %llu MiB\n",
                 static_cast<unsigned long long>(args.pages), static_cast<unsigned long long>(o.phys_bytes / kMiB),
                 static_cast<unsigned long long>(host_pages) * static_cast<unsigned long long>(host_page) / kMiB);
    return 2;
  }
  std::unique_ptr<AddressSpace> as;
  try {
    as = std::make_unique<AddressSpace>(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vmspace touch: cannot set up %llu MiB of physical memory: %s\n",
                 static_cast<unsigned long long>(o.phys_bytes / kMiB), e.what());
    return 2;
  }
  long a = as->mmap(kBase, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
  if (a < 0) {
    std::fprintf(stderr, "vmspace touch: mmap of %llu pages failed: %s\n",
                 static_cast<unsigned long long>(args.pages), std::strerror(static_cast<int>(-a)));
    return 1;
  }
  const std::uint64_t base = static_cast<std::uint64_t>(a);
  for (int round = 1; round <= args.rounds; ++round) {
    TouchRoundResult r = touch_round(*as, base, args.pages, round > 1);
    if (r.madvise_error != 0) {
      std::fprintf(stderr, "vmspace touch: round %d: madvise(MADV_DONTNEED) failed: %s\n", round,
                   std::strerror(-r.madvise_error));
      return 1;
    }
    if (r.fault != Fault::none) {
      std::fprintf(stderr, "vmspace touch: round %d: write fault at %#llx (page %llu of %llu) failed: %s\n", round,
                   static_cast<unsigned long long>(r.addr),
                   static_cast<unsigned long long>((r.addr - base) / kPage),
                   static_cast<unsigned long long>(args.pages), fault_name(r.fault));
      return 1;
    }
    // Every page must now be resident: a discard that left pages mapped
    // would make the next round count fewer real faults than it claims.
    if (std::uint64_t rss = as->rss_pages(); rss != args.pages) {
      std::fprintf(stderr, "vmspace touch: round %d: %llu pages resident after touching %llu\n", round,
                   static_cast<unsigned long long>(rss), static_cast<unsigned long long>(args.pages));
      return 1;
    }
  }
  const std::string_view name = lock_mode_name(*mode);
  std::printf("touched %llu pages x %d rounds in %.*s mode (pgfault=%llu vma_lock_success=%llu "
              "vma_lock_abort=%llu vma_lock_retry=%llu vma_lock_miss=%llu)\n",
              static_cast<unsigned long long>(args.pages), args.rounds, static_cast<int>(name.size()), name.data(),
              static_cast<unsigned long long>(as->vm_stat(VmStat::pgfault)),
              static_cast<unsigned long long>(as->vm_stat(VmStat::vma_lock_success)),
              static_cast<unsigned long long>(as->vm_stat(VmStat::vma_lock_abort)),
              static_cast<unsigned long long>(as->vm_stat(VmStat::vma_lock_retry)),
              static_cast<unsigned long long>(as->vm_stat(VmStat::vma_lock_miss)));
  return 0;
}

}  // namespace vmspace::cli
