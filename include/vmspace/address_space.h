// SPDX-License-Identifier: MIT
// address_space.h - the vmspace public API: a Linux-compatible virtual
// address space.
//
// The entry points are syscall-shaped: same arguments and flag values as
// Linux (PROT_*, MAP_*, MADV_* from <sys/mman.h>), results >= 0 on success
// and -errno on failure, and the same VMA boundaries after every merge and
// split.  All of them are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vmspace/export.h"
#include "vmspace/file_backing.h"
#include "vmspace/physical_memory.h"
#include "vmspace/kernel_behavior.h"
#include "vmspace/mman.h"  // the flag values newer than some libcs' <sys/mman.h>
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
  // ---- Guest geometry ----------------------------------------------------
  // TASK_SIZE, the end of user space.  0 = x86-64's 47-bit user space
  // (0x7ffffffff000).  kTaskSize57 = five-level paging (0x00fffffffffff000):
  // as Linux, mappings go above the 47-bit window only when the hint (or
  // MAP_FIXED address) asks for it.  kTaskSize32 = a 32-bit (ia32) guest
  // (0xffffe000): every mapping, the stack and the heap stay below it and
  // mmap_base defaults to TASK_SIZE minus the stack gap as for 64 bits.
  // Any other value: the constructor throws std::invalid_argument.
  std::uint64_t task_size = 0;
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
  // MAP_LOCKED mapping (or any mapping after mlockall(MCL_FUTURE)) that
  // would take the locked total over the limit fails with -EAGAIN, mlock
  // with -ENOMEM; with a limit of 0 locking is -EPERM; none of it applies
  // with cap_ipc_lock.
  std::uint64_t rlimit_memlock = 8ull << 20;
  bool cap_ipc_lock = false;
  // Commit accounting of private writable and shared anonymous memory.
  // guess: one request above overcommit_limit_pages (RAM + swap) fails with
  // -ENOMEM; always: nothing fails; never: the space's committed total may
  // not exceed overcommit_limit_pages, and MAP_NORESERVE is ignored.
  // overcommit_limit_pages 0 = no limit.
  Overcommit overcommit = Overcommit::guess;
  std::uint64_t overcommit_limit_pages = 0;

  // ---- The process -----------------------------------------------------------
  // Where the program break starts (Linux's mm->start_brk: the page after
  // the program's bss, moved up by up to 1 GiB under address-space
  // randomization); rounded up to a page.  brk() grows the heap from there.
  // 0 (the default) = no heap: brk() returns 0 and changes nothing, as for
  // a space with no program loaded.
  std::uint64_t brk_start = 0;
  // RLIMIT_DATA (bytes; UINT64_MAX = unlimited, the default), as brk()
  // applies it: the heap's size (break - brk_start; vmspace has no ELF data
  // segment) may not exceed it, even when shrinking, and growing the heap
  // may not take the pages of all private writable mappings above it.
  // (mmap and mremap do not check it yet.)
  std::uint64_t rlimit_data = UINT64_MAX;

  // ---- Physical memory -----------------------------------------------------
  // The frames the space's pages come from (physical_memory.h: how the
  // pool grows, how to size it).  `pool`: a pool shared with other spaces
  // (the space keeps it alive).  Without one, the space makes its own,
  // with a limit of `phys_bytes` (only address space is reserved until
  // frames are used) and every frame's host page touched up front when
  // `phys_pretouch` (benchmarks).  `phys`: the same as `pool` for vmspace's
  // own tools and tests (a pool they keep alive themselves).
  std::shared_ptr<PhysicalMemory> pool;
  std::uint64_t phys_bytes = 256ull << 20;
  bool phys_pretouch = false;
  mem::PhysMem* phys = nullptr;
};

// The page size of every guest: vmspace maps 4 KiB pages only.
inline constexpr std::uint64_t kGuestPageSize = 4096;
// AddressSpaceOptions::task_size values (see there).
inline constexpr std::uint64_t kTaskSize47 = (std::uint64_t{1} << 47) - kGuestPageSize;
inline constexpr std::uint64_t kTaskSize57 = (std::uint64_t{1} << 56) - kGuestPageSize;
inline constexpr std::uint64_t kTaskSize32 = 0xffffe000;

// What an access does to a page, as the CPU's fault error code says it:
// a data read, a data write, or an instruction fetch.  Linux x86-64 with
// NX: a fetch needs PROT_EXEC (PROT_READ does not imply it: no
// READ_IMPLIES_EXEC personality); a read needs any of PROT_READ, WRITE or
// EXEC (PROT_EXEC alone is readable unless AddressSpaceOptions::
// exec_only_pkey); a write needs PROT_WRITE.  A fetch is a read as far as
// faulting pages in goes (it never copies on write); as on x86, a fetch
// from memory that is accessible but not executable faults the page in
// before it reports SEGV_ACCERR (the NX protection fault of the retried
// fetch), so mincore sees the page afterwards.
enum class AccessKind : unsigned char { read, write, exec };

