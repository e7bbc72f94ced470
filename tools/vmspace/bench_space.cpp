// SPDX-License-Identifier: MIT
// bench_space.cpp - the space workload: what a default AddressSpace costs
// before its first fault (an embedder makes one per guest, or per
// sandboxed call): construction time, and the host memory it makes
// resident.  Only address space is reserved for its frame pool
// (physical_memory.h), so both should be small whatever the limit.
#include "bench_ctx.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <vector>

namespace vmspace::cli::bench {

namespace {

std::uint64_t resident_bytes() {
  unsigned long size = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace

void run_space(Ctx& c) {
  const int n = c.quick ? 50 : 200;
  for (const Mode& m : c.modes) {
    if (m.kernel) continue;
    AddressSpaceOptions o;
    o.mode = m.lock;
    std::vector<double> ns;
    ns.reserve(static_cast<std::size_t>(n));
    progress("space: %s, %d constructions", m.name.c_str(), n);
    for (int i = 0; i < n; ++i) {
      auto t0 = Clock::now();
      auto as = std::make_unique<AddressSpace>(o);
      ns.push_back(static_cast<double>(nanos(Clock::now() - t0)));
    }
    std::sort(ns.begin(), ns.end());
    // Resident memory: ten spaces alive at once, so that one-time costs
    // (the first space's thread caches, liburcu's registration) are spread.
    const std::uint64_t before = resident_bytes();
    std::vector<std::unique_ptr<AddressSpace>> alive;
    for (int i = 0; i < 10; ++i) alive.push_back(std::make_unique<AddressSpace>(o));
    const std::uint64_t after = resident_bytes();
    alive.clear();
    c.add("space", m.name, "create_us_median", ns[ns.size() / 2] / 1000.0, "us");
    c.add("space", m.name, "resident_kib_per_space",
          static_cast<double>(after - std::min(after, before)) / 10.0 / 1024.0, "KiB");
  }
  c.notes.push_back("space: a default AddressSpace (256 MiB frame pool limit, nothing pre-touched): construction time, "
                    "median of " + std::to_string(n) + "; host memory made resident per space before its first "
                    "fault, ten spaces alive at once (/proc/self/statm)");
}

}  // namespace vmspace::cli::bench
