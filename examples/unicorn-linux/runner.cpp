// SPDX-License-Identifier: MIT
// runner.cpp - see runner.h.
#include "runner.h"

#include <asm/prctl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace unicorn_linux {
namespace {

constexpr std::uint64_t kPage = vmspace::kGuestPageSize;
constexpr std::uint64_t page_down(std::uint64_t a) { return a & ~(kPage - 1); }
// Rounded up to a page, saturating (a guest may pass any length).
constexpr std::uint64_t page_up_sat(std::uint64_t a) {
  return a > UINT64_MAX - (kPage - 1) ? page_down(UINT64_MAX) : (a + kPage - 1) & ~(kPage - 1);
}
constexpr std::uint64_t end_sat(std::uint64_t start, std::uint64_t len) {
  return len > UINT64_MAX - start ? UINT64_MAX : start + len;
}

// Linux's system call numbers (x86-64) the runner implements.
enum : std::uint64_t {
  kSysWrite = 1, kSysMmap = 9, kSysMprotect = 10, kSysMunmap = 11, kSysBrk = 12,
  kSysRtSigaction = 13, kSysRtSigreturn = 15, kSysMremap = 25, kSysMadvise = 28,
  kSysExit = 60, kSysArchPrctl = 158, kSysSetTidAddress = 218, kSysExitGroup = 231,
  kSysSetRobustList = 273,
};

// The kernel's siginfo_t for a fault (128 bytes; <signal.h> makes the
// si_* names macros, hence these).
struct GuestSiginfo {
  std::int32_t signo, errno_, code, pad;
  std::uint64_t addr;
  unsigned char rest[128 - 24];
};
static_assert(sizeof(GuestSiginfo) == 128);

// The kernel's struct sigaction as the guest passes it.
struct GuestSigaction {
  std::uint64_t handler, flags, restorer, mask;
};

constexpr const char* kKindName[] = {"read", "write", "exec"};
constexpr std::uint64_t kSaRestorer = 0x04000000;
constexpr std::uint64_t kRedZone = 128;
constexpr int kMaxFaultRepeats = 1000;
constexpr std::uint64_t kNoPage = UINT64_MAX;
// Pages Unicorn maps at most (evict_data_pages), and how many go at once.
constexpr std::size_t kMaxResidentPages = 256;
constexpr std::size_t kEvictBatch = 32;

vmspace::AccessKind access_kind(int k) { return static_cast<vmspace::AccessKind>(k); }
static_assert(static_cast<int>(vmspace::AccessKind::read) == 0 && static_cast<int>(vmspace::AccessKind::write) == 1 &&
              static_cast<int>(vmspace::AccessKind::exec) == 2);

void uc_check(uc_err e, const char* what) {
  if (e != UC_ERR_OK) throw std::runtime_error(std::string(what) + ": " + uc_strerror(e));
}

}  // namespace

Runner::Runner(vmspace::AddressSpace& as, bool eager_write) : as_(as), eager_write_(eager_write) {
  const char* trace = std::getenv("VMSPACE_UNICORN_TRACE");
  trace_ = trace && *trace && std::strcmp(trace, "0") != 0;
  uc_check(uc_open(UC_ARCH_X86, UC_MODE_64, &uc_), "uc_open");
  uc_check(uc_hook_add(uc_, &fault_hook_, UC_HOOK_MEM_UNMAPPED | UC_HOOK_MEM_PROT,
                       reinterpret_cast<void*>(&Runner::on_mem_fault), this, 1, 0),
           "uc_hook_add(UC_HOOK_MEM_UNMAPPED | UC_HOOK_MEM_PROT)");
  uc_check(uc_hook_add(uc_, &syscall_hook_, UC_HOOK_INSN, reinterpret_cast<void*>(&Runner::on_syscall), this, 1,
                       0, UC_X86_INS_SYSCALL),
           "uc_hook_add(UC_HOOK_INSN syscall)");
#if VMSPACE_UNICORN_NOTIFIERS
  if (int rc = as_.register_notifier(this); rc != 0)
    throw std::runtime_error("register_notifier: " + std::string(std::strerror(-rc)));
  as_.set_write_watch(&Runner::on_write_watch, this);
#endif
}

