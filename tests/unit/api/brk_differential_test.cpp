// brk(2) against the host kernel (issue 13).  brk cannot be expressed in
// window-relative op scripts (the heap lies where the kernel put it), so a
// forked child moves its own program break through a fixed list of steps
// (sbrk-style: every break is its break at the start, B0, plus a delta; it
// never goes below B0, so malloc's memory is never touched), with mmap,
// munmap, mprotect and mseal around the heap to build obstacles, and
// reports after each step the result and the shape of its heap: every VMA
// from the first page above B0 (A0) up, relative to A0, with its
// permissions and name ([heap]).  (Below A0 the heap is malloc's, and the
// child's heap VMA there came through fork: Linux never merges a forked
// anon_vma's VMA with a new range, which vmspace, without fork, does not
// model.  So each VMA is shown clipped at A0; the first growth makes the
// child a fresh VMA there.)  The same steps then run on
// an AddressSpace whose heap starts where the child's does (brk_start =
// the child's start_brk, grown to B0), once per lock mode, and every line
// must match: the break each call returns (the old one on failure), the
// VMA boundaries (splits, the expand-only merge, the one-page gap, a heap
// VMA that was unmapped), and the [heap] names.
//
// The child does no allocation between its steps (raw system calls, a
// static output buffer): malloc would move the break itself.  It needs the
// 4 MiB above its break free (it checks; the test skips otherwise).
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "opscript/host_probe.h"
#include "opscript/kernel_runner.h"
#include "opscript/vmspace_executor.h"
#include "sync/rcu.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t P = 4096;
constexpr std::uint64_t kTaskSize = (std::uint64_t{1} << 47) - P;
constexpr long kSysMseal = 462;  // x86-64
// The child's free room above its break that the steps use.
constexpr std::uint64_t kRoom = 4ull << 20;

// One step.  Addresses are pages relative to A0 = B0 rounded up to a page;
// brk takes B0 + `delta` bytes (or `value` when absolute).
enum class Kind { brk, brk_abs, mmap, mmap_growsdown, munmap, mprotect, mseal };
struct Step {
  Kind kind;
  std::int64_t a;  // brk: delta in bytes from A0; others: page offset from A0
  std::uint64_t n;  // pages (brk_abs: the absolute value)
  int prot;
  const char* why;
};

// Page offsets are from A0; "pg(x)" for readability.
constexpr std::int64_t pg(std::int64_t x) { return x * static_cast<std::int64_t>(P); }

const std::vector<Step>& steps(std::uint64_t guard_gap_pages) {
  static std::vector<Step> s;
  if (!s.empty()) return s;
  const std::int64_t g = static_cast<std::int64_t>(guard_gap_pages);
  s = {
      {Kind::brk, 0, 0, 0, "to A0 (B0 rounded up: no VMA change)"},
      {Kind::brk, 1, 0, 0, "one byte into a new page"},
      {Kind::brk, pg(3), 0, 0, "grow: the heap VMA extends"},
      {Kind::brk, pg(3) + 5, 0, 0, "grow by bytes: a whole page more"},
      {Kind::brk, pg(2), 0, 0, "shrink"},
      {Kind::brk, pg(1) + 1, 0, 0, "shrink inside the break's page: no VMA change"},
      {Kind::brk, pg(6), 0, 0, "grow again"},
      {Kind::mmap, 10, 1, PROT_READ | PROT_WRITE, "an obstacle 4 pages above the break"},
      {Kind::brk, pg(9) + 1, 0, 0, "within a page of it: refused"},
      {Kind::brk, pg(9), 0, 0, "one free page left below it: fine"},
      {Kind::brk, pg(10), 0, 0, "up to it: refused"},
      {Kind::brk, pg(12), 0, 0, "over it: refused"},
      {Kind::mprotect, 8, 1, PROT_READ, "the heap's last page read-only"},
      {Kind::munmap, 10, 1, 0, "the obstacle goes"},
      {Kind::brk, pg(12), 0, 0, "grow: a new VMA (the last heap page has other flags)"},
      {Kind::mprotect, 8, 1, PROT_READ | PROT_WRITE, "read-write again: everything merges"},
      {Kind::mmap, 16, 2, PROT_READ | PROT_WRITE, "a mapping two pages past the break: no [heap] name"},
      {Kind::mmap, 4, 1, PROT_READ, "a foreign mapping inside the heap: [heap]"},
      {Kind::brk, pg(2), 0, 0, "shrink: the foreign mapping goes too"},
      {Kind::munmap, 1, 1, 0, "unmap the heap's top page"},
      {Kind::brk, pg(1) + 7, 0, 0, "shrink inside the old break's page: fine"},
      {Kind::brk, pg(4), 0, 0, "grow from the old break's page: a new VMA past the hole"},
      {Kind::brk, pg(1) + 9, 0, 0, "shrink it away"},
      {Kind::munmap, 0, 1, 0, "unmap the page the break is in"},
      {Kind::brk, 1, 0, 0, "shrink with nothing mapped there: refused"},
      {Kind::brk, pg(3), 0, 0, "grow: a new VMA, not merged with the old heap below the hole"},
      {Kind::brk, pg(8), 0, 0, "and further"},
      {Kind::munmap, 16, 2, 0, "the mapping past the break goes"},
      {Kind::mmap_growsdown, 20 + g, 4, PROT_READ | PROT_WRITE, "a MAP_GROWSDOWN mapping above"},
      {Kind::brk, pg(19) + 1, 0, 0, "into its guard gap: refused"},
      {Kind::brk, pg(19), 0, 0, "a page plus the gap below it: fine"},
      {Kind::munmap, 20 + g, 4, 0, "the stack goes"},
      {Kind::brk_abs, 0, 0, 0, "brk(0) queries"},
      {Kind::brk_abs, 0, kTaskSize + P, 0, "beyond the task size: refused"},
      {Kind::brk_abs, 0, ~std::uint64_t{0}, 0, "rounds up to 0: refused"},
      {Kind::brk_abs, 0, 1, 0, "below the heap's start: refused"},
      {Kind::mseal, 12, 1, 0, "seal a heap page"},
      {Kind::brk, pg(10), 0, 0, "shrink over the sealed page: refused, the head split stays"},
      {Kind::brk, pg(13) + 3, 0, 0, "shrink above it: fine"},
      {Kind::brk, pg(16), 0, 0, "grow: the VMA above the sealed page extends"},
      {Kind::mprotect, 15, 1, PROT_READ, "the last page read-only"},
      {Kind::brk, pg(18), 0, 0, "grow: a new VMA"},
  };
  return s;
}

