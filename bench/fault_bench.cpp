// SPDX-License-Identifier: MIT
// Fault-path microbenchmarks (measurements, not tests):
//   memset_4k            the floor: zero-filling a present 4 KiB page (hot)
//   memset_4k_256MiB_region  the same, walking a present 256 MiB region
//   first_touch/<mode>   a write fault on untouched private anonymous memory
//                        (one thread; the pool is pre-touched, so the host
//                        kernel's own faults are not in the figure)
//   kernel_first_touch   the host kernel doing the same (real page faults)
//   translate_hit        AccessScope::translate of a mapped page (own scope
//                        per call, and many calls in one scope)
#include <sys/mman.h>

#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "vmspace/address_space.h"

namespace {

using vmspace::AddressSpace;
using vmspace::AddressSpaceOptions;
using vmspace::LockMode;

constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kRegion = 256ull << 20;

void BM_Memset4K(benchmark::State& state) {
  std::vector<unsigned char> page(kPage * 64);
  std::memset(page.data(), 1, page.size());
  std::size_t i = 0;
  for (auto _ : state) {
    std::memset(page.data() + (i++ % 64) * kPage, 0, kPage);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_Memset4K)->Name("memset_4k");

// The same zero-fill over a present 256 MiB region, page after page: what
// first-touching a 256 MiB mapping costs in memory traffic alone.
void BM_Memset4KRegion(benchmark::State& state) {
  auto* p = static_cast<unsigned char*>(
      ::mmap(nullptr, kRegion, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
  std::uint64_t off = 0;
  for (auto _ : state) {
    std::memset(p + off, 0, kPage);
    benchmark::ClobberMemory();
    off = (off + kPage) % kRegion;
  }
  ::munmap(p, kRegion);
}
BENCHMARK(BM_Memset4KRegion)->Name("memset_4k_256MiB_region");

void BM_FirstTouch(benchmark::State& state) {
  const auto mode = static_cast<LockMode>(state.range(0));
  AddressSpaceOptions o;
  o.mode = mode;
  o.phys_bytes = kRegion + (64ull << 20);
  AddressSpace as(o);
  as.mmap(kBase, kRegion, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
  std::uint64_t off = 0;
  for (auto _ : state) {
    if (off == kRegion) {
      state.PauseTiming();
      as.madvise(kBase, kRegion, MADV_DONTNEED);
      off = 0;
      state.ResumeTiming();
    }
    benchmark::DoNotOptimize(as.fault_in(kBase + off, true));
    off += kPage;
  }
  state.SetLabel(std::string(vmspace::lock_mode_name(mode)) + ", pool pre-touched");
}
BENCHMARK(BM_FirstTouch)->Name("first_touch")->Arg(0)->Arg(1)->Arg(2);

void BM_KernelFirstTouch(benchmark::State& state) {
  auto* p = static_cast<unsigned char*>(
      ::mmap(nullptr, kRegion, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  std::uint64_t off = 0;
  for (auto _ : state) {
    if (off == kRegion) {
      state.PauseTiming();
      ::madvise(p, kRegion, MADV_DONTNEED);
      off = 0;
      state.ResumeTiming();
    }
    p[off] = 1;
    benchmark::ClobberMemory();
    off += kPage;
  }
  ::munmap(p, kRegion);
}
BENCHMARK(BM_KernelFirstTouch)->Name("kernel_first_touch");

void BM_TranslateHit(benchmark::State& state) {
  AddressSpaceOptions o;
  o.phys_bytes = 64ull << 20;
  AddressSpace as(o);
  as.mmap(kBase, 1024 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
  as.fill(kBase, 1, 1024 * kPage);
  std::uint64_t i = 0;
  if (state.range(0) == 0) {
    for (auto _ : state) {
      AddressSpace::AccessScope scope(as);
      benchmark::DoNotOptimize(scope.translate(kBase + (i++ % 1024) * kPage, false));
    }
  } else {
    AddressSpace::AccessScope scope(as);
    for (auto _ : state) benchmark::DoNotOptimize(scope.translate(kBase + (i++ % 1024) * kPage, false));
  }
  state.SetLabel(state.range(0) == 0 ? "scope per call" : "one scope");
}
BENCHMARK(BM_TranslateHit)->Name("translate_hit")->Arg(0)->Arg(1);

}  // namespace

BENCHMARK_MAIN();
