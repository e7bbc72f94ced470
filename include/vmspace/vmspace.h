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
  VMSPACE_LOCK_PER_VMA_REFCOUNT = 2, /* per-VMA reference count (Linux 6.15+, the default) */
  VMSPACE_LOCK_PER_VMA_RANGE = 3     /* as PER_VMA_REFCOUNT, with a range lock for the layout */
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

/* Open this space's file fd in `to` too (AddressSpace::send_file: as
 * passing a descriptor over a Unix socket does): both spaces then see,
 * map and truncate the same file.  The descriptor in `to`, or -EINVAL
 * (to == NULL), -EBADF, -EMFILE, -ENOMEM, -EXDEV when the two spaces do not
 * share their physical memory (made with the same vmspace_options_t::pool,
 * or one forked from the other).
 * Preconditions: to is a live space (it may be vs itself). */
VMSPACE_API int vmspace_send_file(vmspace_t* vs, int fd, vmspace_t* to) VMSPACE_NOEXCEPT;

/* A file whose bytes come from the caller (AddressSpace::open_file with a
 * FileBacking, vmspace/file_backing.h: when each function is called, and
 * from which threads, concurrently).  Each function gets the `arg` given
 * to vmspace_open_backing; they return 0 or -errno (size: the size in
 * bytes, >= 0, or -errno).  read_page fills buf (4096 bytes) with bytes
 * [index * 4096, index * 4096 + 4096), zeros past the end; write_page
 * stores len (1..4096) bytes at index * 4096; truncate sets the size;
 * punch_hole (NULL: -EOPNOTSUPP) deallocates a range, keeping the size;
 * sync (NULL: nothing to do) makes what was written durable; release
 * (may be NULL) is called once, when no space uses the file any more
 * (after its last write-back, which may run on a background thread after
 * vmspace_destroy returned): arg may be freed then.  dev_major,
 * dev_minor and ino are what maps shows and the file's identity (ino 0:
 * the space picks one): opening an identity that is open already in the
 * same pool opens that file, as a second open(2) of an inode does, and
 * does not use this backing (release is called before the open returns).
 * Like vmspace_options_t, the struct grows at its end: set struct_size
 * to sizeof(vmspace_backing_ops_t); size, read_page, write_page and
 * truncate are required. */
typedef struct vmspace_backing_ops {
  size_t struct_size;
  int64_t (*size)(void* arg);
  int (*read_page)(void* arg, uint64_t index, void* buf);
  int (*write_page)(void* arg, uint64_t index, const void* buf, size_t len);
  int (*truncate)(void* arg, uint64_t bytes);
  int (*punch_hole)(void* arg, uint64_t offset, uint64_t len);
  int (*sync)(void* arg);
  void (*release)(void* arg);
  unsigned dev_major, dev_minor;
  uint64_t ino;
} vmspace_backing_ops_t;

/* Open a file with the backing `ops` (copied: the struct itself is only
 * borrowed) and `arg`, flags O_RDONLY, O_WRONLY or O_RDWR, shown in maps
 * as `name`.  Its size is read now (ops->size).  The descriptor, or
 * -EFAULT (ops or name NULL), -EINVAL (a required function missing, a
 * struct_size smaller than the first version's, flags other than the
 * access mode and O_APPEND), -E2BIG (a struct_size larger than this
 * library's with the bytes it does not know not all zero), size's error,
 * -EMFILE, -ENOMEM.  On failure no function of ops is called after this
 * returns, release not at all: arg stays the caller's.  Thread-safe.
 * Preconditions: name is NUL-terminated. */
VMSPACE_API int vmspace_open_backing(vmspace_t* vs, const vmspace_backing_ops_t* ops, void* arg, const char* name,
                                     int flags) VMSPACE_NOEXCEPT;

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

