// host_probe.cpp: see host_probe.h.
#include "opscript/host_probe.h"
#include "vmspace/mman.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "opscript/kernel_runner.h"
#include "sync/rcu.h"

namespace vmspace::opscript {

namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kPmd = 2ull << 20;

// ---- settings the kernel states ------------------------------------------

std::string read_text(const char* path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

template <class T>
bool read_number(const char* path, T& out) {
  std::ifstream in(path);
  T v{};
  if (!(in >> v)) return false;
  out = v;
  return true;
}

// The bracketed word of a sysfs choice file ("always [madvise] never").
std::string sysfs_choice(const char* path) {
  std::string t = read_text(path);
  auto open = t.find('['), close = t.find(']');
  if (open == std::string::npos || close == std::string::npos || close < open) return {};
  return t.substr(open + 1, close - open - 1);
}

bool thp_from_word(const std::string& w, ThpMode& out) {
  if (w == "always") out = ThpMode::always;
  else if (w == "madvise") out = ThpMode::madvise;
  else if (w == "never") out = ThpMode::never;
  else return false;
  return true;
}

std::uint64_t meminfo_kb(const std::string& text, std::string_view key) {
  std::size_t at = text.find(std::string(key) + ":");
  if (at == std::string::npos) return 0;
  return std::strtoull(text.c_str() + at + key.size() + 1, nullptr, 10);
}

std::uint64_t rlimit_bytes(int resource, std::uint64_t fallback) {
  struct rlimit r{};
  if (::getrlimit(resource, &r) != 0) return fallback;
  return r.rlim_cur == RLIM_INFINITY ? UINT64_MAX : static_cast<std::uint64_t>(r.rlim_cur);
}

// Everything that needs no child: sysctls, sysfs, rlimits.
void read_settings(HostFacts& f) {
  struct utsname u{};
  if (::uname(&u) == 0) f.kernel = u.release;
  read_number("/proc/sys/vm/mmap_min_addr", f.dac_mmap_min_addr);
  // Until the child says otherwise: the internal floor is at least
  // CONFIG_LSM_MMAP_MIN_ADDR's usual 65536.
  f.mmap_min_addr = std::max<std::uint64_t>(f.dac_mmap_min_addr, 65536);
  read_number("/proc/sys/vm/max_map_count", f.max_map_count);
  f.rlimit_stack = rlimit_bytes(RLIMIT_STACK, f.rlimit_stack);
  f.rlimit_memlock = rlimit_bytes(RLIMIT_MEMLOCK, f.rlimit_memlock);
  f.cap_sys_rawio = ::geteuid() == 0;
  f.cap_ipc_lock = ::geteuid() == 0;

  // THP: the 2 MiB size's own setting unless it inherits the global one;
  // a process with PR_SET_THP_DISABLE gets none; no sysfs: not built in.
  std::string global = sysfs_choice("/sys/kernel/mm/transparent_hugepage/enabled");
  if (global.empty()) {
    f.thp = ThpMode::never;
    f.thp_align = false;
  } else {
    thp_from_word(global, f.thp);
    std::string pmd = sysfs_choice("/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/enabled");
    if (!pmd.empty() && pmd != "inherit") thp_from_word(pmd, f.thp);
  }
  if (::prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1) f.thp = ThpMode::never;

  int policy = 0;
  read_number("/proc/sys/vm/overcommit_memory", policy);
  const std::string meminfo = read_text("/proc/meminfo");
  switch (policy) {
    case 1:
      f.overcommit = Overcommit::always;
      f.overcommit_limit_pages = 0;
      break;
    case 2: {
      // The room left under CommitLimit now, less the admin reserve for
      // unprivileged processes: an estimate (other processes move it).
      f.overcommit = Overcommit::never;
      std::uint64_t limit = meminfo_kb(meminfo, "CommitLimit");
      std::uint64_t used = meminfo_kb(meminfo, "Committed_AS");
      std::uint64_t reserve = 0;
      if (::geteuid() != 0) read_number("/proc/sys/vm/admin_reserve_kbytes", reserve);
      f.overcommit_limit_pages = limit > used + reserve ? (limit - used - reserve) / 4 : 1;
      break;
    }
    default:
      // Heuristic: one request larger than RAM + swap fails.
      f.overcommit = Overcommit::guess;
      f.overcommit_limit_pages = (meminfo_kb(meminfo, "MemTotal") + meminfo_kb(meminfo, "SwapTotal")) / 4;
      break;
  }
}

// ---- behaviour, tried in the child -----------------------------------------

long sys_mmap(std::uint64_t addr, std::uint64_t len, int prot, int flags) {
  return ::syscall(SYS_mmap, addr, len, prot, flags, -1, 0);
}
void sys_munmap(std::uint64_t addr, std::uint64_t len) { ::syscall(SYS_munmap, addr, len); }
bool failed(long r) { return r == -1; }

// Resident kB of the mapping starting at `start`, from /proc/self/smaps;
// -1 if not found.
long smaps_rss_kb(std::uint64_t start) {
  int fd = ::open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  std::string text;
  char buf[8192];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  char head[32];
  std::snprintf(head, sizeof head, "%" PRIx64 "-", start);
  std::size_t at = text.find(std::string("\n") + head);
  if (at == std::string::npos) {
    if (text.compare(0, std::strlen(head), head) != 0) return -1;
    at = 0;
  }
  std::size_t rss = text.find("\nRss:", at);
  if (rss == std::string::npos) return -1;
  return std::strtol(text.c_str() + rss + 5, nullptr, 10);
}

// Does a read fault of fresh private anonymous memory map the zero page?
// The page sits between two PROT_NONE pages so its VMA merges with nothing.
int probe_zero_page() {
  long base = sys_mmap(0, 3 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
  if (failed(base)) return -1;
  const std::uint64_t page = static_cast<std::uint64_t>(base) + kPage;
  int result = -1;
  if (::syscall(SYS_mprotect, page, kPage, PROT_READ | PROT_WRITE) == 0) {
    (void)*reinterpret_cast<volatile const char*>(page);
    long kb = smaps_rss_kb(page);
    if (kb >= 0) result = kb == 0 ? 1 : 0;
  }
  sys_munmap(static_cast<std::uint64_t>(base), 3 * kPage);
  return result;
}

// Are unhinted private mappings of 2 MiB placed 2 MiB aligned?
int probe_thp_align() {
  long pages[3] = {-1, -1, -1}, blocks[3] = {-1, -1, -1};
  int aligned = 0, tried = 0;
  for (int i = 0; i < 3; ++i) {
    pages[i] = sys_mmap(0, kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
    if (failed(pages[i])) break;
    blocks[i] = sys_mmap(0, kPmd, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
    if (failed(blocks[i])) break;
    ++tried;
    if (static_cast<std::uint64_t>(blocks[i]) % kPmd == 0) ++aligned;
  }
  for (int i = 0; i < 3; ++i) {
    if (!failed(pages[i])) sys_munmap(static_cast<std::uint64_t>(pages[i]), kPage);
    if (!failed(blocks[i])) sys_munmap(static_cast<std::uint64_t>(blocks[i]), kPmd);
  }
  if (tried != 3) return -1;
  return aligned == 3 ? 1 : 0;
}

// The stack guard gap in bytes: the lowest hint below a MAP_GROWSDOWN
// mapping that the kernel honours is gap + one page below it.
long long probe_stack_guard_gap() {
  constexpr std::uint64_t kReserve = 1ull << 31;
  long r = sys_mmap(0, kReserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
  if (failed(r)) return -1;
  const std::uint64_t base = static_cast<std::uint64_t>(r);
  const std::uint64_t top = base + kReserve - kPage;  // the growsdown page
  if (failed(sys_mmap(top, kPage, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_GROWSDOWN))) {
    sys_munmap(base, kReserve);
    return -1;
  }
  sys_munmap(base, kReserve - kPage);  // free space below the stack
  auto honoured = [&](std::uint64_t d) {
    const std::uint64_t hint = top - d * kPage;
    long got = sys_mmap(hint, kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
    if (failed(got)) return false;
    sys_munmap(static_cast<std::uint64_t>(got), kPage);
    return static_cast<std::uint64_t>(got) == hint;
  };
  // honoured(d) <=> (d - 1) pages >= gap: find the least such d.
  std::uint64_t lo = 1, hi = kReserve / kPage - 1;
  long long gap = -1;
  if (honoured(hi)) {
    while (lo < hi) {
      std::uint64_t mid = lo + (hi - lo) / 2;
      if (honoured(mid)) hi = mid;
      else lo = mid + 1;
    }
    gap = static_cast<long long>((lo - 1) * kPage);
  }
  sys_munmap(top, kPage);
  return gap;
}

// Where a one-page hint at 0x1000 lands: the kernel's mmap_min_addr floor
// when the low addresses are free (-1 when the answer is not that).
long long probe_mmap_min_addr() {
  long r = sys_mmap(kPage, kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
  if (failed(r)) return -1;
  sys_munmap(static_cast<std::uint64_t>(r), kPage);
  return static_cast<std::uint64_t>(r) < (16ull << 20) ? r : -1;
}

// May this process map below vm.mmap_min_addr?
int probe_cap_sys_rawio(std::uint64_t dac_min) {
  if (dac_min == 0) return 1;
  const std::uint64_t at = (dac_min - 1) & ~(kPage - 1);
  long r = sys_mmap(at, kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE);
  if (failed(r)) return errno == EEXIST ? -1 : 0;
  sys_munmap(static_cast<std::uint64_t>(r), kPage);
  return static_cast<std::uint64_t>(r) == at ? 1 : -1;
}

// May this process lock more than RLIMIT_MEMLOCK?
int probe_cap_ipc_lock(std::uint64_t limit) {
  if (limit == UINT64_MAX) return 1;
  const std::uint64_t len = (limit & ~(kPage - 1)) + kPage;
  long r = sys_mmap(0, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_LOCKED);
  if (failed(r)) return (errno == EAGAIN || errno == EPERM) ? 0 : -1;
  sys_munmap(static_cast<std::uint64_t>(r), len);
  return 1;
}

// Does reading a PROT_EXEC-only page fault?  Tried in a grandchild, which
// the fault kills.
int probe_exec_only() {
  long r = sys_mmap(0, kPage, PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS);
  if (failed(r)) return -1;
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    struct rlimit no_core = {0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    ::signal(SIGSEGV, SIG_DFL);
    (void)*reinterpret_cast<volatile const char*>(r);
    ::_exit(0);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  sys_munmap(static_cast<std::uint64_t>(r), kPage);
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) return 1;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

[[noreturn]] void child_main(int out, const HostFacts& settings) {
  char line[512];
  const int zero = probe_zero_page();
  const int align = probe_thp_align();
  const long long gap = probe_stack_guard_gap();
  const long long floor = probe_mmap_min_addr();
  const int rawio = probe_cap_sys_rawio(settings.dac_mmap_min_addr);
  const int ipc = probe_cap_ipc_lock(settings.rlimit_memlock);
  const int xonly = probe_exec_only();
  int n = std::snprintf(line, sizeof line,
                        "zero_page=%d thp_align=%d gap=%lld floor=%lld rawio=%d ipc=%d xonly=%d\n", zero, align,
                        gap, floor, rawio, ipc, xonly);
  ssize_t w = ::write(out, line, static_cast<std::size_t>(n));
  ::_exit(w == n ? 0 : 1);
}

long long field(const std::string& line, const char* key) {
  std::string k = std::string(" ") + key + "=";
  std::size_t at = (" " + line).find(k);
  if (at == std::string::npos) return -2;
  return std::strtoll(line.c_str() + at + k.size() - 1, nullptr, 10);
}

std::string yes_no(bool b) { return b ? "yes" : "no"; }

std::string size_text(std::uint64_t v) {
  if (v == UINT64_MAX) return "unlimited";
  if (v != 0 && v % (1ull << 20) == 0) return std::to_string(v >> 20) + "M";
  if (v != 0 && v % 1024 == 0) return std::to_string(v >> 10) + "K";
  return std::to_string(v);
}

}  // namespace

HostFacts probe_host() {
  HostFacts f;
  read_settings(f);
  if (!kernel_runner_available()) {
    f.error = "not probed: no child processes in ThreadSanitizer builds";
    return f;
  }
  // As in run_on_kernel: let the call_rcu worker go idle before forking
  // (sanitizer allocators keep locks another thread may hold).
  rcu::barrier();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    f.error = std::string("pipe2: ") + std::strerror(errno);
    return f;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    f.error = std::string("fork: ") + std::strerror(errno);
    ::close(fds[0]);
    ::close(fds[1]);
    return f;
  }
  if (pid == 0) {
    ::close(fds[0]);
    child_main(fds[1], f);
  }
  ::close(fds[1]);
  std::string line;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    line.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || line.empty()) {
    f.error = "the probe child failed";
    return f;
  }
  std::string missing;
  auto take = [&](const char* key, auto&& set) {
    long long v = field(line, key);
    if (v < 0) missing += std::string(missing.empty() ? "" : ", ") + key;
    else set(v);
  };
  take("zero_page", [&](long long v) { f.zero_page = v != 0; });
  take("thp_align", [&](long long v) { f.thp_align = v != 0; });
  take("gap", [&](long long v) { f.stack_guard_gap = static_cast<std::uint64_t>(v); });
  take("floor", [&](long long v) { f.mmap_min_addr = static_cast<std::uint64_t>(v); });
  take("rawio", [&](long long v) { f.cap_sys_rawio = v != 0; });
  take("ipc", [&](long long v) { f.cap_ipc_lock = v != 0; });
  take("xonly", [&](long long v) { f.exec_only_pkey = v != 0; });
  f.probed = true;
  if (!missing.empty()) f.error = "undetermined: " + missing + " (kept the settings' values)";
  return f;
}

const HostFacts& host_facts() {
  static const HostFacts facts = probe_host();
  return facts;
}

namespace {
std::optional<HostFacts> g_vmspace_facts;  // set once, before comparisons run
}  // namespace

void override_vmspace_facts(const HostFacts& f) { g_vmspace_facts = f; }

const HostFacts& vmspace_facts() { return g_vmspace_facts ? *g_vmspace_facts : host_facts(); }

std::string host_facts_line(const HostFacts& f) {
  std::string s = "# host: linux " + (f.kernel.empty() ? std::string("?") : f.kernel);
  s += " zero_page=" + yes_no(f.zero_page);
  s += " exec_only_pkey=" + yes_no(f.exec_only_pkey);
  s += " thp=" + std::string(thp_mode_name(f.thp));
  s += " thp_align=" + yes_no(f.thp_align);
  s += " stack_guard_gap=" + size_text(f.stack_guard_gap);
  s += " mmap_min_addr=" + std::to_string(f.mmap_min_addr);
  s += " vm.mmap_min_addr=" + std::to_string(f.dac_mmap_min_addr);
  s += " cap_sys_rawio=" + yes_no(f.cap_sys_rawio);
  s += " max_map_count=" + std::to_string(f.max_map_count);
  s += " rlimit_stack=" + size_text(f.rlimit_stack);
  s += " rlimit_memlock=" + size_text(f.rlimit_memlock);
  s += " cap_ipc_lock=" + yes_no(f.cap_ipc_lock);
  s += " overcommit=" + std::string(overcommit_name(f.overcommit));
  if (f.overcommit != Overcommit::always) s += "(" + std::to_string(f.overcommit_limit_pages) + "p)";
  if (!f.error.empty()) s += " [" + f.error + "]";
  return s;
}

namespace {

bool parse_yes_no(std::string_view v, bool& out) {
  if (v == "yes") out = true;
  else if (v == "no") out = false;
  else return false;
  return true;
}

bool parse_size(std::string_view v, std::uint64_t& out) {
  if (v == "unlimited") {
    out = UINT64_MAX;
    return true;
  }
  std::uint64_t mult = 1;
  if (!v.empty() && (v.back() == 'K' || v.back() == 'M' || v.back() == 'G' || v.back() == 'p')) {
    mult = v.back() == 'K' ? 1ull << 10 : v.back() == 'M' ? 1ull << 20 : v.back() == 'G' ? 1ull << 30 : 4096;
    v.remove_suffix(1);
  }
  if (v.empty() || v.size() > 19) return false;
  std::uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (n > UINT64_MAX / mult) return false;
  out = n * mult;
  return true;
}

}  // namespace

bool parse_host_facts(std::string_view text, HostFacts& f, std::string* error) {
  auto fail = [&](const std::string& m) {
    if (error != nullptr) *error = m;
    return false;
  };
  std::string_view rest = text;
  auto next_word = [&]() {
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t' || rest.front() == ',')) rest.remove_prefix(1);
    std::size_t n = 0;
    while (n < rest.size() && rest[n] != ' ' && rest[n] != '\t' && rest[n] != ',') ++n;
    std::string_view w = rest.substr(0, n);
    rest.remove_prefix(n);
    return w;
  };
  for (std::string_view w = next_word(); !w.empty(); w = next_word()) {
    if (w == "#" || w == "host:") continue;
    if (w == "linux") {
      f.kernel = std::string(next_word());
      continue;
    }
    if (w.front() == '[') break;  // the probe's own remarks end the line
    const std::size_t eq = w.find('=');
    if (eq == std::string_view::npos) return fail("expected key=value, got '" + std::string(w) + "'");
    const std::string_view key = w.substr(0, eq);
    std::string_view val = w.substr(eq + 1);
    bool ok = true;
    if (key == "zero_page") ok = parse_yes_no(val, f.zero_page);
    else if (key == "exec_only_pkey") ok = parse_yes_no(val, f.exec_only_pkey);
    else if (key == "thp") ok = thp_from_word(std::string(val), f.thp);
    else if (key == "thp_align") ok = parse_yes_no(val, f.thp_align);
    else if (key == "stack_guard_gap") ok = parse_size(val, f.stack_guard_gap);
    else if (key == "mmap_min_addr") ok = parse_size(val, f.mmap_min_addr);
    else if (key == "vm.mmap_min_addr") ok = parse_size(val, f.dac_mmap_min_addr);
    else if (key == "cap_sys_rawio") ok = parse_yes_no(val, f.cap_sys_rawio);
    else if (key == "max_map_count") {
      std::uint64_t n = 0;
      ok = parse_size(val, n) && n <= 0x7fffffff;
      if (ok) f.max_map_count = static_cast<int>(n);
    } else if (key == "rlimit_stack") ok = parse_size(val, f.rlimit_stack);
    else if (key == "rlimit_memlock") ok = parse_size(val, f.rlimit_memlock);
    else if (key == "cap_ipc_lock") ok = parse_yes_no(val, f.cap_ipc_lock);
    else if (key == "overcommit") {
      // guess(N p) / never(N p) / always
      std::string_view mode = val.substr(0, val.find('('));
      if (mode == "guess") f.overcommit = Overcommit::guess;
      else if (mode == "never") f.overcommit = Overcommit::never;
      else if (mode == "always") f.overcommit = Overcommit::always;
      else ok = false;
      if (ok && mode.size() < val.size()) {
        std::string_view n = val.substr(mode.size() + 1);
        ok = !n.empty() && n.back() == ')';
        if (ok) {
          n.remove_suffix(1);
          ok = parse_size(n, f.overcommit_limit_pages);
          if (ok && !n.empty() && n.back() == 'p') f.overcommit_limit_pages /= 4096;
        }
      }
      if (ok && f.overcommit == Overcommit::always) f.overcommit_limit_pages = 0;
    } else {
      return fail("unknown host fact '" + std::string(key) + "'");
    }
    if (!ok) return fail("bad value for " + std::string(key) + ": '" + std::string(val) + "'");
  }
  return true;
}

void apply_host_facts(const HostFacts& f, AddressSpaceOptions& o) {
  o.zero_page = f.zero_page;
  o.exec_only_pkey = f.exec_only_pkey;
  o.thp = f.thp;
  o.thp_align = f.thp_align;
  o.stack_guard_gap = f.stack_guard_gap;
  o.mmap_min_addr = f.mmap_min_addr;
  o.dac_mmap_min_addr = f.dac_mmap_min_addr;
  o.cap_sys_rawio = f.cap_sys_rawio;
  o.max_map_count = f.max_map_count;
  o.rlimit_stack = f.rlimit_stack;
  o.rlimit_memlock = f.rlimit_memlock;
  o.cap_ipc_lock = f.cap_ipc_lock;
  o.overcommit = f.overcommit;
  o.overcommit_limit_pages = f.overcommit_limit_pages;
}

}  // namespace vmspace::opscript
