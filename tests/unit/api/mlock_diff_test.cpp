// SPDX-License-Identifier: MIT
// mlock, mlock2, munlock, mlockall, munlockall and mseal against the host
// kernel: what op scripts cannot show.  Each scenario is a fixed sequence
// of calls.  A forked child runs it on the host kernel with raw
// syscall(2), as a process with or without CAP_IPC_LOCK and with the
// scenario's RLIMIT_MEMLOCK, and reports after every call its result, then
// for every VMA in the window its /proc/self/smaps maps line, Rss:,
// Locked: and VmFlags:, and /proc/self/status VmLck.  The same sequence
// then runs on an AddressSpace configured like that process
// (host_like_options, cap_ipc_lock and rlimit_memlock set to match), once
// per lock mode, and every report must be the same: results (errno),
// VMA boundaries, flags (lo, lf, sl...), what is resident and locked, and
// the locked total (locked_vm accounting).
//
// The child starts with nothing locked (fork clears VM_LOCKED, locked_vm
// and MCL_FUTURE), so its VmLck is the window's own until an mlockall
// with MCL_CURRENT locks the whole process: steps from there up to the
// next munlockall do not compare VmLck.  MCL_CURRENT without MCL_ONFAULT
// would fault in the whole test process and is never run in the child
// (tests/unit/mm/mlock_test.cpp covers it).  A scenario runs in a child of
// its own, so its seals and MCL_FUTURE die with it.  The child allocates
// nothing after fork (MCL_FUTURE under a small RLIMIT_MEMLOCK would make
// an allocator's mmap fail): it reports from static buffers with write(2).
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "vmspace/mman.h"
#include "mm/mm_types.h"
#include "mm/mmap_lock.h"
#include "opscript/host_probe.h"
#include "opscript/kernel_runner.h"
#include "opscript/result.h"
#include "opscript/vmspace_executor.h"
#include "sync/rcu.h"
#include "vmspace/address_space.h"

#ifndef SYS_mseal
#define SYS_mseal 462
#endif
#ifndef SYS_mlock2
#define SYS_mlock2 325
#endif

