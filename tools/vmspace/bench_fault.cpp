// SPDX-License-Identifier: MIT
// bench_fault.cpp - the fault, fault-scaling and fault-churn workloads.
#include "bench_ctx.h"

#include <sched.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

namespace vmspace::cli::bench {

// ---- fault ---------------------------------------------------------------

namespace {

double floor_hot_ns(int iters) {
  std::vector<unsigned char> buf(64 * kPage, 1);
  auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) {
    std::memset(buf.data() + (static_cast<std::uint64_t>(i) % 64) * kPage, 0, kPage);
    clobber(buf.data());
  }
  return static_cast<double>(nanos(Clock::now() - t0)) / iters;
}

// One pass of memset over every page of a present region: ns per page.
double floor_region_pass_ns(unsigned char* p, std::uint64_t len) {
  auto t0 = Clock::now();
  for (std::uint64_t off = 0; off < len; off += kPage) {
    std::memset(p + off, 0, kPage);
    clobber(p + off);
  }
  return static_cast<double>(nanos(Clock::now() - t0)) / static_cast<double>(len / kPage);
}

// One contender of the fault workload: a sweep returns ns per page.
struct FaultRunner {
  std::string mode, metric;
  std::function<double()> sweep;
  double best = 1e300;
};

}  // namespace

void run_fault(Ctx& c) {
  const std::uint64_t len = 256 * kMiB;
  const int rounds = c.quick ? 2 : 5;
  const std::uint64_t pages = len / kPage;
  // Every contender (the floors, each mode) does one sweep per round,
  // round-robin, and keeps its best: a machine that drifts during the run
  // (other tenants, clock frequency) then weighs on all of them alike.
  std::vector<FaultRunner> runners;
  runners.push_back({"memset", "floor_hot_ns", [&] { return floor_hot_ns(c.quick ? 200000 : 1000000); }});
  unsigned char* floor_region = kernel_map(len);
  std::memset(floor_region, 1, len);
  runners.push_back({"memset", "floor_region_ns", [&] { return floor_region_pass_ns(floor_region, len); }});
  std::vector<std::unique_ptr<AddressSpace>> spaces;
  std::vector<unsigned char*> kernel_regions;
  for (const Mode& m : c.modes) {
    if (m.kernel) {
      unsigned char* p = kernel_map(len);
      kernel_regions.push_back(p);
      runners.push_back({m.name, "ns_per_fault", [p, len, pages] {
                           auto t0 = Clock::now();
                           for (std::uint64_t off = 0; off < len; off += kPage)
                             *reinterpret_cast<volatile unsigned char*>(p + off) = 1;
                           double ns = static_cast<double>(nanos(Clock::now() - t0)) / static_cast<double>(pages);
                           ::madvise(p, len, MADV_DONTNEED);
                           return ns;
                         }});
    } else {
      spaces.push_back(make_space(m.lock, len + 64 * kMiB));
      AddressSpace* as = spaces.back().get();
      guest_map(*as, kBase, len);
      runners.push_back({m.name, "ns_per_fault", [as, len, pages] {
                           bool bad = false;
                           auto t0 = Clock::now();
                           for (std::uint64_t off = 0; off < len; off += kPage)
                             bad |= as->fault_in(kBase + off, true) != Fault::none;
                           double ns = static_cast<double>(nanos(Clock::now() - t0)) / static_cast<double>(pages);
                           if (bad) fail("fault: a vmspace fault failed");
                           guest_dontneed(*as, kBase, len);
                           return ns;
                         }});
    }
  }
  for (int r = 0; r < rounds; ++r) {
    for (FaultRunner& fr : runners) {
      progress("fault: round %d/%d, %s %s", r + 1, rounds, fr.mode.c_str(), fr.metric.c_str());
      fr.best = std::min(fr.best, fr.sweep());
    }
  }
  for (const FaultRunner& fr : runners) c.add("fault", fr.mode, fr.metric, fr.best, fr.metric == "ns_per_fault" ? "ns" : "ns/page");
  kernel_unmap(floor_region, len);
  for (unsigned char* p : kernel_regions) kernel_unmap(p, len);
  c.notes.push_back("fault: the floors and every mode take turns, one 256 MiB sweep each per round (" +
                    std::to_string(rounds) + " rounds), best sweep kept; kernel regions use MADV_NOHUGEPAGE "
                    "(4 KiB pages, as vmspace); vmspace frame pools are pre-touched");
}