Runner::~Runner() {
#if VMSPACE_UNICORN_NOTIFIERS
  as_.set_write_watch(nullptr, nullptr);
  as_.unregister_notifier(this);
#endif
  uc_close(uc_);
}

std::uint64_t Runner::reg(int r) const {
  std::uint64_t v = 0;
  uc_reg_read(uc_, r, &v);
  return v;
}
void Runner::set_reg(int r, std::uint64_t v) { uc_reg_write(uc_, r, &v); }

// ---- Memory ------------------------------------------------------------------

bool Runner::on_mem_fault(uc_engine* uc, uc_mem_type type, std::uint64_t address, int size, std::int64_t, void* user) {
  auto* self = static_cast<Runner*>(user);
  switch (type) {
    case UC_MEM_READ_UNMAPPED:
    case UC_MEM_READ_PROT: return self->handle_fault(Kind::read, address, size);
    case UC_MEM_WRITE_UNMAPPED:
    case UC_MEM_WRITE_PROT: return self->handle_fault(Kind::write, address, size);
    case UC_MEM_FETCH_UNMAPPED: return self->handle_fault(Kind::exec, address, size);
    case UC_MEM_FETCH_PROT:
      // Unicorn 2 does not reload its TLB entry after a FETCH_PROT hook
      // that handled the fault (the READ/WRITE/FETCH_UNMAPPED paths do):
      // changing the mapping in the hook leaves the fetch using the
      // flushed entry.  So stop, remap outside the emulation, restart at
      // the instruction (run()).
      self->deferred_fetch_ = address;
      self->has_deferred_fetch_ = true;
      uc_emu_stop(uc);
      return false;
    default: return false;
  }
}

bool Runner::handle_fault(Kind kind, std::uint64_t address, int size) {
  stats_.faults[static_cast<int>(kind)]++;
  static constexpr std::uint32_t kNeed[] = {UC_PROT_READ, UC_PROT_WRITE, UC_PROT_EXEC};
  // An access that straddles two pages faults on the one Unicorn lacks:
  // the first unless it is mapped for this access already; si_addr is
  // then the second page's first byte, as the CPU's CR2 would say.
  std::uint64_t page = page_down(address), fault_addr = address;
  const std::uint64_t last = page_down(address + static_cast<std::uint64_t>(std::max(size, 1)) - 1);
  if (last != page) {
    auto it = mapped_.find(page);
    if (it != mapped_.end() && (it->second.perms & kNeed[static_cast<int>(kind)])) page = fault_addr = last;
  }
  // No progress: Unicorn faulting again and again on a page just mapped
  // for the access would be a bug here (only the guest's own system calls
  // take mappings away, and they reset the count).
  if (page == last_fault_page_ && kind == last_fault_kind_) {
    if (++fault_repeats_ > kMaxFaultRepeats) {
      std::fprintf(stderr, "vmspace-unicorn: no progress: %s faults at 0x%" PRIx64 " repeat\n",
                   kKindName[static_cast<int>(kind)], address);
      internal_error_ = true;
      uc_emu_stop(uc_);
      return false;
    }
  } else {
    last_fault_page_ = page, last_fault_kind_ = kind, fault_repeats_ = 0;
  }
  vmspace::Fault f = fault_and_map(page, kind);
  if (trace_)
    std::fprintf(stderr, "vmspace-unicorn: %s fault at 0x%" PRIx64 " (size %d, rip 0x%" PRIx64 "): %s\n",
                 kKindName[static_cast<int>(kind)], address, size, reg(UC_X86_REG_RIP), vmspace::fault_name(f));
  switch (f) {
    case vmspace::Fault::none: return true;  // Unicorn retries the access
    case vmspace::Fault::segv_maperr: pending_ = {SIGSEGV, SEGV_MAPERR, fault_addr}; break;
    case vmspace::Fault::segv_accerr: pending_ = {SIGSEGV, SEGV_ACCERR, fault_addr}; break;
    case vmspace::Fault::sigbus: pending_ = {SIGBUS, BUS_ADRERR, fault_addr}; break;
    case vmspace::Fault::oom: pending_ = {SIGKILL, 0, fault_addr}; break;  // the OOM killer
  }
  uc_emu_stop(uc_);
  return false;
}

