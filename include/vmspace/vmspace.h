/* SPDX-License-Identifier: MIT */
/* vmspace.h - the C API of vmspace: a Linux-compatible virtual address
 * space, for C99 and C++ programs (emulators, sandboxes, runtimes, language
 * bindings).
 *
 * It is a thin layer over the C++ class vmspace::AddressSpace
 * (vmspace/address_space.h), whose comments are the full contract of each
 * call; the comments here say what the C layer adds and repeat what a
 * caller must know.  Conventions:
 *
 *  - Calls are syscall-shaped: the arguments and flag values of Linux's
 *    system calls (PROT_*, MAP_*, MADV_*, MREMAP_*, MLOCK_*, MCL_*, MS_*,
 *    O_* from <sys/mman.h> and <fcntl.h>; vmspace/mman.h defines the Linux
 *    6.18 values older C libraries lack), and Linux 6.18's results: >= 0 on
 *    success, -errno on failure (-EINVAL, -ENOMEM, ...; never errno).
 *  - Addresses and lengths are uint64_t guest addresses: the space is a
 *    model, nothing is mapped in the calling process.
 *  - Running out of host memory inside a call returns -ENOMEM (or a fault
 *    of kind VMSPACE_FAULT_OOM); no C++ exception crosses this API.
 *
 * Thread safety: every call on a vmspace_t may be made from any thread,
 * concurrently with any other call on the same or another space, except
 * vmspace_destroy (see there).  Calls that change mappings are each atomic
 * as the corresponding Linux system call is.
 *
 * Lifetimes: pointers passed in (buffers, names, paths, options) are only
 * borrowed for the length of the call.  Strings returned (vmspace_version,
 * vmspace_fault_name) are static.  Descriptors are numbers in the space's
 * own file table, not host descriptors.
 */
#ifndef VMSPACE_VMSPACE_H
#define VMSPACE_VMSPACE_H

#include <stddef.h>
#include <stdint.h>

#include "vmspace/export.h"
#include "vmspace/mman.h"
#include "vmspace/version.h"