namespace vmspace::opscript {
namespace {

constexpr std::uint64_t P = kPageSize;
constexpr std::uint64_t W = kDefaultWindowBase;
constexpr std::uint64_t w(std::uint64_t page) { return W + page * P; }
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr int kPriv = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
constexpr int kShared = MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED;
constexpr int kDrop = MAP_DROPPABLE | MAP_ANONYMOUS | MAP_FIXED;
constexpr std::uint64_t kUnset = ~std::uint64_t{0};

enum class Op : std::uint8_t {
  mmap, munmap, mprotect, mremap, madvise, touch, mlock, munlock, mlock2, mlockall, munlockall, mseal
};
constexpr const char* kOpNames[] = {"mmap",  "munmap", "mprotect", "mremap",   "madvise",    "touch",
                                    "mlock", "munlock", "mlock2",  "mlockall", "munlockall", "mseal"};

struct Step {
  Op op;
  std::uint64_t a = 0, b = 0, c = 0, d = 0, e = 0;  // the call's arguments, in order
  bool vmlck = true;                               // compare VmLck after it
};

Step mmap_(std::uint64_t addr, std::uint64_t len, int prot, int flags) {
  return {Op::mmap, addr, len, static_cast<std::uint64_t>(prot), static_cast<std::uint64_t>(flags)};
}
Step munmap_(std::uint64_t addr, std::uint64_t len) { return {Op::munmap, addr, len}; }
Step mprotect_(std::uint64_t addr, std::uint64_t len, int prot) {
  return {Op::mprotect, addr, len, static_cast<std::uint64_t>(prot)};
}
Step mremap_(std::uint64_t addr, std::uint64_t old_len, std::uint64_t new_len, int flags, std::uint64_t to = 0) {
  return {Op::mremap, addr, old_len, new_len, static_cast<std::uint64_t>(flags), to};
}
Step madvise_(std::uint64_t addr, std::uint64_t len, int advice) {
  return {Op::madvise, addr, len, static_cast<std::uint64_t>(advice)};
}
Step touch_(std::uint64_t addr, std::uint64_t len) { return {Op::touch, addr, len}; }
Step mlock_(std::uint64_t addr, std::uint64_t len) { return {Op::mlock, addr, len}; }
Step munlock_(std::uint64_t addr, std::uint64_t len) { return {Op::munlock, addr, len}; }
Step mlock2_(std::uint64_t addr, std::uint64_t len, unsigned flags) { return {Op::mlock2, addr, len, flags}; }
Step mlockall_(int flags, bool vmlck = true) {
  Step s{Op::mlockall, static_cast<std::uint64_t>(static_cast<unsigned>(flags))};
  s.vmlck = vmlck;
  return s;
}
Step munlockall_() { return {Op::munlockall}; }
Step mseal_(std::uint64_t addr, std::uint64_t len, std::uint64_t flags = 0) { return {Op::mseal, addr, len, flags}; }
// A step after which VmLck is not compared (MCL_CURRENT locked the child).
Step nolck(Step s) {
  s.vmlck = false;
  return s;
}

std::string step_text(const Step& s) {
  auto arg = [](std::uint64_t v) {
    if (v >= W && v - W < kWindowSize) return "W+" + hex(v - W);
    return hex(v);
  };
  std::string t = kOpNames[static_cast<int>(s.op)];
  switch (s.op) {
    case Op::munlockall: return t + "()";
    case Op::mlockall: return t + "(" + hex(s.a) + ")";
    case Op::mremap:
      return t + "(" + arg(s.a) + ", " + hex(s.b) + ", " + hex(s.c) + ", " + hex(s.d) + ", " + arg(s.e) + ")";
    case Op::mmap:
    case Op::mprotect:
    case Op::madvise:
    case Op::mlock2:
    case Op::mseal:
      return t + "(" + arg(s.a) + ", " + hex(s.b) + ", " + hex(s.c) + (s.op == Op::mmap ? ", " + hex(s.d) : "") + ")";
    default: return t + "(" + arg(s.a) + ", " + hex(s.b) + ")";
  }
}

struct Scenario {
  bool cap_ipc_lock = true;
  std::uint64_t rlimit_memlock = kUnset;  // bytes; kUnset: the host's
  std::vector<Step> steps;
};

// ---------------------------------------------------------------------------
// The kernel child.  No allocation after fork: static buffers, write(2).

char g_smaps[16 << 20];
char g_out[1 << 20];
std::size_t g_out_len = 0;
int g_out_fd = -1;

void out_flush() {
  const char* p = g_out;
  std::size_t n = g_out_len;
  while (n > 0) {
    const ssize_t r = ::write(g_out_fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) ::_exit(4);
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  g_out_len = 0;
}
void out(const char* s, std::size_t n) {
  if (g_out_len + n + 1 > sizeof g_out) out_flush();
  std::memcpy(g_out + g_out_len, s, n);
  g_out_len += n;
}
void out_line(const char* s, std::size_t n) {
  out(s, n);
  out("\n", 1);
}
void outf(const char* fmt, long v) {
  char buf[96];
  const int n = std::snprintf(buf, sizeof buf, fmt, v);
  out_line(buf, static_cast<std::size_t>(n));
}
[[noreturn]] void child_fail(const char* what) {
  char buf[160];
  const int n = std::snprintf(buf, sizeof buf, "X %s: %s", what, std::strerror(errno));
  out_line(buf, static_cast<std::size_t>(n));
  out_flush();
  ::_exit(3);
}

std::size_t read_file(const char* path, char* buf, std::size_t cap) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) child_fail("open /proc");
  std::size_t used = 0;
  for (;;) {
    if (used + 1 >= cap) child_fail("/proc file too large");
    const ssize_t n = ::read(fd, buf + used, cap - 1 - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) child_fail("read /proc");
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
  }
  ::close(fd);
  buf[used] = '\0';
  return used;
}

// Every smaps block of a VMA starting in the window, as "M <line>".
void report_window() {
  const std::size_t n = read_file("/proc/self/smaps", g_smaps, sizeof g_smaps);
  bool in = false;
  for (std::size_t pos = 0; pos < n;) {
    const char* line = g_smaps + pos;
    const char* nl = static_cast<const char*>(std::memchr(line, '\n', n - pos));
    const std::size_t len = nl != nullptr ? static_cast<std::size_t>(nl - line) : n - pos;
    pos += len + 1;
    // A block starts with "start-end perms ...": hex, then '-'.
    const char* dash = static_cast<const char*>(std::memchr(line, '-', len));
    bool header = dash != nullptr && dash != line;
    for (const char* c = line; header && c < dash; ++c) header = std::isxdigit(static_cast<unsigned char>(*c)) != 0;
    if (header) {
      const std::uint64_t start = std::strtoull(line, nullptr, 16);
      in = start >= W && start - W < kWindowSize;
    }
    if (!in) continue;
    out("M ", 2);
    out_line(line, len);
  }
  read_file("/proc/self/status", g_smaps, sizeof g_smaps);
  const char* v = std::strstr(g_smaps, "VmLck:");
  outf("L %ld", v != nullptr ? std::strtol(v + 6, nullptr, 10) : -1);
}

long raw_step(const Step& s) {
  long r = 0;
  switch (s.op) {
    case Op::mmap: r = ::syscall(SYS_mmap, s.a, s.b, s.c, s.d, -1L, 0L); break;
    case Op::munmap: r = ::syscall(SYS_munmap, s.a, s.b); break;
    case Op::mprotect: r = ::syscall(SYS_mprotect, s.a, s.b, s.c); break;
    case Op::mremap: r = ::syscall(SYS_mremap, s.a, s.b, s.c, s.d, s.e); break;
    case Op::madvise: r = ::syscall(SYS_madvise, s.a, s.b, s.c); break;
    case Op::touch:
      for (std::uint64_t a = s.a; a < s.a + s.b; a += P) *reinterpret_cast<volatile char*>(a) = 1;
      break;
    case Op::mlock: r = ::syscall(SYS_mlock, s.a, s.b); break;
    case Op::munlock: r = ::syscall(SYS_munlock, s.a, s.b); break;
    case Op::mlock2: r = ::syscall(SYS_mlock2, s.a, s.b, s.c); break;
    case Op::mlockall: r = ::syscall(SYS_mlockall, s.a); break;
    case Op::munlockall: r = ::syscall(SYS_munlockall); break;
    case Op::mseal: r = ::syscall(SYS_mseal, s.a, s.b, s.c); break;
  }
  return r == -1 ? -errno : r;
}

// Frames: "K <why>" (cannot set the process up: skip), then per step
// "R <i> <ret>", "M <smaps line>"..., "L <VmLck kB>"; "D" at the end;
// "X <error>".
[[noreturn]] void child_main(const Scenario& sc, int fd) {
  g_out_fd = fd;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  struct rlimit no_core = {0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);
  if (sc.rlimit_memlock != kUnset) {
    struct rlimit rl = {sc.rlimit_memlock, sc.rlimit_memlock};
    if (::setrlimit(RLIMIT_MEMLOCK, &rl) != 0) {
      out_line("K cannot set RLIMIT_MEMLOCK", 27);
      out_flush();
      ::_exit(0);
    }
  }
  if (!sc.cap_ipc_lock) {
    // Drop CAP_IPC_LOCK from the effective and permitted sets (the rest,
    // CAP_SYS_RAWIO included, stays as host_facts() found it).
    __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capget, &hdr, data) != 0) child_fail("capget");
    data[0].effective &= ~(1u << CAP_IPC_LOCK);
    data[0].permitted &= ~(1u << CAP_IPC_LOCK);
    if (::syscall(SYS_capset, &hdr, data) != 0) child_fail("capset");
  }
  for (std::size_t i = 0; i < sc.steps.size(); ++i) {
    const long r = raw_step(sc.steps[i]);
    char buf[64];
    const int n = std::snprintf(buf, sizeof buf, "R %zu %ld", i, r);
    out_line(buf, static_cast<std::size_t>(n));
    report_window();
  }
  out_line("D", 1);
  out_flush();
  ::_exit(0);
}

