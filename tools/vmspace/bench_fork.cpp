// SPDX-License-Identifier: MIT
// bench_fork.cpp - the fork workload: what copying an address space costs,
// and what the copy-on-write faults after it cost (issue 15).
//
// (a) A space with 256 MiB of private anonymous memory, every page written
//     (its own frame): AddressSpace::fork(), ms; then the child's first
//     write to every page (a copy-on-write fault each, the parent still
//     mapping the page), ns per page, made as the fault workload makes its
//     first touches (AddressSpace::fault_in for writing, one call per
//     page); the child is destroyed before the next round.  For the ratio,
//     the same run measures first-touch writes to a fresh 256 MiB private
//     anonymous region the same way, in a new space on the same frame pool
//     (not in the forked space: its empty page tables would be walked by
//     fork), destroyed after the sweep as the child is.
// (b) A space with 1,000 VMAs (16 pages each, alternately read-write and
//     read-only, so that they do not merge; the first 4 pages of each
//     written before the read-only ones were protected): fork(), us.
// The host kernel does the same with fork() of this process, after
// mapping and populating the same memory (4 KiB pages: THP off for the
// regions): the time from the fork() call to its return in the parent
// (the child _exit()s at once and is waited for outside the timed region),
// and, in a child, the first write to every page, timed in the child and
// sent back through a pipe.  The kernel's fork copies the whole bench
// process, not only the region: a fork of the bench process with neither
// region mapped is measured too (fork_us_bare), and the kernel contender
// runs before any vmspace frame pool exists (a pool is host memory the
// kernel would copy the page tables of).
//
// Contenders: the kernel's rounds first, then the lock modes take turns,
// one round each (a and b) per turn, so a machine that drifts weighs on
// all of them alike; every figure is the median of its rounds.
#include "bench_ctx.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "vmspace/physical_memory.h"

namespace vmspace::cli::bench {

namespace {

constexpr std::uint64_t kLen = 256 * kMiB;
constexpr std::uint64_t kPages = kLen / kPage;
constexpr int kVmas = 1000;
constexpr std::uint64_t kVmaPages = 16;    // pages per VMA
constexpr std::uint64_t kVmaTouched = 4;   // of which written
constexpr std::uint64_t kVmaLen = kVmas * kVmaPages * kPage;
constexpr unsigned char kByte = 0x5a;

double median(std::vector<double> v) {
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::uint64_t clock_ns(clockid_t id) {
  timespec t{};
  ::clock_gettime(id, &t);
  return static_cast<std::uint64_t>(t.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(t.tv_nsec);
}
std::uint64_t mono_ns() { return clock_ns(CLOCK_MONOTONIC); }
std::uint64_t cpu_ns() { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }

// Forks timed two ways: wall time from the call to its return (what the
// targets use), and the calling thread's CPU time over the same call (the
// kernel's fork runs in the caller's context).  On a loaded machine a fork
// longer than a scheduler slice is preempted and its wall time grows more
// than a short one's; its CPU time does not.
struct Forks {
  std::vector<double> wall, cpu;  // ns
  template <class Fn>
  void time(Fn&& fn) {
    const std::uint64_t c0 = cpu_ns(), w0 = mono_ns();
    fn();
    const std::uint64_t w1 = mono_ns(), c1 = cpu_ns();
    wall.push_back(static_cast<double>(w1 - w0));
    cpu.push_back(static_cast<double>(c1 - c0));
  }
};

void add_forks(Ctx& c, const std::string& mode, const Forks& big, const Forks& vmas) {
  c.add("fork", mode, "fork_ms_256mib", median(big.wall) / 1e6, "ms");
  c.add("fork", mode, "fork_cpu_ms_256mib", median(big.cpu) / 1e6, "ms");
  c.add("fork", mode, "fork_us_1000_vmas", median(vmas.wall) / 1e3, "us");
  c.add("fork", mode, "fork_cpu_us_1000_vmas", median(vmas.cpu) / 1e3, "us");
}

// ---- the host kernel --------------------------------------------------------

void reap(pid_t pid) {
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) fail("fork: waitpid failed: " + std::string(std::strerror(errno)));
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("fork: a kernel child did not exit cleanly");
}

// One fork() of this process, timed into `f`; the child _exit()s at once
// and is reaped afterwards.
//
// The bench may have other threads (liburcu's, the fault workloads'
// leftovers): fork copies only the calling thread, so a child of it may
// not touch a lock another thread could have held: it calls nothing but
// async-signal-safe functions (clock_gettime, write, _exit), allocates
// nothing, and never returns into the bench.
void kernel_fork(Forks& f) {
  pid_t pid = -1;
  f.time([&] {
    pid = ::fork();
    if (pid == 0) ::_exit(0);
  });
  if (pid < 0) fail("fork: fork() failed: " + std::string(std::strerror(errno)));
  reap(pid);
}

// A child writes one byte to every page of [p, p + len) (each a
// copy-on-write fault: this process still maps the page) and reports the
// ns per page through a pipe.
double kernel_cow_ns(unsigned char* p, std::uint64_t len) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) fail("fork: pipe failed: " + std::string(std::strerror(errno)));
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::uint64_t t0 = mono_ns();
    for (std::uint64_t off = 0; off < len; off += kPage) *reinterpret_cast<volatile unsigned char*>(p + off) = 1;
    const std::uint64_t ns = mono_ns() - t0;
    const bool ok = ::write(fds[1], &ns, sizeof ns) == static_cast<ssize_t>(sizeof ns);
    ::_exit(ok ? 0 : 1);
  }
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    fail("fork: fork() failed: " + std::string(std::strerror(errno)));
  }
  std::uint64_t ns = 0;
  ssize_t got = 0;
  while ((got = ::read(fds[0], &ns, sizeof ns)) < 0 && errno == EINTR) {
  }
  ::close(fds[0]);
  reap(pid);
  if (got != static_cast<ssize_t>(sizeof ns)) fail("fork: a kernel child sent no figure");
  return static_cast<double>(ns) / static_cast<double>(len / kPage);
}

