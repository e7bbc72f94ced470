#include "opscript/kernel_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <algorithm>
#include <map>
#include <stdexcept>

#include "opscript/linux_abi.h"
#include "sync/rcu.h"
#include "opscript/runner.h"

namespace vmspace::opscript {

static_assert(prot::kRead == PROT_READ && prot::kWrite == PROT_WRITE && prot::kExec == PROT_EXEC);

bool kernel_runner_available() {
#if defined(__SANITIZE_THREAD__)
  return false;
#else
  return true;
#endif
}

// ---------------------------------------------------------------------------
// /proc/self/maps parsing

namespace {

bool parse_hex_field(std::string_view& s, char stop, uint64_t& out) {
  uint64_t v = 0;
  size_t i = 0;
  for (; i < s.size() && s[i] != stop; ++i) {
    char c = s[i];
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0 || v > (UINT64_MAX >> 4)) return false;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  if (i == 0 || i == s.size()) return false;
  out = v;
  s.remove_prefix(i + 1);
  return true;
}

std::string_view next_field(std::string_view& s) {
  size_t i = s.find(' ');
  std::string_view f = s.substr(0, i);
  s.remove_prefix(i == std::string_view::npos ? s.size() : i);
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return f;
}

}  // namespace

std::vector<MapEntry> parse_proc_maps(std::string_view text) {
  std::vector<MapEntry> out;
  constexpr std::string_view kMemfd = "/memfd:";
  constexpr std::string_view kDeleted = " (deleted)";
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);

    MapEntry e;
    if (!parse_hex_field(line, '-', e.start) || !parse_hex_field(line, ' ', e.end)) continue;
    std::string_view perms = next_field(line);
    std::string_view off = next_field(line);
    next_field(line);  // dev
    next_field(line);  // inode
    std::string_view path = line;
    if (perms.size() != 4) continue;
    std::string off_s(off);
    off_s += ' ';
    std::string_view off_v = off_s;
    if (!parse_hex_field(off_v, ' ', e.offset)) continue;
    e.perms = std::string(perms);
    if (path.empty() || path == "/dev/zero (deleted)" || path == "/dev/zero") {
      e.name = "[anon]";
      e.offset = 0;
    } else if (path.starts_with(kMemfd)) {
      path.remove_prefix(kMemfd.size());
      if (path.ends_with(kDeleted)) path.remove_suffix(kDeleted.size());
      e.name = std::string(path);
    } else {
      e.name = std::string(path);
    }
    out.push_back(std::move(e));
  }
  return out;
}

// ---------------------------------------------------------------------------
// The child: fault catching and the syscall executor.

