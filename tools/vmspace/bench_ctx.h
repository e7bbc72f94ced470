// SPDX-License-Identifier: MIT
// bench_ctx.h - what the `vmspace bench` workloads share: the run context
// (modes, results, notes), units and address-space helpers, progress and
// number formatting.  One workload family per file: bench_fault.cpp
// (fault, fault-scaling, fault-churn), bench_vma.cpp (lookup, mmap),
// bench_mremap.cpp (mremap), bench_file.cpp (file-fault), bench_space.cpp
// (space), bench_fork.cpp (fork), bench_field.cpp (will-it-scale,
// CortenMM, maps); the report (table, targets, JSON, SVG)
// is bench_report.cpp.
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "vmspace/address_space.h"
#include "vmspace/lock_mode.h"

namespace vmspace::cli::bench {

using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kMiB = 1ull << 20;
constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kStride = 1ull << 32;  // between per-thread regions: never adjacent
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr int kAnonFixed = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

const std::vector<std::string> kWorkloads = {"fault",       "fault-scaling", "fault-churn", "lookup",
                                             "mmap",        "mremap",        "file-fault",  "space",
                                             "fork",        "page_fault1",   "page_fault2", "page_fault3",
                                             "mmap1",       "cortenmm",      "maps",        "guest-access",
                                             "disjoint-mmap"};

#if defined(NDEBUG)
constexpr bool kRelease = true;
#else
constexpr bool kRelease = false;
#endif

inline void clobber(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

double secs(Clock::duration d);
std::uint64_t nanos(Clock::duration d);

// A measurement that cannot go on (a call failed): throws; cmd_bench
// reports it and exits 2.
[[noreturn]] void fail(const std::string& what);
// One progress line on stderr: "[bench] ...".
void progress(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// A "mode" of the bench: one of the lock modes, or the host kernel.
struct Mode {
  std::string name;
  bool kernel = false;
  LockMode lock = LockMode::mmap_lock;
};

// One figure.  After the rounds are combined (bench_rounds.h): the median
// of the rounds kept, their spread (max/min) and how many were kept.
struct Result {
  std::string workload, mode, metric;
  double value;
  std::string unit;
  double spread = 1;
  int rounds = 1;
};

struct Target {
  std::string name, cmp;  // cmp: "<=" or ">="
  double value, limit;
  std::string why_na;     // non-empty: not applicable
  double spread = 1;      // over the rounds (bench_rounds.h)
  int rounds = 1;
};

struct Ctx {
  bool quick = false;
  bool warmup = false;  // the unrecorded warm-up round
  int rounds = 0;       // measured rounds combined into `results` (set at the end)
  bool warmed_up = false;  // an unrecorded warm-up round ran first
  int churn_threads = 1;
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

// A space in `mode` whose own frame pool has phys_bytes (pre-touched when
// `pretouch`, so that faults measure vmspace, not the host's first touch).
std::unique_ptr<AddressSpace> make_space(LockMode mode, std::uint64_t phys_bytes, int max_map_count = 65530,
                                         bool pretouch = true);
// Fixed private anonymous mapping / MADV_DONTNEED in a space; fail() on error.
void guest_map(AddressSpace& as, std::uint64_t addr, std::uint64_t len, int prot = kRW);
void guest_dontneed(AddressSpace& as, std::uint64_t addr, std::uint64_t len);
// A real private anonymous mapping of the host, with 4 KiB pages and its
// own VMA (it never merges with a neighbour); undo with kernel_unmap.
unsigned char* kernel_map(std::uint64_t len);
void kernel_unmap(unsigned char* p, std::uint64_t len);

// Runs `threads` workers for about `dur` seconds; each calls body(i, stop)
// and returns its count.  Returns (sum of counts, wall seconds).
std::pair<std::uint64_t, double> run_threads(int threads, double dur,
                                             const std::function<std::uint64_t(int, const std::atomic<bool>&)>& body);

// A figure for tables and notes: n/a, fixed point, or 3 significant digits.
std::string fmt(double v, int prec = 1);
std::string ratio(double v);  // "1.23x" or "n/a"

// ---- the workloads (each adds its results and notes to the context) ----
void run_fault(Ctx& c);
void run_fault_scaling(Ctx& c);
void run_fault_churn(Ctx& c);
void run_lookup(Ctx& c);
void run_mmap(Ctx& c);
void run_mremap(Ctx& c);
void run_file_fault(Ctx& c);
void run_space(Ctx& c);
void run_fork(Ctx& c);
// The field's benchmarks (bench_field.cpp).
void run_page_fault1(Ctx& c);
void run_page_fault2(Ctx& c);
void run_page_fault3(Ctx& c);
void run_mmap1(Ctx& c);
void run_cortenmm(Ctx& c);
void run_disjoint_mmap(Ctx& c);
void run_maps_bench(Ctx& c);
// Guest memory access as an emulator makes it (bench_guest.cpp).
void run_guest_access(Ctx& c);

// ---- the report ----
std::vector<Target> targets(const Ctx& c);
std::string format_report(const Ctx& c, const std::vector<Target>& ts);  // the stdout table
void print_report(const Ctx& c, const std::vector<Target>& ts);
void write_json(const Ctx& c, const std::vector<Target>& ts, const std::string& path);

}  // namespace vmspace::cli::bench