// First touch: a write to every page of a fresh region, then DONTNEED.
double kernel_first_touch_ns(unsigned char* p, std::uint64_t len) {
  const auto t0 = Clock::now();
  for (std::uint64_t off = 0; off < len; off += kPage) *reinterpret_cast<volatile unsigned char*>(p + off) = 1;
  const double ns = static_cast<double>(nanos(Clock::now() - t0)) / static_cast<double>(len / kPage);
  ::madvise(p, len, MADV_DONTNEED);
  return ns;
}

void run_kernel(Ctx& c, const Mode& m, int rounds) {
  Forks bare, fork_big, fork_vmas;
  std::vector<double> cow, touch;
  progress("fork: %s, bare process, %d forks", m.name.c_str(), 3 * rounds);
  for (int r = 0; r < 3 * rounds; ++r) kernel_fork(bare);
  {
    unsigned char* big = kernel_map(kLen);
    std::memset(big, kByte, kLen);
    unsigned char* fresh = kernel_map(kLen);
    for (int r = 0; r < rounds; ++r) {
      progress("fork: round %d/%d, %s 256 MiB", r + 1, rounds, m.name.c_str());
      kernel_fork(fork_big);
      cow.push_back(kernel_cow_ns(big, kLen));
      touch.push_back(kernel_first_touch_ns(fresh, kLen));
    }
    for (std::uint64_t off = 0; off < kLen; off += kPage)
      if (big[off] != kByte) fail("fork: a kernel child's write reached the parent");
    kernel_unmap(fresh, kLen);
    kernel_unmap(big, kLen);
  }
  {
    // [guard][1000 x 16 pages][guard]: alternately read-write and
    // read-only, 4 pages of each written first.
    unsigned char* v = kernel_map(kVmaLen);
    for (int i = 0; i < kVmas; ++i) std::memset(v + i * kVmaPages * kPage, kByte, kVmaTouched * kPage);
    for (int i = 1; i < kVmas; i += 2)
      if (::mprotect(v + i * kVmaPages * kPage, kVmaPages * kPage, PROT_READ) != 0) fail("fork: mprotect failed");
    progress("fork: %s, 1,000 VMAs, %d forks", m.name.c_str(), 3 * rounds);
    for (int r = 0; r < 3 * rounds; ++r) kernel_fork(fork_vmas);
    kernel_unmap(v, kVmaLen);
  }
  add_forks(c, m.name, fork_big, fork_vmas);
  c.add("fork", m.name, "fork_us_bare", median(bare.wall) / 1e3, "us");
  c.add("fork", m.name, "cow_ns_per_page", median(cow), "ns");
  c.add("fork", m.name, "first_touch_ns_per_page", median(touch), "ns");
}

// ---- vmspace ------------------------------------------------------------------

constexpr std::uint64_t kVmaBase = kBase + 8 * kStride;