vmspace::Fault Runner::fault_and_map(std::uint64_t page, Kind kind) {
  // --eager-write: a read of a writable page is served as a write, so the
  // guest never writes to a page Unicorn has read-only (see runner.h).
  if (kind == Kind::read && eager_write_) {
    const int prot = vma_prot(page);
    if (prot > 0 && (prot & PROT_WRITE)) kind = Kind::write;
  }
  if (kind != Kind::write) return map_page(page, kind);
  // A write fault may end the page's own translation (a copy on write, or
  // a PTE rewritten in place): the notifier leaves this one page to
  // map_page, which replaces it (another frame) or only adds the write
  // right (the same frame), rather than unmapping it from inside Unicorn's
  // store path (see runner.h).  Unicorn makes no access until the hook
  // returns; on a fault the page is unmapped here.
  write_fault_page_ = page;
  write_fault_stale_ = false;
  vmspace::Fault f = map_page(page, kind);
  write_fault_page_ = kNoPage;
  if (f != vmspace::Fault::none && write_fault_stale_) unmap_range(page, page + kPage);
  return f;
}

vmspace::Fault Runner::map_page(std::uint64_t page, Kind kind) {
  void* host = nullptr;
  int prot = 0;
  // Each round faults the page in; translate() can still miss when the
  // page changed in between (another thread of an embedder would do that;
  // here a write-watch callback).  A few rounds always suffice.
  for (int round = 0; round < 8 && !host; round++) {
    vmspace::Fault f = as_.fault_in(page, access_kind(static_cast<int>(kind)));
    if (f != vmspace::Fault::none) return f;
    // x86-64 NX: a fetch needs PROT_EXEC.  fault_in(exec) says so itself;
    // checked here too for libraries whose fault_in treats a fetch as a
    // read (before issue 17's access kinds).
    prot = vma_prot(page);
    if (kind == Kind::exec && !(prot & PROT_EXEC)) return vmspace::Fault::segv_accerr;
#if !VMSPACE_UNICORN_NOTIFIERS
    // The write-watch of rule 3, emulated: a store to a page Unicorn runs
    // code from.
    if (kind == Kind::write) {
      auto it = mapped_.find(page);
      if (it != mapped_.end() && (it->second.perms & UC_PROT_EXEC)) on_write_watch(this, as_, page);
    }
#endif
    const bool exec = kind != Kind::write && (prot & PROT_EXEC);
#if VMSPACE_UNICORN_NOTIFIERS
    // Rule 3: executable pages are watched for writes while Unicorn may
    // hold code translated from them.  (Arming write-protects the PTE: the
    // notifier unmaps the page from Unicorn if it is mapped.)
    if (exec) as_.write_watch_arm(page, kPage);
#endif
    vmspace::AddressSpace::AccessScope scope(as_);
    // (A fetch translates as a read: exec rights were checked above.)
    host = scope.translate(page, kind == Kind::write);
    if (!host) continue;
    // Rule 1: writable only after a write fault; rule 3: never W and X.
    const std::uint32_t perms =
        UC_PROT_READ | (kind == Kind::write ? UC_PROT_WRITE : 0) | (exec ? UC_PROT_EXEC : 0);
    auto it = mapped_.find(page);
    if (it != mapped_.end() && it->second.host == host && (it->second.perms & ~perms & ~UC_PROT_EXEC) == 0) {
      // The same frame, gaining write permission (and losing execute, W^X)
      // or nothing: the region stays, only its permissions change.  (Unicorn
      // 2.0.1 mishandles the other changes from inside a memory hook: a
      // region made read-only by uc_mem_protect discards the store that
      // faulted on it even when the hook makes it writable again, and
      // unmapping a region that had translated code and mapping the page
      // again there can crash it.  Rights are therefore taken away only by
      // unmapping the page, and the execute right comes back only through
      // a fetch fault, which run() handles outside the emulation.)
      if (it->second.perms != perms) {
        uc_err e = uc_mem_protect(uc_, page, kPage, perms);
        if (e != UC_ERR_OK) {
          std::fprintf(stderr, "vmspace-unicorn: uc_mem_protect(0x%" PRIx64 "): %s\n", page, uc_strerror(e));
          return vmspace::Fault::oom;
        }
        it->second.perms = perms;
        stats_.reprotects++;
      }
      continue;
    }
    unmap_range(page, page + kPage);  // another frame: replace it
    evict_data_pages(page);
    uc_err e = uc_mem_map_ptr(uc_, page, kPage, perms, host);
    if (e != UC_ERR_OK) {
      std::fprintf(stderr, "vmspace-unicorn: uc_mem_map_ptr(0x%" PRIx64 "): %s\n", page, uc_strerror(e));
      return vmspace::Fault::oom;
    }
    mapped_[page] = Mapping{host, perms};
    stats_.pages_mapped++;
    stats_.max_pages_resident = std::max<std::uint64_t>(stats_.max_pages_resident, mapped_.size());
  }
  if (!host) {
    std::fprintf(stderr, "vmspace-unicorn: page 0x%" PRIx64 " faulted in but never translatable\n", page);
    return vmspace::Fault::sigbus;
  }
  return vmspace::Fault::none;
}