// ---- fault-scaling -------------------------------------------------------

void run_fault_scaling(Ctx& c) {
  const std::uint64_t len = 64 * kMiB;
  const double dur = c.quick ? 0.25 : 1.0;
  for (int threads : {1, 2, 4}) {
    {
      // The floor: each thread zeroes every 4 KiB page of its own present
      // region (what a fault cannot avoid: zeroing a cold frame), so that
      // how far faults scale can be read against how far the machine's
      // memory bandwidth does (issue 18's fault-scaling target).
      progress("fault-scaling: memset floor, %d thread(s)", threads);
      std::vector<unsigned char*> regions;
      for (int i = 0; i < threads; ++i) {
        regions.push_back(kernel_map(len));
        std::memset(regions.back(), 0, len);
      }
      auto r = run_threads(threads, dur, [&](int i, const std::atomic<bool>& stop) {
        unsigned char* p = regions[static_cast<std::size_t>(i)];
        std::uint64_t n = 0;
        while (!stop.load(std::memory_order_relaxed))
          for (std::uint64_t off = 0; off < len && !stop.load(std::memory_order_relaxed); off += kPage, ++n) {
            std::memset(p + off, static_cast<int>(n), kPage);
            clobber(p + off);
          }
        return n;
      });
      for (auto* p : regions) kernel_unmap(p, len);
      const double total = static_cast<double>(r.first) / r.second;
      const std::string t = std::to_string(threads);
      c.add("fault-scaling", "floor", "pages_per_s_total_" + t + "t", total, "pages/s");
    }
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
        for (auto* p : regions) kernel_unmap(p, len);
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

namespace {

struct ChurnOut {
  std::vector<std::uint32_t> lat;  // ns per fault, all fault threads
  double fault_secs = 0;           // per-thread time in the fault loops (not DONTNEED), summed
  std::uint64_t writer_ops = 0;
  double wall = 0;
};

std::uint32_t clamp_ns(std::uint64_t ns) {
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(ns, UINT32_MAX));
}

// A churn window counts only if the writer really churned: at least this
// many operations (on a loaded 2-core machine a short window can pass with
// the writer barely scheduled, and then "under churn" means nothing).  The
// window is stretched up to kChurnMaxStretch times to get them.
constexpr std::uint64_t kMinWriterOps = 20;
constexpr double kChurnMaxStretch = 4.0;

// The control's writer step: ~10 us of arithmetic in registers.  Whatever
// it costs the fault threads is the machine's price for a second busy
// thread (shared frequency budget, the RCU worker losing its idle core),
// not the locking's.
bool spin_step() {
  std::uint64_t x = 1;
  for (int i = 0; i < 20000; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    asm volatile("" : "+r"(x));  // keeps every step
  }
  return true;
}

// Pins threads to CPUs 0..n-1 of the process's allowed set if it has at
// least n CPUs (else does nothing); gives the calling thread its affinity
// back when destroyed.
class CpuPin {
 public:
  explicit CpuPin(int n) {
    if (sched_getaffinity(0, sizeof saved_, &saved_) != 0) return;
    for (int c = 0; c < CPU_SETSIZE && static_cast<int>(cpus_.size()) < n; ++c)
      if (CPU_ISSET(c, &saved_)) cpus_.push_back(c);
    active_ = static_cast<int>(cpus_.size()) >= n;
  }
  ~CpuPin() {
    if (active_) sched_setaffinity(0, sizeof saved_, &saved_);
  }
  CpuPin(const CpuPin&) = delete;
  CpuPin& operator=(const CpuPin&) = delete;
  // Pin the calling thread to the i-th CPU.
  void pin(int i) const {
    if (!active_) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpus_[static_cast<std::size_t>(i)], &one);
    sched_setaffinity(0, sizeof one, &one);
  }

 private:
  cpu_set_t saved_{};
  std::vector<int> cpus_;
  bool active_ = false;
};

// One fault-churn measurement, for either side.  `side` provides
//   writer_step(churn, ro) -> bool   one writer operation (false: it failed)
//   fault(t, off) -> bool            fault thread t first-touches its page at `off`
//   discard(t) -> bool               MADV_DONTNEED fault thread t's region
// churn: 0 none, 1 (a) mmap/munmap, 2 (b) mprotect of the big region,
// 3 the control: a writer thread that only computes (no lock, no memory).
template <class Side>
ChurnOut run_churn(Side& side, int churn, int fault_threads, std::uint64_t len, double dur) {
  ChurnOut out;
  std::atomic<bool> go{false}, stop{false}, bad{false};
  std::atomic<std::uint64_t> writer_ops{0};
  // Each measured thread gets its own CPU when there are enough (fault
  // thread t on CPU t, the writer on the next one): otherwise the scheduler
  // now and then stacks the writer on a fault thread's CPU and the run
  // measures time slicing instead of locking.
  const CpuPin pin(fault_threads + (churn != 0 ? 1 : 0));
  std::thread writer;
  if (churn != 0)
    writer = std::thread([&] {
      pin.pin(fault_threads);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();  // pairs with the release below
      bool ro = false;
      while (!stop.load(std::memory_order_relaxed)) {
        ro = !ro;
        if (!side.writer_step(churn, ro)) bad = true;
        writer_ops.fetch_add(1, std::memory_order_relaxed);
      }
    });
  const auto t0 = Clock::now();
  const auto span = [&](double k) {
    return t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(k * dur));
  };
  const auto deadline = span(1.0), hard_deadline = span(kChurnMaxStretch);
  // Fault threads run until the deadline, and past it (up to the hard
  // deadline) while the writer has not done its minimum.
  auto done = [&](Clock::time_point now) {
    if (now < deadline) return false;
    return churn == 0 || writer_ops.load(std::memory_order_relaxed) >= kMinWriterOps || now >= hard_deadline;
  };
  std::vector<ChurnOut> per(static_cast<std::size_t>(fault_threads));
  auto fault_loop = [&](int t) {
    pin.pin(t);
    ChurnOut& o = per[static_cast<std::size_t>(t)];
    o.lat.reserve(1u << 23);
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    bool finished = false;
    while (!finished) {
      auto s0 = Clock::now();
      auto prev = s0;
      for (std::uint64_t off = 0; off < len; off += kPage) {
        if (!side.fault(t, off)) bad = true;
        auto now = Clock::now();
        o.lat.push_back(clamp_ns(nanos(now - prev)));
        prev = now;
        if (done(now)) {
          finished = true;
          break;
        }
      }
      o.fault_secs += secs(prev - s0);
      if (!side.discard(t)) bad = true;
    }
  };
  std::vector<std::thread> faulters;
  for (int t = 1; t < fault_threads; ++t) faulters.emplace_back(fault_loop, t);
  go.store(true, std::memory_order_release);
  fault_loop(0);
  for (auto& th : faulters) th.join();  // per[] is read after the joins
  stop.store(true);
  if (writer.joinable()) writer.join();
  out.wall = secs(Clock::now() - t0);
  out.writer_ops = writer_ops.load();
  for (auto& o : per) {
    out.lat.insert(out.lat.end(), o.lat.begin(), o.lat.end());
    out.fault_secs += o.fault_secs;
  }
  if (bad) fail("fault-churn: a mapping call failed");
  return out;
}

