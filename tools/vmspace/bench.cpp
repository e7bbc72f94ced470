// SPDX-License-Identifier: MIT
// vmspace bench: the side-by-side measurement of the three lock modes and
// the host kernel (issue 7).  Workloads:
//   fault          first touch of every page of a 256 MiB mapping; memset floors
//   fault-scaling  1, 2, 4 threads faulting their own VMAs
//   fault-churn    a fault thread while a writer holds mmap_lock for writing:
//                  (a) mmap/munmap of small regions, (b) mprotect of a big
//                  populated region; latency percentiles, throughput ratio
//   lookup         lock_vma_under_rcu + vma_end_read with 1K/64K/1M VMAs
//   mmap           mmap+munmap pairs of 64 KiB
// Results go to stdout as a table (with the ratios that matter), optionally
// to JSON and SVG; progress goes to stderr.
#include "bench.h"
#include "build_kind.h"

#include <sys/mman.h>
#include <sys/utsname.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "mm/mm_types.h"
#include "mm/mmap_lock.h"
#include "mm/vma.h"
#include "vmspace/address_space.h"
#include "vmspace/lock_mode.h"

namespace vmspace::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kMiB = 1ull << 20;
constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kStride = 1ull << 32;  // between per-thread regions: never adjacent
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr int kAnonFixed = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

const std::vector<std::string> kWorkloads = {"fault", "fault-scaling", "fault-churn", "lookup", "mmap"};

#if defined(NDEBUG)
constexpr bool kRelease = true;
#else
constexpr bool kRelease = false;
#endif