// ---- the shape of the heap, from /proc/self/maps text ----------------------

// Appends one line per VMA in [A0, A0 + kRoom): "s-e perms name", s and e in
// pages from A0, clipped to A0.  No allocation.
void append_shape(const char* maps, std::size_t len, std::uint64_t a0, char* out, std::size_t cap,
                  std::size_t* used) {
  const char* p = maps;
  const char* end = maps + len;
  while (p < end) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
    if (nl == nullptr) nl = end;
    unsigned long long s = 0, e = 0;
    char perms[8] = {};
    int name_at = 0;
    char line[512];
    const std::size_t ll = std::min<std::size_t>(static_cast<std::size_t>(nl - p), sizeof line - 1);
    std::memcpy(line, p, ll);
    line[ll] = '\0';
    p = nl + 1;
    if (std::sscanf(line, "%llx-%llx %7s %*s %*s %*s %n", &s, &e, perms, &name_at) < 3) continue;
    if (e <= a0 || s >= a0 + kRoom) continue;
    if (s < a0) s = a0;
    const char* name = name_at > 0 && static_cast<std::size_t>(name_at) <= ll ? line + name_at : "";
    const int n = std::snprintf(out + *used, cap - *used, "  %lld-%lld %s %s\n",
                                (static_cast<long long>(s) - static_cast<long long>(a0)) / 4096,
                                (static_cast<long long>(e) - static_cast<long long>(a0)) / 4096, perms, name);
    if (n > 0) *used += std::min<std::size_t>(static_cast<std::size_t>(n), cap - *used - 1);
  }
}

// ---- the child -----------------------------------------------------------

char g_out[1 << 20];
char g_maps[1 << 20];