namespace {

sigjmp_buf g_fault_jmp;
volatile sig_atomic_t g_fault_armed = 0;
volatile int g_fault_signo = 0;
volatile int g_fault_code = 0;
volatile uint64_t g_fault_page = 0;  // page being accessed
uint64_t g_read_hash = 0;

void fault_handler(int sig, siginfo_t* si, void*) {
  if (!g_fault_armed) {
    // A fault outside a guarded access is a bug in the runner: die with the
    // default action (the faulting instruction re-executes).
    signal(sig, SIG_DFL);
    return;
  }
  g_fault_armed = 0;
  g_fault_signo = sig;
  g_fault_code = si->si_code;
  siglongjmp(g_fault_jmp, 1);
}

// The raw accesses. Not instrumented: the bytes live in the window, which the
// sanitizers know nothing about, and a fault leaves the loop via siglongjmp.
__attribute__((noinline, no_sanitize("address", "undefined"))) void touch_range(uint64_t addr, uint64_t len,
                                                                                 bool is_write, uint8_t byte) {
  uint64_t h = kFnvOffsetBasis;
  uint64_t p = addr;
  const uint64_t end = addr + len;
  while (p < end) {
    const uint64_t page = p & ~(kPageSize - 1);
    g_fault_page = page;
    const uint64_t chunk_end = end - page > kPageSize ? page + kPageSize : end;
    if (is_write) {
      for (; p < chunk_end; ++p) *reinterpret_cast<volatile uint8_t*>(p) = byte;
    } else {
      for (; p < chunk_end; ++p) {
        h ^= *reinterpret_cast<volatile const uint8_t*>(p);
        h *= kFnvPrime;
      }
    }
  }
  g_read_hash = h;
}

OpResult guarded_access(uint64_t addr, uint64_t len, bool is_write, uint8_t byte) {
  if (sigsetjmp(g_fault_jmp, 1) == 0) {
    g_fault_armed = 1;
    touch_range(addr, len, is_write, byte);
    g_fault_armed = 0;
    return is_write ? OpResult::ok() : OpResult::hash(g_read_hash);
  }
  g_fault_armed = 0;
  FaultKind kind = g_fault_signo == SIGBUS         ? FaultKind::kSigbus
                   : g_fault_code == SEGV_MAPERR   ? FaultKind::kSegvMaperr
                                                   : FaultKind::kSegvAccerr;
  return OpResult::fault_at(kind, g_fault_page);
}

OpResult from_syscall(long r) { return r == -1 ? OpResult::error(errno) : OpResult::ok(); }

bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

class KernelExecutor final : public Executor {
 public:
  KernelExecutor() { maps_buf_.resize(256 * 1024); }
  ~KernelExecutor() override {
    for (auto& [name, fd] : files_)
      if (fd >= 0) ::close(fd);
  }
  KernelExecutor(const KernelExecutor&) = delete;
  KernelExecutor& operator=(const KernelExecutor&) = delete;

  OpResult mmap(uint64_t addr, uint64_t len, unsigned prot, unsigned flags, const std::string* file,
                uint64_t offset) override {
    int fd = file ? fd_of(*file) : -1;
    long r = ::syscall(SYS_mmap, addr, len, static_cast<int>(prot), mmap_flags_to_linux(flags), fd, offset);
    if (r == -1) return OpResult::error(errno);
    return OpResult::address(static_cast<uint64_t>(r));
  }
  OpResult munmap(uint64_t addr, uint64_t len) override { return from_syscall(::syscall(SYS_munmap, addr, len)); }
  OpResult mprotect(uint64_t addr, uint64_t len, unsigned prot) override {
    return from_syscall(::syscall(SYS_mprotect, addr, len, static_cast<int>(prot)));
  }
  OpResult madvise(uint64_t addr, uint64_t len, Advice advice) override {
    return from_syscall(::syscall(SYS_madvise, addr, len, advice_to_linux(advice)));
  }
  OpResult mremap(uint64_t old_addr, uint64_t old_len, uint64_t new_len, unsigned flags,
                  uint64_t new_addr) override {
    long r = ::syscall(SYS_mremap, old_addr, old_len, new_len, mremap_flags_to_linux(flags), new_addr);
    if (r == -1) return OpResult::error(errno);
    return OpResult::address(static_cast<uint64_t>(r));
  }
  OpResult mlock(uint64_t addr, uint64_t len) override { return from_syscall(::syscall(SYS_mlock, addr, len)); }
  OpResult munlock(uint64_t addr, uint64_t len) override { return from_syscall(::syscall(SYS_munlock, addr, len)); }
  OpResult mlock2(uint64_t addr, uint64_t len, bool onfault) override {
    return from_syscall(::syscall(SYS_mlock2, addr, len, onfault ? MLOCK_ONFAULT : 0));
  }