/* ---- Atomics on guest memory and futex keys ------------------------------ */
/* One sequentially consistent atomic operation (AddressSpace::atomic_*)
 * on the `size` bytes (1, 2, 4 or 8) at guest va, atomic with respect to
 * every other access of any space mapping the page and to host code using
 * a translated pointer with C11 atomics.  The page is faulted in first as
 * the CPU would (loads: read faults; the others: write faults, the
 * compare-exchange too even when the comparison fails, as x86's CMPXCHG).
 * Values are little-endian guest values zero-extended to 64 bits (wider
 * bits of inputs ignored).
 *
 * Each returns 0 when the operation was attempted, with *res saying how it
 * went: kind VMSPACE_FAULT_NONE and done == size when it completed; else
 * the fault at va (VMSPACE_FAULT_SIGBUS, BUS_ADRALN, when va is not a
 * multiple of size; VMSPACE_FAULT_OOM when out of host memory), nothing
 * changed and the outputs untouched.  Or -EINVAL: size is not 1, 2, 4 or
 * 8; -EFAULT: res (or the value pointer a call needs: value of a load,
 * expected of a compare-exchange) is NULL.  `old` and `success` may be
 * NULL (not wanted).  Thread-safe. */
VMSPACE_API int vmspace_atomic_load(vmspace_t* vs, uint64_t va, unsigned size, uint64_t* value,
                                    vmspace_access_result_t* res) VMSPACE_NOEXCEPT;
VMSPACE_API int vmspace_atomic_store(vmspace_t* vs, uint64_t va, unsigned size, uint64_t value,
                                     vmspace_access_result_t* res) VMSPACE_NOEXCEPT;
VMSPACE_API int vmspace_atomic_exchange(vmspace_t* vs, uint64_t va, unsigned size, uint64_t value, uint64_t* old,
                                        vmspace_access_result_t* res) VMSPACE_NOEXCEPT;
/* Stores desired if the value is *expected (*success = 1); else writes the
 * value found to *expected (*success = 0). */
VMSPACE_API int vmspace_atomic_compare_exchange(vmspace_t* vs, uint64_t va, unsigned size, uint64_t* expected,
                                                uint64_t desired, int* success,
                                                vmspace_access_result_t* res) VMSPACE_NOEXCEPT;
/* Adds modulo 2^(8 * size) (the guest's LOCK XADD). */
VMSPACE_API int vmspace_atomic_fetch_add(vmspace_t* vs, uint64_t va, unsigned size, uint64_t value, uint64_t* old,
                                         vmspace_access_result_t* res) VMSPACE_NOEXCEPT;

/* A futex key (Linux's get_futex_key; AddressSpace::futex_key): two
 * accesses wait on the same futex exactly when both fields of their keys
 * are equal.  Private futexes and private memory: the space and the
 * address; a shared futex on shared memory (MAP_SHARED anonymous memory,
 * files): the shared object and the byte offset in it, the same in every
 * mapping of it, in any space.  Stable while the mapping (for shared
 * objects: the object) lives.  `object` is an identity only: never
 * dereference it. */
typedef struct vmspace_futex_key {
  const void* object;
  uint64_t offset;
} vmspace_futex_key_t;

/* The key of the 4-byte word at va (shared != 0: a futex without
 * FUTEX_PRIVATE_FLAG).  0; -EINVAL when va is not 4-byte aligned; -EFAULT
 * when no VMA maps va readable (nothing is faulted in) or key is NULL.
 * Thread-safe. */
VMSPACE_API int vmspace_futex_key(const vmspace_t* vs, uint64_t va, int shared,
                                  vmspace_futex_key_t* key) VMSPACE_NOEXCEPT;

/* ---- Querying the layout ------------------------------------------------- */

/* One VMA (AddressSpace::VmaInfo): a copy, valid whatever happens to the
 * space afterwards.
 *
 * The struct grows at its end in later versions.  Filled by the library:
 * vmspace_find_vma writes only the first struct_size bytes of the
 * caller's struct (set struct_size = sizeof(vmspace_vma_info_t) before
 * the call); the structs vmspace_vmas passes have struct_size = the
 * library's size, so a caller compiled against a newer header reads a
 * field only when struct_size covers it. */
