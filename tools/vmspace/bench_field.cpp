// SPDX-License-Identifier: MIT
// bench_field.cpp - the field's published benchmarks, side by side with the
// host kernel (issue 18), each in thread mode at 1, 2 and 2x-cores threads:
//   will-it-scale  page_fault1 (private anonymous), page_fault2 (private
//                  file), page_fault3 (shared file): map 128 MiB, write one
//                  byte per page, unmap, again; mmap1: map and unmap 128 MiB
//   cortenmm       CortenMM's (SOSP 2025) micro-benchmarks on 16 KiB
//                  regions: mmap, PF, unmap, mmap-PF, unmap-virt; each
//                  thread in its own area (low contention) or all of them
//                  interleaved in one (high contention)
//   maps           the /proc/pid/maps benchmark of Linux's "per-VMA locks
//                  for /proc/pid/maps" series: mmap/munmap latency of one
//                  thread while two threads read maps() in a loop, and
//                  without them
#include "bench_ctx.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

namespace vmspace::cli::bench {

namespace {

// 1, 2 and 2x the cores, each once (1 and 2 on a one-core machine).
std::vector<int> thread_counts() {
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  std::vector<int> t = {1, 2, 2 * cores};
  std::sort(t.begin(), t.end());
  t.erase(std::unique(t.begin(), t.end()), t.end());
  return t;
}

std::string tn(int threads) { return std::to_string(threads) + "t"; }

// A pre-touched frame pool shared by every mode's space in one workload:
// the host's first touch of a frame is paid once, outside every timing.
std::shared_ptr<PhysicalMemory> make_pool(std::uint64_t bytes) {
  PhysicalMemory::Options po;
  po.limit_bytes = bytes;
  po.pretouch = true;
  return std::make_shared<PhysicalMemory>(po);
}

std::unique_ptr<AddressSpace> pooled_space(LockMode mode, const std::shared_ptr<PhysicalMemory>& pool) {
  AddressSpaceOptions o;
  o.mode = mode;
  o.pool = pool;
  return std::make_unique<AddressSpace>(o);
}

// ---- will-it-scale --------------------------------------------------------

enum class Wis { page_fault1, page_fault2, page_fault3, mmap1 };
constexpr const char* kWisName[] = {"page_fault1", "page_fault2", "page_fault3", "mmap1"};
constexpr std::uint64_t kWisLen = 128 * kMiB;

int wis_map_flags(Wis w) {
  switch (w) {
    case Wis::page_fault2: return MAP_PRIVATE;
    case Wis::page_fault3: return MAP_SHARED;
    default: return MAP_PRIVATE | MAP_ANONYMOUS;
  }
}

bool wis_file(Wis w) { return w == Wis::page_fault2 || w == Wis::page_fault3; }

// One task of the host kernel: will-it-scale's loop, counting pages
// written (page_fault*) or map+unmap pairs (mmap1).
std::uint64_t wis_kernel_task(Wis w, int fd, const std::atomic<bool>& stop, std::atomic<int>& bad) {
  std::uint64_t n = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    void* m = ::mmap(nullptr, kWisLen, kRW, wis_map_flags(w), wis_file(w) ? fd : -1, 0);
    if (m == MAP_FAILED) {
      bad = errno;
      return n;
    }
    auto* p = static_cast<unsigned char*>(m);
    if (w == Wis::page_fault1) ::madvise(p, kWisLen, MADV_NOHUGEPAGE);  // 4 KiB pages, as vmspace
    if (w != Wis::mmap1)
      for (std::uint64_t off = 0; off < kWisLen && !stop.load(std::memory_order_relaxed); off += kPage, ++n)
        *reinterpret_cast<volatile unsigned char*>(p + off) = 0;
    else
      ++n;
    ::munmap(p, kWisLen);
  }
  return n;
}

std::uint64_t wis_vmspace_task(Wis w, AddressSpace& as, int fd, const std::atomic<bool>& stop,
                               std::atomic<int>& bad) {
  std::uint64_t n = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    const long a = as.mmap(0, kWisLen, kRW, wis_map_flags(w), wis_file(w) ? fd : -1, 0);
    if (a < 0) {
      bad = static_cast<int>(-a);
      return n;
    }
    const auto base = static_cast<std::uint64_t>(a);
    if (w != Wis::mmap1) {
      for (std::uint64_t off = 0; off < kWisLen && !stop.load(std::memory_order_relaxed); off += kPage, ++n)
        if (Fault f = as.fault_in(base + off, AccessKind::write); f != Fault::none) {
          bad = 1000 + static_cast<int>(f);
          return n;
        }
    } else {
      ++n;
    }
    if (as.munmap(base, kWisLen) != 0) bad = EINVAL;
  }
  return n;
}