inline void clobber(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
std::uint64_t nanos(Clock::duration d) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

void progress(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void progress(const char* fmt, ...) {
  std::fputs("[bench] ", stderr);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
}

// A "mode" of the bench: one of the lock modes, or the host kernel.
struct Mode {
  std::string name;
  bool kernel = false;
  LockMode lock = LockMode::mmap_lock;
};

struct Result {
  std::string workload, mode, metric;
  double value;
  std::string unit;
};

struct Target {
  std::string name, cmp;  // cmp: "<=" or ">="
  double value, limit;
  std::string why_na;     // non-empty: not applicable
};

struct Ctx {
  bool quick = false;
  std::vector<Mode> modes;
  std::vector<Result> results;
  // fault-churn (b) latency CDF points per mode: (ns, fraction)
  std::map<std::string, std::vector<std::pair<double, double>>> cdf;
  std::vector<std::string> notes;

  void add(const std::string& w, const std::string& m, const std::string& metric, double v,
           const std::string& unit) {
    results.push_back({w, m, metric, v, unit});
  }
  double get(const std::string& w, const std::string& m, const std::string& metric) const {
    for (const Result& r : results)
      if (r.workload == w && r.mode == m && r.metric == metric) return r.value;
    return kNaN;
  }
};

std::unique_ptr<AddressSpace> make_space(LockMode mode, std::uint64_t phys_bytes, int max_map_count = 65530,
                                         bool pretouch = true) {
  AddressSpaceOptions o;
  o.mode = mode;
  o.phys_bytes = phys_bytes;
  o.phys_pretouch = pretouch;
  o.max_map_count = max_map_count;
  return std::make_unique<AddressSpace>(o);
}

void guest_map(AddressSpace& as, std::uint64_t addr, std::uint64_t len, int prot = kRW) {
  long r = as.mmap(addr, len, prot, kAnonFixed);
  if (r < 0) fail("vmspace mmap failed: " + std::string(std::strerror(static_cast<int>(-r))));
}

void guest_dontneed(AddressSpace& as, std::uint64_t addr, std::uint64_t len) {
  int r = as.madvise(addr, len, MADV_DONTNEED);
  if (r < 0) fail("vmspace madvise failed: " + std::string(std::strerror(-r)));
}

unsigned char* kernel_map(std::uint64_t len) {
  void* p = ::mmap(nullptr, len, kRW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail("mmap failed: " + std::string(std::strerror(errno)));
  // 4 KiB pages, as vmspace has: transparent huge pages would turn 512
  // faults into one.
  ::madvise(p, len, MADV_NOHUGEPAGE);
  return static_cast<unsigned char*>(p);
}

// ---- fault ---------------------------------------------------------------

double floor_hot_ns(int iters) {
  std::vector<unsigned char> buf(64 * kPage, 1);
  auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) {
    std::memset(buf.data() + (static_cast<std::uint64_t>(i) % 64) * kPage, 0, kPage);
    clobber(buf.data());
  }
  return static_cast<double>(nanos(Clock::now() - t0)) / iters;
}

double floor_region_ns(std::uint64_t len, int passes) {
  unsigned char* p = kernel_map(len);
  std::memset(p, 1, len);
  double best = 1e300;
  for (int pass = 0; pass < passes; ++pass) {
    auto t0 = Clock::now();
    for (std::uint64_t off = 0; off < len; off += kPage) {
      std::memset(p + off, 0, kPage);
      clobber(p + off);
    }
    best = std::min(best, static_cast<double>(nanos(Clock::now() - t0)) / static_cast<double>(len / kPage));
  }
  ::munmap(p, len);
  return best;
}

void run_fault(Ctx& c) {
  const std::uint64_t len = 256 * kMiB;
  const int sweeps = c.quick ? 2 : 5;
  const std::uint64_t pages = len / kPage;
  progress("fault: memset floors");
  double hot = 1e300;
  for (int rep = 0; rep < 3; ++rep) hot = std::min(hot, floor_hot_ns(c.quick ? 200000 : 1000000));
  c.add("fault", "memset", "floor_hot_ns", hot, "ns/page");
  c.add("fault", "memset", "floor_region_ns", floor_region_ns(len, c.quick ? 2 : 3), "ns/page");
  for (const Mode& m : c.modes) {
    double best = 1e300;
    if (m.kernel) {
      unsigned char* p = kernel_map(len);
      for (int s = 0; s < sweeps; ++s) {
        progress("fault: %s sweep %d/%d", m.name.c_str(), s + 1, sweeps);
        auto t0 = Clock::now();
        for (std::uint64_t off = 0; off < len; off += kPage) {
          *reinterpret_cast<volatile unsigned char*>(p + off) = 1;
        }
        best = std::min(best, static_cast<double>(nanos(Clock::now() - t0)) / static_cast<double>(pages));
        ::madvise(p, len, MADV_DONTNEED);
      }
      ::munmap(p, len);
    } else {
      auto as = make_space(m.lock, len + 64 * kMiB);
      guest_map(*as, kBase, len);
      for (int s = 0; s < sweeps; ++s) {
        progress("fault: %s sweep %d/%d", m.name.c_str(), s + 1, sweeps);
        bool bad = false;
        auto t0 = Clock::now();
        for (std::uint64_t off = 0; off < len; off += kPage) bad |= as->fault_in(kBase + off, true) != Fault::none;
        best = std::min(best, static_cast<double>(nanos(Clock::now() - t0)) / static_cast<double>(pages));
        if (bad) fail("fault: a vmspace fault failed");
        guest_dontneed(*as, kBase, len);
      }
    }
    c.add("fault", m.name, "ns_per_fault", best, "ns");
  }
}

// ---- fault-scaling -------------------------------------------------------

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

void run_fault_scaling(Ctx& c) {
  const std::uint64_t len = 64 * kMiB;
  const double dur = c.quick ? 0.25 : 1.0;
  for (int threads : {1, 2, 4}) {
    for (const Mode& m : c.modes) {
      progress("fault-scaling: %s, %d thread(s)", m.name.c_str(), threads);
      std::pair<std::uint64_t, double> r;
      if (m.kernel) {
        std::vector<unsigned char*> regions;
        for (int i = 0; i < threads; ++i) regions.push_back(kernel_map(len));
        r = run_threads(threads, dur, [&](int i, const std::atomic<bool>& stop) {
          unsigned char* p = regions[static_cast<std::size_t>(i)];
          std::uint64_t n = 0;
          while (!stop.load(std::memory_order_relaxed)) {
            for (std::uint64_t off = 0; off < len && !stop.load(std::memory_order_relaxed); off += kPage, ++n)
              *reinterpret_cast<volatile unsigned char*>(p + off) = 1;
            ::madvise(p, len, MADV_DONTNEED);
          }
          return n;
        });
        for (auto* p : regions) ::munmap(p, len);
      } else {
        // Frames freed by DONTNEED come back after an RCU grace period:
        // leave room for a whole discarded sweep per thread.
        auto as = make_space(m.lock, 2 * static_cast<std::uint64_t>(threads) * len + 64 * kMiB);
        for (int i = 0; i < threads; ++i) guest_map(*as, kBase + static_cast<std::uint64_t>(i) * kStride, len);
        std::atomic<int> bad{0};
        r = run_threads(threads, dur, [&](int i, const std::atomic<bool>& stop) {
          const std::uint64_t base = kBase + static_cast<std::uint64_t>(i) * kStride;
          std::uint64_t n = 0;
          while (!stop.load(std::memory_order_relaxed)) {
            for (std::uint64_t off = 0; off < len && !stop.load(std::memory_order_relaxed); off += kPage, ++n)
              if (Fault f = as->fault_in(base + off, true); f != Fault::none) bad = static_cast<int>(f);
            if (as->madvise(base, len, MADV_DONTNEED) != 0) bad = -1;
          }
          return n;
        });
        if (bad != 0)
          fail(std::string("fault-scaling: ") +
               (bad < 0 ? "madvise failed" : fault_name(static_cast<Fault>(bad.load()))));
      }
      const double total = static_cast<double>(r.first) / r.second;
      const std::string t = std::to_string(threads);
      c.add("fault-scaling", m.name, "faults_per_s_total_" + t + "t", total, "faults/s");
      c.add("fault-scaling", m.name, "faults_per_s_per_thread_" + t + "t", total / threads, "faults/s");
    }
  }
}

// ---- fault-churn ---------------------------------------------------------

struct ChurnOut {
  std::vector<std::uint32_t> lat;  // ns per fault
  double fault_secs = 0;           // time in the fault loops (not DONTNEED)
  std::uint64_t writer_ops = 0;
  double wall = 0;
};

std::uint32_t clamp_ns(std::uint64_t ns) {
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(ns, UINT32_MAX));
}

// One fault-churn measurement, for either side.  `side` provides
//   writer_step(churn, ro) -> bool   one writer operation (false: it failed)
//   fault(off) -> bool               first-touch the page at `off`
//   discard() -> bool                MADV_DONTNEED the fault region
// churn: 0 none, 1 (a) mmap/munmap, 2 (b) mprotect of the big region.
template <class Side>
ChurnOut run_churn(Side& side, int churn, std::uint64_t len, double dur) {
  ChurnOut out;
  out.lat.reserve(1u << 22);
  std::atomic<bool> go{false}, stop{false}, bad{false};
  std::thread writer;
  if (churn != 0)
    writer = std::thread([&] {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();  // pairs with the release below
      std::uint64_t ops = 0;
      bool ro = false;
      while (!stop.load(std::memory_order_relaxed)) {
        ro = !ro;
        if (!side.writer_step(churn, ro)) bad = true;
        ++ops;
      }
      out.writer_ops = ops;
    });
  auto t0 = Clock::now();
  go.store(true, std::memory_order_release);
  const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(dur));
  while (Clock::now() < deadline) {
    auto s0 = Clock::now();
    auto prev = s0;
    for (std::uint64_t off = 0; off < len; off += kPage) {
      if (!side.fault(off)) bad = true;
      auto now = Clock::now();
      out.lat.push_back(clamp_ns(nanos(now - prev)));
      prev = now;
      if (now >= deadline) break;
    }
    out.fault_secs += secs(prev - s0);
    if (!side.discard()) bad = true;
  }
  stop.store(true);
  if (writer.joinable()) writer.join();  // writer_ops is read after the join
  out.wall = secs(Clock::now() - t0);
  if (bad) fail("fault-churn: a mapping call failed");
  return out;
}