// What an access that could not be completed ran into: the fault the
// kernel would signal, at the first byte that faulted (si_addr).
enum class Fault { none, segv_maperr, segv_accerr, sigbus, oom };
struct AccessResult {
  Fault fault = Fault::none;
  std::uint64_t addr = 0;  // the first byte that faulted, exact (si_addr); 0 when ok
  std::uint64_t done = 0;  // bytes completed before it (all of them when ok)
  bool ok() const { return fault == Fault::none; }
};
VMSPACE_API const char* fault_name(Fault f);

// One VMA as the query API returns it (a copy: it stays valid whatever
// happens to the space afterwards).
struct VmaInfo {
  std::uint64_t start = 0, end = 0;  // [start, end), page aligned
  int prot = 0;                      // PROT_READ | PROT_WRITE | PROT_EXEC
  int flags = 0;                     // MAP_SHARED or MAP_PRIVATE, | MAP_GROWSDOWN | MAP_LOCKED
  std::uint64_t vm_flags = 0;        // Linux's VM_* bits, as smaps VmFlags shows them
  std::uint64_t offset = 0;          // file offset of `start` in bytes (0 for anonymous memory)
  std::string name;                  // the maps name: a file's, "[heap]", "[stack]", "[anon:NAME]", ""
};

// Invalidation notifiers (Linux's mmu_notifier): why translations of a
// range die.
enum class InvalidateReason : unsigned char {
  unmap,        // munmap, MAP_FIXED over a mapping, brk shrinking, mremap's source
  protection,   // mprotect changing a VMA's flags (also when it only adds
                // rights, as Linux's change_protection); write-watch arming
                // and re-arming (write_watch_scan with rearm)
  remap,        // mremap moving pages (the source range)
  discard,      // MADV_DONTNEED / DONTNEED_LOCKED / FREE / GUARD_INSTALL / PAGEOUT
  cow,          // a copy-on-write fault replacing a page with its copy (one page)
  truncate,     // ftruncate or a hole punched in a file mapped here, MADV_REMOVE
                // included (it punches the hole for every mapping of the file)
  fork_wrprotect,  // fork write-protecting private pages for copy on write
  other,        // anything else that changes a PTE (page migration, writeback clean)
};
struct InvalidateRange {
  std::uint64_t start = 0, end = 0;  // [start, end), page aligned
  InvalidateReason reason = InvalidateReason::other;
};
// An embedder's view of translations (its own TLB, a JIT's code cache).
// Thread safety: callbacks run on the thread making the change, possibly
// concurrently for disjoint ranges; they must not call into this
// AddressSpace other than translation_generation(), and must not block on
// a thread that may be inside a call of this space.  They may take the
// embedder's own locks (then never call unregister_notifier holding one
// of those: it waits for running callbacks).  During a callback the
// changing thread may hold the space's mmap_lock, a VMA lock or a file's
// mapping lock, never a spinlock (docs/locking.md, "Invalidation
// notifiers").  Pairs may nest on one thread in one case: mprotect making
// locked private memory writable populates it, and a copy on write then
// notifies inside mprotect's range.
class VMSPACE_API InvalidationNotifier {
 public:
  virtual ~InvalidationNotifier() = default;
  // Before any PTE of the range changes: after it returns, a translation
  // of the range the embedder caches must not be used for a new access.
  virtual void invalidate_range_start(const InvalidateRange& r) = 0;
  // After the change is complete (the range may be faulted in again).
  virtual void invalidate_range_end(const InvalidateRange& r) { (void)r; }
};

// Write-watch callback: the guest is about to write to the watched page
// at `page` (page aligned) through `as`.  Called before the write
// proceeds, on the writing thread, with no lock of the space held; the
// same rules as InvalidationNotifier callbacks.
class AddressSpace;
using WriteWatchFn = void (*)(void* arg, AddressSpace& as, std::uint64_t page);

// A futex key (Linux's get_futex_key): two accesses wait on the same futex
// exactly when their keys compare equal.  Private futexes and private
// memory: the space and the address; shared memory (MAP_SHARED anonymous
// memory and files) with a shared futex: the shared object and the byte
// offset in it, the same in every mapping of it (in any space sharing the
// object).  Stable while the mapping (for shared objects: the object)
// lives.
struct FutexKey {
  const void* object = nullptr;
  std::uint64_t offset = 0;
  bool operator==(const FutexKey&) const = default;
};

// Events counted as /proc/vmstat names them, and vmspace's own:
// madvise_vma_lock / madvise_mmap_lock count the madvise(DONTNEED,
// DONTNEED_LOCKED, FREE) calls that ran under one VMA's read lock (the
// range inside one VMA, per-VMA lock modes, as Linux 6.17+) and those that
// took the mmap_lock instead.  LockMode::per_vma_range: range_write_ranged
// counts mmap, munmap and mprotect calls that locked only the range they
// change (with its neighbours), range_write_whole those that locked the
// whole space (placements without a hint, MAP_POPULATE, MAP_LOCKED,
// locked VMAs, stacks, overcommit never, near max_map_count),
// range_lock_retry range requests redone
// wider because a neighbour changed meanwhile.  (Same order as
// mm::VmEvent.)
enum class VmStat {
  pgfault,
  vma_lock_success,
  vma_lock_abort,
  vma_lock_retry,
  vma_lock_miss,
  madvise_vma_lock,
  madvise_mmap_lock,
  range_write_ranged,
  range_write_whole,
  range_lock_retry,
};