void run_wis(Ctx& c, Wis w) {
  const char* name = kWisName[static_cast<int>(w)];
  const double dur = c.quick ? 0.3 : 1.0;
  const std::vector<int> tcs = thread_counts();
  const int tmax = tcs.back();
  // Frames: each task's 128 MiB (page_fault2: the file's pages and the
  // private copies), twice over: an unmapped sweep's frames come back
  // only after an RCU grace period.
  const std::uint64_t per_task = w == Wis::mmap1 ? 0 : (w == Wis::page_fault2 ? 3 : 2) * kWisLen;
  std::shared_ptr<PhysicalMemory> pool;
  for (const Mode& m : c.modes)
    if (!m.kernel && !pool) pool = make_pool(static_cast<std::uint64_t>(tmax) * per_task + 64 * kMiB);
  for (int threads : tcs) {
    for (const Mode& m : c.modes) {
      progress("%s: %s, %d thread(s)", name, m.name.c_str(), threads);
      std::atomic<int> bad{0};
      std::pair<std::uint64_t, double> r;
      std::vector<int> fds(static_cast<std::size_t>(threads), -1);
      if (m.kernel) {
        if (wis_file(w))
          for (int& fd : fds) {
            fd = ::memfd_create("vmspace-bench-wis", MFD_CLOEXEC);
            if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(kWisLen)) != 0) fail(std::string(name) + ": memfd");
          }
        r = run_threads(threads, dur, [&](int i, const std::atomic<bool>& stop) {
          return wis_kernel_task(w, fds[static_cast<std::size_t>(i)], stop, bad);
        });
        for (int fd : fds)
          if (fd >= 0) ::close(fd);
      } else {
        auto as = pooled_space(m.lock, pool);
        if (wis_file(w))
          for (int& fd : fds) {
            fd = as->memfd_create("wis");
            if (fd < 0 || as->ftruncate(fd, static_cast<std::int64_t>(kWisLen)) != 0)
              fail(std::string(name) + ": vmspace memfd");
          }
        r = run_threads(threads, dur, [&](int i, const std::atomic<bool>& stop) {
          return wis_vmspace_task(w, *as, fds[static_cast<std::size_t>(i)], stop, bad);
        });
      }
      if (bad != 0)
        fail(std::string(name) + " " + m.name + ": " +
             (bad >= 1000 ? fault_name(static_cast<Fault>(bad - 1000)) : std::strerror(bad)));
      const double total = static_cast<double>(r.first) / r.second;
      const bool pairs = w == Wis::mmap1;
      c.add(name, m.name, (pairs ? "ops_per_s_" : "faults_per_s_") + tn(threads), total, pairs ? "ops/s" : "faults/s");
    }
  }
  if (!c.warmup)
    c.notes.push_back(std::string(name) + ": will-it-scale's thread mode, " +
                      (w == Wis::mmap1 ? "mmap + munmap of 128 MiB (private anonymous, never touched)"
                                       : std::string("map 128 MiB ") +
                                             (w == Wis::page_fault1   ? "private anonymous (kernel: MADV_NOHUGEPAGE)"
                                              : w == Wis::page_fault2 ? "MAP_PRIVATE of a 128 MiB memfd per thread"
                                                                      : "MAP_SHARED of a 128 MiB memfd per thread") +
                                             ", write one byte per page (vmspace: fault_in(write)), unmap") +
                      "; totals over all threads");
}

// ---- CortenMM micro-benchmarks --------------------------------------------

constexpr std::uint64_t kRegion = 16 * 1024;
constexpr std::uint64_t kRegionStride = 2 * kRegion;  // a gap after each: no merges
constexpr std::uint64_t kCortenBase = 0x300000000000;  // free in the bench process, for the kernel side

