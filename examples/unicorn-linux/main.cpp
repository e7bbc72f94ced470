// SPDX-License-Identifier: MIT
// vmspace-unicorn: run a static x86-64 Linux executable on Unicorn with a
// vmspace::AddressSpace as its memory.  See runner.h for how the two fit
// together and README.md ("Running real guest code under Unicorn").
#include <unicorn/unicorn.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loader.h"
#include "runner.h"
#include "vmspace/address_space.h"
#include "vmspace/lock_mode.h"

namespace {

constexpr int kExitUsage = 2;

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: vmspace-unicorn [--mode per_vma_refcount|per_vma_rwsem|mmap_lock] [--stats]\n"
               "                       [--eager-write] GUEST [ARGS...]\n"
               "\n"
               "Run GUEST, a static x86-64 Linux executable (ET_EXEC, not PIE), on the Unicorn CPU\n"
               "emulator with a vmspace address space as its memory: its segments, heap (brk),\n"
               "stack and mmap'ed memory live in vmspace, Unicorn's memory faults go through\n"
               "vmspace's fault path, and faults vmspace cannot resolve reach the guest as SIGSEGV\n"
               "or SIGBUS.  System calls: mmap (anonymous), munmap, mprotect, mremap, madvise, brk,\n"
               "write (fds 1 and 2), rt_sigaction, arch_prctl, set_tid_address, set_robust_list,\n"
               "exit, exit_group; others fail with ENOSYS (reported on stderr).\n"
               "\n"
               "  --mode M       the AddressSpace lock mode (default %s)\n"
               "  --stats        print figures of the run on stderr at exit (faults, pages mapped\n"
               "                 into Unicorn, invalidations, write-watch events, vmspace counters)\n"
               "  --eager-write  serve a read fault on a writable page as a write fault: needed by\n"
               "                 guests using atomic read-modify-write instructions (static glibc\n"
               "                 programs), which Unicorn 2.0.1 cannot resume after a fault on a\n"
               "                 read-only page\n"
               "  --help         this text\n"
               "\n"
               "The exit status is the guest's, or 128 + N when signal N killed it (as a shell\n"
               "reports it); 2 for bad usage or a file that cannot be run.  The number of\n"
               "write-watch events (self-modifying code) is printed on stderr at exit.\n",
               std::string(vmspace::lock_mode_name(vmspace::kDefaultLockMode)).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  vmspace::LockMode mode = vmspace::kDefaultLockMode;
  bool stats = false;
  bool eager_write = false;
  int i = 1;
  for (; i < argc; i++) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else if (a == "--stats") {
      stats = true;
    } else if (a == "--eager-write") {
      eager_write = true;
    } else if (a == "--mode" || a.starts_with("--mode=")) {
      std::string_view v;
      if (a == "--mode") {
        if (i + 1 == argc) {
          std::fprintf(stderr, "vmspace-unicorn: --mode needs a value\n");
          return kExitUsage;
        }
        v = argv[++i];
      } else {
        v = a.substr(7);
      }
      std::optional<vmspace::LockMode> m = vmspace::parse_lock_mode(v);
      if (!m) {
        std::fprintf(stderr, "vmspace-unicorn: unknown lock mode '%.*s' (per_vma_refcount, per_vma_rwsem, mmap_lock)\n",
                     static_cast<int>(v.size()), v.data());
        return kExitUsage;
      }
      mode = *m;
    } else if (a == "--") {
      i++;
      break;
    } else if (a.starts_with("-")) {
      std::fprintf(stderr, "vmspace-unicorn: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return kExitUsage;
    } else {
      break;
    }
  }
  if (i == argc) {
    usage(stderr);
    return kExitUsage;
  }
  const std::vector<std::string> guest_argv(argv + i, argv + argc);

  try {
    unicorn_linux::ElfImage image = unicorn_linux::read_elf(guest_argv[0]);
    vmspace::AddressSpaceOptions opts;
    opts.mode = mode;
    opts.brk_start = image.brk_start();
    vmspace::AddressSpace as(opts);
    unicorn_linux::map_segments(as, image);
    const std::uint64_t sp = unicorn_linux::build_stack(as, image, guest_argv);

    int status;
    unicorn_linux::RunStats st;
    {
      unicorn_linux::Runner runner(as, eager_write);
      status = runner.run(image.entry, sp);
      st = runner.stats();
    }
    std::fflush(stdout);
    std::fprintf(stderr, "vmspace-unicorn: write-watch events: %" PRIu64 "\n", st.write_watch_events);
    if (stats) {
      std::fprintf(stderr,
                   "vmspace-unicorn: mode %s, %s\n"
                   "  faults taken (read/write/exec)  %" PRIu64 " / %" PRIu64 " / %" PRIu64 "\n"
                   "  pages mapped into Unicorn       %" PRIu64 " (unmapped %" PRIu64 " of which %" PRIu64 " evicted, at most %" PRIu64 " at once, %" PRIu64 " re-protected)\n"
                   "  invalidations                   %" PRIu64 "\n"
                   "  system calls                    %" PRIu64 "\n"
                   "  signals delivered to handlers   %" PRIu64 "\n"
                   "  vmspace pgfault                 %" PRIu64 " (vma_lock success %" PRIu64 ", miss %" PRIu64 ")\n"
                   "  vmspace rss at exit             %" PRIu64 " pages, %d VMAs\n",
                   std::string(vmspace::lock_mode_name(mode)).c_str(),
                   unicorn_linux::kVmspaceNotifiers ? "invalidation notifiers and write-watch"
                                                    : "fallback: invalidation after each memory syscall",
                   st.faults[0], st.faults[1], st.faults[2], st.pages_mapped, st.pages_unmapped, st.evictions,
                   st.max_pages_resident, st.reprotects, st.invalidations, st.syscalls, st.signals,
                   as.vm_stat(vmspace::VmStat::pgfault), as.vm_stat(vmspace::VmStat::vma_lock_success),
                   as.vm_stat(vmspace::VmStat::vma_lock_miss), as.rss_pages(), as.map_count());
    }
    return status;
  } catch (const unicorn_linux::LoadError& e) {
    std::fprintf(stderr, "vmspace-unicorn: %s\n", e.what());
    return kExitUsage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vmspace-unicorn: %s\n", e.what());
    return 1;
  }
}