std::size_t read_maps_raw() {
  int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  std::size_t used = 0;
  for (;;) {
    ssize_t n = ::read(fd, g_maps + used, sizeof g_maps - 1 - used);
    if (n <= 0) break;
    used += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return used;
}

std::uint64_t read_start_brk() {
  int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char b[4096];
  ssize_t n = ::read(fd, b, sizeof b - 1);
  ::close(fd);
  if (n <= 0) return 0;
  b[n] = '\0';
  const char* p = std::strrchr(b, ')');
  if (p == nullptr) return 0;
  for (int field = 3; field <= 47; ++field) {  // field 3 follows the command name
    p = std::strchr(p + 1, ' ');
    if (p == nullptr) return 0;
  }
  return std::strtoull(p + 1, nullptr, 10);
}

// Output: "B0 <start_brk> <b0>\n", then per step "<i> <result>\n" and its
// shape lines; "SKIP <why>\n" if the room above the break is not free.
[[noreturn]] void child_main(int out_fd, const std::vector<Step>& st) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  std::size_t used = 0;
  auto emit = [&](const char* fmt, auto... args) {
    const int n = std::snprintf(g_out + used, sizeof g_out - used, fmt, args...);
    if (n > 0) used += std::min<std::size_t>(static_cast<std::size_t>(n), sizeof g_out - used - 1);
  };
  auto flush = [&] {
    std::size_t off = 0;
    while (off < used) {
      ssize_t w = ::write(out_fd, g_out + off, used - off);
      if (w <= 0 && errno != EINTR) break;
      if (w > 0) off += static_cast<std::size_t>(w);
    }
    ::_exit(0);
  };
  const std::uint64_t start_brk = read_start_brk();
  const std::uint64_t b0 = static_cast<std::uint64_t>(::syscall(SYS_brk, 0));
  const std::uint64_t a0 = (b0 + P - 1) & ~(P - 1);
  if (start_brk == 0) {
    emit("SKIP cannot read start_brk\n");
    flush();
  }
  // The room above the break must be free (plus the stack guard gap the
  // MAP_GROWSDOWN step needs below it).
  std::size_t ml = read_maps_raw();
  for (const char* p = g_maps; p < g_maps + ml;) {
    unsigned long long s = 0, e = 0;
    if (std::sscanf(p, "%llx-%llx", &s, &e) == 2 && e > a0 && s < a0 + kRoom) {
      emit("SKIP the 4 MiB above the break are not free (%llx-%llx)\n", s, e);
      flush();
    }
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(g_maps + ml - p)));
    if (nl == nullptr) break;
    p = nl + 1;
  }
  emit("B0 %llu %llu\n", static_cast<unsigned long long>(start_brk), static_cast<unsigned long long>(b0));
  ml = read_maps_raw();
  emit("init\n");
  append_shape(g_maps, ml, a0, g_out, sizeof g_out, &used);
  for (std::size_t i = 0; i < st.size(); ++i) {
    const Step& x = st[i];
    const std::uint64_t at = a0 + static_cast<std::uint64_t>(x.a) * P;
    long long r = 0;
    switch (x.kind) {
      case Kind::brk:
        r = static_cast<long long>(::syscall(SYS_brk, a0 + static_cast<std::uint64_t>(x.a))) -
            static_cast<long long>(b0);
        break;
      case Kind::brk_abs:
        r = static_cast<long long>(::syscall(SYS_brk, x.n)) - static_cast<long long>(b0);
        break;
      case Kind::mmap:
      case Kind::mmap_growsdown: {
        const int flags =
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | (x.kind == Kind::mmap_growsdown ? MAP_GROWSDOWN : 0);
        const long v = ::syscall(SYS_mmap, at, x.n * P, x.prot, flags, -1, 0);
        r = v == -1 ? -errno : static_cast<long long>(v - static_cast<long>(at));
        break;
      }
      case Kind::munmap: r = ::syscall(SYS_munmap, at, x.n * P) == -1 ? -errno : 0; break;
      case Kind::mprotect: r = ::syscall(SYS_mprotect, at, x.n * P, x.prot) == -1 ? -errno : 0; break;
      case Kind::mseal: r = ::syscall(kSysMseal, at, x.n * P, 0) == -1 ? -errno : 0; break;
    }
    emit("%zu %lld\n", i, r);
    ml = read_maps_raw();
    append_shape(g_maps, ml, a0, g_out, sizeof g_out, &used);
  }
  flush();
  ::_exit(0);  // (flush exits)
}

std::string run_child(const std::vector<Step>& st) {
  rcu::barrier();  // idle the call_rcu worker before fork (see kernel_runner.cpp)
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return "ERROR pipe2";
  const pid_t pid = ::fork();
  if (pid < 0) return "ERROR fork";
  if (pid == 0) {
    ::close(fds[0]);
    child_main(fds[1], st);
  }
  ::close(fds[1]);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "ERROR the child died (status " + std::to_string(status) + ")";
  return out;
}

// ---- the vmspace side ----------------------------------------------------