void Runner::evict_data_pages(std::uint64_t keep) {
  // Unicorn 2.0.1 rebuilds its view of memory on every map and unmap, in
  // time linear in the number of regions: with one region per page, a
  // guest touching thousands of pages spends its time there.  Above
  // kMaxResidentPages, non-executable pages are unmapped round-robin (they
  // fault back in when touched).  Executable ones stay: dropping one would
  // need its translated code dropped, maybe the code running now.
  if (mapped_.size() < kMaxResidentPages) return;
  for (std::size_t scanned = 0; scanned < mapped_.size() && mapped_.size() >= kMaxResidentPages - kEvictBatch;
       scanned++) {
    auto it = mapped_.upper_bound(evict_hand_);
    if (it == mapped_.end()) it = mapped_.begin();
    evict_hand_ = it->first;
    if (it->first == keep || (it->second.perms & UC_PROT_EXEC)) continue;
    uc_mem_unmap(uc_, it->first, kPage);
    stats_.pages_unmapped++;
    stats_.evictions++;
    mapped_.erase(it);
  }
}

int Runner::vma_prot(std::uint64_t va) const {
#if VMSPACE_UNICORN_FIND_VMA
  vmspace::VmaInfo info;
  return as_.find_vma(va, &info) ? info.prot : -1;
#else
  // /proc/self/maps lines: "start-end rwxp ...".
  const std::string maps = as_.maps();
  for (std::size_t pos = 0; pos < maps.size();) {
    std::size_t eol = maps.find('\n', pos);
    if (eol == std::string::npos) eol = maps.size();
    unsigned long long start = 0, end = 0;
    char perms[5] = {};
    if (std::sscanf(maps.c_str() + pos, "%llx-%llx %4s", &start, &end, perms) == 3 && va >= start && va < end)
      return (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
             (perms[2] == 'x' ? PROT_EXEC : 0);
    pos = eol + 1;
  }
  return -1;
#endif
}

void Runner::unmap_range(std::uint64_t start, std::uint64_t end, std::uint64_t keep) {
  for (auto it = mapped_.lower_bound(start); it != mapped_.end() && it->first < end;) {
    // Unicorn keys translated code by guest address: code translated from
    // this page must not outlive the mapping.  (Removed while the page is
    // still mapped: Unicorn finds the code through the mapping.)
    if (it->second.perms & UC_PROT_EXEC) uc_ctl_remove_cache(uc_, it->first, it->first + kPage);
    if (it->first == keep) {
      ++it;
      continue;
    }
    uc_mem_unmap(uc_, it->first, kPage);
    stats_.pages_unmapped++;
    it = mapped_.erase(it);
  }
}

#if VMSPACE_UNICORN_NOTIFIERS
void Runner::invalidate_range_start(const vmspace::InvalidateRange& r) {
  stats_.invalidations++;
  if (write_fault_page_ >= r.start && write_fault_page_ < r.end) write_fault_stale_ = true;
  unmap_range(r.start, r.end, write_fault_page_);
}
#endif

void Runner::changed(std::uint64_t start, std::uint64_t end) {
  if (kVmspaceNotifiers || start >= end) return;
  stats_.invalidations++;
  unmap_range(page_down(start), page_up_sat(end));
}

void Runner::on_write_watch(void* arg, vmspace::AddressSpace&, std::uint64_t page) {
  auto* self = static_cast<Runner*>(arg);
  self->stats_.write_watch_events++;
  // The code Unicorn translated from the page is stale from now on.  (The
  // page itself is remapped by the fault that fired the watch: writable,
  // not executable, until the next instruction fetch from it.)
  uc_ctl_remove_cache(self->uc_, page, page + kPage);
}

// ---- System calls --------------------------------------------------------------

void Runner::on_syscall(uc_engine*, void* user) { static_cast<Runner*>(user)->do_syscall(); }

void Runner::do_syscall() {
  stats_.syscalls++;
  fault_repeats_ = 0;
  const std::uint64_t nr = reg(UC_X86_REG_RAX);
  const std::uint64_t a0 = reg(UC_X86_REG_RDI), a1 = reg(UC_X86_REG_RSI), a2 = reg(UC_X86_REG_RDX),
                      a3 = reg(UC_X86_REG_R10), a4 = reg(UC_X86_REG_R8), a5 = reg(UC_X86_REG_R9);
  long ret = -ENOSYS;
  switch (nr) {
    case kSysMmap:
      // The guest has no files in its space (open is not forwarded).
      if (!(a3 & MAP_ANONYMOUS)) {
        ret = -EBADF;
        break;
      }
      ret = as_.mmap(a0, a1, static_cast<int>(a2), static_cast<int>(a3), -1, a5);
      if (ret >= 0) changed(static_cast<std::uint64_t>(ret), end_sat(static_cast<std::uint64_t>(ret), a1));
      break;
    case kSysMunmap:
      ret = as_.munmap(a0, a1);
      changed(a0, end_sat(a0, a1));
      break;
    case kSysMprotect:
      ret = as_.mprotect(a0, a1, static_cast<int>(a2));
      changed(a0, end_sat(a0, a1));
      break;
    case kSysMadvise:
      ret = as_.madvise(a0, a1, static_cast<int>(a2));
      changed(a0, end_sat(a0, a1));
      break;
    case kSysMremap:
      ret = as_.mremap(a0, a1, a2, static_cast<int>(a3), a4);
      changed(a0, end_sat(a0, a1));
      if (ret >= 0) changed(static_cast<std::uint64_t>(ret), end_sat(static_cast<std::uint64_t>(ret), a2));
      break;
    case kSysBrk: {
      const std::uint64_t old_brk = as_.brk(0);
      const std::uint64_t new_brk = as_.brk(a0);
      changed(std::min(old_brk, new_brk), std::max(old_brk, new_brk));
      ret = static_cast<long>(new_brk);
      break;
    }
    case kSysWrite: ret = sys_write(static_cast<int>(a0), a1, a2); break;
    case kSysRtSigaction: ret = sys_rt_sigaction(a0, a1, a2, a3); break;
    case kSysArchPrctl: ret = sys_arch_prctl(a0, a1); break;
    // What a static glibc program's start-up asks of its one thread: the
    // clear_child_tid address (used at thread exit: never, here) and the
    // robust futex list (used at death: nothing to release, here).
    case kSysSetTidAddress: ret = ::getpid(); break;
    case kSysSetRobustList: ret = a1 == 24 ? 0 : -EINVAL; break;  // sizeof(struct robust_list_head)
    case kSysExit:
    case kSysExitGroup: exit_guest(static_cast<int>(a0)); return;
    case kSysRtSigreturn:
      // Handlers here are entered without a saved context (no ucontext on
      // the frame), so there is nothing to return to: Linux's answer to a
      // bad signal frame is SIGSEGV.
      std::fprintf(stderr, "vmspace-unicorn: rt_sigreturn: returning from a signal handler is not supported\n");
      kill_guest(SIGSEGV);
      return;
    default:
      std::fprintf(stderr, "vmspace-unicorn: system call %" PRIu64 " is not implemented (-ENOSYS)\n", nr);
      break;
  }
  set_reg(UC_X86_REG_RAX, static_cast<std::uint64_t>(ret));
  // SYSCALL leaves the return address in RCX and RFLAGS in R11.
  set_reg(UC_X86_REG_RCX, reg(UC_X86_REG_RIP));
  set_reg(UC_X86_REG_R11, reg(UC_X86_REG_EFLAGS));
}

long Runner::sys_write(int fd, std::uint64_t buf, std::uint64_t n) {
  if (fd != 1 && fd != 2) return -EBADF;
  char tmp[65536];
  std::uint64_t total = 0;
  while (total < n) {
    const std::uint64_t chunk = std::min<std::uint64_t>(n - total, sizeof tmp);
    vmspace::AccessResult r = as_.read(buf + total, tmp, chunk);
    std::uint64_t got = r.ok() ? chunk : r.addr - (buf + total);
    got = std::min(got, chunk);
    for (std::uint64_t off = 0; off < got;) {
      ssize_t w = ::write(fd, tmp + off, got - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        return total + off ? static_cast<long>(total + off) : -errno;
      }
      off += static_cast<std::uint64_t>(w);
    }
    total += got;
    if (!r.ok()) return total ? static_cast<long>(total) : -EFAULT;
  }
  return static_cast<long>(total);
}

long Runner::sys_rt_sigaction(std::uint64_t sig, std::uint64_t act, std::uint64_t oact, std::uint64_t setsize) {
  if (setsize != 8) return -EINVAL;
  if (sig < 1 || sig >= sigactions_.size() || ((sig == SIGKILL || sig == SIGSTOP) && act)) return -EINVAL;
  GuestSigaction in{};
  if (act && !as_.read(act, &in, sizeof in).ok()) return -EFAULT;
  const Sigaction old = sigactions_[sig];
  if (act) sigactions_[sig] = Sigaction{in.handler, in.flags, in.restorer, in.mask};
  if (oact) {
    GuestSigaction out{old.handler, old.flags, old.restorer, old.mask};
    vmspace::AccessResult r = as_.write(oact, &out, sizeof out);
    changed(oact, end_sat(oact, sizeof out));
    if (!r.ok()) return -EFAULT;
  }
  return 0;
}

long Runner::sys_arch_prctl(std::uint64_t code, std::uint64_t addr) {
  switch (code) {
    case ARCH_SET_FS: set_reg(UC_X86_REG_FS_BASE, addr); return 0;
    case ARCH_SET_GS: set_reg(UC_X86_REG_GS_BASE, addr); return 0;
    case ARCH_GET_FS:
    case ARCH_GET_GS: {
      const std::uint64_t v = reg(code == ARCH_GET_FS ? UC_X86_REG_FS_BASE : UC_X86_REG_GS_BASE);
      vmspace::AccessResult r = as_.write(addr, &v, sizeof v);
      changed(addr, end_sat(addr, sizeof v));
      return r.ok() ? 0 : -EFAULT;
    }
    default: return -EINVAL;
  }
}

void Runner::exit_guest(int status) {
  exited_ = true;
  exit_status_ = status & 0xff;
  uc_emu_stop(uc_);
}

// ---- Signals -------------------------------------------------------------------

void Runner::kill_guest(int signo) {
  // What a shell prints for a child the signal killed, and its status.
  std::fprintf(stderr, "vmspace-unicorn: %s\n", signo == SIGKILL ? "Killed (out of memory)" : strsignal(signo));
  exited_ = true;
  exit_status_ = 128 + signo;
  uc_emu_stop(uc_);
}

std::uint64_t Runner::deliver_signal() {
  const PendingSignal s = pending_;
  pending_ = {};
  const Sigaction sa = s.signo < static_cast<int>(sigactions_.size()) ? sigactions_[s.signo] : Sigaction{};
  // A fault while its signal is blocked (inside its own handler), ignored
  // or left at the default kills the process (force_sig_fault).  The
  // kernel's x86-64 frame needs SA_RESTORER.
  if (s.signo == SIGKILL || sa.handler <= 1 /* SIG_DFL, SIG_IGN */ || in_handler_ == s.signo ||
      !(sa.flags & kSaRestorer)) {
    std::fprintf(stderr, "vmspace-unicorn: signal %d (si_code %d) at address 0x%" PRIx64 ", rip 0x%" PRIx64 "\n",
                 s.signo, s.code, s.addr, reg(UC_X86_REG_RIP));
    kill_guest(s.signo);
    return 0;
  }
  // Below the red zone: the siginfo (16-byte aligned), then the return
  // address (the restorer), so the handler starts with RSP + 8 aligned as
  // after a call.  (No ucontext: rdx = 0.)
  const std::uint64_t info_at = (reg(UC_X86_REG_RSP) - kRedZone - sizeof(GuestSiginfo)) & ~std::uint64_t{15};
  const std::uint64_t sp = info_at - 8;
  GuestSiginfo info{};
  info.signo = s.signo;
  info.code = s.code;
  info.addr = s.addr;
  unsigned char frame[8 + sizeof info];
  std::memcpy(frame, &sa.restorer, 8);
  std::memcpy(frame + 8, &info, sizeof info);
  vmspace::AccessResult r = as_.write(sp, frame, sizeof frame);
  changed(sp, sp + sizeof frame);
  if (!r.ok()) {  // no room for the frame: Linux forces SIGSEGV
    kill_guest(SIGSEGV);
    return 0;
  }
  set_reg(UC_X86_REG_RDI, static_cast<std::uint64_t>(s.signo));
  set_reg(UC_X86_REG_RSI, info_at);
  set_reg(UC_X86_REG_RDX, 0);
  set_reg(UC_X86_REG_RAX, 0);
  set_reg(UC_X86_REG_RSP, sp);
  if (sa.flags & SA_RESETHAND) sigactions_[s.signo] = {};
  if (!(sa.flags & SA_NODEFER)) in_handler_ = s.signo;
  stats_.signals++;
  return sa.handler;
}

// ---- The run -------------------------------------------------------------------

int Runner::run(std::uint64_t entry, std::uint64_t sp) {
  set_reg(UC_X86_REG_RSP, sp);
  std::uint64_t pc = entry;
  for (;;) {
    // `until` is a non-canonical address: the run ends by exit, a signal
    // or an error, never by reaching it.
    uc_err e = uc_emu_start(uc_, pc, UINT64_MAX, 0, 0);
    if (exited_) return exit_status_;
    if (internal_error_) return 1;
    if (has_deferred_fetch_) {
      has_deferred_fetch_ = false;
      pc = reg(UC_X86_REG_RIP);
      if (trace_ && pc != deferred_fetch_)
        std::fprintf(stderr, "vmspace-unicorn: fetch fault at 0x%" PRIx64 " stopped at rip 0x%" PRIx64 "\n",
                     deferred_fetch_, pc);
      if (handle_fault(Kind::exec, deferred_fetch_, 1)) continue;
    }
    if (pending_.signo) {
      pc = deliver_signal();
      if (exited_) return exit_status_;
      continue;
    }
    switch (e) {
      case UC_ERR_INSN_INVALID: kill_guest(SIGILL); break;
      case UC_ERR_OK:         // HLT: privileged, #GP
      case UC_ERR_EXCEPTION:  // another CPU exception (INT n, ...)
        std::fprintf(stderr, "vmspace-unicorn: CPU exception at rip 0x%" PRIx64 " (%s)\n", reg(UC_X86_REG_RIP),
                     uc_strerror(e));
        kill_guest(SIGSEGV);
        break;
      default:
        std::fprintf(stderr, "vmspace-unicorn: emulation failed at rip 0x%" PRIx64 ": %s\n", reg(UC_X86_REG_RIP),
                     uc_strerror(e));
        return 1;
    }
    return exit_status_;
  }
}

}  // namespace unicorn_linux
