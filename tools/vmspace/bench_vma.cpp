// SPDX-License-Identifier: MIT
// bench_vma.cpp - the lookup and mmap workloads (the VMA tree and the
// mmap_lock write side).
#include "bench_ctx.h"

#include <sys/mman.h>

#include <algorithm>
#include <random>
#include <vector>

#include "mm/mm_types.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"

namespace vmspace::cli::bench {

// ---- lookup --------------------------------------------------------------

namespace {

// The memory floor of a lookup among n VMAs on this machine: two dependent
// random loads, one into a packed index of 16 bytes per entry (the least
// any index can store: a key and a pointer) and one into an array of n
// objects of sizeof(Vma) bytes (the lock word a reader must take).  Any
// index that must touch the VMA pays at least this; the tree pays more.
// Iterations are dependent, as lookups are (their atomics are fences).
double floor_lookup_ns(std::size_t n, int iters) {
  const std::size_t obj = sizeof(mm::Vma);
  std::vector<std::uint64_t> index(2 * n);
  std::vector<unsigned char> objects(n * obj, 0);
  std::mt19937_64 rng(7);
  for (std::size_t i = 0; i < n; ++i) index[2 * i] = rng() % n;
  std::vector<std::uint32_t> q(1 << 16);
  for (auto& x : q) x = static_cast<std::uint32_t>(rng() % n);
  double best = 1e300;
  std::uint64_t carry = 0;  // always 0, but the compiler cannot know: makes the chain dependent
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) {
      std::uint64_t e = index[2 * ((q[static_cast<std::size_t>(i) & 0xffff] + carry) % n)];
      carry = objects[e * obj];
    }
    best = std::min(best, static_cast<double>(nanos(Clock::now() - t0)) / iters);
  }
  clobber(&carry);
  return best;
}

}  // namespace

void run_lookup(Ctx& c) {
  std::vector<int> sizes = {1 << 10, 1 << 16, 1 << 20};
  const int iters = c.quick ? 500000 : 2000000;
  // Debug builds validate the whole tree after every mmap: creating n VMAs
  // costs O(n^2), minutes at 64K.
  const int debug_cap = 1 << 12;
  // Why size n is not measured in this run (nullptr: it is).
  auto skip_reason = [&](int n) -> const char* {
    if (c.quick && n > (1 << 16)) return "--quick";
    if (!kRelease && n > debug_cap) return "debug build";
    return nullptr;
  };
  for (int n : sizes) {
    if (skip_reason(n) != nullptr) continue;
    progress("lookup: memory floor, %d VMAs", n);
    c.add("lookup", "floor", "ns_per_lookup_" + std::to_string(n) + "_vmas",
          floor_lookup_ns(static_cast<std::size_t>(n), iters), "ns");
  }
  for (const Mode& m : c.modes) {
    if (m.kernel) continue;  // the kernel has no user-visible lookup
    auto as = make_space(m.lock, 8 * kMiB, 2'000'000, false);
    mm::MmStruct* mmp = as->mm();
    int have = 0;
    for (int n : sizes) {
      const std::string metric = "ns_per_lookup_" + std::to_string(n) + "_vmas";
      if (const char* why = skip_reason(n)) {
        progress("lookup: %s, %d VMAs skipped (%s)", m.name.c_str(), n, why);
        c.notes.push_back("lookup " + m.name + " " + std::to_string(n) + " VMAs: skipped (" + why + ")");
        continue;
      }
      progress("lookup: %s, creating %d VMAs", m.name.c_str(), n);
      for (int i = have; i < n; ++i)
        guest_map(*as, kBase + static_cast<std::uint64_t>(i) * kPage, kPage, (i % 2) != 0 ? PROT_READ : kRW);
      have = n;
      if (as->map_count() != n) fail("lookup: VMAs merged (map_count " + std::to_string(as->map_count()) + ")");
      std::mt19937_64 rng(42);
      std::vector<std::uint64_t> addrs(1 << 16);
      for (auto& a : addrs) a = kBase + (rng() % static_cast<std::uint64_t>(n)) * kPage + (rng() % kPage);
      progress("lookup: %s, %d VMAs, %d lookups x 3", m.name.c_str(), n, iters);
      double best = 1e300;
      std::uint64_t misses = 0;
      for (int rep = 0; rep < 3; ++rep) {
        auto t0 = Clock::now();
        if (m.lock == LockMode::mmap_lock) {
          for (int i = 0; i < iters; ++i) {
            mm::mmap_read_lock(mmp);
            mm::Vma* v = mm::vma_lookup(mmp, addrs[static_cast<std::size_t>(i) & 0xffff]);
            clobber(v);
            misses += v == nullptr;
            mm::mmap_read_unlock(mmp);
          }
        } else {
          for (int i = 0; i < iters; ++i) {
            mm::Vma* v = mm::lock_vma_under_rcu(mmp, addrs[static_cast<std::size_t>(i) & 0xffff]);
            if (v == nullptr) ++misses;
            else mm::vma_end_read(v);
          }
        }
        best = std::min(best, static_cast<double>(nanos(Clock::now() - t0)) / iters);
      }
      if (misses != 0) fail("lookup: " + std::to_string(misses) + " lookups found no VMA");
      c.add("lookup", m.name, metric, best, "ns");
    }
  }
  c.notes.push_back("lookup mmap_lock: mmap_read_lock + vma_lookup + mmap_read_unlock (it has no per-VMA lookup); "
                    "kernel: not applicable");
  c.notes.push_back("lookup floor: two dependent random loads per lookup, into a 16 B/entry index and into n "
                    "objects of sizeof(Vma) = " + std::to_string(sizeof(mm::Vma)) +
                    " B (what touching one random VMA costs on this machine, before any tree work)");
}

// ---- mmap ----------------------------------------------------------------

void run_mmap(Ctx& c) {
  const double dur = c.quick ? 0.3 : 1.0;
  const std::uint64_t len = 64 * 1024;
  for (const Mode& m : c.modes) {
    progress("mmap: %s (%.1f s)", m.name.c_str(), dur);
    std::uint64_t n = 0;
    double wall = 0;
    if (m.kernel) {
      auto t0 = Clock::now();
      while ((n & 255) != 0 || Clock::now() - t0 < std::chrono::duration<double>(dur)) {
        void* p = ::mmap(nullptr, len, kRW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || ::munmap(p, len) != 0) fail("mmap: kernel mmap/munmap failed");
        ++n;
      }
      wall = secs(Clock::now() - t0);
    } else {
      auto as = make_space(m.lock, 8 * kMiB, 65530, false);
      auto t0 = Clock::now();
      while ((n & 255) != 0 || Clock::now() - t0 < std::chrono::duration<double>(dur)) {
        long a = as->mmap(0, len, kRW, MAP_PRIVATE | MAP_ANONYMOUS);
        if (a < 0 || as->munmap(static_cast<std::uint64_t>(a), len) != 0) fail("mmap: vmspace mmap/munmap failed");
        ++n;
      }
      wall = secs(Clock::now() - t0);
    }
    c.add("mmap", m.name, "pairs_per_s", static_cast<double>(n) / wall, "pairs/s");
  }
}

}  // namespace vmspace::cli::bench
