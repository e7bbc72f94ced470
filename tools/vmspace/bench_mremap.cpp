// SPDX-License-Identifier: MIT
// bench_mremap.cpp - the mremap workload: the realloc pattern.
//
// A populated 64 MiB region grows by 2 MiB by moving (mremap MAYMOVE|FIXED
// to the other of two places), then shrinks back in place (which unmaps the
// empty 2 MiB tail), and moves again: each round moves 16384 populated
// pages.  Two placements: both places 2 MiB aligned (whole page tables can
// move: Linux's move_normal_pmd, vmspace's table relink, O(1) per 512
// pages), and both 4 KiB past a 2 MiB boundary (every PTE moves on its
// own, O(1) per page).  The host kernel does the same with real mremap on
// real memory (4 KiB pages: THP off for the region, as vmspace has).
#include "bench_ctx.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace vmspace::cli::bench {

namespace {

constexpr std::uint64_t kLen = 64 * kMiB;
constexpr std::uint64_t kGrow = 2 * kMiB;
constexpr std::uint64_t k2M = 2 * kMiB;

struct Variant {
  const char* name;
  std::uint64_t offset;  // from a 2 MiB boundary
};
constexpr Variant kVariants[] = {{"aligned", 0}, {"unaligned", kPage}};

// Pages moved per second by the host kernel.
double kernel_rounds(const Variant& v, double dur) {
  // Reserve room for both places, each [len + grow] plus alignment slack.
  const std::uint64_t span = 2 * (kLen + kGrow + 2 * k2M);
  void* r = ::mmap(nullptr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) fail("mremap: kernel reservation failed: " + std::string(std::strerror(errno)));
  const std::uint64_t base = (reinterpret_cast<std::uint64_t>(r) + k2M - 1) & ~(k2M - 1);
  std::uint64_t a = base + v.offset, b = base + kLen + kGrow + 2 * k2M + v.offset;
  auto* p = static_cast<unsigned char*>(
      ::mmap(reinterpret_cast<void*>(a), kLen, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0));
  if (p == MAP_FAILED) fail("mremap: kernel mmap failed");
  ::madvise(p, kLen, MADV_NOHUGEPAGE);
  std::memset(p, 0x5a, kLen);
  std::uint64_t rounds = 0;
  auto t0 = Clock::now();
  while (rounds < 4 || Clock::now() - t0 < std::chrono::duration<double>(dur)) {
    void* q = ::mremap(reinterpret_cast<void*>(a), kLen, kLen + kGrow, MREMAP_MAYMOVE | MREMAP_FIXED,
                       reinterpret_cast<void*>(b));
    if (q == MAP_FAILED) fail("mremap: kernel mremap failed: " + std::string(std::strerror(errno)));
    if (::mremap(q, kLen + kGrow, kLen, 0) == MAP_FAILED) fail("mremap: kernel shrink failed");
    std::swap(a, b);
    ++rounds;
  }
  const double wall = secs(Clock::now() - t0);
  if (reinterpret_cast<volatile unsigned char*>(a)[kLen - 1] != 0x5a) fail("mremap: kernel lost data");
  ::munmap(r, span);
  return static_cast<double>(rounds * (kLen / kPage)) / wall;
}

// Pages moved per second by vmspace in lock mode `m`; *tables_kept is
// whether the PTE-table count stayed the same (whole tables moved).
double vmspace_rounds(LockMode m, const Variant& v, double dur) {
  auto as = make_space(m, kLen + 32 * kMiB, 65530, false);
  std::uint64_t a = kBase + v.offset, b = kBase + 4 * kLen + v.offset;
  guest_map(*as, a, kLen, kRW);
  if (!as->fill(a, 0x5a, kLen).ok()) fail("mremap: vmspace populate failed");
  std::uint64_t rounds = 0;
  auto t0 = Clock::now();
  while (rounds < 4 || Clock::now() - t0 < std::chrono::duration<double>(dur)) {
    long q = as->mremap(a, kLen, kLen + kGrow, MREMAP_MAYMOVE | MREMAP_FIXED, b);
    if (q < 0) fail("mremap: vmspace mremap failed: " + std::string(std::strerror(static_cast<int>(-q))));
    if (as->mremap(b, kLen + kGrow, kLen, 0) < 0) fail("mremap: vmspace shrink failed");
    std::swap(a, b);
    ++rounds;
  }
  const double wall = secs(Clock::now() - t0);
  unsigned char last = 0;
  if (!as->read(a + kLen - 1, &last, 1).ok() || last != 0x5a) fail("mremap: vmspace lost data");
  return static_cast<double>(rounds * (kLen / kPage)) / wall;
}

}  // namespace

void run_mremap(Ctx& c) {
  const double dur = c.quick ? 0.3 : 1.0;
  for (const Variant& v : kVariants) {
    for (const Mode& m : c.modes) {
      progress("mremap: %s, %s places (%.1f s)", m.name.c_str(), v.name, dur);
      const double rate = m.kernel ? kernel_rounds(v, dur) : vmspace_rounds(m.lock, v, dur);
      c.add("mremap", m.name, std::string(v.name) + "_pages_per_s", rate, "pages/s");
    }
  }
  c.notes.push_back("mremap: a populated 64 MiB region grows by 2 MiB by moving (MAYMOVE|FIXED) and shrinks back, "
                    "16384 pages moved per round; aligned = both places on a 2 MiB boundary (whole page tables "
                    "move), unaligned = 4 KiB past one (every PTE moves)");
}

}  // namespace vmspace::cli::bench
