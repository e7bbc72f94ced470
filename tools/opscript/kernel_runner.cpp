#include "opscript/kernel_runner.h"
#include "vmspace/mman.h"

#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "opscript/linux_abi.h"
#include "opscript/runner.h"
#include "sync/rcu.h"

#ifndef SYS_mseal
#define SYS_mseal 462  // x86-64 and the generic table alike; headers before Linux 6.10 lack it
#endif

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
// The child: fault catching and the syscalls.

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

// The script's window, set in the runner child before anything forks (the
// space processes inherit it).
Window g_window;

// mlockall(MCL_CURRENT) populates every mapping of the process, the
// runner's own included. Above this many accessible bytes outside the
// window (AddressSanitizer's shadow is terabytes of MAP_NORESERVE memory)
// that would exhaust the machine's memory, so the runner does not call it.
constexpr uint64_t kMlockallBudget = 4ull << 30;

std::string read_self_maps() {
  static std::vector<char> buf(256 * 1024);
  int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(std::string("open /proc/self/maps: ") + std::strerror(errno));
  size_t used = 0;
  while (true) {
    if (used == buf.size()) buf.resize(buf.size() * 2);
    ssize_t n = ::read(fd, buf.data() + used, buf.size() - used);
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
  return std::string(buf.data(), used);
}

// Bytes of this process's mappings outside the window that are not
// PROT_NONE (what mlockall(MCL_CURRENT) would fault in, roughly).
uint64_t accessible_outside_window() {
  uint64_t n = 0;
  for (const MapEntry& e : parse_proc_maps(read_self_maps())) {
    if (e.perms.compare(0, 3, "---") == 0) continue;
    n += e.end - e.start;
    const uint64_t lo = std::max(e.start, g_window.base), hi = std::min(e.end, g_window.end());
    if (lo < hi) n -= hi - lo;
  }
  return n;
}

// One Executor call on an address space, with Linux's values. The runner
// child (which holds space `main`) runs it with run_request() itself, or
// sends it over a socket to the process that holds another space, which
// runs it with run_request() there (see serve_space).
enum class Method : uint32_t {
  kMmap = 1,
  kMunmap,
  kMprotect,
  kMadvise,
  kMremap,
  kMlock,
  kMunlock,
  kMlock2,
  kMlockall,
  kMunlockall,
  kMseal,
  kMincore,
  kWrite,
  kRead,
  kMaps,
  kFork,  // only sent to a space process (run_request does not fork)
};

struct Request {
  Method method = Method::kMaps;
  int32_t prot = 0;
  int32_t flags = 0;   // MAP_*, MREMAP_*, MLOCK_ONFAULT or MCL_*
  int32_t advice = 0;  // MADV_*
  uint64_t addr = 0;
  uint64_t len = 0;
  uint64_t new_len = 0;
  uint64_t new_addr = 0;
  uint64_t offset = 0;
  uint8_t byte = 0;
};

struct Outcome {
  OpResult result;
  std::string text;  // kMaps: the process's /proc/self/maps
};

long mincore_syscall(uint64_t a, uint64_t l, unsigned char* vec) { return ::syscall(SYS_mincore, a, l, vec); }

// `fd`: the file of a file mmap (-1 for none).
Outcome run_request(const Request& rq, int fd) {
  Outcome o;
  switch (rq.method) {
    case Method::kMmap: {
      long r = ::syscall(SYS_mmap, rq.addr, rq.len, rq.prot, rq.flags, fd, rq.offset);
      o.result = r == -1 ? OpResult::error(errno) : OpResult::address(static_cast<uint64_t>(r));
      break;
    }
    case Method::kMunmap: o.result = from_syscall(::syscall(SYS_munmap, rq.addr, rq.len)); break;
    case Method::kMprotect: o.result = from_syscall(::syscall(SYS_mprotect, rq.addr, rq.len, rq.prot)); break;
    case Method::kMadvise: o.result = from_syscall(::syscall(SYS_madvise, rq.addr, rq.len, rq.advice)); break;
    case Method::kMremap: {
      long r = ::syscall(SYS_mremap, rq.addr, rq.len, rq.new_len, rq.flags, rq.new_addr);
      o.result = r == -1 ? OpResult::error(errno) : OpResult::address(static_cast<uint64_t>(r));
      break;
    }
    case Method::kMlock: o.result = from_syscall(::syscall(SYS_mlock, rq.addr, rq.len)); break;
    case Method::kMunlock: o.result = from_syscall(::syscall(SYS_munlock, rq.addr, rq.len)); break;
    case Method::kMlock2: o.result = from_syscall(::syscall(SYS_mlock2, rq.addr, rq.len, rq.flags)); break;
    case Method::kMlockall:
      if ((rq.flags & MCL_CURRENT) && accessible_outside_window() > kMlockallBudget) {
        o.result = OpResult::unsupported();
        break;
      }
      o.result = from_syscall(::syscall(SYS_mlockall, rq.flags));
      break;
    case Method::kMunlockall: o.result = from_syscall(::syscall(SYS_munlockall)); break;
    case Method::kMseal: o.result = from_syscall(::syscall(SYS_mseal, rq.addr, rq.len, 0UL)); break;
    case Method::kMincore:
      o.result = mincore_in_pieces(rq.addr, rq.len, [](uint64_t a, uint64_t l, unsigned char* vec) {
        return mincore_syscall(a, l, vec) == -1 ? -errno : 0;
      });
      break;
    case Method::kWrite: o.result = guarded_access(rq.addr, rq.len, true, rq.byte); break;
    case Method::kRead: o.result = guarded_access(rq.addr, rq.len, false, 0); break;
    case Method::kMaps: o.text = read_self_maps(); break;
    case Method::kFork: o.result = OpResult::unsupported(); break;
  }
  return o;
}

// --- The space sockets (AF_UNIX stream, one per space other than main).
// A request is a Request, with the file's descriptor attached (SCM_RIGHTS)
// for a file mmap and with the new space's socket for kFork; a reply is a
// ReplyHeader followed by the bits and the text.

struct ReplyHeader {
  uint32_t kind = 0;   // OpResult::Kind
  uint32_t fault = 0;  // FaultKind
  uint64_t value = 0;
  uint64_t bits_len = 0;
  uint64_t text_len = 0;
  uint32_t failed = 0;  // the space process could not run the request; the text says why
};

// Sends n bytes, passing `pass_fd` (if >= 0) with the first of them.
bool send_bytes(int sock, const void* p, size_t n, int pass_fd = -1) {
  const char* c = static_cast<const char*>(p);
  bool first = true;
  while (n > 0) {
    struct iovec iov = {const_cast<char*>(c), n};
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
    if (first && pass_fd >= 0) {
      std::memset(cbuf, 0, sizeof cbuf);
      msg.msg_control = cbuf;
      msg.msg_controllen = sizeof cbuf;
      struct cmsghdr* cm = CMSG_FIRSTHDR(&msg);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
    }
    ssize_t w = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    first = false;
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Receives exactly n bytes. A descriptor that came with them is stored in
// *fd (-1 if none; closed if fd is null); the caller closes it, also when
// this returns false (EOF or an error).
bool recv_bytes(int sock, void* p, size_t n, int* fd = nullptr) {
  if (fd) *fd = -1;
  char* c = static_cast<char*>(p);
  while (n > 0) {
    struct iovec iov = {c, n};
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    ssize_t r = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    for (struct cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int got;
        std::memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        if (fd && *fd < 0) {
          *fd = got;
        } else {
          ::close(got);
        }
      }
    }
    if (r == 0) return false;
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool send_outcome(int sock, const Outcome& o, bool failed = false) {
  ReplyHeader h;
  h.kind = static_cast<uint32_t>(o.result.kind);
  h.fault = static_cast<uint32_t>(o.result.fault);
  h.value = o.result.value;
  h.bits_len = o.result.bits.size();
  h.text_len = o.text.size();
  h.failed = failed ? 1 : 0;
  return send_bytes(sock, &h, sizeof h) && send_bytes(sock, o.result.bits.data(), o.result.bits.size()) &&
         send_bytes(sock, o.text.data(), o.text.size());
}

// False on EOF or an error; sets `failed` when the space could not run it.
bool recv_outcome(int sock, Outcome& o, bool& failed) {
  ReplyHeader h;
  if (!recv_bytes(sock, &h, sizeof h)) return false;
  o.result.kind = static_cast<OpResult::Kind>(h.kind);
  o.result.fault = static_cast<FaultKind>(h.fault);
  o.result.value = h.value;
  o.result.bits.resize(h.bits_len);
  o.text.resize(h.text_len);
  failed = h.failed != 0;
  return recv_bytes(sock, o.result.bits.data(), h.bits_len) && recv_bytes(sock, o.text.data(), h.text_len);
}

// The space processes, for the runner child to kill and reap (it is their
// subreaper) when it has to end early: on SIGTERM from the parent (a
// timeout) or an error. Without that they would die anyway (EOF on their
// socket, or the parent-death signal) but stay zombies of whatever reaps
// orphans, which in a container may be nothing.
constexpr int kMaxSpaceProcesses = 1024;
pid_t g_space_pids[kMaxSpaceProcesses];
volatile sig_atomic_t g_space_count = 0;

// Async-signal-safe.
void kill_and_reap_spaces() {
  const int saved = errno;
  const int n = g_space_count;
  for (int i = 0; i < n; ++i) ::kill(g_space_pids[i], SIGKILL);
  int status;
  while (::waitpid(-1, &status, 0) > 0 || errno == EINTR) {
  }
  g_space_count = 0;
  errno = saved;
}

void terminate_handler(int) {
  kill_and_reap_spaces();
  ::_exit(5);
}

// The first thing a new space process does: die with the process that
// forked it (the parent-death signal is not inherited across fork). SIGTERM
// is the runner child's business, not a space's.
void become_space(pid_t parent) {
  ::signal(SIGTERM, SIG_DFL);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(0);  // the parent is gone already
}

// A space process: runs the requests that arrive on `ctl`, one at a time,
// until the runner child closes its end. It holds no other descriptors.
[[noreturn]] void serve_space(int ctl) {
  for (;;) {
    Request rq;
    int fd = -1;
    if (!recv_bytes(ctl, &rq, sizeof rq, &fd)) ::_exit(0);
    if (rq.method == Method::kFork) {
      // fork(2) of this space; the child serves the new space on the
      // socket that came with the request.
      const pid_t self = ::getpid();
      const pid_t pid = fd < 0 ? -1 : ::fork();
      if (pid == 0) {
        ::close(ctl);
        ctl = fd;
        become_space(self);
        continue;
      }
      const int err = fd < 0 ? EBADF : errno;
      if (fd >= 0) ::close(fd);
      Outcome o;
      o.result = pid < 0 ? OpResult::error(err) : OpResult::ok();
      o.result.value = pid < 0 ? 0 : static_cast<uint64_t>(pid);
      if (!send_outcome(ctl, o)) ::_exit(0);
      continue;
    }
    Outcome o;
    bool failed = false;
    try {
      o = run_request(rq, fd);
    } catch (const std::exception& e) {
      o = Outcome{};
      o.text = e.what();
      failed = true;
    }
    if (fd >= 0) ::close(fd);
    if (!send_outcome(ctl, o, failed)) ::_exit(0);
  }
}

// The Executor of the runner child. It holds space `main` itself; every
// other space is a process (forked from the process holding the space it
// copies) that it drives over that space's socket, one request at a time,
// so the spaces run in script order. Declared files are memfds of the
// runner child, passed along with each file mmap.
class KernelExecutor final : public Executor {
 public:
  explicit KernelExecutor(int out_fd) : out_fd_(out_fd) {}
  ~KernelExecutor() override {
    shutdown();
    for (auto& [name, fd] : files_)
      if (fd >= 0) ::close(fd);
  }
  KernelExecutor(const KernelExecutor&) = delete;
  KernelExecutor& operator=(const KernelExecutor&) = delete;

  OpResult mmap(uint64_t addr, uint64_t len, unsigned prot, unsigned flags, const std::string* file,
                uint64_t offset) override {
    Request rq = ranged(Method::kMmap, addr, len);
    rq.prot = static_cast<int32_t>(prot);
    rq.flags = mmap_flags_to_linux(flags);
    rq.offset = offset;
    return exec(rq, file ? fd_of(*file) : -1).result;
  }
  OpResult munmap(uint64_t addr, uint64_t len) override { return exec(ranged(Method::kMunmap, addr, len)).result; }
  OpResult mprotect(uint64_t addr, uint64_t len, unsigned prot) override {
    Request rq = ranged(Method::kMprotect, addr, len);
    rq.prot = static_cast<int32_t>(prot);
    return exec(rq).result;
  }
  OpResult madvise(uint64_t addr, uint64_t len, Advice advice) override {
    Request rq = ranged(Method::kMadvise, addr, len);
    rq.advice = advice_to_linux(advice);
    return exec(rq).result;
  }
  OpResult mremap(uint64_t old_addr, uint64_t old_len, uint64_t new_len, unsigned flags,
                  uint64_t new_addr) override {
    Request rq = ranged(Method::kMremap, old_addr, old_len);
    rq.new_len = new_len;
    rq.flags = mremap_flags_to_linux(flags);
    rq.new_addr = new_addr;
    return exec(rq).result;
  }
  OpResult mlock(uint64_t addr, uint64_t len) override { return exec(ranged(Method::kMlock, addr, len)).result; }
  OpResult munlock(uint64_t addr, uint64_t len) override { return exec(ranged(Method::kMunlock, addr, len)).result; }
  OpResult mlock2(uint64_t addr, uint64_t len, bool onfault) override {
    Request rq = ranged(Method::kMlock2, addr, len);
    rq.flags = onfault ? MLOCK_ONFAULT : 0;
    return exec(rq).result;
  }
  OpResult mlockall(unsigned flags) override {
    Request rq;
    rq.method = Method::kMlockall;
    rq.flags = mlockall_flags_to_linux(flags);
    return exec(rq).result;
  }
  OpResult munlockall() override {
    Request rq;
    rq.method = Method::kMunlockall;
    return exec(rq).result;
  }
  OpResult mseal(uint64_t addr, uint64_t len) override { return exec(ranged(Method::kMseal, addr, len)).result; }
  OpResult mincore(uint64_t addr, uint64_t len) override { return exec(ranged(Method::kMincore, addr, len)).result; }

  // Files are the runner child's, whatever the current space.
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

  OpResult write(uint64_t addr, uint64_t len, uint8_t byte) override {
    Request rq = ranged(Method::kWrite, addr, len);
    rq.byte = byte;
    return exec(rq).result;
  }
  OpResult read(uint64_t addr, uint64_t len) override { return exec(ranged(Method::kRead, addr, len)).result; }

  std::vector<MapEntry> maps() override {
    Request rq;
    rq.method = Method::kMaps;
    return parse_proc_maps(exec(rq).text);
  }

  OpResult fork(const std::string& name) override;

  OpResult use(const std::string& name) override {
    if (name == kMainSpace) {
      current_ = -1;
      return OpResult::ok();
    }
    for (size_t i = 0; i < spaces_.size(); ++i) {
      if (spaces_[i].name == name) {
        current_ = static_cast<int>(i);
        return OpResult::ok();
      }
    }
    return OpResult::unsupported();
  }

  // Ends every space process (they exit when their socket closes) and
  // reaps them: this process is their subreaper, so the ones whose parent
  // space exited first are its children by now.
  void shutdown() {
    if (spaces_.empty()) return;
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &term, &old);  // no kill_and_reap_spaces of reaped pids meanwhile
    for (const Space& s : spaces_) ::close(s.sock);
    spaces_.clear();
    current_ = -1;
    int status;
    while (::waitpid(-1, &status, 0) > 0 || errno == EINTR) {
    }
    g_space_count = 0;
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
  }

 private:
  struct Space {
    std::string name;
    int sock = -1;  // this process's end of the space's socket
    pid_t pid = 0;
  };

  static Request ranged(Method m, uint64_t addr, uint64_t len) {
    Request rq;
    rq.method = m;
    rq.addr = addr;
    rq.len = len;
    return rq;
  }

  // Runs `rq` in the current space: here for main, else in its process.
  Outcome exec(const Request& rq, int fd = -1) {
    if (current_ < 0) return run_request(rq, fd);
    return call(spaces_[static_cast<size_t>(current_)], rq, fd);
  }

  Outcome call(const Space& s, const Request& rq, int fd) {
    Outcome o;
    bool failed = false;
    if (!send_bytes(s.sock, &rq, sizeof rq, fd) || !recv_outcome(s.sock, o, failed))
      throw std::runtime_error("the process of space '" + s.name + "' (pid " + std::to_string(s.pid) +
                               ") stopped answering");
    if (failed) throw std::runtime_error("space '" + s.name + "': " + o.text);
    return o;
  }

  int fd_of(const std::string& name) const {
    auto it = files_.find(name);
    return it == files_.end() ? -1 : it->second;  // -1: the kernel says EBADF
  }

  std::map<std::string, int> files_;
  std::vector<Space> spaces_;  // every space but main, in creation order
  int current_ = -1;           // index into spaces_; -1: main, this process
  int out_fd_;                 // the pipe to the parent (not for the space processes)
};

OpResult KernelExecutor::fork(const std::string& name) {
  if (g_space_count >= kMaxSpaceProcesses) return OpResult::unsupported();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
  pid_t pid = -1;
  if (current_ < 0) {
    // Fork this process, which holds main. The child keeps only the new
    // space's socket. SIGTERM waits until the new process is on the list
    // terminate_handler kills (else its reaping would wait for it forever).
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &term, &old);
    const pid_t self = ::getpid();
    pid = ::fork();
    if (pid == 0) {
      ::close(sv[0]);
      for (const Space& s : spaces_) ::close(s.sock);
      for (const auto& [n, fd] : files_)
        if (fd >= 0) ::close(fd);
      ::close(out_fd_);
      become_space(self);
      ::sigprocmask(SIG_SETMASK, &old, nullptr);
      serve_space(sv[1]);
    }
    const int err = errno;
    if (pid > 0) {
      g_space_pids[g_space_count] = pid;
      g_space_count = g_space_count + 1;
    }
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    ::close(sv[1]);
    if (pid < 0) {
      ::close(sv[0]);
      return OpResult::error(err);
    }
  } else {
    // Ask the process holding the current space to fork itself. (Should
    // SIGTERM come before the new process is on the list, killing its
    // parent kills it: it dies with its parent.)
    Request rq;
    rq.method = Method::kFork;
    Outcome o;
    try {
      o = call(spaces_[static_cast<size_t>(current_)], rq, sv[1]);
    } catch (...) {
      ::close(sv[0]);
      ::close(sv[1]);
      throw;
    }
    ::close(sv[1]);
    if (o.result.kind != OpResult::Kind::kOk) {
      ::close(sv[0]);
      return o.result;
    }
    pid = static_cast<pid_t>(o.result.value);
    g_space_pids[g_space_count] = pid;
    g_space_count = g_space_count + 1;
  }
  spaces_.push_back(Space{name, sv[0], pid});
  return OpResult::ok();
}

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
    // The space processes descend from this one; it reaps them all, also
    // when the parent ends the run early with SIGTERM.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    ::signal(SIGTERM, terminate_handler);
    struct rlimit no_core = {0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    g_window = window;

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

    KernelExecutor ex(out_fd);
    for (const auto& e : window_maps(ex.maps(), window)) {
      ch.send('E', "window is not empty in the kernel child: " + format_map_line(e, window) +
                       " (choose another window base)");
      ::_exit(3);
    }
    bool pipe_ok = true;
    run_script(script, ex, window, [&](std::string_view line) {
      if (pipe_ok && !ch.send('L', line)) pipe_ok = false;
    });
    ex.shutdown();
    if (pipe_ok) pipe_ok = ch.send('D', "");
    ::_exit(pipe_ok ? 0 : 4);
  } catch (const std::exception& e) {
    kill_and_reap_spaces();
    ch.send('E', std::string("kernel child: ") + e.what());
  } catch (...) {
    kill_and_reap_spaces();
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
  // is idle (asleep on a futex, holding nothing) when we fork.  And in such
  // builds runs take turns: another thread's run allocates while it reads
  // its child's lines, and a fork at that moment would copy the held lock
  // (seen: a child hung in ConcurrentRunsFromSeveralThreads under asan).
#if defined(__SANITIZE_ADDRESS__)
  static std::mutex one_run_at_a_time;
  std::lock_guard<std::mutex> turn(one_run_at_a_time);
#endif
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
  // Unless the child finished its output, end it (it is still our unreaped
  // child, so the pid cannot have been reused): SIGTERM first, on which it
  // kills and reaps the space processes of a script that forked; SIGKILL if
  // it is not gone within a grace period (a handled signal does not stop
  // the kernel populating memory, say).
  int status = 0;
  pid_t wr = 0;
  if (!done) {
    ::kill(pid, SIGTERM);
    for (int i = 0; i < 200 && wr == 0; ++i) {  // 2 s
      wr = ::waitpid(pid, &status, WNOHANG);
      if (wr < 0 && errno == EINTR) wr = 0;
      if (wr == 0) ::usleep(10 * 1000);
    }
    if (wr == 0) ::kill(pid, SIGKILL);
  }
  ::close(in);
  while (wr == 0 || (wr < 0 && errno == EINTR)) wr = ::waitpid(pid, &status, 0);

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
