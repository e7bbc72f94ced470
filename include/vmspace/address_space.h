// SPDX-License-Identifier: MIT
// address_space.h - the vmspace public API: a Linux-compatible virtual
// address space.
//
// The entry points are syscall-shaped: same arguments and flag values as
// Linux (PROT_*, MAP_*, MADV_* from <sys/mman.h>), results >= 0 on success
// and -errno on failure, and the same VMA boundaries after every merge and
// split.  All of them are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "vmspace/kernel_behavior.h"
#include "vmspace/lock_mode.h"

namespace vmspace {

namespace mm {
struct MmStruct;
}
namespace mem {
class PhysMem;
}

struct AddressSpaceOptions {
  LockMode mode = kDefaultLockMode;

  // ---- Kernel behaviour that differs between Linux hosts ----------------
  // Every default is upstream Linux 6.18 on x86-64 with its default
  // configuration, run without address-space randomization.  The
  // differential tools probe the host (opscript::probe_host) and set these
  // to match it.
  //
  // vm.mmap_min_addr (fixed mappings below it need cap_sys_rawio: -EPERM)
  // and the floor for hints and searches (Linux's internal mmap_min_addr,
  // max(vm.mmap_min_addr, CONFIG_LSM_MMAP_MIN_ADDR)).
  std::uint64_t dac_mmap_min_addr = 65536;
  std::uint64_t mmap_min_addr = 65536;
  bool cap_sys_rawio = false;
  int max_map_count = 65530;  // vm.max_map_count
  // Top of the top-down search.  0 = Linux's mmap_base() without
  // randomization: TASK_SIZE minus the stack limit and guard gap, clamped
  // to at least 128 MiB (0x7ffff7fff000 for an 8 MiB stack).
  std::uint64_t mmap_base = 0;
  // A read fault on never-written private anonymous memory maps the shared
  // zero page (true, upstream) or allocates a zeroed page (false: Linux's
  // mm_forbids_zeropage(), and hosts booted without a zero page).  With
  // false, the VMA gets an anon_vma on its first read fault, which changes
  // later merges and VM_ACCOUNT after mprotect, exactly as on such a host.
  bool zero_page = true;
  // PROT_EXEC without PROT_READ (and without PROT_WRITE) is execute-only:
  // reads fault with SIGSEGV (SEGV_PKUERR, which op scripts print as
  // SEGV_ACCERR) and populating skips it.  Linux does this on x86 CPUs with
  // protection keys (it gives such mappings an execute-only key); without
  // them (false, the default) any of PROT_READ/WRITE/EXEC makes a page
  // readable.
  bool exec_only_pkey = false;
  // Transparent huge pages.  vmspace maps 4 KiB pages only; these decide
  // what Linux's huge-page paths do to VMAs: `thp_align` (a kernel built
  // with THP) places unhinted private anonymous mappings whose length is a
  // multiple of 2 MiB on a 2 MiB boundary; `thp` decides which VMAs take
  // the huge-page fault path (always: all but MADV_NOHUGEPAGE/MAP_STACK
  // ones; madvise: MADV_HUGEPAGE ones; never: none), and that path gives
  // the VMA an anon_vma even on a read fault when a whole aligned 2 MiB
  // lies inside the VMA and no page table covers it yet.
  ThpMode thp = ThpMode::always;
  bool thp_align = true;
  // The gap kept below a MAP_GROWSDOWN stack (boot option stack_guard_gap,
  // in bytes; default 256 pages).
  std::uint64_t stack_guard_gap = 256 * 4096;
  // RLIMIT_STACK: the largest a MAP_GROWSDOWN VMA may grow (bytes).
  std::uint64_t rlimit_stack = 8ull << 20;
  // RLIMIT_MEMLOCK (bytes; UINT64_MAX = unlimited) and CAP_IPC_LOCK: a
  // MAP_LOCKED mapping that would take the locked total over the limit
  // fails with -EAGAIN (limit 0: -EPERM), unless cap_ipc_lock.
  std::uint64_t rlimit_memlock = 8ull << 20;
  bool cap_ipc_lock = false;
  // Commit accounting of private writable and shared anonymous memory.
  // guess: one request above overcommit_limit_pages (RAM + swap) fails with
  // -ENOMEM; always: nothing fails; never: the space's committed total may
  // not exceed overcommit_limit_pages, and MAP_NORESERVE is ignored.
  // overcommit_limit_pages 0 = no limit.
  Overcommit overcommit = Overcommit::guess;
  std::uint64_t overcommit_limit_pages = 0;