// What one side reports after one step.
struct Report {
  long ret = 0;
  std::vector<std::string> vmas;  // per VMA: "maps line | Rss n | Locked n | VmFlags ..."
  long vmlck = -1;                // kB
};

// The window's VMAs from smaps text (the kernel child's window blocks, or
// AddressSpace::smaps()), normalized: the op-script maps line, Rss and
// Locked in kB, and VmFlags without "sd" (soft-dirty, which vmspace does
// not model and some kernels set on every VMA).
std::vector<std::string> window_vmas(const std::string& text) {
  std::vector<std::string> vmas;
  const Window win;
  std::istringstream in(text);
  std::string line;
  bool in_window = false;
  while (std::getline(in, line)) {
    const std::size_t dash = line.find('-');
    const bool header = dash != std::string::npos && dash > 0 &&
                        line.find_first_not_of("0123456789abcdef") == dash;
    if (header) {
      const std::vector<MapEntry> e = window_maps(parse_proc_maps(line + "\n"), win);
      in_window = e.size() == 1 && e[0].start == std::strtoull(line.c_str(), nullptr, 16);
      if (in_window) vmas.push_back(format_map_line(e[0], win));
      continue;
    }
    if (!in_window) continue;
    std::istringstream f(line);
    std::string key;
    f >> key;
    if (key == "Rss:" || key == "Locked:") {
      long kb = 0;
      f >> kb;
      vmas.back() += " | " + key + " " + std::to_string(kb);
    } else if (key == "VmFlags:") {
      vmas.back() += " | VmFlags:";
      for (std::string fl; f >> fl;)
        if (fl != "sd") vmas.back() += " " + fl;
    }
  }
  return vmas;
}