// Where region i of thread t lies: its own area (low contention) or one
// area interleaving every thread's regions (high contention).
std::uint64_t region_addr(bool high, int threads, int t, std::uint64_t i) {
  if (high) return kCortenBase + (i * static_cast<std::uint64_t>(threads) + static_cast<std::uint64_t>(t)) * kRegionStride;
  return kCortenBase + static_cast<std::uint64_t>(t) * kStride + i * kRegionStride;
}

// The operations, on the kernel or on a space.
struct MmOps {
  AddressSpace* as = nullptr;  // nullptr: the host kernel
  bool map(std::uint64_t a) const {
    if (as == nullptr) {
      void* p = ::mmap(reinterpret_cast<void*>(a), kRegion, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      return p == reinterpret_cast<void*>(a);
    }
    return as->mmap(a, kRegion, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE) == static_cast<long>(a);
  }
  bool touch(std::uint64_t a) const {
    for (std::uint64_t off = 0; off < kRegion; off += kPage) {
      if (as == nullptr) *reinterpret_cast<volatile unsigned char*>(a + off) = 1;
      else if (as->fault_in(a + off, AccessKind::write) != Fault::none) return false;
    }
    return true;
  }
  bool unmap(std::uint64_t a) const {
    return as == nullptr ? ::munmap(reinterpret_cast<void*>(a), kRegion) == 0 : as->munmap(a, kRegion) == 0;
  }
};

// Runs phase(t, i) for every region of every thread, the threads started
// together; returns the wall time of the slowest.
double timed_phase(int threads, std::uint64_t regions, const std::function<bool(int, std::uint64_t)>& phase,
                   std::atomic<bool>& bad) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      for (std::uint64_t i = 0; i < regions; ++i)
        if (!phase(t, i)) {
          bad = true;
          return;
        }
    });
  while (ready.load() != threads) std::this_thread::yield();
  const auto t0 = Clock::now();
  go.store(true, std::memory_order_release);
  for (auto& t : ts) t.join();
  return secs(Clock::now() - t0);
}

void run_corten(Ctx& c) {
  const std::uint64_t regions = c.quick ? 1024 : 4096;  // per thread
  const std::vector<int> tcs = thread_counts();
  const int tmax = tcs.back();
  std::shared_ptr<PhysicalMemory> pool;
  for (const Mode& m : c.modes)
    if (!m.kernel && !pool) pool = make_pool(2 * static_cast<std::uint64_t>(tmax) * regions * kRegion + 64 * kMiB);
  for (bool high : {false, true}) {
    const char* cont = high ? "high" : "low";
    for (int threads : tcs) {
      for (const Mode& m : c.modes) {
        progress("cortenmm: %s, %s contention, %d thread(s)", m.name.c_str(), cont, threads);
        std::unique_ptr<AddressSpace> as;
        if (!m.kernel) as = pooled_space(m.lock, pool);
        const MmOps ops{as.get()};
        std::atomic<bool> bad{false};
        auto addr = [&](int t, std::uint64_t i) { return region_addr(high, threads, t, i); };
        const double n = static_cast<double>(regions) * threads;
        auto add = [&](const char* op, double wall, double per) {
          c.add("cortenmm", m.name, std::string(op) + "_" + cont + "_" + tn(threads), n * per / wall,
                per > 1 ? "faults/s" : "ops/s");
        };
        // mmap, PF (every page of every region), unmap (of touched regions).
        add("mmap", timed_phase(threads, regions, [&](int t, std::uint64_t i) { return ops.map(addr(t, i)); }, bad), 1);
        add("pf", timed_phase(threads, regions, [&](int t, std::uint64_t i) { return ops.touch(addr(t, i)); }, bad),
            static_cast<double>(kRegion / kPage));
        add("unmap", timed_phase(threads, regions, [&](int t, std::uint64_t i) { return ops.unmap(addr(t, i)); }, bad),
            1);
        // mmap-PF: map and touch each region in turn.
        add("mmap_pf",
            timed_phase(threads, regions,
                        [&](int t, std::uint64_t i) { return ops.map(addr(t, i)) && ops.touch(addr(t, i)); }, bad),
            1);
        timed_phase(threads, regions, [&](int t, std::uint64_t i) { return ops.unmap(addr(t, i)); }, bad);
        // unmap-virt: unmap regions that were mapped but never touched.
        timed_phase(threads, regions, [&](int t, std::uint64_t i) { return ops.map(addr(t, i)); }, bad);
        add("unmap_virt",
            timed_phase(threads, regions, [&](int t, std::uint64_t i) { return ops.unmap(addr(t, i)); }, bad), 1);
        if (bad) fail("cortenmm " + m.name + ": a map, touch or unmap failed (is 0x300000000000 free?)");
      }
    }
  }
  if (!c.warmup)
    c.notes.push_back("cortenmm: " + std::to_string(regions) +
                      " regions of 16 KiB per thread (a 16 KiB gap after each, so none merge), at fixed addresses "
                      "(MAP_FIXED_NOREPLACE); low: each thread its own area, high: the threads' regions "
                      "interleaved in one area; phases timed with all threads started together: mmap, pf (write "
                      "each page; faults/s), unmap (touched), mmap_pf (map and touch each region; regions/s), "
                      "unmap_virt (never touched)");
}