class VMSPACE_API AddressSpace {
 public:
  explicit AddressSpace(const AddressSpaceOptions& opts = {});
  ~AddressSpace();
  AddressSpace(const AddressSpace&) = delete;
  AddressSpace& operator=(const AddressSpace&) = delete;

  // mmap(2): the mapped address, or -errno.  Anonymous memory (`fd`
  // ignored), or with `fd` one of this space's files (memfd_create below)
  // at `offset` bytes (page aligned): MAP_SHARED mappings see and change
  // the file's pages; MAP_PRIVATE ones read them and copy a page on the
  // first write to it.  A page wholly past the file's end faults SIGBUS
  // (so does a page its backing fails to read); the bytes past the end in
  // the last page read as zeros.  Without MAP_ANONYMOUS, a descriptor that
  // is not open: -EBADF; one not open for reading, or MAP_SHARED with
  // PROT_WRITE of one not open for writing: -EACCES (a MAP_SHARED mapping
  // of a read-only descriptor can never be made writable: mprotect
  // -EACCES).
  long mmap(std::uint64_t addr, std::uint64_t len, int prot, int flags, int fd = -1,
            std::uint64_t offset = 0);

  // msync(2): Linux 6.18's checks and errors: unknown flags, MS_ASYNC with
  // MS_SYNC, or an unaligned addr: -EINVAL; addr + len (rounded up to
  // pages) wrapping: -ENOMEM, but a length that rounds to 0 is 0; holes
  // are skipped and the call then returns -ENOMEM (MS_ASYNC alone stops at
  // the first); MS_INVALIDATE on locked memory: -EBUSY.  MS_SYNC writes the
  // dirty pages of MAP_SHARED file mappings in the range back to the
  // file's backing and syncs it (FileBacking::sync); MS_ASYNC writes them
  // back without the sync (vmspace has no flusher thread to leave them
  // to).  Everything written to those pages before the call (through any
  // mapping, or pwrite) is in the backing when it returns; a backing's
  // error is returned (those pages stay dirty).  memfds and shared
  // anonymous memory have no backing: nothing to write.  MS_INVALIDATE
  // does nothing more, as in Linux: every mapping sees the one page cache.
  // The mmap_lock is not held while writing.  Called inside an
  // AccessScope, the pages are written but stay dirty (cleaning them
  // needs a grace period, which a scope cannot wait for).  0 on success.
  int msync(std::uint64_t addr, std::uint64_t len, int flags);

  // ---- fork ------------------------------------------------------------------
  // fork(2)'s memory half (Linux 6.18's dup_mmap): a new space with this
  // one's options and lock mode, sharing its physical memory (the pool
  // stays alive while any space of the family uses it), holding a copy of
  // every mapping:
  //   - private memory is shared copy-on-write: the first write on either
  //     side to a page copies it, unless the other side no longer maps it
  //     (it unmapped it, wrote to its own copy, or was destroyed): then the
  //     page is reused in place (Linux 5.19+'s rule: reuse when this
  //     mapping holds the page's only reference);
  //   - MAP_SHARED mappings (files, shared anonymous memory) stay shared;
  //   - MADV_DONTFORK ranges are not copied; MADV_WIPEONFORK ranges are
  //     copied empty (zero-filled on the child's next touch);
  //   - memory locks (mlock, mlockall) are not inherited; seals, guard
  //     regions, the program break and the other VMA flags are;
  //   - the child gets a copy of the file table (the same open files).
  // The parent is locked for writing while it is copied: its faults and
  // calls wait (a fault in progress finishes first); afterwards both run
  // independently.  Before it returns, fork waits for every AccessScope
  // of any thread that was open when the parent's pages were
  // write-protected (Linux flushes the parent's TLB): a store through an
  // older translation lands before fork returns (the child may see it, as
  // a write racing fork(2) may be), never after.  Called inside an
  // AccessScope fork cannot wait: it copies the parent's writable private
  // pages for the child at once instead (slower, same result), and
  // returns -EAGAIN if another fork of this space is still waiting.  Until
  // fork returns, a write fault of the parent on a page it shares with the
  // new child keeps the page (older translations still store there) and
  // gives the child a copy, so no store is lost.  A read through a
  // translation taken before this space stopped sharing a page (its
  // copy-on-write fault, MADV_DONTNEED, munmap) still sees the page as it
  // was, never what the relative that now owns it writes there: while a
  // thread of this space holds translations (an open AccessScope, or a
  // read/write/fill copying), the page stays counted as shared until a
  // grace period has passed (smaps shows it shared that much longer; the
  // relative copies instead of reusing it in place).  Commit charges
  // (Overcommit::never) count parent and children together, as Linux's
  // system-wide count does.  Returns the child, or nullptr with *err =
  // -ENOMEM (the parent is unchanged but for pages write-protected for
  // copy-on-write) or -EAGAIN (above).  Thread-safe; may be called inside an AccessScope (a
  // failed fork then leaves the freeing of its partial copy to a later
  // grace period).  A space created with AddressSpaceOptions::phys
  // requires its pool to outlive every child.
  std::unique_ptr<AddressSpace> fork(int* err = nullptr);

