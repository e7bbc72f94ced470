// SPDX-License-Identifier: MIT
// bench_ctx.cpp - helpers shared by the bench workloads (see bench_ctx.h).
#include "bench_ctx.h"

#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace vmspace::cli::bench {

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::uint64_t nanos(Clock::duration d) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

void fail(const std::string& what) { throw std::runtime_error(what); }

void progress(const char* fmt, ...) {
  std::fputs("[bench] ", stderr);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
}

std::unique_ptr<AddressSpace> make_space(LockMode mode, std::uint64_t phys_bytes, int max_map_count, bool pretouch) {
  AddressSpaceOptions o;
  o.mode = mode;
  o.phys_bytes = phys_bytes;
  o.phys_pretouch = pretouch;
  o.max_map_count = max_map_count;
  return std::make_unique<AddressSpace>(o);
}

void guest_map(AddressSpace& as, std::uint64_t addr, std::uint64_t len, int prot) {
  long r = as.mmap(addr, len, prot, kAnonFixed);
  if (r < 0) fail("vmspace mmap failed: " + std::string(std::strerror(static_cast<int>(-r))));
}

void guest_dontneed(AddressSpace& as, std::uint64_t addr, std::uint64_t len) {
  int r = as.madvise(addr, len, MADV_DONTNEED);
  if (r < 0) fail("vmspace madvise failed: " + std::string(std::strerror(-r)));
}

unsigned char* kernel_map(std::uint64_t len) {
  // [guard page][len bytes][guard page]: the PROT_NONE guards keep the
  // region from merging with whatever the kernel places next to it (a merge
  // would make an unrelated mprotect write-lock this VMA too).
  void* m = ::mmap(nullptr, len + 2 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) fail("mmap failed: " + std::string(std::strerror(errno)));
  auto* p = static_cast<unsigned char*>(m) + kPage;
  if (::mprotect(p, len, kRW) != 0) fail("mprotect failed: " + std::string(std::strerror(errno)));
  // 4 KiB pages, as vmspace has: transparent huge pages would turn 512
  // faults into one.
  ::madvise(p, len, MADV_NOHUGEPAGE);
  return p;
}

void kernel_unmap(unsigned char* p, std::uint64_t len) { ::munmap(p - kPage, len + 2 * kPage); }

std::string fmt(double v, int prec) {
  if (std::isnan(v)) return "n/a";
  char b[64];
  if (std::fabs(v) >= 1e6 || (v != 0 && std::fabs(v) < 0.1)) std::snprintf(b, sizeof b, "%.3g", v);
  else std::snprintf(b, sizeof b, "%.*f", prec, v);
  return b;
}

// Runs `threads` workers for about `dur` seconds; each calls body(i, stop)
// and returns its count.  Returns (sum of counts, wall seconds).
std::pair<std::uint64_t, double> run_threads(int threads, double dur,
                                             const std::function<std::uint64_t(int, const std::atomic<bool>&)>& body) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false}, stop{false};
  std::vector<std::uint64_t> counts(static_cast<std::size_t>(threads), 0);
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i)
    ts.emplace_back([&, i] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      counts[static_cast<std::size_t>(i)] = body(i, stop);
    });
  while (ready.load() != threads) std::this_thread::yield();
  auto t0 = Clock::now();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(dur));
  stop.store(true);
  for (auto& t : ts) t.join();
  double wall = secs(Clock::now() - t0);
  std::uint64_t total = 0;
  for (auto n : counts) total += n;
  return {total, wall};
}

std::string ratio(double v) { return std::isnan(v) ? "n/a" : fmt(v, 2) + "x"; }

}  // namespace vmspace::cli::bench