std::string run_vmspace(LockMode mode, const std::vector<Step>& st, std::uint64_t start_brk, std::uint64_t b0) {
  AddressSpaceOptions o = opscript::host_like_options(mode);
  o.brk_start = start_brk;
  AddressSpace as(o);
  const std::uint64_t a0 = (b0 + P - 1) & ~(P - 1);
  std::string out;
  char line[128];
  if (as.brk(b0) != b0) return "ERROR cannot grow the heap to B0";
  // The child's heap has pages (and an anon_vma, which merges consider).
  if (b0 > start_brk && !as.fill(b0 - 1, 0, 1).ok()) return "ERROR cannot touch the heap";
  auto shape = [&] {
    const std::string maps = as.maps();
    static char buf[1 << 16];
    std::size_t used = 0;
    append_shape(maps.data(), maps.size(), a0, buf, sizeof buf, &used);
    out.append(buf, used);
  };
  std::snprintf(line, sizeof line, "B0 %llu %llu\ninit\n", static_cast<unsigned long long>(start_brk),
                static_cast<unsigned long long>(b0));
  out += line;
  shape();
  for (std::size_t i = 0; i < st.size(); ++i) {
    const Step& x = st[i];
    const std::uint64_t at = a0 + static_cast<std::uint64_t>(x.a) * P;
    long long r = 0;
    switch (x.kind) {
      case Kind::brk:
        r = static_cast<long long>(as.brk(a0 + static_cast<std::uint64_t>(x.a))) - static_cast<long long>(b0);
        break;
      case Kind::brk_abs: r = static_cast<long long>(as.brk(x.n)) - static_cast<long long>(b0); break;
      case Kind::mmap:
      case Kind::mmap_growsdown: {
        const int flags =
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | (x.kind == Kind::mmap_growsdown ? MAP_GROWSDOWN : 0);
        const long v = as.mmap(at, x.n * P, x.prot, flags);
        r = v < 0 ? v : static_cast<long long>(v - static_cast<long>(at));
        break;
      }
      case Kind::munmap: r = as.munmap(at, x.n * P); break;
      case Kind::mprotect: r = as.mprotect(at, x.n * P, x.prot); break;
      case Kind::mseal: r = as.mseal(at, x.n * P); break;
    }
    std::snprintf(line, sizeof line, "%zu %lld\n", i, r);
    out += line;
    shape();
    std::string why;
    if (!as.validate(&why)) return out + "ERROR validate: " + why;
  }
  return out;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> v;
  std::size_t start = 0;
  while (start < s.size()) {
    std::size_t nl = s.find('\n', start);
    if (nl == std::string::npos) nl = s.size();
    v.push_back(s.substr(start, nl - start));
    start = nl + 1;
  }
  return v;
}

TEST(unit_api_brk, MatchesTheHostKernel) {
  if (!opscript::kernel_runner_available()) GTEST_SKIP() << "kernel runner unavailable in this build (ThreadSanitizer)";
  const std::uint64_t gap_pages = opscript::host_facts().stack_guard_gap / P;
  if (kRoom / P < 40 + gap_pages) GTEST_SKIP() << "the stack guard gap is larger than the room the steps use";
  const std::vector<Step>& st = steps(gap_pages);
  const std::string kernel = run_child(st);
  ASSERT_FALSE(kernel.starts_with("ERROR")) << kernel;
  if (kernel.starts_with("SKIP")) GTEST_SKIP() << kernel;
  unsigned long long start_brk = 0, b0 = 0;
  ASSERT_EQ(std::sscanf(kernel.c_str(), "B0 %llu %llu", &start_brk, &b0), 2) << kernel;
  std::printf("%s\nthe child's heap: start_brk %#llx, break %#llx\n",
              opscript::host_facts_line(opscript::host_facts()).c_str(), start_brk, b0);
  if (const char* v = std::getenv("VMSPACE_BRK_VERBOSE"); v != nullptr && *v == '1') std::printf("%s", kernel.c_str());
  const std::vector<std::string> k = split_lines(kernel);
  for (LockMode mode : kAllLockModes) {
    const std::string ours = run_vmspace(mode, st, start_brk, b0);
    const std::vector<std::string> v = split_lines(ours);
    // Report the first difference with the step that made it.
    std::size_t i = 0;
    while (i < k.size() && i < v.size() && k[i] == v[i]) ++i;
    if (i == k.size() && i == v.size()) continue;
    std::string step = "?";
    for (std::size_t j = std::min(i, k.size() - 1) + 1; j-- > 0;) {
      std::size_t n = 0;
      if (std::sscanf(k[j].c_str(), "%zu", &n) == 1 && k[j][0] != ' ') {
        step = k[j] + " (" + st[n].why + ")";
        break;
      }
    }
    std::string ctx;
    for (std::size_t j = i >= 6 ? i - 6 : 0; j < i + 4; ++j)
      ctx += "\n    kernel: " + (j < k.size() ? k[j] : "") + "\n    vmspace: " + (j < v.size() ? v[j] : "");
    ADD_FAILURE() << lock_mode_name(mode) << ": differs at line " << i << ", after step " << step << ctx;
  }
  std::printf("%zu steps, the same in every lock mode\n", st.size());
}

}  // namespace
}  // namespace vmspace