  OpResult file(const std::string& name, uint64_t size) override {
    int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC);
    if (fd < 0) return OpResult::error(errno);
    files_[name] = fd;
    if (size > static_cast<uint64_t>(INT64_MAX)) return OpResult::error(EFBIG);
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) return OpResult::error(errno);
    // Fill with the pattern (i * 7 + 13) & 0xff; the chunk size is a
    // multiple of 256, so every chunk holds the same bytes.
    static unsigned char chunk[64 * 1024];
    for (size_t i = 0; i < sizeof chunk; ++i) chunk[i] = static_cast<unsigned char>((i * 7 + 13) & 0xff);
    uint64_t done = 0;
    while (done < size) {
      size_t n = size - done < sizeof chunk ? static_cast<size_t>(size - done) : sizeof chunk;
      ssize_t w = ::pwrite(fd, chunk, n, static_cast<off_t>(done));
      if (w < 0) {
        if (errno == EINTR) continue;
        return OpResult::error(errno);
      }
      done += static_cast<uint64_t>(w);
    }
    return OpResult::ok();
  }
  OpResult ftruncate(const std::string& name, uint64_t size) override {
    if (size > static_cast<uint64_t>(INT64_MAX)) return OpResult::error(EINVAL);
    return from_syscall(::ftruncate(fd_of(name), static_cast<off_t>(size)));
  }

  OpResult write(uint64_t addr, uint64_t len, uint8_t byte) override { return guarded_access(addr, len, true, byte); }
  OpResult read(uint64_t addr, uint64_t len) override { return guarded_access(addr, len, false, 0); }

  std::vector<MapEntry> maps() override {
    int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(std::string("open /proc/self/maps: ") + std::strerror(errno));
    size_t used = 0;
    while (true) {
      if (used == maps_buf_.size()) maps_buf_.resize(maps_buf_.size() * 2);
      ssize_t n = ::read(fd, maps_buf_.data() + used, maps_buf_.size() - used);
      if (n < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        ::close(fd);
        throw std::runtime_error(std::string("read /proc/self/maps: ") + std::strerror(err));
      }
      if (n == 0) break;
      used += static_cast<size_t>(n);
    }
    ::close(fd);
    return parse_proc_maps(std::string_view(maps_buf_.data(), used));
  }

 private:
  int fd_of(const std::string& name) const {
    auto it = files_.find(name);
    return it == files_.end() ? -1 : it->second;  // -1: the kernel says EBADF
  }

  std::map<std::string, int> files_;
  std::vector<char> maps_buf_;
};

// Frames on the pipe: "L <line>\n" for an output line, "E <message>\n" for
// a setup error, "D \n" after the last line. The parent stops reading at
// "D" rather than waiting for EOF: in a multi-threaded program another
// thread's fork may hold a copy of the pipe's write end.
class ChildChannel {
 public:
  explicit ChildChannel(int fd) : fd_(fd) { buf_.reserve(4096); }
  bool send(char tag, std::string_view text) {
    buf_.clear();
    buf_ += tag;
    buf_ += ' ';
    buf_.append(text);
    buf_ += '\n';
    return write_all(fd_, buf_.data(), buf_.size());
  }

 private:
  int fd_;
  std::string buf_;
};

alignas(16) char g_alt_stack[128 * 1024];

[[noreturn]] void child_main(const Script& script, const Window& window, int out_fd) {
  ChildChannel ch(out_fd);
  try {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct rlimit no_core = {0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);

    stack_t ss{};
    ss.ss_sp = g_alt_stack;
    ss.ss_size = sizeof g_alt_stack;
    if (::sigaltstack(&ss, nullptr) != 0) {
      ch.send('E', std::string("sigaltstack: ") + std::strerror(errno));
      ::_exit(3);
    }
    struct sigaction sa{};
    sa.sa_sigaction = fault_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGSEGV, &sa, nullptr) != 0 || ::sigaction(SIGBUS, &sa, nullptr) != 0) {
      ch.send('E', std::string("sigaction: ") + std::strerror(errno));
      ::_exit(3);
    }
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, SIGSEGV);
    sigaddset(&unblock, SIGBUS);
    ::sigprocmask(SIG_UNBLOCK, &unblock, nullptr);

    KernelExecutor ex;
    for (const auto& e : window_maps(ex.maps(), window)) {
      ch.send('E', "window is not empty in the kernel child: " + format_map_line(e, window) +
                       " (choose another window base)");
      ::_exit(3);
    }
    bool pipe_ok = true;
    run_script(script, ex, window, [&](std::string_view line) {
      if (pipe_ok && !ch.send('L', line)) pipe_ok = false;
    });
    if (pipe_ok) pipe_ok = ch.send('D', "");
    ::_exit(pipe_ok ? 0 : 4);
  } catch (const std::exception& e) {
    ch.send('E', std::string("kernel child: ") + e.what());
  } catch (...) {
    ch.send('E', "kernel child: unknown exception");
  }
  ::_exit(3);
}