typedef struct vmspace_vma_info {
  size_t struct_size;
  uint64_t start, end; /* [start, end), page aligned */
  int prot;            /* PROT_READ | PROT_WRITE | PROT_EXEC */
  int flags;           /* MAP_SHARED or MAP_PRIVATE, | MAP_GROWSDOWN | MAP_LOCKED */
  uint64_t vm_flags;   /* Linux's VM_* bits, as smaps VmFlags shows them */
  uint64_t offset;     /* file offset of start in bytes (0 for anonymous memory) */
  /* The maps name (a file's, "[heap]", "[stack]", "[anon:NAME]", ""),
   * NUL-terminated, and its length without the NUL.  Where it points and
   * for how long: see vmspace_find_vma and vmspace_vmas. */
  const char* name;
  size_t name_len;
} vmspace_vma_info_t;

/* The VMA containing addr, into *info (info may be NULL: only whether
 * there is one), its name copied snprintf-style into name[name_size]
 * (info->name = name, or NULL when name_size is 0; info->name_len is the
 * whole name's length, so name_len >= name_size means it was truncated;
 * info->struct_size becomes the bytes filled, less than the caller's when
 * the library is older).  0; -ENOENT: no VMA contains addr; -EINVAL:
 * info->struct_size smaller than the first version of the struct;
 * -EFAULT: name NULL with name_size > 0; -ENOMEM.  Thread-safe and safe concurrently with
 * faults (read under the VMA's read lock, as Linux 6.17+'s maps).
 * Preconditions: name holds name_size bytes (may be NULL when it is 0). */
VMSPACE_API int vmspace_find_vma(const vmspace_t* vs, uint64_t addr, vmspace_vma_info_t* info, char* name,
                                 size_t name_size) VMSPACE_NOEXCEPT;

/* Called for each VMA of vmspace_vmas; nonzero stops the walk. */
typedef int (*vmspace_vma_fn)(void* arg, const vmspace_vma_info_t* vma);

/* Call fn(arg, vma) for every VMA that intersects [start, end) (start >=
 * end: none), in address order: each a consistent copy of that VMA (not
 * of the whole list: a VMA changed while the walk is past it is not seen
 * again, as in /proc/pid/maps).  The VMAs are copied first, then fn is
 * called with no lock of the space held: it may call into the space (the
 * copies do not change).  vma and vma->name are valid until fn returns.
 * 0 when every VMA was visited; the value fn returned when it stopped the
 * walk (return positive values, to tell them from this call's errors);
 * -EINVAL: fn is NULL; -ENOMEM.  Thread-safe. */
VMSPACE_API int vmspace_vmas(const vmspace_t* vs, uint64_t start, uint64_t end, vmspace_vma_fn fn,
                             void* arg) VMSPACE_NOEXCEPT;

/* prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr, len, name), Linux 6.18:
 * names the anonymous VMAs of [addr, addr + len) ("[anon:NAME]" in maps,
 * "[anon_shmem:NAME]" for shared ones), splitting at the edges; VMAs merge
 * only with equal names.  NULL removes the name; "" is a name.  0;
 * -EINVAL: a name longer than 79 bytes or with a byte that is not
 * printable ASCII or one of \ ` $ [ ] (checked first), addr unaligned,
 * the range wraps; -EBADF: a VMA of the range is a file mapping (those
 * before it are named); -EAGAIN: the map-count limit refused a split;
 * -ENOMEM: a hole (every mapped part is named), or out of memory.
 * Preconditions: name (when not NULL) is NUL-terminated. */
VMSPACE_API int vmspace_set_anon_name(vmspace_t* vs, uint64_t addr, uint64_t len, const char* name) VMSPACE_NOEXCEPT;

/* ---- Knowing when translations die (invalidation notifiers) --------------- */

/* Why translations of a range die (InvalidateReason, same order). */
typedef enum vmspace_invalidate_reason {
  VMSPACE_INVALIDATE_UNMAP = 0,          /* munmap, MAP_FIXED over a mapping, brk shrinking, mremap's source */
  VMSPACE_INVALIDATE_PROTECTION = 1,     /* mprotect; write-watch arming and re-arming */
  VMSPACE_INVALIDATE_REMAP = 2,          /* mremap moving pages (the source range) */
  VMSPACE_INVALIDATE_DISCARD = 3,        /* MADV_DONTNEED / DONTNEED_LOCKED / FREE / GUARD_INSTALL / PAGEOUT */
  VMSPACE_INVALIDATE_COW = 4,            /* a copy-on-write fault replacing a page (one page) */
  VMSPACE_INVALIDATE_TRUNCATE = 5,       /* ftruncate, a hole punched, MADV_REMOVE */
  VMSPACE_INVALIDATE_FORK_WRPROTECT = 6, /* fork write-protecting private pages */
  VMSPACE_INVALIDATE_OTHER = 7           /* anything else that changes a PTE */
} vmspace_invalidate_reason_t;