  // ---- Files (Linux's memfds: shmem files) ---------------------------------
  // A space has its own table of open files, indexed by small non-negative
  // numbers ("descriptors", the lowest free one first, as a process's file
  // table; they are not host descriptors).  A file's pages come from this
  // space's physical memory.  A mapping keeps its file alive after close().
  // Every call is thread-safe; size changes of one file (ftruncate, a
  // pwrite that extends it) are serialized, as under Linux's inode lock,
  // and run concurrently with faults on the file's mappings.
  //
  // memfd_create(2): a new empty file opened for reading and writing
  // ("/memfd:NAME (deleted)" in maps), with no backing: its page cache is
  // its storage.  The descriptor, or -EINVAL for a name longer than 249
  // bytes, -EMFILE with 65536 files open, -ENOMEM.
  int memfd_create(const std::string& name);
  // A file whose bytes come from `backing` (file_backing.h: what it must
  // provide, when it is called), opened with `flags` O_RDONLY, O_WRONLY or
  // O_RDWR (anything else: -EINVAL), shown in maps as `name` with the
  // backing's device and inode numbers.  Its size is read from the backing
  // now.  Pages are read from the backing on first use and stay cached;
  // dirty ones are written back by msync, fsync, and once the file is
  // neither open nor mapped anywhere.  The descriptor, or -EINVAL, the
  // backing's size() error, -EMFILE, -ENOMEM.
  int open_file(std::shared_ptr<FileBacking> backing, const std::string& name, int flags);
  // open(2) of a host file: `path`, `flags` and `mode` go to the host's
  // open() (O_CREAT, O_TRUNC, O_EXCL... work as there; O_CLOEXEC is
  // added), and the file is opened here with a host_fd_backing of it, named
  // by its resolved path.  The host's -errno (-ENOENT, -EACCES, -EISDIR),
  // or open_file's errors (-EINVAL for what is not a regular file).
  int open(const std::string& path, int flags, unsigned mode = 0600);
  // fsync(2): write the file's dirty pages back and sync its backing.  0,
  // -EBADF, or the backing's -errno (the pages that failed stay dirty).
  // Nothing to do for a memfd.  Inside an AccessScope: as msync there.
  int fsync(int fd);
  // ftruncate(2): set the size in bytes.  Shrinking unmaps the pages past
  // the new end from every mapping of the file (private copies of them
  // too, as Linux does) and zeroes the bytes past the end in the last
  // page; growing adds zeros.  A file with a backing is truncated there
  // first.  -EINVAL for a negative length (checked first) or a descriptor
  // not open for writing, -EBADF, or the backing's error.
  int ftruncate(int fd, std::int64_t length);
  // pwrite(2) / pread(2) through the page cache: the count, or -errno
  // (-EINVAL for a negative offset, checked first; -EBADF, also for a
  // descriptor not open for writing / reading; -ENOMEM when no frame is
  // left and nothing was transferred; -EIO when the backing failed to read
  // the first page).  pwrite extends the file and dirties the pages it
  // writes (write-back, not write-through); pread stops at the end.
  long pwrite(int fd, const void* buf, std::uint64_t n, std::int64_t offset);
  long pread(int fd, void* buf, std::uint64_t n, std::int64_t offset);
  // close(2): 0, or -EBADF.
  int close(int fd);
  // Open this space's file `fd` in `to` too (as passing a descriptor over
  // a Unix socket does): the descriptor in `to`, or -EBADF, -EMFILE,
  // -ENOMEM, or -EXDEV when the two spaces do not share their physical
  // memory (AddressSpaceOptions::phys): a file's pages are frames of one
  // pool.  Both spaces then see, map and truncate the same file.
  int send_file(int fd, AddressSpace& to);
  int munmap(std::uint64_t addr, std::uint64_t len);
  int mprotect(std::uint64_t addr, std::uint64_t len, int prot);
  // madvise(2), Linux 6.18's checks and errors.  Advice that changes VMA
  // flags splits and merges like mprotect.  Page advice on anonymous
  // memory: DONTNEED / DONTNEED_LOCKED discard (private memory reads back
  // zero-filled, shared memory keeps its data); FREE makes private pages
  // lazily freeable (their data stays, and a later PAGEOUT discards those
  // not written since); REMOVE punches a hole into shared memory (and
  // into a file's backing, which may refuse: -EOPNOTSUPP); COLD,
  // PAGEOUT, WILLNEED change nothing else (there is no swap).
  // POPULATE_READ / POPULATE_WRITE fault pages in (read: the zero page;
  // write: private copies), stopping at the first problem: a hole -ENOMEM,
  // a VMA without read (write) permission -EINVAL, a guard page -EFAULT,
  // out of frames -ENOMEM.  GUARD_INSTALL turns the range into guard pages
  // (their contents are discarded; any access faults SEGV_MAPERR after the
  // VMA's own protection check; no VMA split, the VMA gets
  // VM_MAYBE_GUARD); they survive mprotect, DONTNEED, FREE, REMOVE and
  // move with mremap; GUARD_REMOVE and munmap remove them.  Locked memory
  // refuses DONTNEED, FREE, REMOVE, COLD, PAGEOUT and GUARD_INSTALL
  // (-EINVAL); sealed read-only private memory refuses the discarding
  // advice (-EPERM).  Holes: every mapped part is advised, then -ENOMEM
  // (POPULATE_* excepted).  MADV_COLLAPSE: -EOPNOTSUPP (4 KiB pages only).
  // DONTNEED, DONTNEED_LOCKED and FREE on a range inside one VMA run under
  // that VMA's read lock in the per-VMA lock modes (concurrently with
  // faults and with changes to other VMAs), as Linux 6.17+ does;
  // VmStat::madvise_vma_lock / madvise_mmap_lock count the two ways.
  int madvise(std::uint64_t addr, std::uint64_t len, int advice);
  // mremap(2): the (new) address, or -errno.  `flags` are MREMAP_MAYMOVE,
  // MREMAP_FIXED, MREMAP_DONTUNMAP; new_addr is used with FIXED (and as a
  // hint with DONTUNMAP).  Pages move with their contents (page tables are
  // moved, not copied).
  long mremap(std::uint64_t old_addr, std::uint64_t old_len, std::uint64_t new_len, int flags,
              std::uint64_t new_addr = 0);