std::string describe_signal(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

}  // namespace

// ---------------------------------------------------------------------------
// The parent.

KernelRunResult run_on_kernel(const Script& script, const KernelRunOptions& options) {
  KernelRunResult res;
  const Window& w = options.window;
  if (!kernel_runner_available()) {
    res.error =
        "the kernel runner is not available under ThreadSanitizer (its memory layout and instrumentation "
        "conflict with the window)";
    return res;
  }
  if (w.base == 0 || w.base % kPageSize != 0 || w.base > UINT64_MAX - kWindowSize) {
    res.error = "bad window base " + hex(w.base) + " (must be non-zero, page-aligned, and leave room for 1 TiB)";
    return res;
  }

  // fork() copies only this thread.  Under AddressSanitizer (whose
  // allocator has no fork handlers in GCC 12) a lock held by another thread
  // at fork time stays locked in the child forever; the busiest other
  // thread is liburcu's call_rcu worker, freeing VMAs.  Drain it first so it
  // is idle (asleep on a futex, holding nothing) when we fork.
  rcu::barrier();

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    res.error = std::string("pipe2: ") + std::strerror(errno);
    return res;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    res.error = std::string("fork: ") + std::strerror(errno);
    ::close(fds[0]);
    ::close(fds[1]);
    return res;
  }
  if (pid == 0) {
    ::close(fds[0]);
    child_main(script, w, fds[1]);
  }
  ::close(fds[1]);
  const int in = fds[0];

  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  std::string buf;
  std::string child_error;
  bool timed_out = false;
  bool done = false;
  char chunk[4096];
  while (!done && child_error.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    struct pollfd pfd = {in, POLLIN, 0};
    int pr = ::poll(&pfd, 1, static_cast<int>(std::min<long long>(left.count(), 1000 * 1000)));
    if (pr < 0) {
      if (errno == EINTR) continue;
      child_error = std::string("poll: ") + std::strerror(errno);
      break;
    }
    if (pr == 0) continue;  // re-check the deadline
    ssize_t n = ::read(in, chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      child_error = std::string("read from kernel child: ") + std::strerror(errno);
      break;
    }
    if (n == 0) break;  // EOF: the child exited (or closed its end)
    buf.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::string_view frame(buf.data() + start, nl - start);
      if (frame.starts_with("L ")) {
        res.lines.emplace_back(frame.substr(2));
      } else if (frame.starts_with("E ")) {
        if (child_error.empty()) child_error = std::string(frame.substr(2));
      } else if (frame == "D ") {
        done = true;
        break;
      } else if (child_error.empty()) {
        child_error = "garbled output from the kernel child: " + std::string(frame);
      }
    }
    buf.erase(0, done ? buf.size() : start);
  }
  // Unless the child finished its output, make sure it is gone (it is still
  // our unreaped child, so the pid cannot have been reused).
  if (!done) ::kill(pid, SIGKILL);
  ::close(in);

  int status = 0;
  pid_t wr;
  do {
    wr = ::waitpid(pid, &status, 0);
  } while (wr < 0 && errno == EINTR);

  if (timed_out) {
    res.error = "kernel child timed out after " + std::to_string(options.timeout.count()) + " ms (killed)";
  } else if (!child_error.empty()) {
    res.error = child_error;
  } else if (wr < 0) {
    res.error = std::string("waitpid: ") + std::strerror(errno);
  } else if (WIFSIGNALED(status)) {
    res.error = "kernel child killed by " + describe_signal(WTERMSIG(status)) + " after " +
                std::to_string(res.lines.size()) + " output lines";
  } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    res.error = "kernel child exited with status " + std::to_string(WEXITSTATUS(status));
  } else if (!done) {
    res.error = "kernel child exited before finishing its output";
  } else {
    res.ok = true;
  }
  return res;
}

}  // namespace vmspace::opscript