ChurnOut churn_guest(LockMode lock, int churn, std::uint64_t big, double dur) {
  const std::uint64_t len = 64 * kMiB;
  auto as = make_space(lock, len + big + 64 * kMiB);
  const std::uint64_t fbase = kBase;
  const std::uint64_t wbase = kBase + 4 * kStride;
  guest_map(*as, fbase, len);
  if (churn == 2) {
    guest_map(*as, wbase, big);
    if (!as->fill(wbase, 1, big).ok()) fail("fault-churn: populating the region failed");
  }
  struct {
    AddressSpace& as;
    std::uint64_t fbase, wbase, len, big;
    bool writer_step(int churn_kind, bool ro) {
      if (churn_kind == 1) return as.mmap(wbase, 16 * 1024, kRW, kAnonFixed) >= 0 && as.munmap(wbase, 16 * 1024) == 0;
      return as.mprotect(wbase, big, ro ? PROT_READ : kRW) == 0;
    }
    bool fault(std::uint64_t off) { return as.fault_in(fbase + off, true) == Fault::none; }
    bool discard() { return as.madvise(fbase, len, MADV_DONTNEED) == 0; }
  } side{*as, fbase, wbase, len, big};
  return run_churn(side, churn, len, dur);
}

ChurnOut churn_kernel(int churn, std::uint64_t big, double dur) {
  const std::uint64_t len = 64 * kMiB;
  unsigned char* f = kernel_map(len);
  unsigned char* w = nullptr;
  if (churn == 2) {
    w = kernel_map(big);
    std::memset(w, 1, big);
  }
  struct {
    unsigned char* f;
    unsigned char* w;
    std::uint64_t len, big;
    bool writer_step(int churn_kind, bool ro) {
      if (churn_kind == 1) {
        void* p = ::mmap(nullptr, 16 * 1024, kRW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p != MAP_FAILED && ::munmap(p, 16 * 1024) == 0;
      }
      return ::mprotect(w, big, ro ? PROT_READ : kRW) == 0;
    }
    bool fault(std::uint64_t off) {
      *reinterpret_cast<volatile unsigned char*>(f + off) = 1;
      return true;
    }
    bool discard() { return ::madvise(f, len, MADV_DONTNEED) == 0; }
  } side{f, w, len, big};
  ChurnOut out = run_churn(side, churn, len, dur);
  ::munmap(f, len);
  if (w != nullptr) ::munmap(w, big);
  return out;
}

double pct(const std::vector<std::uint32_t>& sorted, double q) {
  if (sorted.empty()) return kNaN;
  auto i = static_cast<std::size_t>(q * static_cast<double>(sorted.size()));
  return sorted[std::min(i, sorted.size() - 1)];
}

void run_fault_churn(Ctx& c) {
  const double dur = c.quick ? 0.5 : 2.0;
  const std::uint64_t big = (c.quick ? 64 : 256) * kMiB;
  const char* names[] = {"none", "a_mmap_munmap", "b_mprotect"};
  for (int churn : {0, 1, 2}) {
    for (const Mode& m : c.modes) {
      progress("fault-churn: %s, churn %s (%.1f s)", m.name.c_str(), names[churn], dur);
      ChurnOut o = m.kernel ? churn_kernel(churn, big, dur) : churn_guest(m.lock, churn, big, dur);
      std::sort(o.lat.begin(), o.lat.end());
      const std::string s = names[churn];
      c.add("fault-churn", m.name, s + ".faults_per_s", static_cast<double>(o.lat.size()) / o.fault_secs,
            "faults/s");
      c.add("fault-churn", m.name, s + ".p50", pct(o.lat, 0.50), "ns");
      c.add("fault-churn", m.name, s + ".p99", pct(o.lat, 0.99), "ns");
      c.add("fault-churn", m.name, s + ".p99.9", pct(o.lat, 0.999), "ns");
      c.add("fault-churn", m.name, s + ".max", o.lat.empty() ? kNaN : o.lat.back(), "ns");
      if (churn != 0)
        c.add("fault-churn", m.name, s + ".writer_ops_per_s", static_cast<double>(o.writer_ops) / o.wall,
              "ops/s");
      if (churn == 2 && !o.lat.empty()) {
        auto& pts = c.cdf[m.name];
        const std::size_t n = o.lat.size();
        for (int k = 0; k <= 400; ++k) {
          // dense near the tail: fractions 1 - 10^(-4 k/400)
          double frac = k == 400 ? 1.0 : 1.0 - std::pow(10.0, -4.0 * k / 400.0) + 0.0;
          if (k == 0) frac = 0.0;
          std::size_t i = std::min(n - 1, static_cast<std::size_t>(frac * static_cast<double>(n)));
          pts.emplace_back(std::max(1.0, static_cast<double>(o.lat[i])), frac);
        }
      }
    }
  }
}

// ---- lookup --------------------------------------------------------------

void run_lookup(Ctx& c) {
  std::vector<int> sizes = {1 << 10, 1 << 16, 1 << 20};
  const int iters = c.quick ? 500000 : 2000000;
  // Debug builds validate the whole tree after every mmap: creating n VMAs
  // costs O(n^2), minutes at 64K.
  const int debug_cap = 1 << 12;
  for (const Mode& m : c.modes) {
    if (m.kernel) continue;  // the kernel has no user-visible lookup
    auto as = make_space(m.lock, 8 * kMiB, 2'000'000, false);
    mm::MmStruct* mmp = as->mm();
    int have = 0;
    for (int n : sizes) {
      const std::string metric = "ns_per_lookup_" + std::to_string(n) + "_vmas";
      if (c.quick && n > (1 << 16)) {
        progress("lookup: %s, %d VMAs skipped (--quick)", m.name.c_str(), n);
        c.notes.push_back("lookup " + m.name + " " + std::to_string(n) + " VMAs: skipped (--quick)");
        continue;
      }
      if (!kRelease && n > debug_cap) {
        progress("lookup: %s, %d VMAs skipped (debug build)", m.name.c_str(), n);
        c.notes.push_back("lookup " + m.name + " " + std::to_string(n) + " VMAs: skipped (debug build)");
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

// ---- report --------------------------------------------------------------

std::string fmt(double v, int prec = 1) {
  if (std::isnan(v)) return "n/a";
  char b[64];
  if (std::fabs(v) >= 1e6 || (v != 0 && std::fabs(v) < 0.1)) std::snprintf(b, sizeof b, "%.3g", v);
  else std::snprintf(b, sizeof b, "%.*f", prec, v);
  return b;
}
std::string ratio(double v) { return std::isnan(v) ? "n/a" : fmt(v, 2) + "x"; }

// The ratios printed next to a figure.
std::string note_for(const Ctx& c, const Result& r) {
  const std::string& w = r.workload;
  if (w == "fault" && r.metric == "ns_per_fault") {
    double hot = c.get("fault", "memset", "floor_hot_ns"), reg = c.get("fault", "memset", "floor_region_ns");
    std::string s = ratio(r.value / hot) + " hot floor, " + ratio(r.value / reg) + " region floor";
    if (r.mode != "kernel") {
      s += ", kernel is " + ratio(c.get("fault", "kernel", "ns_per_fault") / r.value) + " slower";
      if (r.mode != "mmap_lock") s += ", " + ratio(r.value / c.get("fault", "mmap_lock", "ns_per_fault")) + " mmap_lock";
    }
    return s;
  }
  if (w == "fault-scaling" && r.metric.rfind("faults_per_s_total_", 0) == 0) {
    return ratio(r.value / c.get(w, r.mode, "faults_per_s_total_1t")) + " of 1 thread";
  }
  if (w == "fault-churn") {
    auto dot = r.metric.find('.');
    std::string kind = r.metric.substr(0, dot), what = r.metric.substr(dot + 1);
    if (kind != "none" && what == "faults_per_s")
      return ratio(r.value / c.get(w, r.mode, "none.faults_per_s")) + " of no churn";
    if (what == "p99" && r.mode != "mmap_lock")
      return ratio(r.value / c.get(w, "mmap_lock", r.metric)) + " mmap_lock";
    return "";
  }
  if (w == "lookup" && r.metric != "ns_per_lookup_1024_vmas")
    return ratio(r.value / c.get(w, r.mode, "ns_per_lookup_1024_vmas")) + " of 1K VMAs";
  if (w == "mmap" && r.mode != "kernel") return ratio(r.value / c.get(w, "kernel", "pairs_per_s")) + " kernel";
  return "";
}

std::vector<Target> targets(const Ctx& c) {
  std::vector<Target> t;
  auto add = [&](std::string name, std::string cmp, double v, double limit, std::string na_if_nan) {
    t.push_back({std::move(name), std::move(cmp), v, limit, std::isnan(v) ? std::move(na_if_nan) : ""});
  };
  const std::string rc = "per_vma_refcount";
  double f_rc = c.get("fault", rc, "ns_per_fault");
  add("fault: per_vma_refcount ns/fault / memset hot floor", "<=", f_rc / c.get("fault", "memset", "floor_hot_ns"),
      2.0, "fault not run");
  add("fault: kernel ns/fault / per_vma_refcount ns/fault", ">=", c.get("fault", "kernel", "ns_per_fault") / f_rc,
      3.0, "fault (with kernel) not run");
  add("fault: per_vma_refcount ns/fault / mmap_lock ns/fault", "<=", f_rc / c.get("fault", "mmap_lock", "ns_per_fault"),
      1.10, "fault (with mmap_lock) not run");
  add("fault-churn (b): per_vma_refcount p99 / mmap_lock p99", "<=",
      c.get("fault-churn", rc, "b_mprotect.p99") / c.get("fault-churn", "mmap_lock", "b_mprotect.p99"), 0.2,
      "fault-churn not run");
  add("fault-churn (b): per_vma_refcount faults/s under churn / without", ">=",
      c.get("fault-churn", rc, "b_mprotect.faults_per_s") / c.get("fault-churn", rc, "none.faults_per_s"), 0.7,
      "fault-churn not run");
  add("lookup: per_vma_refcount ns at 64K VMAs", "<=", c.get("lookup", rc, "ns_per_lookup_65536_vmas"), 150,
      kRelease ? "lookup not run" : "lookup at 64K VMAs not run (skipped in debug builds)");
  add("lookup: per_vma_refcount growth 1K -> 1M VMAs", "<=",
      c.get("lookup", rc, "ns_per_lookup_1048576_vmas") / c.get("lookup", rc, "ns_per_lookup_1024_vmas"), 2.5,
      c.quick ? "N/A in --quick" : "lookup at 1M VMAs not run");
  add("mmap: per_vma_refcount pairs/s / kernel pairs/s", ">=",
      c.get("mmap", rc, "pairs_per_s") / c.get("mmap", "kernel", "pairs_per_s"), 3.0, "mmap (with kernel) not run");
  return t;
}

bool passes(const Target& t) { return t.cmp == "<=" ? t.value <= t.limit : t.value >= t.limit; }

void print_report(const Ctx& c, const std::vector<Target>& ts) {
  std::printf("vmspace bench (%s build%s)\n\n", vmspace::cli::build_kind(), c.quick ? ", --quick" : "");
  std::printf("%-14s %-17s %-34s %12s %-9s %s\n", "workload", "mode", "metric", "value", "unit", "ratios");
  std::string last;
  for (const Result& r : c.results) {
    if (r.workload != last && !last.empty()) std::printf("\n");
    last = r.workload;
    std::printf("%-14s %-17s %-34s %12s %-9s %s\n", r.workload.c_str(), r.mode.c_str(), r.metric.c_str(),
                fmt(r.value).c_str(), r.unit.c_str(), note_for(c, r).c_str());
  }
  if (!c.notes.empty()) {
    std::printf("\nnotes:\n");
    for (const auto& n : c.notes) std::printf("  %s\n", n.c_str());
  }
  std::printf("\ntargets:\n");
  for (const Target& t : ts) {
    if (!t.why_na.empty()) std::printf("  N/A   %-66s (%s)\n", t.name.c_str(), t.why_na.c_str());
    else
      std::printf("  %-5s %-66s %s %s %s\n", passes(t) ? "PASS" : "FAIL", t.name.c_str(), fmt(t.value, 2).c_str(),
                  t.cmp.c_str(), fmt(t.limit, 2).c_str());
  }
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      if (p != std::string::npos) return line.substr(line.find_first_not_of(" \t", p + 1));
    }
  return "unknown";
}

nlohmann::json num(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }

void write_json(const Ctx& c, const std::vector<Target>& ts, const std::string& path) {
  nlohmann::json j;
  utsname u{};
  ::uname(&u);
  j["machine"] = {{"cpu", cpu_model()},
                  {"cores", std::thread::hardware_concurrency()},
                  {"kernel", u.release},
                  {"build_type", vmspace::cli::build_kind()},
                  {"quick", c.quick}};
  j["results"] = nlohmann::json::array();
  for (const Result& r : c.results)
    j["results"].push_back(
        {{"workload", r.workload}, {"mode", r.mode}, {"metric", r.metric}, {"value", num(r.value)}, {"unit", r.unit}});
  j["targets"] = nlohmann::json::array();
  for (const Target& t : ts) {
    nlohmann::json e = {{"name", t.name}, {"value", num(t.value)}, {"limit", t.limit}, {"comparison", t.cmp}};
    if (t.why_na.empty()) e["pass"] = passes(t);
    else {
      e["pass"] = nullptr;
      e["na"] = t.why_na;
    }
    j["targets"].push_back(e);
  }
  j["notes"] = c.notes;
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) fail("cannot write " + path);
}

const char* kColors[] = {"#d62728", "#1f77b4", "#2ca02c", "#7f7f7f", "#9467bd"};

void write_svgs(const Ctx& c, const std::string& dir) {
  std::filesystem::create_directories(dir);
  const double W = 800, H = 500, L = 70, R = 180, T = 40, B = 60;
  const double pw = W - L - R, ph = H - T - B;
  {  // fault-churn (b) latency CDFs
    double lo = 1e300, hi = 0;
    for (const auto& [m, pts] : c.cdf)
      for (const auto& p : pts) lo = std::min(lo, p.first), hi = std::max(hi, p.first);
    if (c.cdf.empty()) lo = 10, hi = 1e6;
    double dlo = std::floor(std::log10(lo)), dhi = std::ceil(std::log10(hi));
    if (dhi <= dlo) dhi = dlo + 1;
    auto x = [&](double ns) { return L + (std::log10(ns) - dlo) / (dhi - dlo) * pw; };
    auto y = [&](double f) { return T + (1 - f) * ph; };
    std::ostringstream s;
    s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << L << "\" y=\"20\" font-size=\"14\">fault-churn (b: mprotect churn): fault latency CDF</text>\n"
      << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << pw << "\" height=\"" << ph
      << "\" fill=\"none\" stroke=\"black\"/>\n";
    for (double d = dlo; d <= dhi; d += 1) {
      s << "<line x1=\"" << x(std::pow(10, d)) << "\" y1=\"" << T << "\" x2=\"" << x(std::pow(10, d)) << "\" y2=\""
        << T + ph << "\" stroke=\"#ddd\"/>\n<text x=\"" << x(std::pow(10, d)) << "\" y=\"" << T + ph + 16
        << "\" text-anchor=\"middle\">1e" << d << "</text>\n";
    }
    for (double f = 0; f <= 1.0001; f += 0.25)
      s << "<text x=\"" << L - 6 << "\" y=\"" << y(f) + 4 << "\" text-anchor=\"end\">" << f << "</text>\n";
    s << "<text x=\"" << L + pw / 2 << "\" y=\"" << H - 15 << "\" text-anchor=\"middle\">fault latency (ns, log)</text>\n"
      << "<text x=\"15\" y=\"" << T + ph / 2 << "\" transform=\"rotate(-90 15 " << T + ph / 2
      << ")\" text-anchor=\"middle\">fraction of faults</text>\n";
    int k = 0;
    for (const auto& [m, pts] : c.cdf) {
      const char* col = kColors[k % 5];
      s << "<polyline fill=\"none\" stroke=\"" << col << "\" stroke-width=\"1.5\" points=\"";
      for (const auto& p : pts) s << x(p.first) << "," << y(p.second) << " ";
      s << "\"/>\n<text x=\"" << L + pw + 10 << "\" y=\"" << T + 20 + 18 * k << "\" fill=\"" << col << "\">" << m
        << "</text>\n";
      ++k;
    }
    s << "</svg>\n";
    std::ofstream(std::filesystem::path(dir) / "fault_churn_cdf.svg") << s.str();
  }
  {  // fault-scaling bars
    double hi = 1;
    for (const Result& r : c.results)
      if (r.workload == "fault-scaling" && r.metric.rfind("faults_per_s_total_", 0) == 0) hi = std::max(hi, r.value);
    std::ostringstream s;
    s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << L << "\" y=\"20\" font-size=\"14\">fault-scaling: total faults/s (max " << fmt(hi)
      << ")</text>\n<line x1=\"" << L << "\" y1=\"" << T + ph << "\" x2=\"" << L + pw << "\" y2=\"" << T + ph
      << "\" stroke=\"black\"/>\n";
    const int nm = static_cast<int>(c.modes.size());
    const double gw = pw / 3, bw = gw * 0.8 / std::max(1, nm);
    int g = 0;
    for (int threads : {1, 2, 4}) {
      for (int k = 0; k < nm; ++k) {
        double v = c.get("fault-scaling", c.modes[static_cast<std::size_t>(k)].name,
                         "faults_per_s_total_" + std::to_string(threads) + "t");
        if (std::isnan(v)) continue;
        double h = v / hi * ph, bx = L + g * gw + gw * 0.1 + k * bw;
        s << "<rect x=\"" << bx << "\" y=\"" << T + ph - h << "\" width=\"" << bw * 0.9 << "\" height=\"" << h
          << "\" fill=\"" << kColors[k % 5] << "\"><title>" << c.modes[static_cast<std::size_t>(k)].name << " "
          << threads << "t: " << fmt(v) << " faults/s</title></rect>\n";
      }
      s << "<text x=\"" << L + g * gw + gw / 2 << "\" y=\"" << T + ph + 16 << "\" text-anchor=\"middle\">" << threads
        << " thread(s)</text>\n";
      ++g;
    }
    for (int k = 0; k < nm; ++k)
      s << "<text x=\"" << L + pw + 10 << "\" y=\"" << T + 20 + 18 * k << "\" fill=\"" << kColors[k % 5] << "\">"
        << c.modes[static_cast<std::size_t>(k)].name << "</text>\n";
    s << "</svg>\n";
    std::ofstream(std::filesystem::path(dir) / "fault_scaling.svg") << s.str();
  }
}

}  // namespace

void add_bench(CLI::App& app, BenchArgs& args) {
  auto* sub = app.add_subcommand("bench", "Measure the lock modes side by side (and the host kernel)");
  sub->add_flag("--quick", args.quick, "Short runs (under 30 s); skips the 1M-VMA lookup");
  sub->add_option("--json", args.json, "Write machine info, results and targets as JSON to FILE");
  sub->add_option("--svg", args.svg, "Write fault-churn latency CDFs and fault-scaling bars as SVG into DIR");
  sub->add_option("--workload", args.workloads,
                  "Run only this workload (repeatable): fault, fault-scaling, fault-churn, lookup, mmap");
  sub->add_option("--modes", args.modes, "Comma-separated: mmap_lock, per_vma_rwsem, per_vma_refcount, kernel")
      ->capture_default_str();
}

int cmd_bench(const BenchArgs& args) {
  Ctx c;
  c.quick = args.quick;
  std::stringstream ms(args.modes);
  std::string item;
  while (std::getline(ms, item, ',')) {
    if (item.empty()) continue;
    if (item == "kernel") c.modes.push_back({"kernel", true, LockMode::mmap_lock});
    else if (auto m = parse_lock_mode(item)) c.modes.push_back({item, false, *m});
    else {
      std::fprintf(stderr, "vmspace bench: unknown mode '%s'\n", item.c_str());
      return 2;
    }
  }
  if (c.modes.empty()) {
    std::fprintf(stderr, "vmspace bench: no modes\n");
    return 2;
  }
  std::vector<std::string> wl = args.workloads.empty() ? kWorkloads : args.workloads;
  for (const auto& w : wl)
    if (std::find(kWorkloads.begin(), kWorkloads.end(), w) == kWorkloads.end()) {
      std::fprintf(stderr, "vmspace bench: unknown workload '%s'\n", w.c_str());
      return 2;
    }
  if (!kRelease)
    std::fprintf(stderr,
                 "vmspace bench: WARNING: this is a %s build (NDEBUG not defined); its figures are not meaningful. "
                 "Use build/release/vmspace.\n",
                 vmspace::cli::build_kind());
  auto want = [&](const char* w) { return std::find(wl.begin(), wl.end(), w) != wl.end(); };
  auto t0 = Clock::now();
  try {
    if (want("fault")) run_fault(c);
    if (want("fault-scaling")) run_fault_scaling(c);
    if (want("fault-churn")) run_fault_churn(c);
    if (want("lookup")) run_lookup(c);
    if (want("mmap")) run_mmap(c);
    if (want("fault"))
      c.notes.push_back("fault: best of sweeps (floors: best of 3); kernel regions use MADV_NOHUGEPAGE (4 KiB "
                        "pages, as vmspace)");
    if (want("fault-churn"))
      c.notes.push_back("fault-churn: 1 fault thread on its own 64 MiB VMA; faults/s counts time in the fault "
                      "loop (DONTNEED between sweeps excluded); latency includes clock_gettime overhead");
    const std::vector<Target> ts = targets(c);
    print_report(c, ts);
    std::fflush(stdout);
    if (!args.json.empty()) write_json(c, ts, args.json);
    if (!args.svg.empty()) write_svgs(c, args.svg);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vmspace bench: %s\n", e.what());
    return 2;
  }
  progress("done in %.1f s", secs(Clock::now() - t0));
  return 0;
}

}  // namespace vmspace::cli