ChurnOut churn_guest(LockMode lock, int churn, int fault_threads, std::uint64_t big, double dur) {
  const std::uint64_t len = 64 * kMiB;
  auto as = make_space(lock, static_cast<std::uint64_t>(fault_threads) * len + big + 64 * kMiB);
  // Fault thread t owns [kBase + t * kStride, + len); the writer's region
  // sits after all of them, never adjacent (no merges between them).
  const std::uint64_t wbase = kBase + static_cast<std::uint64_t>(fault_threads + 1) * kStride;
  for (int t = 0; t < fault_threads; ++t) guest_map(*as, kBase + static_cast<std::uint64_t>(t) * kStride, len);
  if (churn == 2) {
    guest_map(*as, wbase, big);
    if (!as->fill(wbase, 1, big).ok()) fail("fault-churn: populating the region failed");
  }
  struct {
    AddressSpace& as;
    std::uint64_t wbase, len, big;
    std::uint64_t fbase(int t) const { return kBase + static_cast<std::uint64_t>(t) * kStride; }
    bool writer_step(int churn_kind, bool ro) {
      if (churn_kind == 3) return spin_step();
      if (churn_kind == 1) return as.mmap(wbase, 16 * 1024, kRW, kAnonFixed) >= 0 && as.munmap(wbase, 16 * 1024) == 0;
      return as.mprotect(wbase, big, ro ? PROT_READ : kRW) == 0;
    }
    bool fault(int t, std::uint64_t off) { return as.fault_in(fbase(t) + off, true) == Fault::none; }
    bool discard(int t) { return as.madvise(fbase(t), len, MADV_DONTNEED) == 0; }
  } side{*as, wbase, len, big};
  return run_churn(side, churn, fault_threads, len, dur);
}