// Frames: the parent's 256 MiB and, at most, the child's copies of them
// (or the first-touch sweep's), the VMAs' 4,000 pages, and room for the
// frames that wait for a grace period.
constexpr std::uint64_t kPoolBytes = 2 * kLen + 96 * kMiB;

struct Contender {
  const Mode* mode = nullptr;
  std::shared_ptr<PhysicalMemory> pool;
  AddressSpaceOptions opts;              // a space of this mode on the pool
  std::unique_ptr<AddressSpace> parent;  // (a): 256 MiB written
  std::unique_ptr<AddressSpace> vmas;    // (b): 1,000 VMAs
  Forks fork_big, fork_vmas;
  std::vector<double> cow, touch;
};

Contender make_contender(const Mode& m) {
  Contender k;
  k.mode = &m;
  // Pre-touched, so that faults measure vmspace, not the host's first
  // touch of a frame.
  PhysicalMemory::Options po;
  po.limit_bytes = kPoolBytes;
  po.pretouch = true;
  k.pool = std::make_shared<PhysicalMemory>(po);
  AddressSpaceOptions& o = k.opts;
  o.mode = m.lock;
  o.pool = k.pool;
  k.parent = std::make_unique<AddressSpace>(o);
  guest_map(*k.parent, kBase, kLen);
  if (!k.parent->fill(kBase, kByte, kLen).ok()) fail("fork: vmspace populate failed");
  k.vmas = std::make_unique<AddressSpace>(o);
  guest_map(*k.vmas, kVmaBase, kVmaLen);
  for (int i = 0; i < kVmas; ++i)
    if (!k.vmas->fill(kVmaBase + i * kVmaPages * kPage, kByte, kVmaTouched * kPage).ok())
      fail("fork: vmspace populate failed");
  for (int i = 1; i < kVmas; i += 2)
    if (k.vmas->mprotect(kVmaBase + i * kVmaPages * kPage, kVmaPages * kPage, PROT_READ) != 0)
      fail("fork: vmspace mprotect failed");
  if (k.vmas->map_count() != kVmas)
    fail("fork: the VMA space has " + std::to_string(k.vmas->map_count()) + " VMAs, not 1000");
  return k;
}

std::unique_ptr<AddressSpace> fork_of(AddressSpace& as) {
  int err = 0;
  std::unique_ptr<AddressSpace> child = as.fork(&err);
  if (!child) fail("fork: AddressSpace::fork failed: " + std::string(std::strerror(-err)));
  return child;
}

// First write to every page of [kBase, kBase + kLen) in `as`, as the fault
// workload makes them: ns per page.
double fault_sweep_ns(AddressSpace& as) {
  bool bad = false;
  const auto t0 = Clock::now();
  for (std::uint64_t off = 0; off < kLen; off += kPage) bad |= as.fault_in(kBase + off, true) != Fault::none;
  const double ns = static_cast<double>(nanos(Clock::now() - t0)) / static_cast<double>(kPages);
  if (bad) fail("fork: a vmspace write fault failed");
  return ns;
}

void vmspace_round(Contender& k) {
  {  // (a) fork, then the child's copy-on-write faults
    std::unique_ptr<AddressSpace> child;
    k.fork_big.time([&] { child = fork_of(*k.parent); });
    k.cow.push_back(fault_sweep_ns(*child));
    // The child has its own copies now, with the parent's bytes.
    const unsigned char mark = 0xa5;
    unsigned char a = 0, b = 0;
    if (!child->write(kBase, &mark, 1).ok() || !child->read(kBase + kLen - 1, &a, 1).ok() ||
        !k.parent->read(kBase, &b, 1).ok() || a != kByte || b != kByte)
      fail("fork: a vmspace child's copy is wrong");
  }  // the child is destroyed here: its copies go back to the pool (its
     // destructor waits for their grace period)
  {
    AddressSpace fresh(k.opts);
    guest_map(fresh, kBase, kLen);
    k.touch.push_back(fault_sweep_ns(fresh));
  }
  // (b) three forks of the 1,000-VMA space
  for (int i = 0; i < 3; ++i) {
    std::unique_ptr<AddressSpace> child;
    k.fork_vmas.time([&] { child = fork_of(*k.vmas); });
    if (child->map_count() != kVmas) fail("fork: a vmspace child lost VMAs");
  }
}

}  // namespace