  // ---- Memory locking (Linux 6.18 mm/mlock.c) ------------------------------
  // Locked VMAs carry VM_LOCKED ("lo" in smaps VmFlags; VM_LOCKONFAULT "lf"
  // too when locked on fault) and count in the space's locked total
  // (VmLck), which RLIMIT_MEMLOCK bounds unless cap_ipc_lock
  // (AddressSpaceOptions).  Locking splits and merges VMAs as mprotect
  // does.  Pages are faulted in after the flags are set, with the
  // mmap_lock downgraded to read; nothing is ever paged out, so a locked
  // page differs from another only in what is counted and shown, and in
  // the madvise advice refused on it.  Each call is atomic with respect to
  // the other calls of this class except where Linux commits partially (as
  // noted); all are thread-safe.
  //
  // mlock(2): lock [addr, addr + len) and fault it in.  No alignment check:
  // the range is widened to whole pages (a length that wraps to 0 is 0).
  // -EPERM when RLIMIT_MEMLOCK is 0 without cap_ipc_lock (even for len 0);
  // -ENOMEM when the locked total would exceed RLIMIT_MEMLOCK (pages of the
  // range locked already are discounted), or when the range starts in a
  // hole (nothing changes) or has a hole later (the VMAs before it are
  // locked); -EINVAL when addr + len wraps.  Faulting in fails like
  // Linux's: an inaccessible VMA (PROT_NONE, execute-only under a
  // protection key) gives -ENOMEM, running out of frames -EAGAIN, with the
  // whole range locked and the pages before the failure faulted in.
  int mlock(std::uint64_t addr, std::uint64_t len);
  // munlock(2): unlock [addr, addr + len); the same rounding and holes as
  // mlock, never -EPERM.
  int munlock(std::uint64_t addr, std::uint64_t len);
  // mlock2(2): `flags` 0 (as mlock) or MLOCK_ONFAULT (lock without faulting
  // anything in; pages are locked as they are touched).  Other bits:
  // -EINVAL, checked first.
  int mlock2(std::uint64_t addr, std::uint64_t len, unsigned flags);
  // mlockall(2): MCL_CURRENT locks every VMA (and faults them in, ignoring
  // failures, unless MCL_ONFAULT); MCL_FUTURE makes every later mapping
  // locked (MCL_ONFAULT: on fault) until munlockall() or an mlockall()
  // without MCL_FUTURE.  -EINVAL for 0, unknown bits or MCL_ONFAULT alone;
  // -EPERM as mlock; -ENOMEM with MCL_CURRENT when the whole space is
  // larger than RLIMIT_MEMLOCK (without cap_ipc_lock).
  int mlockall(int flags);
  // munlockall(2): unlock every VMA and end MCL_FUTURE.  Returns 0.
  int munlockall();

  // mseal(2) (Linux 6.10+; as 6.17+): seal [addr, addr + len) for good.  A
  // sealed VMA can no longer be unmapped, mapped over (MAP_FIXED),
  // mprotect'ed (even to its own protection), mremap'ed (from or onto) or
  // shrunk by brk: those fail with -EPERM, checking VMA by VMA (VMAs before
  // the sealed one may have changed already, as in Linux); discarding
  // madvise advice on sealed read-only private anonymous memory fails with
  // -EPERM too.  `flags` must be 0 (-EINVAL), addr page aligned (-EINVAL);
  // len 0 succeeds; any unmapped page in the range: -ENOMEM with nothing
  // sealed.  Sealing part of a VMA splits it.
  int mseal(std::uint64_t addr, std::uint64_t len, unsigned long flags = 0);

  // mincore(2): one byte per page of [addr, addr + len) into vec (room for
  // ceil(len / 4096) bytes), 1 where the page is resident.  Linux's order:
  // addr not page aligned: -EINVAL; addr + len wraps or ends above
  // 0x7ffffffff000: -ENOMEM; len 0: 0 (vec untouched); a page no VMA holds:
  // -ENOMEM, with the bytes of the mapped pages before it already written
  // (the rest untouched); vec == nullptr: -EFAULT, Linux's answer for a
  // NULL buffer (but -ENOMEM when addr is unmapped: the lookup comes
  // first).  A page reports 1 when it has a frame (the zero page after a
  // read, a PROT_NONE page that keeps its frame); private anonymous pages
  // never touched, discarded, or guard pages report 0; shared anonymous
  // pages report whether the shared object holds the page (1 even after
  // DONTNEED or under a guard).  Returns 0 on success.
  int mincore(std::uint64_t addr, std::uint64_t len, unsigned char* vec);