#ifdef __cplusplus
/* No exception leaves these functions (see c_api.cpp). */
#define VMSPACE_NOEXCEPT noexcept
extern "C" {
#else
#define VMSPACE_NOEXCEPT
#endif

/* An address space.  Opaque: created by vmspace_create, freed by
 * vmspace_destroy. */
typedef struct vmspace_handle vmspace_t;
/* A pool of physical frames several spaces share (vmspace::PhysicalMemory,
 * vmspace/physical_memory.h: how it grows, how to size it). */
typedef struct vmspace_pool vmspace_pool_t;

/* The version of the library linked ("0.1.0"), which may differ from the
 * VMSPACE_VERSION_STRING the caller was compiled with. */
VMSPACE_API const char* vmspace_version(void) VMSPACE_NOEXCEPT;

/* ---- Creation ------------------------------------------------------------ */

/* How page faults synchronize with changes to the mappings (LockMode). */
typedef enum vmspace_lock_mode {
  VMSPACE_LOCK_MMAP_LOCK = 0,        /* faults take the mmap_lock for read (Linux < 6.4) */
  VMSPACE_LOCK_PER_VMA_RWSEM = 1,    /* per-VMA rw-semaphore (Linux 6.4-6.14) */
  VMSPACE_LOCK_PER_VMA_REFCOUNT = 2  /* per-VMA reference count (Linux 6.15+, the default) */
} vmspace_lock_mode_t;

/* /sys/kernel/mm/transparent_hugepage/enabled (ThpMode). */
typedef enum vmspace_thp_mode {
  VMSPACE_THP_ALWAYS = 0,
  VMSPACE_THP_MADVISE = 1,
  VMSPACE_THP_NEVER = 2
} vmspace_thp_mode_t;

/* vm.overcommit_memory (Overcommit): 0, 1, 2. */
typedef enum vmspace_overcommit {
  VMSPACE_OVERCOMMIT_GUESS = 0,
  VMSPACE_OVERCOMMIT_ALWAYS = 1,
  VMSPACE_OVERCOMMIT_NEVER = 2
} vmspace_overcommit_t;

/* Creation options: the fields of vmspace::AddressSpaceOptions, with the
 * same meaning and defaults (booleans are ints, 0 or 1).
 *
 * The struct grows at its end in later versions.  `struct_size` says how
 * much of it the caller knows: vmspace_options_init sets it to the size
 * the caller was compiled with, and vmspace_create reads only that much
 * (the fields after it keep their defaults), so a program compiled against
 * an older header keeps working with a newer library.  Always start from
 * vmspace_options_init, then change fields. */
typedef struct vmspace_options {
  size_t struct_size;             /* sizeof(vmspace_options_t), set by vmspace_options_init */
  int lock_mode;                  /* vmspace_lock_mode_t */
  /* Kernel behaviour that differs between hosts (defaults: upstream Linux
   * 6.18 on x86-64 without address-space randomization). */
  uint64_t dac_mmap_min_addr;     /* vm.mmap_min_addr */
  uint64_t mmap_min_addr;         /* max(vm.mmap_min_addr, CONFIG_LSM_MMAP_MIN_ADDR) */
  int cap_sys_rawio;
  int max_map_count;              /* vm.max_map_count */
  uint64_t mmap_base;             /* top of the top-down search; 0 = Linux's mmap_base() */
  int zero_page;                  /* read faults map the shared zero page */
  int exec_only_pkey;             /* PROT_EXEC alone is execute-only */
  int thp;                        /* vmspace_thp_mode_t */
  int thp_align;                  /* 2 MiB-align unhinted anonymous mappings of 2 MiB multiples */
  uint64_t stack_guard_gap;       /* bytes */
  uint64_t rlimit_stack;          /* bytes */
  uint64_t rlimit_memlock;        /* bytes; UINT64_MAX = unlimited */
  int cap_ipc_lock;
  int overcommit;                 /* vmspace_overcommit_t */
  uint64_t overcommit_limit_pages; /* 0 = no limit */
  /* The process. */
  uint64_t brk_start;             /* 0 = no heap: brk() changes nothing */
  uint64_t rlimit_data;           /* bytes; UINT64_MAX = unlimited */
  /* Physical memory: the space owns a pool that grows on demand up to
   * phys_bytes (only address space is reserved until frames are used; see
   * vmspace/physical_memory.h for the sizing rule), every frame touched up
   * front when phys_pretouch (default 0) (AddressSpaceOptions::phys_bytes,
   * phys_pretouch). */
  uint64_t phys_bytes;
  int phys_pretouch;
  /* Since 0.1.0's second revision of the struct: a pool shared with other
   * spaces (vmspace_pool_create); NULL (the default) = the space's own, as
   * above.  The space keeps the pool alive. */
  vmspace_pool_t* pool;
  /* Since issue 17: TASK_SIZE, the end of the guest's user space
   * (AddressSpaceOptions::task_size): 0 = x86-64's 47-bit space (the
   * default), VMSPACE_TASK_SIZE_57 = five-level paging, VMSPACE_TASK_SIZE_32
   * = an ia32 guest; any other value makes vmspace_create fail with
   * -EINVAL. */
  uint64_t task_size;
} vmspace_options_t;

#define VMSPACE_TASK_SIZE_47 0x00007ffffffff000ULL
#define VMSPACE_TASK_SIZE_57 0x00fffffffffff000ULL
#define VMSPACE_TASK_SIZE_32 0x00000000ffffe000ULL

/* Create a frame pool that grows on demand up to limit_bytes (rounded
 * down to 4 KiB; only address space is reserved until frames are used),
 * every frame touched now when pretouch.  Stores it in *out and returns 0,
 * or returns -EFAULT (out == NULL), -EINVAL (more than 2^32 - 2 frames),
 * -ENOMEM (the host refused the reservation).  Thread-safe. */
VMSPACE_API int vmspace_pool_create(uint64_t limit_bytes, int pretouch, vmspace_pool_t** out) VMSPACE_NOEXCEPT;
/* Drop the caller's reference to a pool: it is freed when no space uses
 * it any more (each space made with it holds one).  NULL is ignored.
 * Preconditions: pool came from vmspace_pool_create and is not used by the
 * caller after this call. */
VMSPACE_API void vmspace_pool_destroy(vmspace_pool_t* pool) VMSPACE_NOEXCEPT;
/* Bytes of the pool's frames not in use (approximate while spaces using
 * it run).  Thread-safe. */
VMSPACE_API uint64_t vmspace_pool_free_bytes(const vmspace_pool_t* pool) VMSPACE_NOEXCEPT;

/* Fill *opts with the defaults and set opts->struct_size.
 * Preconditions: opts points to a vmspace_options_t. */
VMSPACE_API void vmspace_options_init(vmspace_options_t* opts) VMSPACE_NOEXCEPT;

/* Create a space.  opts == NULL means the defaults.  Stores the new space
 * in *out and returns 0, or returns -errno and leaves *out unchanged:
 * -EFAULT for out == NULL; -EINVAL for a struct_size smaller than the
 * first version of the struct, an unknown lock mode, THP or overcommit
 * value, a task_size other than 0 and the VMSPACE_TASK_SIZE_* values, or a pool too large to index; -E2BIG when struct_size is larger
 * than this library's struct and the bytes it does not know are not all
 * zero (as Linux's copy_struct_from_user); -ENOMEM.
 * Preconditions: opts (when not NULL) was set up by vmspace_options_init. */
VMSPACE_API int vmspace_create(const vmspace_options_t* opts, vmspace_t** out) VMSPACE_NOEXCEPT;

/* Destroy a space: unmaps everything, closes its files, and frees its
 * memory once every RCU reader is done.  Dirty pages of files with a
 * backing that nothing else holds are written back on a background
 * thread; the space's own pool (no opts->pool) waits for that before it
 * goes, a shared pool when it goes.  NULL is ignored.
 * Preconditions: no other call on vs is running or will be made; the
 * calling thread is not inside a scope (vmspace_scope_begin) of any space
 * (destruction waits for an RCU grace period: it would never end). */
VMSPACE_API void vmspace_destroy(vmspace_t* vs) VMSPACE_NOEXCEPT;

/* fork(2)'s memory half: a copy of `parent` in *out, sharing its
 * physical memory, with private memory copy-on-write and shared mappings
 * shared (AddressSpace::fork in address_space.h lists what is and is not
 * inherited).  The child has the parent's options and lock mode and a
 * copy of its file table; destroy it with vmspace_destroy, in any order
 * relative to the parent.  Returns 0; -EFAULT for a NULL out; -ENOMEM (the
 * parent is unchanged but for pages write-protected for copy-on-write);
 * -EAGAIN inside a scope while another fork of parent is finishing.
 * Thread safety: may run concurrently with any call on parent but its
 * destruction; the parent's other calls wait while it is copied. */
VMSPACE_API int vmspace_fork(vmspace_t* parent, vmspace_t** out) VMSPACE_NOEXCEPT;

/* The space's lock mode (vmspace_lock_mode_t). */
VMSPACE_API int vmspace_lock_mode(const vmspace_t* vs) VMSPACE_NOEXCEPT;

/* ---- Mappings ------------------------------------------------------------ */
/* Preconditions for every call below: vs is a live space (created and not
 * destroyed). */

/* mmap(2): the mapped address, or -errno.  MAP_ANONYMOUS ignores fd;
 * otherwise fd is one of this space's descriptors and offset is page
 * aligned (MAP_SHARED / MAP_PRIVATE file mappings; a page wholly past the
 * end faults SIGBUS). */
VMSPACE_API int64_t vmspace_mmap(vmspace_t* vs, uint64_t addr, uint64_t len, int prot, int flags, int fd,
                                 uint64_t offset) VMSPACE_NOEXCEPT;
/* munmap(2): 0 or -errno (-EINVAL, -EPERM over a sealed VMA, -ENOMEM). */
VMSPACE_API int vmspace_munmap(vmspace_t* vs, uint64_t addr, uint64_t len) VMSPACE_NOEXCEPT;
/* mprotect(2): splits and merges VMAs exactly as Linux.  0 or -errno. */
VMSPACE_API int vmspace_mprotect(vmspace_t* vs, uint64_t addr, uint64_t len, int prot) VMSPACE_NOEXCEPT;
/* madvise(2), Linux 6.18's advice, checks and errors (MADV_COLLAPSE:
 * -EOPNOTSUPP).  0 or -errno. */
VMSPACE_API int vmspace_madvise(vmspace_t* vs, uint64_t addr, uint64_t len, int advice) VMSPACE_NOEXCEPT;
/* mremap(2): the (new) address, or -errno.  new_addr is used with
 * MREMAP_FIXED (a hint with MREMAP_DONTUNMAP). */
VMSPACE_API int64_t vmspace_mremap(vmspace_t* vs, uint64_t old_addr, uint64_t old_len, uint64_t new_len,
                                   int flags, uint64_t new_addr) VMSPACE_NOEXCEPT;
/* msync(2): writes back dirty pages of MAP_SHARED mappings of files with a
 * backing (MS_SYNC also syncs it).  0 or -errno. */
VMSPACE_API int vmspace_msync(vmspace_t* vs, uint64_t addr, uint64_t len, int flags) VMSPACE_NOEXCEPT;

/* mlock(2), munlock(2), mlock2(2) (flags 0 or MLOCK_ONFAULT), mlockall(2)
 * (MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT), munlockall(2): RLIMIT_MEMLOCK
 * and CAP_IPC_LOCK from the options.  0 or -errno. */
VMSPACE_API int vmspace_mlock(vmspace_t* vs, uint64_t addr, uint64_t len) VMSPACE_NOEXCEPT;
VMSPACE_API int vmspace_munlock(vmspace_t* vs, uint64_t addr, uint64_t len) VMSPACE_NOEXCEPT;
VMSPACE_API int vmspace_mlock2(vmspace_t* vs, uint64_t addr, uint64_t len, unsigned flags) VMSPACE_NOEXCEPT;
VMSPACE_API int vmspace_mlockall(vmspace_t* vs, int flags) VMSPACE_NOEXCEPT;
VMSPACE_API int vmspace_munlockall(vmspace_t* vs) VMSPACE_NOEXCEPT;
/* mseal(2) (flags must be 0): sealed VMAs refuse munmap, MAP_FIXED over
 * them, mprotect, mremap and shrinking brk with -EPERM.  0 or -errno. */
VMSPACE_API int vmspace_mseal(vmspace_t* vs, uint64_t addr, uint64_t len, unsigned long flags) VMSPACE_NOEXCEPT;
/* mincore(2): one byte per page into vec, 1 where resident.  0 or -errno
 * (-EFAULT for vec == NULL, after the address checks, as Linux).
 * Preconditions: vec has room for ceil(len / 4096) bytes. */
VMSPACE_API int vmspace_mincore(vmspace_t* vs, uint64_t addr, uint64_t len, unsigned char* vec) VMSPACE_NOEXCEPT;
/* brk(2) as the raw system call: the break after the call (new_brk on
 * success, the old break on failure, never -errno); brk(0) reads it.  The
 * heap starts at the options' brk_start (0: no heap). */
VMSPACE_API uint64_t vmspace_brk(vmspace_t* vs, uint64_t new_brk) VMSPACE_NOEXCEPT;

/* ---- Files (the space's own file table) ------------------------------------ */

/* memfd_create(2): a new empty file opened read-write, with no backing.
 * The descriptor, or -errno (-EFAULT for name == NULL, -EINVAL for a name
 * longer than 249 bytes, -EMFILE, -ENOMEM).
 * Preconditions: name is NUL-terminated. */
VMSPACE_API int vmspace_memfd_create(vmspace_t* vs, const char* name) VMSPACE_NOEXCEPT;
/* open(2) of a host file, opened in the space with the host descriptor as
 * its backing.  The descriptor, the host's -errno, or -EINVAL for what is
 * not a regular file (-EFAULT for path == NULL).
 * Preconditions: path is NUL-terminated. */
VMSPACE_API int vmspace_open(vmspace_t* vs, const char* path, int flags, unsigned mode) VMSPACE_NOEXCEPT;
/* ftruncate(2): 0 or -errno (-EINVAL for length < 0 or a descriptor not
 * open for writing, -EBADF). */
VMSPACE_API int vmspace_ftruncate(vmspace_t* vs, int fd, int64_t length) VMSPACE_NOEXCEPT;
/* pread(2) / pwrite(2) through the page cache: the count, or -errno.
 * Preconditions: buf has room for (holds) n bytes. */
VMSPACE_API int64_t vmspace_pread(vmspace_t* vs, int fd, void* buf, uint64_t n, int64_t offset) VMSPACE_NOEXCEPT;
VMSPACE_API int64_t vmspace_pwrite(vmspace_t* vs, int fd, const void* buf, uint64_t n, int64_t offset) VMSPACE_NOEXCEPT;
/* fsync(2): write the file's dirty pages back and sync its backing.  0 or
 * -errno. */
VMSPACE_API int vmspace_fsync(vmspace_t* vs, int fd) VMSPACE_NOEXCEPT;
/* close(2): 0 or -EBADF.  A mapping keeps its file alive. */
VMSPACE_API int vmspace_close(vmspace_t* vs, int fd) VMSPACE_NOEXCEPT;

/* ---- Guest memory access (the soft MMU) --------------------------------- */

/* What an access ran into: the signal the kernel would deliver. */
typedef enum vmspace_fault_kind {
  VMSPACE_FAULT_NONE = 0,
  VMSPACE_FAULT_SEGV_MAPERR = 1, /* no mapping (or a guard page) */
  VMSPACE_FAULT_SEGV_ACCERR = 2, /* the mapping's protection forbids it */
  VMSPACE_FAULT_SIGBUS = 3,      /* past the end of a file, or its backing failed */
  VMSPACE_FAULT_OOM = 4          /* no physical frame left */
} vmspace_fault_kind_t;

/* The result of an access: kind VMSPACE_FAULT_NONE when it completed;
 * otherwise addr is the page address of the first byte that faulted (the
 * bytes before it were transferred).  vmspace_access_result_t (below) has
 * the exact address and the count of bytes done. */
typedef struct vmspace_fault {
  vmspace_fault_kind_t kind;
  uint64_t addr;
} vmspace_fault_t;

/* "none", "SEGV_MAPERR", "SEGV_ACCERR", "SIGBUS", "OOM" ("?" otherwise). */
VMSPACE_API const char* vmspace_fault_name(vmspace_fault_kind_t kind) VMSPACE_NOEXCEPT;

/* Copy n bytes from guest va into dst / from src into guest va / set n
 * guest bytes to `byte`, in ascending address order, faulting pages in as
 * the CPU would; stops at the first fault that cannot be resolved.  Writes
 * set the PTE dirty bit.
 * Preconditions: dst / src hold n bytes. */
VMSPACE_API vmspace_fault_t vmspace_read(vmspace_t* vs, uint64_t va, void* dst, uint64_t n) VMSPACE_NOEXCEPT;
VMSPACE_API vmspace_fault_t vmspace_write(vmspace_t* vs, uint64_t va, const void* src, uint64_t n) VMSPACE_NOEXCEPT;
VMSPACE_API vmspace_fault_t vmspace_fill(vmspace_t* vs, uint64_t va, unsigned char byte, uint64_t n) VMSPACE_NOEXCEPT;
/* Fault the page holding va in for reading (write == 0) or writing, as a
 * CPU fault would; addr is that page's address. */
VMSPACE_API vmspace_fault_t vmspace_fault_in(vmspace_t* vs, uint64_t va, int write) VMSPACE_NOEXCEPT;

/* The access an instruction makes (AccessKind): a data read, a data
 * write, or an instruction fetch (Linux x86-64 with NX: a fetch needs
 * PROT_EXEC; PROT_READ does not imply it). */
typedef enum vmspace_access_kind {
  VMSPACE_ACCESS_READ = 0,
  VMSPACE_ACCESS_WRITE = 1,
  VMSPACE_ACCESS_EXEC = 2
} vmspace_access_kind_t;

/* The result of an access, exactly (AccessResult): kind as above; addr is
 * the first byte not done, exact (the si_addr of the signal), 0 when the
 * access completed; done is the number of bytes completed (n when it
 * completed). */
typedef struct vmspace_access_result {
  vmspace_fault_kind_t kind;
  uint64_t addr;
  uint64_t done;
} vmspace_access_result_t;

/* vmspace_read / vmspace_write / vmspace_fill with the exact result, and
 * vmspace_access_fetch: a read as instruction fetch does (the pages must
 * be executable).  Preconditions: dst / src hold n bytes. */
VMSPACE_API vmspace_access_result_t vmspace_access_read(vmspace_t* vs, uint64_t va, void* dst, uint64_t n) VMSPACE_NOEXCEPT;
VMSPACE_API vmspace_access_result_t vmspace_access_fetch(vmspace_t* vs, uint64_t va, void* dst, uint64_t n) VMSPACE_NOEXCEPT;
VMSPACE_API vmspace_access_result_t vmspace_access_write(vmspace_t* vs, uint64_t va, const void* src, uint64_t n) VMSPACE_NOEXCEPT;
VMSPACE_API vmspace_access_result_t vmspace_access_fill(vmspace_t* vs, uint64_t va, unsigned char byte, uint64_t n) VMSPACE_NOEXCEPT;
/* Fault the page holding va in for the access `kind`, as a CPU fault
 * would; on a fault addr is va itself and done 0.  An unknown kind is
 * treated as a read. */
VMSPACE_API vmspace_access_result_t vmspace_access_fault_in(vmspace_t* vs, uint64_t va, vmspace_access_kind_t kind) VMSPACE_NOEXCEPT;

/* A scope in which guest addresses translate to host pointers
 * (AddressSpace::AccessScope): an RCU read-side section.  A pointer stays
 * valid (its frame is not reused, not even in place by a forked space that
 * shared the page) until the scope ends, even if the page is unmapped or
 * copied on write meanwhile.  Other calls may be made inside a scope (a fault
 * there that finds no free frame reports VMSPACE_FAULT_OOM instead of
 * waiting for freed ones), except vmspace_destroy.
 * Thread safety: a scope belongs to the thread that began it; scopes nest
 * and end in the reverse order.
 * Lifetimes: end every scope before destroying its space. */
typedef struct vmspace_scope vmspace_scope_t;
/* A new scope, or NULL when out of memory. */
VMSPACE_API vmspace_scope_t* vmspace_scope_begin(vmspace_t* vs) VMSPACE_NOEXCEPT;
/* The host address of guest va if its page is mapped for this access right
 * now, else NULL (leave the scope or not, call vmspace_fault_in, retry). */
VMSPACE_API void* vmspace_scope_translate(const vmspace_scope_t* scope, uint64_t va, int write) VMSPACE_NOEXCEPT;
/* The same for the access `kind` (an unknown kind is treated as a read):
 * VMSPACE_ACCESS_EXEC gives NULL for a page whose mapping lacks PROT_EXEC. */
VMSPACE_API void* vmspace_scope_translate_kind(const vmspace_scope_t* scope, uint64_t va, vmspace_access_kind_t kind) VMSPACE_NOEXCEPT;
/* End the scope (NULL is ignored). */
VMSPACE_API void vmspace_scope_end(vmspace_scope_t* scope) VMSPACE_NOEXCEPT;

/* ---- Introspection --------------------------------------------------------- */

/* The /proc/self/maps (vmspace_maps) or /proc/self/smaps (vmspace_smaps)
 * text of the space, snprintf-style: writes at most size - 1 bytes and a
 * NUL into buf (nothing when size is 0) and returns the length of the
 * whole text (without the NUL), so a result >= size means it was truncated
 * and a buffer of result + 1 bytes would hold it, unless the mappings change
 * in between; -ENOMEM when the text could not be made.
 * Preconditions: buf holds size bytes (buf may be NULL when size is 0). */
VMSPACE_API int64_t vmspace_maps(const vmspace_t* vs, char* buf, size_t size) VMSPACE_NOEXCEPT;
VMSPACE_API int64_t vmspace_smaps(const vmspace_t* vs, char* buf, size_t size) VMSPACE_NOEXCEPT;

/* The number of VMAs, and of resident pages. */
VMSPACE_API int vmspace_map_count(const vmspace_t* vs) VMSPACE_NOEXCEPT;
VMSPACE_API uint64_t vmspace_rss_pages(const vmspace_t* vs) VMSPACE_NOEXCEPT;

/* Check every structural invariant: 1 when they hold, else 0 with the
 * reason in why (snprintf-style, as vmspace_maps; why may be NULL when
 * size is 0). */
VMSPACE_API int vmspace_validate(const vmspace_t* vs, char* why, size_t size) VMSPACE_NOEXCEPT;

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* VMSPACE_VMSPACE_H */