struct KernelRun {
  std::string error, skip;
  std::vector<Report> reports;
};

KernelRun run_kernel(const Scenario& sc) {
  KernelRun kr;
  rcu::barrier();  // idle the call_rcu worker before fork (see kernel_runner.cpp)
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    kr.error = "pipe2 failed";
    return kr;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    kr.error = "fork failed";
    return kr;
  }
  if (pid == 0) {
    ::close(fds[0]);
    child_main(sc, fds[1]);
  }
  ::close(fds[1]);
  std::string text;
  char chunk[65536];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      kr.error = "kernel child timed out";
      ::kill(pid, SIGKILL);
      break;
    }
    struct pollfd pfd = {fds[0], POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(std::min<long long>(left, 1000))) <= 0) continue;
    const ssize_t n = ::read(fds[0], chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(chunk, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::istringstream in(text);
  std::string line, block;
  bool done = false;
  while (std::getline(in, line)) {
    if (line.starts_with("K ")) {
      kr.skip = line.substr(2);
      return kr;
    }
    if (line.starts_with("X ")) {
      kr.error = "kernel child: " + line.substr(2);
      return kr;
    }
    if (line.starts_with("R ")) {
      std::istringstream f(line.substr(2));
      std::size_t i = 0;
      Report r;
      f >> i >> r.ret;
      kr.reports.push_back(r);
      block.clear();
    } else if (line.starts_with("M ")) {
      block += line.substr(2) + "\n";
    } else if (line.starts_with("L ")) {
      kr.reports.back().vmas = window_vmas(block);
      kr.reports.back().vmlck = std::stol(line.substr(2));
    } else if (line == "D") {
      done = true;
    }
  }
  if (!done && kr.error.empty())
    kr.error = "kernel child died (status " + std::to_string(status) + ") after step " +
               std::to_string(kr.reports.size());
  return kr;
}

// ---------------------------------------------------------------------------
// The vmspace side.

long api_step(AddressSpace& as, const Step& s) {
  switch (s.op) {
    case Op::mmap: return as.mmap(s.a, s.b, static_cast<int>(s.c), static_cast<int>(s.d));
    case Op::munmap: return as.munmap(s.a, s.b);
    case Op::mprotect: return as.mprotect(s.a, s.b, static_cast<int>(s.c));
    case Op::mremap: return as.mremap(s.a, s.b, s.c, static_cast<int>(s.d), s.e);
    case Op::madvise: return as.madvise(s.a, s.b, static_cast<int>(s.c));
    case Op::touch:
      for (std::uint64_t a = s.a; a < s.a + s.b; a += P)
        if (!as.fill(a, 1, 1).ok()) return -EFAULT;
      return 0;
    case Op::mlock: return as.mlock(s.a, s.b);
    case Op::munlock: return as.munlock(s.a, s.b);
    case Op::mlock2: return as.mlock2(s.a, s.b, static_cast<unsigned>(s.c));
    case Op::mlockall: return as.mlockall(static_cast<int>(s.a));
    case Op::munlockall: return as.munlockall();
    case Op::mseal: return as.mseal(s.a, s.b, s.c);
  }
  return 0;
}

std::string report_text(const Report& r, bool vmlck) {
  std::string t = "  = " + (r.ret < 0 ? "-" + errno_name(static_cast<int>(-r.ret)) : hex(static_cast<std::uint64_t>(r.ret)));
  for (const std::string& v : r.vmas) t += "\n    " + v;
  if (vmlck) t += "\n    VmLck " + std::to_string(r.vmlck) + " kB";
  return t;
}

void run(const Scenario& sc) {
  if (!kernel_runner_available()) GTEST_SKIP() << "kernel runner unavailable in this build (ThreadSanitizer)";
  if (sc.cap_ipc_lock && !host_facts().cap_ipc_lock) GTEST_SKIP() << "this process has no CAP_IPC_LOCK";
  const KernelRun kr = run_kernel(sc);
  if (!kr.skip.empty()) GTEST_SKIP() << kr.skip;
  ASSERT_TRUE(kr.error.empty()) << kr.error;
  ASSERT_EQ(kr.reports.size(), sc.steps.size());
  for (LockMode mode : kAllLockModes) {
    AddressSpaceOptions o = host_like_options(mode);
    o.cap_ipc_lock = sc.cap_ipc_lock;
    if (sc.rlimit_memlock != kUnset) o.rlimit_memlock = sc.rlimit_memlock;
    AddressSpace as(o);
    int mismatches = 0;
    for (std::size_t i = 0; i < sc.steps.size() && mismatches < 5; ++i) {
      const Step& s = sc.steps[i];
      Report v;
      v.ret = api_step(as, s);
      v.vmas = window_vmas(as.smaps());
      mm::mmap_read_lock(as.mm());
      v.vmlck = static_cast<long>(as.mm()->locked_vm * 4);
      mm::mmap_read_unlock(as.mm());
      std::string why;
      EXPECT_TRUE(as.validate(&why)) << "step " << i << " " << step_text(s) << ": " << why;
      const Report& k = kr.reports[i];
      if (k.ret == v.ret && k.vmas == v.vmas && (!s.vmlck || k.vmlck == v.vmlck)) continue;
      ++mismatches;
      ADD_FAILURE() << lock_mode_name(mode) << ": step " << i << " " << step_text(s) << " differs\n kernel:\n"
                    << report_text(k, s.vmlck) << "\n vmspace:\n" << report_text(v, s.vmlck);
    }
  }
}

// ---------------------------------------------------------------------------
// The scenarios (window pages; the notes say what Linux does).

TEST(unit_api_mlock_diff, RangesSplitMergeAndCount) {
  run({true, kUnset, {
      mmap_(w(0), 8 * P, kRW, kPriv),
      mlock_(w(2), 2 * P),                 // split in three
      mlock_(w(4), P),                     // merges with the locked piece
      mlock2_(w(3), P, MLOCK_ONFAULT),     // on-fault piece: never merges with plain locked
      mlock_(w(3), P),                     // back to one locked VMA, no count change
      munlock_(w(0), 8 * P),               // all folded back
      mlock_(w(1) + 0x100, P),             // unaligned: two pages
      munlock_(w(2) + 1, 1),
      mlock_(w(100), 0),                   // nothing, even unmapped
      mlock_(w(0), ~std::uint64_t{0}),     // rounds to 0
      mlock_(w(50), P),                    // starts in a hole
      mmap_(w(10), 4 * P, kRW, kPriv),
      mmap_(w(16), 2 * P, kRW, kPriv),
      mlock_(w(11), 8 * P),                // interior hole: the part before is done
      mlock_(w(16), 4 * P),                // trailing hole
      munlock_(w(12), 8 * P),
      mlock_(w(0), 20 * P),
      munmap_(w(6), 2 * P),                // gives its count back
      mmap_(w(4), 2 * P, kRW, kPriv),      // MAP_FIXED over locked pages too
      mlock2_(w(0), 8 * P, 2),             // bad flags
      mlock2_(w(0), P, ~0u),
      mlock_(~std::uint64_t{0} & ~(P - 1), 2 * P),  // wraps: -EINVAL
      munlock_(~std::uint64_t{0} & ~(P - 1), 2 * P),
      mlock_(std::uint64_t{1} << 47, P),   // beyond TASK_SIZE: a hole
      mprotect_(w(0), 2 * P, PROT_READ),   // keeps the lock
      mlock_(w(0), 4 * P),
      munlockall_(),
  }});
}

TEST(unit_api_mlock_diff, Populate) {
  run({true, kUnset, {
      mmap_(w(0), 4 * P, kRW, kPriv),
      mlock_(w(0), 4 * P),                     // faulted in
      mmap_(w(8), 4 * P, kRW, kPriv),
      mlock2_(w(8), 4 * P, MLOCK_ONFAULT),     // counted, nothing resident
      touch_(w(9), P),
      mlock_(w(8), 4 * P),                     // now faulted in
      mmap_(w(20), 2 * P, PROT_NONE, kPriv),
      mmap_(w(22), 2 * P, kRW, kPriv),
      mlock_(w(20), 4 * P),                    // -ENOMEM, both locked, RW not faulted in
      mmap_(w(30), 2 * P, kRW, kPriv),
      mmap_(w(32), 2 * P, PROT_NONE, kPriv),
      mlock_(w(30), 4 * P),                    // -ENOMEM after faulting RW in
      mmap_(w(40), 2 * P, PROT_NONE, kPriv),
      mlock2_(w(40), 2 * P, MLOCK_ONFAULT),    // fine on fault
      mmap_(w(50), 2 * P, PROT_WRITE, kPriv),
      mlock_(w(50), 2 * P),                    // write-only: faulted in
      mmap_(w(60), 2 * P, PROT_READ, kPriv),
      mlock_(w(60), 2 * P),                    // read-only: the zero page
      mmap_(w(70), 2 * P, PROT_EXEC, kPriv),
      mlock_(w(70), 2 * P),                    // -ENOMEM where execute-only has a key
      mmap_(w(80), 4 * P, kRW, kShared),
      mlock_(w(80), 4 * P),
      mremap_(w(80), 0, 4 * P, MREMAP_MAYMOVE | MREMAP_FIXED, w(90)),  // same pages twice
      mlock_(w(90), 4 * P),                    // Locked: is the share
      mmap_(w(100), 4 * P, kRW, kPriv | MAP_LOCKED),
      mmap_(w(110), 2 * P, PROT_READ, kPriv | MAP_LOCKED),
      mprotect_(w(110), 2 * P, kRW),           // locked private becoming writable: COW broken
      mmap_(w(120), 2 * P, PROT_READ, kPriv),
      mlock2_(w(120), 2 * P, MLOCK_ONFAULT),
      mprotect_(w(120), 2 * P, kRW),           // ... unless on fault
      mmap_(w(130), 2 * P, kRW, kPriv),
      mlock_(w(130), 2 * P),
      mremap_(w(130), 2 * P, 4 * P, 0),        // growth faulted in and counted
      mmap_(w(140), 2 * P, kRW, kPriv),
      mlock2_(w(140), 2 * P, MLOCK_ONFAULT),
      mremap_(w(140), 2 * P, 4 * P, 0),        // counted, not faulted in
      mremap_(w(130), 4 * P, 4 * P, MREMAP_MAYMOVE | MREMAP_FIXED, w(150)),  // moves with its count
      madvise_(w(150), P, MADV_DONTNEED),      // -EINVAL on locked memory
      madvise_(w(150), P, MADV_DONTNEED_LOCKED),
      mmap_(w(160), 4 * P, kRW, kPriv),
      mlock_(w(160), 4 * P),
      mremap_(w(161), 2 * P, 2 * P, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, w(170)),  // VmLck drifts
      mmap_(w(180), 4 * P, kRW, kPriv),
      madvise_(w(181), P, MADV_GUARD_INSTALL),
      mlock_(w(180), 4 * P),                   // -ENOMEM at the guard marker, after faulting 180 in
      madvise_(w(182), P, MADV_GUARD_INSTALL), // -EINVAL on locked memory
      munlockall_(),
  }});
}

TEST(unit_api_mlock_diff, MlockallAndFutureMappings) {
  run({true, kUnset, {
      mmap_(w(0), 2 * P, kRW, kPriv),
      mmap_(w(2), 2 * P, PROT_READ, kPriv),
      mmap_(w(10), 2 * P, PROT_NONE, kPriv),
      mlockall_(MCL_FUTURE),                      // existing VMAs untouched
      mmap_(w(20), 2 * P, kRW, kPriv),            // locked, faulted in
      mmap_(w(22), 2 * P, kRW, kPriv),            // merges with it
      mmap_(w(30), 2 * P, kRW, kDrop),            // never locked, still faulted in
      mmap_(w(32), 2 * P, kRW, kDrop),            // and no merge
      mmap_(w(36), 2 * P, kRW, kPriv | MAP_POPULATE),
      munlockall_(),
      mmap_(w(40), 4 * P, kRW, kDrop),
      mlock_(w(41), P),                           // droppable: no split, not counted, faulted in
      mlockall_(MCL_FUTURE | MCL_ONFAULT),
      mmap_(w(50), 2 * P, kRW, kPriv | MAP_POPULATE),  // lo lf: not even MAP_POPULATE faults in
      mmap_(w(52), P, kRW, kPriv | MAP_LOCKED),   // the same flags: merges
      mlockall_(MCL_CURRENT | MCL_ONFAULT, false),  // everything, and MCL_FUTURE ends
      nolck(mmap_(w(60), P, kRW, kPriv)),
      nolck(mlock_(w(60), P)),
      nolck(mlockall_(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)),
      nolck(mmap_(w(62), 2 * P, kRW, kPriv)),
      nolck(munlock_(w(62), P)),
      munlockall_(),                              // all unlocked: equal neighbours merge
      mmap_(w(64), P, kRW, kPriv),
      mlockall_(0),
      mlockall_(MCL_ONFAULT),
      mlockall_(8),
      mlockall_(-1),
      mlockall_(MCL_FUTURE | 0x10),
  }});
}

TEST(unit_api_mlock_diff, NoLimitNoCapability) {
  run({false, 0, {
      mmap_(w(0), 4 * P, kRW, kPriv),
      mlock_(w(0), P),                  // -EPERM
      mlock_(w(0), 0),                  // -EPERM even for len 0
      mlock2_(w(0), P, MLOCK_ONFAULT),
      mlock2_(w(0), P, 4),              // -EINVAL first
      munlock_(w(0), P),                // always allowed
      mlockall_(MCL_FUTURE),
      mlockall_(0),
      mlockall_(MCL_ONFAULT),
      munlockall_(),
      mmap_(w(8), P, kRW, kPriv | MAP_LOCKED),  // -EPERM
      mseal_(w(0), P),
  }});
}

TEST(unit_api_mlock_diff, MemlockLimit) {
  run({false, 4 * P, {
      mmap_(w(0), 8 * P, kRW, kPriv),
      mlock_(w(0), 2 * P),
      mlock_(w(0), 4 * P),                        // the 2 locked ones are discounted
      mlock_(w(0), 5 * P),                        // -ENOMEM
      mlock_(w(100), P),                          // -ENOMEM before the hole is seen
      mlock2_(w(4), P, MLOCK_ONFAULT),
      mmap_(w(20), P, kRW, kPriv | MAP_LOCKED),   // -EAGAIN
      mremap_(w(0), 4 * P, 5 * P, MREMAP_MAYMOVE),  // -EAGAIN
      munlock_(w(3), P),
      mlock2_(w(4), P, MLOCK_ONFAULT),            // on fault counts too
      mlockall_(MCL_CURRENT | MCL_ONFAULT),       // -ENOMEM: the space is larger
      mlockall_(MCL_FUTURE),
      mmap_(w(20), P, kRW, kPriv),                // -EAGAIN
      munlock_(w(0), 2 * P),
      mmap_(w(20), P, kRW, kPriv),                // locked
      munlockall_(),
      mlock_(w(0), 4 * P),
      munlock_(w(0), 8 * P),
  }});
}

TEST(unit_api_mlock_diff, SealArgumentsAndHoles) {
  run({true, kUnset, {
      mmap_(w(0), 4 * P, kRW, kPriv),
      mmap_(w(6), 2 * P, kRW, kPriv),
      mseal_(w(0), P, 1),                         // flags
      mseal_(w(0), P, std::uint64_t{1} << 32),
      mseal_(w(0) + 1, P),                        // unaligned
      mseal_(w(0), ~std::uint64_t{0}),            // rounds up to 0
      mseal_(~std::uint64_t{0} & ~(P - 1), 2 * P),  // wraps
      mseal_(w(100), 0),                          // len 0
      mseal_(w(0), 8 * P),                        // interior hole: nothing sealed
      mseal_(w(6), 4 * P),                        // tail hole
      mseal_(w(5), 2 * P),                        // starts in a hole
      mseal_(0x7ffffffff000, 2 * P),              // beyond TASK_SIZE
      mseal_(w(2), P),                            // splits
      mseal_(w(2), P),                            // again: nothing
      mseal_(w(1), 3 * P),                        // merges the sealed pieces
      mseal_(w(6), 2 * P),
      munmap_(w(4), 2 * P),                       // the hole between them
      mmap_(w(4), 2 * P, kRW, kPriv),             // fresh: never merges with sealed
      mlock_(w(2), P),                            // mlock splits a sealed VMA
      munlock_(w(0), 8 * P),
  }});
}

TEST(unit_api_mlock_diff, SealRefusesChanges) {
  run({true, kUnset, {
      mmap_(w(0), 8 * P, kRW, kPriv),
      mseal_(w(4), 2 * P),
      touch_(w(4), 2 * P),
      munmap_(w(4), P),
      munmap_(w(5), P),
      munmap_(w(0), 64 * P),
      munmap_(w(4), 0),                           // -EINVAL first
      mmap_(w(4), 2 * P, kRW, kPriv),
      mmap_(w(5), 4 * P, PROT_READ, kShared),
      mmap_(w(4), P, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE),  // -EEXIST
      mprotect_(w(4), 2 * P, kRW),                // same protection: -EPERM
      mprotect_(w(5), P, PROT_READ),
      mprotect_(w(4), 0, PROT_READ),
      mremap_(w(4), 2 * P, P, 0),
      mremap_(w(4), 2 * P, 2 * P, 0),
      mremap_(w(4), 2 * P, 4 * P, MREMAP_MAYMOVE),
      mremap_(w(4), 2 * P, 2 * P, MREMAP_MAYMOVE | MREMAP_FIXED, w(20)),
      mremap_(w(4), 2 * P, 2 * P, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, w(20)),
      mmap_(w(30), 2 * P, kRW, kPriv),
      mremap_(w(30), 2 * P, 2 * P, MREMAP_MAYMOVE | MREMAP_FIXED, w(5)),   // onto it
      mremap_(w(30), P, 2 * P, MREMAP_MAYMOVE | MREMAP_FIXED, w(4)),
      mremap_(w(3), 2 * P, P, 0),                 // a shrink reaching into it
      mmap_(w(3), 2 * P, kRW, kPriv),             // -EPERM, its head split stays
      munmap_(w(2), 3 * P),                       // likewise
      mprotect_(w(0), 8 * P, PROT_READ),          // the part before changes
      mlock_(w(4), 2 * P),                        // not refused
      munlock_(w(4), 2 * P),
      madvise_(w(4), 2 * P, MADV_DONTNEED),       // writable: not protected
      madvise_(w(4), P, MADV_RANDOM),             // splits it
      mlockall_(MCL_CURRENT | MCL_ONFAULT, false),
      munlockall_(),
  }});
}

}  // namespace
}  // namespace vmspace::opscript