  // ---- Physical memory -----------------------------------------------------
  // Share an existing pool between spaces, or (nullptr) let the space own
  // one of `phys_bytes`, touched up front when `phys_pretouch` (so faults
  // measure our work, not the host kernel's).
  mem::PhysMem* phys = nullptr;
  std::uint64_t phys_bytes = 256ull << 20;
  bool phys_pretouch = true;
};

// What an access that could not be completed ran into: the fault the
// kernel would signal, at the page holding the first byte that faulted.
enum class Fault { none, segv_maperr, segv_accerr, sigbus, oom };
struct AccessResult {
  Fault fault = Fault::none;
  std::uint64_t addr = 0;  // page address of the first faulting byte
  bool ok() const { return fault == Fault::none; }
};
const char* fault_name(Fault f);

// Events counted as /proc/vmstat names them.
enum class VmStat { pgfault, vma_lock_success, vma_lock_abort, vma_lock_retry, vma_lock_miss };

class AddressSpace {
 public:
  explicit AddressSpace(const AddressSpaceOptions& opts = {});
  ~AddressSpace();
  AddressSpace(const AddressSpace&) = delete;
  AddressSpace& operator=(const AddressSpace&) = delete;

  // mmap(2): the mapped address, or -errno.  Anonymous memory only for now
  // (without MAP_ANONYMOUS: -EBADF).
  long mmap(std::uint64_t addr, std::uint64_t len, int prot, int flags, int fd = -1,
            std::uint64_t offset = 0);
  int munmap(std::uint64_t addr, std::uint64_t len);
  int mprotect(std::uint64_t addr, std::uint64_t len, int prot);
  int madvise(std::uint64_t addr, std::uint64_t len, int advice);
  // mremap(2): the (new) address, or -errno.  `flags` are MREMAP_MAYMOVE,
  // MREMAP_FIXED, MREMAP_DONTUNMAP; new_addr is used with FIXED (and as a
  // hint with DONTUNMAP).  Pages move with their contents (page tables are
  // moved, not copied).
  long mremap(std::uint64_t old_addr, std::uint64_t old_len, std::uint64_t new_len, int flags,
              std::uint64_t new_addr = 0);

  // Guest memory access (the soft MMU).  Copies in ascending address order,
  // faulting pages in as needed; stops at the first fault it cannot
  // resolve (the bytes before it are done).
  AccessResult read(std::uint64_t va, void* dst, std::uint64_t n);
  AccessResult write(std::uint64_t va, const void* src, std::uint64_t n);
  AccessResult fill(std::uint64_t va, unsigned char byte, std::uint64_t n);
  // Make the page at va usable for `write` (or read) access, as a CPU
  // fault would.
  Fault fault_in(std::uint64_t va, bool write);

  // A scope in which translate() hands out host pointers.  Pointers stay
  // valid (the frames are not reused) until the scope ends, even if the
  // page is unmapped meanwhile; an access that starts after munmap/
  // mprotect/MADV_DONTNEED returned never gets the old translation.
  // A scope is an RCU read-side section, so freed memory is not reusable
  // until it ends.  Every other call of this class may be made inside one
  // (an emulator thread can hold a scope across guest code and service the
  // guest's mmap/munmap from inside it); only, a fault inside a scope that
  // finds no free frame reports Fault::oom where outside a scope it would
  // first wait for freed frames.  Not inside a scope: destroying an
  // AddressSpace (it waits for a grace period: the process aborts).
  // Scopes nest; a scope belongs to the thread that opened it.
  class AccessScope {
   public:
    explicit AccessScope(AddressSpace& as);
    ~AccessScope();
    AccessScope(const AccessScope&) = delete;
    AccessScope& operator=(const AccessScope&) = delete;
    // Host pointer to the byte at va if the page is mapped for this access
    // right now, else nullptr (call fault_in outside the scope, then retry).
    void* translate(std::uint64_t va, bool write) const;

   private:
    AddressSpace& as_;
  };

  // Per-mapping resident-set figures, /proc/self/smaps style.
  std::string smaps() const;
  std::uint64_t rss_pages() const;

  // The /proc/self/maps text of this space, in the kernel's format.
  std::string maps() const;
  // Checks every structural invariant; on failure returns false and says
  // why.  Debug builds also run it after every modifying call.
  bool validate(std::string* why = nullptr) const;

  LockMode mode() const;
  int map_count() const;
  std::uint64_t vm_stat(VmStat s) const;

  // The internals, for the fault path, benchmarks and tests.
  mm::MmStruct* mm() const { return mm_.get(); }
  mem::PhysMem* phys() const;

 private:
  template <class CopyFn>
  AccessResult access(std::uint64_t va, std::uint64_t n, bool write, CopyFn&& copy);

  std::unique_ptr<mem::PhysMem> owned_phys_;
  std::unique_ptr<mm::MmStruct> mm_;
};

}  // namespace vmspace