/* A notifier's callbacks (InvalidationNotifier), each given the `arg` of
 * vmspace_notifier_register and the page-aligned range [start, end):
 * invalidate_range_start before any PTE of the range changes (after it
 * returns, a translation the caller caches must not be used for a new
 * access); invalidate_range_end (may be NULL) after the change is
 * complete.  They run on the thread making the change, possibly
 * concurrently for disjoint ranges, and may nest on one thread (mprotect
 * populating locked memory, a copy on write inside it).  They must not
 * call into the space other than vmspace_translation_generation, must not
 * block on a thread that may be inside a call of the space, and may take
 * the caller's own locks (then never call vmspace_notifier_unregister
 * holding one: it waits for running callbacks).
 * Like vmspace_options_t, the struct grows at its end: set struct_size to
 * sizeof(vmspace_notifier_ops_t). */
typedef struct vmspace_notifier_ops {
  size_t struct_size;
  void (*invalidate_range_start)(void* arg, uint64_t start, uint64_t end, vmspace_invalidate_reason_t reason);
  void (*invalidate_range_end)(void* arg, uint64_t start, uint64_t end, vmspace_invalidate_reason_t reason);
} vmspace_notifier_ops_t;

/* A registered notifier.  Opaque: made by vmspace_notifier_register,
 * freed by vmspace_notifier_unregister or with its space. */
typedef struct vmspace_notifier vmspace_notifier_t;

/* Register callbacks (ops is copied; arg is passed to them) for every
 * later change that ends translations of a range (a registration made
 * while a change runs may miss that change's start and see its end).
 * Stores the handle in *out and returns 0, or -EFAULT (ops or out NULL),
 * -EINVAL (a struct_size smaller than the first version's, or no
 * invalidate_range_start), -E2BIG (a struct_size larger than this
 * library's with the bytes it does not know not all zero), -ENOMEM.  A
 * forked child does not inherit notifiers.  Destroying the space calls no
 * callback and frees the handles still registered.  Thread-safe. */
VMSPACE_API int vmspace_notifier_register(vmspace_t* vs, const vmspace_notifier_ops_t* ops, void* arg,
                                          vmspace_notifier_t** out) VMSPACE_NOEXCEPT;
/* Unregister and free n: returns 0 after every callback of it has
 * returned (arg may be freed then), or -EINVAL (n NULL), -ENOENT (n is
 * not a registered notifier of vs).  Not from one of n's callbacks.
 * Preconditions: n is not used after this returns 0. */
VMSPACE_API int vmspace_notifier_unregister(vmspace_t* vs, vmspace_notifier_t* n) VMSPACE_NOEXCEPT;

/* A counter bumped before any translation of the space dies and again
 * after the change completes, whether or not notifiers are registered
 * (an acquire load): a cache of vmspace_scope_translate pointers stays
 * usable while the scope is open and this value, read before
 * translating, is unchanged.  Thread-safe; callable from callbacks. */
VMSPACE_API uint64_t vmspace_translation_generation(const vmspace_t* vs) VMSPACE_NOEXCEPT;

/* ---- Write-watch (self-modifying code) -------------------------------------- */

/* The guest is about to write to the armed page at `page` (page aligned)
 * of vs.  Called before the write proceeds, on the writing thread, with
 * no lock of the space held; the rules of notifier callbacks apply. */
typedef void (*vmspace_write_watch_fn)(void* arg, vmspace_t* vs, uint64_t page);

/* Set the callback armed pages report to (fn NULL: none; arg is then
 * ignored).  Returns 0 after every report still calling the previous
 * callback has returned (so its arg may be freed), or -ENOMEM (the old
 * callback stays).  Thread-safe; not from a callback. */