  // brk(2) as the raw system call (what glibc's brk/sbrk are built on):
  // asks for the program break at new_brk and returns the break after the
  // call: new_brk on success, the old break on any failure (never an
  // errno), so brk(0) returns the current break.  The break starts at
  // AddressSpaceOptions::brk_start with no heap VMA (no heap at all when
  // that is 0).  Growing maps [old break, new break) rounded to pages as
  // private read-write memory ("[heap]" in maps, VM_ACCOUNT charged),
  // extending the VMA that ends at the old break when it is compatible;
  // it fails below brk_start, beyond the task size, over RLIMIT_DATA or
  // RLIMIT_MEMLOCK (under mlockall(MCL_FUTURE), which also locks and
  // faults in the new part), out of commit or map_count, or when the new
  // break would come within a page of the next mapping (a page plus the
  // stack guard gap of a MAP_GROWSDOWN one).  Shrinking unmaps [new break,
  // old break) rounded to pages, whatever is mapped there; it fails when
  // nothing is mapped there, over a sealed page, or above RLIMIT_DATA.
  std::uint64_t brk(std::uint64_t new_brk);

  // Guest memory access (the soft MMU).  Copies in ascending address order,
  // faulting pages in as needed; stops at the first fault it cannot
  // resolve: AccessResult::done bytes are done, AccessResult::addr is the
  // first byte not done (va + done).  `fetch` reads as instruction fetch
  // does (AccessKind::exec: the pages must be executable).
  AccessResult read(std::uint64_t va, void* dst, std::uint64_t n);
  AccessResult fetch(std::uint64_t va, void* dst, std::uint64_t n);
  AccessResult write(std::uint64_t va, const void* src, std::uint64_t n);
  AccessResult fill(std::uint64_t va, unsigned char byte, std::uint64_t n);
  // Make the page at va usable for the access, as a CPU fault would.
  Fault fault_in(std::uint64_t va, AccessKind kind);
  Fault fault_in(std::uint64_t va, bool write) {
    return fault_in(va, write ? AccessKind::write : AccessKind::read);
  }

  // ---- Atomics on guest memory -------------------------------------------
  // `size` is 1, 2, 4 or 8 and va a multiple of it (else Fault::sigbus at
  // va, BUS_ADRALN, with nothing done; a size of another value is a
  // programming error: std::invalid_argument).  Each is one sequentially
  // consistent atomic operation on the guest's page (atomic with respect
  // to every other access of any space mapping the page, and to host code
  // using a translate()d pointer with std::atomic_ref), faulting the page
  // in first as the CPU would (loads read faults, the others write
  // faults).  Values are little-endian guest values zero-extended to 64
  // bits (wider bits of inputs ignored).  On a fault nothing is changed
  // and the outputs are untouched.  Success: AccessResult::done is `size`.
  // `old` and `success` may be nullptr (not wanted).
  AccessResult atomic_load(std::uint64_t va, unsigned size, std::uint64_t* value);
  AccessResult atomic_store(std::uint64_t va, unsigned size, std::uint64_t value);
  AccessResult atomic_exchange(std::uint64_t va, unsigned size, std::uint64_t value, std::uint64_t* old);
  // Stores `desired` if the value is *expected; else writes the value
  // found to *expected.  *success says which.  (Faults as a write even
  // when the comparison fails, as x86's CMPXCHG.)
  AccessResult atomic_compare_exchange(std::uint64_t va, unsigned size, std::uint64_t* expected,
                                       std::uint64_t desired, bool* success);
  AccessResult atomic_fetch_add(std::uint64_t va, unsigned size, std::uint64_t value, std::uint64_t* old);
  // The futex key of the 4-byte word at va (`shared`: not FUTEX_PRIVATE_FLAG).
  // 0; -EINVAL when va is not 4-byte aligned or key is null; -EFAULT when no VMA maps it
  // readable (faults nothing in).  Private memory (a MAP_PRIVATE file
  // mapping too) is keyed by the space and va even for a shared futex.
  int futex_key(std::uint64_t va, bool shared, FutexKey* key) const;