ChurnOut churn_kernel(int churn, int fault_threads, std::uint64_t big, double dur) {
  const std::uint64_t len = 64 * kMiB;
  std::vector<unsigned char*> f;
  for (int t = 0; t < fault_threads; ++t) f.push_back(kernel_map(len));
  unsigned char* w = nullptr;
  if (churn == 2) {
    w = kernel_map(big);
    std::memset(w, 1, big);
  }
  struct {
    std::vector<unsigned char*>& f;
    unsigned char* w;
    std::uint64_t len, big;
    bool writer_step(int churn_kind, bool ro) {
      if (churn_kind == 3) return spin_step();
      if (churn_kind == 1) {
        void* p = ::mmap(nullptr, 16 * 1024, kRW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p != MAP_FAILED && ::munmap(p, 16 * 1024) == 0;
      }
      return ::mprotect(w, big, ro ? PROT_READ : kRW) == 0;
    }
    bool fault(int t, std::uint64_t off) {
      *reinterpret_cast<volatile unsigned char*>(f[static_cast<std::size_t>(t)] + off) = 1;
      return true;
    }
    bool discard(int t) { return ::madvise(f[static_cast<std::size_t>(t)], len, MADV_DONTNEED) == 0; }
  } side{f, w, len, big};
  ChurnOut out = run_churn(side, churn, fault_threads, len, dur);
  for (auto* p : f) kernel_unmap(p, len);
  if (w != nullptr) kernel_unmap(w, big);
  return out;
}

double pct(const std::vector<std::uint32_t>& sorted, double q) {
  if (sorted.empty()) return kNaN;
  auto i = static_cast<std::size_t>(q * static_cast<double>(sorted.size()));
  return sorted[std::min(i, sorted.size() - 1)];
}

}  // namespace

void run_fault_churn(Ctx& c) {
  const double dur = c.quick ? 0.5 : 2.0;
  const int nt = c.churn_threads;
  const std::uint64_t big = (c.quick ? 64 : 256) * kMiB;
  const char* names[] = {"none", "a_mmap_munmap", "b_mprotect", "control_spin"};
  for (int churn : {0, 3, 1, 2}) {
    for (const Mode& m : c.modes) {
      progress("fault-churn: %s, churn %s, %d fault thread(s) (%.1f s)", m.name.c_str(), names[churn], nt, dur);
      ChurnOut o = m.kernel ? churn_kernel(churn, nt, big, dur) : churn_guest(m.lock, churn, nt, big, dur);
      if (churn != 0 && o.writer_ops < kMinWriterOps)
        c.notes.push_back("fault-churn " + m.name + " " + names[churn] + ": the writer did only " +
                          std::to_string(o.writer_ops) + " operations in " + fmt(o.wall, 2) +
                          " s (machine busy?): its figures say little");
      std::sort(o.lat.begin(), o.lat.end());
      const std::string s = names[churn];
      // All fault threads together: faults / (mean time per thread in the fault loop).
      c.add("fault-churn", m.name, s + ".faults_per_s", static_cast<double>(o.lat.size()) * nt / o.fault_secs,
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
  c.notes.push_back("fault-churn: " + std::to_string(nt) +
                    " fault thread(s), each on its own 64 MiB VMA, beside the writer; faults/s counts time in "
                    "the fault loop (DONTNEED between sweeps excluded); latency includes clock_gettime "
                    "overhead; a window is stretched (up to " + fmt(kChurnMaxStretch, 0) + "x) until the "
                    "writer did " + std::to_string(kMinWriterOps) + " operations; control_spin: the writer "
                    "thread only computes (what a second busy thread costs on this machine, locks aside)");
}

}  // namespace vmspace::cli::bench