// ---- disjoint-mmap (issue 19) ----------------------------------------------

constexpr std::uint64_t kDisjointRegion = 64 * 1024;
constexpr std::uint64_t kDisjointStride = 2 * kDisjointRegion;  // a gap after each: no merges
constexpr std::uint64_t kDisjointArea = 1024 * kMiB;             // each thread's own
constexpr std::uint64_t kDisjointSlots = 4096;                    // 512 MiB of the area used
constexpr std::uint64_t kDisjointLive = 64;                       // regions each thread keeps mapped
constexpr std::uint64_t kDisjointBase = 0x340000000000;           // free in the bench process

// One thread's loop: map region i (MAP_FIXED_NOREPLACE), make it
// read-only, unmap region i - 64 (each thread keeps 64 regions mapped, so
// the tree holds its neighbours), until `stop`.  Counts system calls.
std::uint64_t disjoint_task(AddressSpace* as, int t, const std::atomic<bool>& stop, std::atomic<int>& bad) {
  const std::uint64_t area = kDisjointBase + static_cast<std::uint64_t>(t) * kDisjointArea;
  auto slot = [&](std::uint64_t i) { return area + (i % kDisjointSlots) * kDisjointStride; };
  auto map = [&](std::uint64_t a) {
    if (as == nullptr)
      return ::mmap(reinterpret_cast<void*>(a), kDisjointRegion, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                    -1, 0) == reinterpret_cast<void*>(a);
    return as->mmap(a, kDisjointRegion, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE) == static_cast<long>(a);
  };
  auto protect = [&](std::uint64_t a) {
    return as == nullptr ? ::mprotect(reinterpret_cast<void*>(a), kDisjointRegion, PROT_READ) == 0
                         : as->mprotect(a, kDisjointRegion, PROT_READ) == 0;
  };
  auto unmap = [&](std::uint64_t a) {
    return as == nullptr ? ::munmap(reinterpret_cast<void*>(a), kDisjointRegion) == 0
                         : as->munmap(a, kDisjointRegion) == 0;
  };
  std::uint64_t n = 0, i = 0;
  for (; !stop.load(std::memory_order_relaxed); ++i) {
    if (!map(slot(i)) || !protect(slot(i))) {
      bad = errno != 0 ? errno : EINVAL;
      break;
    }
    n += 2;
    if (i >= kDisjointLive) {
      if (!unmap(slot(i - kDisjointLive))) {
        bad = EINVAL;
        break;
      }
      ++n;
    }
  }
  // Leave the area empty for the next run.
  for (std::uint64_t j = i > kDisjointLive ? i - kDisjointLive : 0; j < i; ++j) (void)unmap(slot(j));
  return n;
}

}  // namespace