  // ---- Querying the layout -----------------------------------------------
  // The VMA containing addr, or false.  Safe concurrently with faults and
  // with every other call: in the per-VMA lock modes it reads under that
  // VMA's read lock (as Linux 6.17+'s /proc/pid/maps, lock_next_vma),
  // falling back to the mmap_lock for reading only when the VMA is being
  // changed; in mmap_lock mode under the mmap_lock for reading.
  bool find_vma(std::uint64_t addr, VmaInfo* out) const;
  // Every VMA that intersects [start, end), in address order; each one
  // is a consistent snapshot of that VMA (not of the whole list: as
  // /proc/pid/maps, a VMA changed while the walk is past it is not seen
  // again).  Same locking as find_vma.
  std::vector<VmaInfo> vmas(std::uint64_t start = 0, std::uint64_t end = UINT64_MAX) const;
  // prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr, len, name), Linux 6.18:
  // names the anonymous VMAs of [addr, addr + len) ("[anon:NAME]" in maps;
  // shared anonymous ones "[anon_shmem:NAME]"), splitting at the edges;
  // the name is part of the merge key (VMAs merge only with equal names).
  // nullptr removes the name; "" is a name ("[anon:]"), as in Linux.
  // -EINVAL: a name longer than 79 bytes, or one with a byte that is not
  // printable ASCII or is one of \ ` $ [ ] (checked first); addr not page
  // aligned, end wraps; -EBADF: a VMA of the range is a file mapping (the
  // ones before it are named); -EAGAIN: a split the map-count limit
  // refused (madvise's rule); -ENOMEM: a hole (every mapped part is
  // named).  0 on success.
  int set_anon_name(std::uint64_t addr, std::uint64_t len, const char* name);

  // ---- Knowing when translations die --------------------------------------
  // Register / unregister a notifier (it is not owned; unregister before
  // destroying it).  Every change that ends translations of a range
  // (reasons in InvalidateReason) calls invalidate_range_start before any
  // PTE of the range changes and invalidate_range_end after, on the
  // changing thread.  Registration is thread-safe; a notifier registered
  // while a change runs may miss that change's start (it sees its end).
  // unregister_notifier returns after every callback of it has returned.
  // A forked child does not inherit notifiers.  Destroying the space calls
  // no callback.  Calls that change nothing (munmap of a hole, mprotect to
  // the protection a range has) call none.  0, -EEXIST (registered
  // already), -ENOENT (not registered), -EINVAL (null), -ENOMEM.
  int register_notifier(InvalidationNotifier* n);
  int unregister_notifier(InvalidationNotifier* n);
  // Bumped (atomically, release) before any translation dies, and again
  // after the change is complete (so that a translation taken while the
  // change runs is not trusted afterwards), whether or not notifiers are
  // registered: a cache of translate()d pointers taken inside an
  // AccessScope stays usable while the generation it recorded
  // (acquire-load before translating) is unchanged and the scope is open;
  // and in a later scope too, once an acquire-load of the generation made
  // inside that scope, before the use, still finds the recorded value (a
  // change bumps it before its first PTE changes, and what it frees waits
  // for every scope open at that point).  So an emulator's TLB may outlive
  // its scopes if it re-checks the generation in each.
  std::uint64_t translation_generation() const;
  // The counter translation_generation() reads, for a check inlined in an
  // emulator's access path (no call per access): load it with
  // memory_order_acquire, as that call does.  Read-only for the embedder;
  // lives as long as this AddressSpace.  Thread-safe.
  const std::atomic<std::uint64_t>& translation_generation_word() const;

  // ---- Write-watch (self-modifying code) ----------------------------------
  // The callback that armed pages report to (nullptr: none).  Set it
  // before arming; thread-safe.  Returns only after every report still
  // calling the previous callback has returned (so its `arg` may be freed
  // then); must not be called from a callback.
  void set_write_watch(WriteWatchFn fn, void* arg);
  // Arm every mapped page of [addr, addr + len): the next write to each
  // (through write/fill/atomics, a write fault_in, or a translate(va,
  // write) after which the caller writes) first calls the callback once
  // for that page, then proceeds; the page is then disarmed (writable
  // again for the guest) and marked written.  Arming write-protects the
  // pages (notifiers see InvalidateReason::protection).  Pages faulted in
  // later are armed too while the range stays armed.  Forked children do
  // not inherit watches; munmap drops them; mremap does not move them
  // (moved pages are writable again after an ordinary fault).  Populating
  // (MAP_POPULATE, mlock, MADV_POPULATE_WRITE) maps armed pages read-only
  // and reports nothing: the next real write does.  Before it returns,
  // every read/write/fill/atomic copy of any thread that may still hold a
  // writable translation of the range from before has finished (as
  // Linux's TLB flush), so no unreported store lands afterwards; called
  // inside an AccessScope it cannot wait for them.  translate()d pointers
  // kept from before arming must be revalidated with
  // translation_generation() (arming moves it).  The same holds for
  // write_watch_scan with rearm.  0, -EINVAL (unaligned addr, wrap),
  // -ENOMEM (a hole: the mapped parts are armed).
  int write_watch_arm(std::uint64_t addr, std::uint64_t len);
  // Disarm [addr, addr + len) without reporting (the pages' next write
  // takes an ordinary write fault, no callback).  0 / -EINVAL / -ENOMEM.
  int write_watch_disarm(std::uint64_t addr, std::uint64_t len);
  // PAGEMAP_SCAN with PM_SCAN_WP_MATCHING and PAGE_IS_WRITTEN: append to
  // *written the page addresses in [addr, addr + len) written since they
  // were armed (and not disarmed or unmapped since), and re-arm those pages
  // when `rearm`.  A page whose report is running is not written yet (its
  // write lands after the callback): the next scan lists it.  A write a
  // fault refuses (SIGBUS past a file's end, a guard) is never reported
  // and leaves the page armed.  The count appended, or -EINVAL, -ENOMEM.
  long write_watch_scan(std::uint64_t addr, std::uint64_t len, bool rearm, std::vector<std::uint64_t>* written);