VMSPACE_API int vmspace_set_write_watch(vmspace_t* vs, vmspace_write_watch_fn fn, void* arg) VMSPACE_NOEXCEPT;
/* Arm every mapped page of [addr, addr + len) (AddressSpace::
 * write_watch_arm): the next write to each (vmspace_write, _fill, atomics,
 * a write fault-in, or a write through a translated pointer taken for
 * writing) first calls the callback once for that page, then proceeds;
 * the page is then disarmed and marked written.  Arming write-protects the
 * pages (notifiers see VMSPACE_INVALIDATE_PROTECTION); pages faulted in
 * later are armed too; munmap drops the watch, mremap does not move it,
 * forked children do not inherit it.  Translated pointers kept from
 * before must be revalidated with vmspace_translation_generation.  0,
 * -EINVAL (addr unaligned, the range wraps), -ENOMEM (a hole: the mapped
 * parts are armed; or out of memory). */
VMSPACE_API int vmspace_write_watch_arm(vmspace_t* vs, uint64_t addr, uint64_t len) VMSPACE_NOEXCEPT;
/* Disarm [addr, addr + len) without reporting.  0, -EINVAL, -ENOMEM. */
VMSPACE_API int vmspace_write_watch_disarm(vmspace_t* vs, uint64_t addr, uint64_t len) VMSPACE_NOEXCEPT;
/* PAGEMAP_SCAN with PM_SCAN_WP_MATCHING and PAGE_IS_WRITTEN, max_pages
 * and walk_end as there: store into pages[] the addresses, ascending, of
 * pages in [addr, addr + len) written since they were armed (and not
 * disarmed or unmapped since), re-arming them when rearm != 0; stop once
 * max_pages were found.  *walk_end (walk_end may be NULL) is where the
 * scan stopped: the end of the range (len rounded up to pages) when it
 * covered it, else an address after the last page stored (pages from
 * there on are neither reported nor re-armed: scan again from there).  The count stored, or -EINVAL
 * (addr unaligned, the range wraps, max_pages 0), -EFAULT (pages NULL),
 * -ENOMEM (out of memory before anything was stored; later, the count
 * so far is returned and *walk_end says where to go on).
 * Preconditions: pages holds max_pages entries. */
VMSPACE_API int64_t vmspace_write_watch_scan(vmspace_t* vs, uint64_t addr, uint64_t len, int rearm, uint64_t* pages,
                                             size_t max_pages, uint64_t* walk_end) VMSPACE_NOEXCEPT;

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

/* Event counters (VmStat, same order): /proc/vmstat's and vmspace's own
 * (madvise calls that ran under one VMA's read lock / the mmap_lock). */
typedef enum vmspace_vm_stat {
  VMSPACE_STAT_PGFAULT = 0,
  VMSPACE_STAT_VMA_LOCK_SUCCESS = 1,
  VMSPACE_STAT_VMA_LOCK_ABORT = 2,
  VMSPACE_STAT_VMA_LOCK_RETRY = 3,
  VMSPACE_STAT_VMA_LOCK_MISS = 4,
  VMSPACE_STAT_MADVISE_VMA_LOCK = 5,
  VMSPACE_STAT_MADVISE_MMAP_LOCK = 6,
  VMSPACE_STAT_RANGE_WRITE_RANGED = 7, /* per_vma_range: layout changes that locked a range */
  VMSPACE_STAT_RANGE_WRITE_WHOLE = 8,  /* ... that locked the whole space */
  VMSPACE_STAT_RANGE_LOCK_RETRY = 9    /* range requests redone wider */
} vmspace_vm_stat_t;
/* The counter `stat` into *value: 0, -EINVAL (an unknown stat), -EFAULT
 * (value NULL).  Thread-safe (a counter read while events happen). */
VMSPACE_API int vmspace_vm_stat(const vmspace_t* vs, vmspace_vm_stat_t stat, uint64_t* value) VMSPACE_NOEXCEPT;

/* Check every structural invariant: 1 when they hold, else 0 with the
 * reason in why (snprintf-style, as vmspace_maps; why may be NULL when
 * size is 0). */
VMSPACE_API int vmspace_validate(const vmspace_t* vs, char* why, size_t size) VMSPACE_NOEXCEPT;

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* VMSPACE_VMSPACE_H */