// Layout changes of threads in disjoint areas of one space: what a range
// lock (issue 19's per_vma_range) lets run in parallel and the mmap_lock
// serializes.  ops/s (mmap, mprotect and munmap each count one) at 1, 2
// and 2x cores threads, for every mode and the host kernel.
void run_disjoint_mmap(Ctx& c) {
  const double dur = c.quick ? 0.3 : 1.0;
  for (int threads : thread_counts()) {
    for (const Mode& m : c.modes) {
      progress("disjoint-mmap: %s, %d thread(s)", m.name.c_str(), threads);
      std::unique_ptr<AddressSpace> as;
      if (!m.kernel) as = make_space(m.lock, 16 * kMiB, 65530, /*pretouch=*/false);
      std::atomic<int> bad{0};
      const auto r = run_threads(threads, dur, [&](int t, const std::atomic<bool>& stop) {
        return disjoint_task(as.get(), t, stop, bad);
      });
      if (bad != 0)
        fail("disjoint-mmap " + m.name + ": " + std::strerror(bad) + " (is 0x340000000000 free in this process?)");
      c.add("disjoint-mmap", m.name, "ops_per_s_" + tn(threads), static_cast<double>(r.first) / r.second, "ops/s");
    }
    // The floor of this machine for the shape: the same loop with every
    // thread in its own AddressSpace (per_vma_refcount), so that nothing of
    // one space is shared - only the process-wide node pool, RCU and the
    // allocator.  What a range lock could reach at best.
    progress("disjoint-mmap: separate spaces, %d thread(s)", threads);
    std::vector<std::unique_ptr<AddressSpace>> spaces;
    for (int t = 0; t < threads; ++t)
      spaces.push_back(make_space(LockMode::per_vma_refcount, 16 * kMiB, 65530, /*pretouch=*/false));
    std::atomic<int> bad{0};
    const auto r = run_threads(threads, dur, [&](int t, const std::atomic<bool>& stop) {
      return disjoint_task(spaces[static_cast<std::size_t>(t)].get(), t, stop, bad);
    });
    if (bad != 0) fail(std::string("disjoint-mmap separate spaces: ") + std::strerror(bad));
    c.add("disjoint-mmap", "separate spaces", "ops_per_s_" + tn(threads), static_cast<double>(r.first) / r.second,
          "ops/s");
  }
  if (!c.warmup)
    c.notes.push_back("disjoint-mmap: each thread maps 64 KiB regions (MAP_FIXED_NOREPLACE, a 64 KiB gap after each) "
                      "in its own 1 GiB area, makes each read-only, and unmaps the one mapped 64 regions before; "
                      "ops/s = mmap + mprotect + munmap calls per second over all threads; 'separate spaces': the same with "
                      "every thread in its own AddressSpace (the machine's floor for the shape)");
}