  // A scope in which translate() hands out host pointers.  Pointers stay
  // valid (the frames are not reused, not even in place by a fork
  // relative that shared the page) until the scope ends, even if the page
  // is unmapped or copied on write meanwhile; an access that starts after
  // munmap/mprotect/MADV_DONTNEED returned never gets the old translation.
  // A scope is an RCU read-side section, so freed memory is not reusable
  // until it ends.  Every other call of this class may be made inside one
  // (an emulator thread can hold a scope across guest code and service the
  // guest's mmap/munmap from inside it); only, a fault inside a scope that
  // finds no free frame reports Fault::oom where outside a scope it would
  // first wait for freed frames.  Not inside a scope: destroying an
  // AddressSpace (it waits for a grace period: the process aborts).
  // Scopes nest; a scope belongs to the thread that opened it.
  class VMSPACE_API AccessScope {
   public:
    explicit AccessScope(AddressSpace& as);
    ~AccessScope();
    AccessScope(const AccessScope&) = delete;
    AccessScope& operator=(const AccessScope&) = delete;
    // Host pointer to the byte at va if the page is mapped for this access
    // right now, else nullptr (call fault_in outside the scope, then retry).
    void* translate(std::uint64_t va, bool write) const;
    void* translate(std::uint64_t va, AccessKind kind) const;

   private:
    AddressSpace& as_;
  };

  // Per-mapping figures, /proc/self/smaps style: for each VMA its maps
  // line, then these lines of Linux 6.18's, in its order and format (the
  // name in 16 columns, "%8 kB"):
  //   Size, Rss          the VMA's size; its resident pages (the shared
  //                      zero page is not counted, here or below);
  //   Pss, Pss_Dirty     the proportional set size: a page mapped by n
  //                      PTEs (in any space sharing the physical memory)
  //                      counts 1/n, summed with 12 fraction bits and
  //                      rounded down to kB; Pss_Dirty of dirty pages only;
  //   Shared_Clean, Shared_Dirty, Private_Clean, Private_Dirty
  //                      resident pages by sharing and state: shared =
  //                      mapped by two PTEs or more (a private file
  //                      mapping's page that the file also caches is
  //                      private); dirty = written through this PTE (a
  //                      write fault, or a write through a writable clean
  //                      PTE, which the soft MMU marks dirty as hardware
  //                      does) or, for a file's page, written since it was
  //                      cached by pwrite, a write fault, a write through
  //                      a PTE since unmapped, or a truncation zeroing its
  //                      tail.  MADV_FREE makes pages clean;
  //   Anonymous          private pages (a private file mapping's copies too);
  //   LazyFree           MADV_FREE'd pages not written since (Linux counts
  //                      them once its per-CPU batch has drained, which
  //                      can lag by up to 31 pages; vmspace at once);
  //   Locked             the Pss of a VM_LOCKED VMA;
  // and the VmFlags line with Linux 6.18's two-letter names in bit order
  // (a space after each).  Linux's other lines are left out: those vmspace
  // has nothing for (page sizes, KSM, huge pages, swap, protection keys)
  // and Referenced, which depends on access-bit aging (MADV_COLD, reclaim,
  // reads) that vmspace does not model.
  std::string smaps() const;
  std::uint64_t rss_pages() const;

  // The /proc/self/maps text of this space, in the kernel's format.  Read
  // as Linux 6.17+ reads /proc/pid/maps: in the per-VMA lock modes each
  // line is printed under its VMA's read lock (the mmap_lock only for a
  // VMA being changed), so changes elsewhere in the space do not wait for
  // a reader; while the layout changes, each line is one version of its
  // VMA but the text as a whole need not be one version of the space (a
  // VMA changed after the walk passed it is not seen again).  In
  // mmap_lock mode, the whole walk under the mmap_lock for reading.
  std::string maps() const;
  // Checks every structural invariant; on failure returns false and says
  // why.  Debug builds also run the tree and VMA checks after every
  // modifying call; this call also walks every page table to check the
  // reverse map (every mapped anonymous page reachable from its anon_vma,
  // reference and map counts that cover its mappings), so call it when no
  // access or fault is running in the space.
  bool validate(std::string* why = nullptr) const;

  LockMode mode() const;
  int map_count() const;
  std::uint64_t vm_stat(VmStat s) const;

  // The internals, for the fault path, benchmarks and tests.
  mm::MmStruct* mm() const { return mm_.get(); }
  mem::PhysMem* phys() const;

 private:
  template <class CopyFn>
  AccessResult access(std::uint64_t va, std::uint64_t n, AccessKind kind, CopyFn&& copy);

  struct FileTable;
  struct ForkTag {};
  AddressSpace(ForkTag, const AddressSpace& parent);

  std::shared_ptr<mem::PhysMem> owned_phys_;  // shared with forked children
  std::shared_ptr<PhysicalMemory> pool_;  // AddressSpaceOptions::pool, kept alive
  std::unique_ptr<mm::MmStruct> mm_;
  std::unique_ptr<FileTable> files_;
};

}  // namespace vmspace