void run_fork(Ctx& c) {
  const int rounds = c.quick ? 3 : 7;
  // The kernel first: no vmspace pool exists yet, so its fork copies the
  // bench process and the regions, nothing of vmspace's.
  for (const Mode& m : c.modes)
    if (m.kernel) run_kernel(c, m, rounds);
  std::vector<Contender> ks;
  for (const Mode& m : c.modes)
    if (!m.kernel) {
      progress("fork: %s, setting up (pool of %llu MiB, pre-touched)", m.name.c_str(),
               static_cast<unsigned long long>(kPoolBytes / kMiB));
      ks.push_back(make_contender(m));
    }
  for (int r = 0; r < rounds; ++r)
    for (Contender& k : ks) {
      progress("fork: round %d/%d, %s", r + 1, rounds, k.mode->name.c_str());
      vmspace_round(k);
    }
  for (Contender& k : ks) {
    const std::string& m = k.mode->name;
    add_forks(c, m, k.fork_big, k.fork_vmas);
    c.add("fork", m, "cow_ns_per_page", median(k.cow), "ns");
    c.add("fork", m, "first_touch_ns_per_page", median(k.touch), "ns");
  }
  ks.clear();
  // The ratios the issue asks for, in one line per mode.
  auto get = [&](const std::string& m, const char* metric) { return c.get("fork", m, metric); };
  for (const Mode& m : c.modes) {
    if (m.kernel) continue;
    const std::string& n = m.name;
    char line[512];
    std::snprintf(line, sizeof line,
                  "fork: %s: 256 MiB fork %s ms, kernel %s ms: %s faster (CPU time %s vs %s ms: %s); 1,000-VMA "
                  "fork %s us, kernel %s us: %s faster (CPU time %s vs %s us: %s); copy-on-write fault %s ns/page = "
                  "%s its first-touch fault (%s ns/page)",
                  n.c_str(), fmt(get(n, "fork_ms_256mib"), 2).c_str(), fmt(get("kernel", "fork_ms_256mib"), 2).c_str(),
                  ratio(get("kernel", "fork_ms_256mib") / get(n, "fork_ms_256mib")).c_str(),
                  fmt(get(n, "fork_cpu_ms_256mib"), 2).c_str(), fmt(get("kernel", "fork_cpu_ms_256mib"), 2).c_str(),
                  ratio(get("kernel", "fork_cpu_ms_256mib") / get(n, "fork_cpu_ms_256mib")).c_str(),
                  fmt(get(n, "fork_us_1000_vmas")).c_str(), fmt(get("kernel", "fork_us_1000_vmas")).c_str(),
                  ratio(get("kernel", "fork_us_1000_vmas") / get(n, "fork_us_1000_vmas")).c_str(),
                  fmt(get(n, "fork_cpu_us_1000_vmas")).c_str(), fmt(get("kernel", "fork_cpu_us_1000_vmas")).c_str(),
                  ratio(get("kernel", "fork_cpu_us_1000_vmas") / get(n, "fork_cpu_us_1000_vmas")).c_str(),
                  fmt(get(n, "cow_ns_per_page")).c_str(),
                  ratio(get(n, "cow_ns_per_page") / get(n, "first_touch_ns_per_page")).c_str(),
                  fmt(get(n, "first_touch_ns_per_page")).c_str());
    c.notes.push_back(line);
  }
  c.notes.push_back(
      "fork: (a) 256 MiB of private anonymous memory, every page written: fork ms, then the child's first write to "
      "every page (copy-on-write, the parent still mapping the page), ns/page; first_touch: first writes to a fresh "
      "256 MiB private anonymous region, the same way (vmspace: AddressSpace::fault_in per page, in a new space on "
      "the same pre-touched pool; kernel: a store per page, then DONTNEED); (b) 1,000 VMAs of 16 pages, alternately "
      "read-write and read-only, 4 pages of each written: fork us.  Kernel: fork() of the bench process, timed from "
      "the call to its return in the parent (the child _exit()s at once; fork_us_bare: with neither region mapped), "
      "copy-on-write timed in a child and sent through a pipe; 4 KiB pages (MADV_NOHUGEPAGE).  fork_cpu_*: the "
      "forking thread's CPU time over the same calls (the kernel's fork runs in its context): on a loaded machine "
      "a fork longer than a scheduler slice is preempted, which its wall time shows and its CPU time does not.  "
      "Medians of " +
      std::to_string(rounds) + " rounds (" + std::to_string(3 * rounds) +
      " forks for 1,000 VMAs); vmspace children are destroyed between forks");
}

}  // namespace vmspace::cli::bench