namespace {

// ---- the /proc/pid/maps benchmark ----------------------------------------

constexpr std::uint64_t kMapsArea = 128 * kMiB;
constexpr std::uint64_t kMapsBase = 0x380000000000;

struct Lat {
  std::vector<std::uint32_t> mmap_ns, munmap_ns;
};

double pct(std::vector<std::uint32_t> v, double p) {
  if (v.empty()) return kNaN;
  const std::size_t k = std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

std::uint32_t since_ns(Clock::time_point t0) {
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(nanos(Clock::now() - t0), UINT32_MAX));
}

void run_maps(Ctx& c) {
  const double dur = c.quick ? 0.3 : 1.0;
  constexpr int kReaders = 2, kBackground = 256;
  for (const Mode& m : c.modes) {
    std::unique_ptr<AddressSpace> as;
    if (!m.kernel) as = make_space(m.lock, 16 * kMiB, 65530, false);
    // kBackground VMAs below the area (alternating protections: no merges),
    // so that a maps read has something to walk.
    std::vector<std::uint64_t> bg;
    for (int i = 0; i < kBackground; ++i) {
      const std::uint64_t a = kMapsBase - kMapsArea - static_cast<std::uint64_t>(kBackground - i) * 2 * kPage;
      const int prot = i % 2 ? PROT_READ : kRW;
      bool ok = m.kernel ? ::mmap(reinterpret_cast<void*>(a), kPage, prot,
                                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == reinterpret_cast<void*>(a)
                         : as->mmap(a, kPage, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE) ==
                               static_cast<long>(a);
      if (!ok) fail("maps: a background mapping failed (is 0x37f... free?)");
      bg.push_back(a);
    }
    for (int readers : {0, kReaders}) {
      progress("maps: %s, %d reader(s)", m.name.c_str(), readers);
      std::atomic<bool> stop{false};
      std::atomic<std::uint64_t> reads{0};
      std::vector<std::thread> rs;
      for (int r = 0; r < readers; ++r)
        rs.emplace_back([&] {
          std::vector<char> buf(1 << 20);
          while (!stop.load(std::memory_order_relaxed)) {
            if (m.kernel) {
              const int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
              if (fd < 0) continue;
              while (::read(fd, buf.data(), buf.size()) > 0) {
              }
              ::close(fd);
            } else {
              const std::string s = as->maps();
              clobber(s.data());
            }
            reads.fetch_add(1, std::memory_order_relaxed);
          }
        });
      Lat lat;
      std::mt19937_64 rng(42);
      const auto t0 = Clock::now();
      bool ok = true;
      while (ok && (lat.mmap_ns.size() < 100 || Clock::now() - t0 < std::chrono::duration<double>(dur))) {
        const std::uint64_t a = kMapsBase + (rng() % (kMapsArea / kPage)) * kPage;
        auto t = Clock::now();
        if (m.kernel)
          ok = ::mmap(reinterpret_cast<void*>(a), kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
                      0) == reinterpret_cast<void*>(a);
        else
          ok = as->mmap(a, kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE) == static_cast<long>(a);
        lat.mmap_ns.push_back(since_ns(t));
        t = Clock::now();
        if (ok) ok = m.kernel ? ::munmap(reinterpret_cast<void*>(a), kPage) == 0 : as->munmap(a, kPage) == 0;
        lat.munmap_ns.push_back(since_ns(t));
      }
      stop = true;
      for (auto& t : rs) t.join();
      if (!ok) fail("maps " + m.name + ": mmap/munmap in the area failed (is 0x380000000000 free?)");
      const std::string suffix = readers == 0 ? "_alone" : "_with_readers";
      c.add("maps", m.name, "mmap_median_us" + suffix, pct(lat.mmap_ns, 0.5) / 1e3, "us");
      c.add("maps", m.name, "mmap_max_us" + suffix, pct(lat.mmap_ns, 1.0) / 1e3, "us");
      c.add("maps", m.name, "munmap_median_us" + suffix, pct(lat.munmap_ns, 0.5) / 1e3, "us");
      c.add("maps", m.name, "munmap_max_us" + suffix, pct(lat.munmap_ns, 1.0) / 1e3, "us");
      if (readers > 0) {
        std::uint64_t over = 0;
        for (std::uint32_t ns : lat.mmap_ns) over += ns > 500000;
        for (std::uint32_t ns : lat.munmap_ns) over += ns > 500000;
        c.add("maps", m.name, "calls_over_500us_pct_with_readers",
              100.0 * static_cast<double>(over) / static_cast<double>(lat.mmap_ns.size() + lat.munmap_ns.size()), "%");
        c.add("maps", m.name, "maps_reads_per_s", static_cast<double>(reads.load()) / secs(Clock::now() - t0),
              "reads/s");
      }
    }
    if (m.kernel)
      for (std::uint64_t a : bg) ::munmap(reinterpret_cast<void*>(a), kPage);
  }
  if (!c.warmup)
    c.notes.push_back("maps: one thread maps and unmaps 4 KiB at random pages of a 128 MiB area (256 other VMAs "
                      "below it), alone and while 2 threads read the whole maps text in a loop (kernel: "
                      "/proc/self/maps); vmspace's maps() reads under the mmap_lock");
}

}  // namespace

void run_page_fault1(Ctx& c) { run_wis(c, Wis::page_fault1); }
void run_page_fault2(Ctx& c) { run_wis(c, Wis::page_fault2); }
void run_page_fault3(Ctx& c) { run_wis(c, Wis::page_fault3); }
void run_mmap1(Ctx& c) { run_wis(c, Wis::mmap1); }
void run_cortenmm(Ctx& c) { run_corten(c); }
void run_maps_bench(Ctx& c) { run_maps(c); }

}  // namespace vmspace::cli::bench
