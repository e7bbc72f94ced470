// SPDX-License-Identifier: MIT
// c_api.cpp - include/vmspace/vmspace.h on top of vmspace::AddressSpace.
//
// Each function converts its arguments, calls the C++ method and converts
// the result; nothing here knows about VMAs or locks.  No exception may
// cross into C: the C++ API raises std::bad_alloc (out of host memory
// while building a string or a table), which becomes -ENOMEM (or
// VMSPACE_FAULT_OOM), and throws for a few arguments that are programming
// errors in C++ (a guest atomic's size, a pool too large), which are
// checked here first or become -EINVAL.  Every function is noexcept, so
// any other exception, which would be a bug, terminates the process at
// its source.
//
// Callbacks: a C notifier is a vmspace_notifier (an InvalidationNotifier
// calling the C functions); a C write-watch callback is called through
// report_write with the WatchCallback it was set with, which maps the
// C++ AddressSpace& back to its vmspace_t.  The handle owns both, so they
// outlive every call of them.
#include "vmspace/vmspace.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "vmspace/address_space.h"
#include "vmspace/file_backing.h"
#include "vmspace/physical_memory.h"

using vmspace::AddressSpace;
using vmspace::AddressSpaceOptions;

// A C notifier: the caller's callbacks behind an InvalidationNotifier.
struct vmspace_notifier final : vmspace::InvalidationNotifier {
  vmspace_notifier(const vmspace_notifier_ops_t& o, void* a) : ops(o), arg(a) {}
  void invalidate_range_start(const vmspace::InvalidateRange& r) override {
    ops.invalidate_range_start(arg, r.start, r.end, static_cast<vmspace_invalidate_reason_t>(r.reason));
  }
  void invalidate_range_end(const vmspace::InvalidateRange& r) override {
    if (ops.invalidate_range_end != nullptr)
      ops.invalidate_range_end(arg, r.start, r.end, static_cast<vmspace_invalidate_reason_t>(r.reason));
  }
  const vmspace_notifier_ops_t ops;
  void* const arg;
};

namespace {

// The C write-watch callback of one vmspace_set_write_watch call: the
// C++ callback's `arg`, so a report calls the callback it was armed with
// even while another set replaces it.
struct WatchCallback {
  vmspace_write_watch_fn fn;
  void* arg;
  vmspace_t* vs;
};

}  // namespace

struct vmspace_handle {
  explicit vmspace_handle(const AddressSpaceOptions& o) : owned(std::make_unique<AddressSpace>(o)), as(*owned) {}
  explicit vmspace_handle(std::unique_ptr<AddressSpace> child) : owned(std::move(child)), as(*owned) {}
  // The callbacks' state is declared before the space so that it is
  // destroyed after it (destroying a space calls no callback).
  std::mutex notifiers_lock;  // guards notifiers
  std::vector<std::unique_ptr<vmspace_notifier>> notifiers;  // registered through the C API
  std::mutex watch_lock;  // serializes vmspace_set_write_watch; guards watch
  std::unique_ptr<WatchCallback> watch;  // the current write-watch callback
  std::unique_ptr<AddressSpace> owned;
  AddressSpace& as;
};

struct vmspace_pool {
  std::shared_ptr<vmspace::PhysicalMemory> pool;
};

struct vmspace_scope {
  explicit vmspace_scope(AddressSpace& as) : scope(as) {}
  AddressSpace::AccessScope scope;
};

namespace {

// The size of the first published vmspace_options_t: vmspace_create
// accepts no less.  Fields added later go after `phys_pretouch`, and a
// caller compiled with this header passes at least this much.
constexpr std::size_t kOptionsSizeV1 = offsetof(vmspace_options_t, phys_pretouch) + sizeof(int);
static_assert(kOptionsSizeV1 <= sizeof(vmspace_options_t));
// The first versions of the other growing structs: all of them today.
constexpr std::size_t kVmaInfoSizeV1 = sizeof(vmspace_vma_info_t);
constexpr std::size_t kNotifierOpsSizeV1 = sizeof(vmspace_notifier_ops_t);
constexpr std::size_t kBackingOpsSizeV1 = sizeof(vmspace_backing_ops_t);

// Linux's copy_struct_from_user: a caller's struct of src->struct_size
// bytes over *dst (already holding the defaults): as much as both know;
// what only the caller knows must be zero.  0, -EINVAL (older than the
// first version, min_size), -E2BIG.
template <class T>
int copy_struct_in(const T* src, std::size_t min_size, T* dst) {
  if (src->struct_size < min_size) return -EINVAL;
  const auto* bytes = reinterpret_cast<const unsigned char*>(src);
  for (std::size_t i = sizeof(T); i < src->struct_size; ++i)
    if (bytes[i] != 0) return -E2BIG;
  std::memcpy(dst, src, std::min(src->struct_size, sizeof(T)));
  dst->struct_size = sizeof(T);
  return 0;
}

// The enum values of vmspace.h are the C++ enums' order.
static_assert(static_cast<int>(vmspace::LockMode::mmap_lock) == VMSPACE_LOCK_MMAP_LOCK);
static_assert(static_cast<int>(vmspace::LockMode::per_vma_rwsem) == VMSPACE_LOCK_PER_VMA_RWSEM);
static_assert(static_cast<int>(vmspace::LockMode::per_vma_refcount) == VMSPACE_LOCK_PER_VMA_REFCOUNT);
static_assert(static_cast<int>(vmspace::LockMode::per_vma_range) == VMSPACE_LOCK_PER_VMA_RANGE);
static_assert(static_cast<int>(vmspace::ThpMode::never) == VMSPACE_THP_NEVER);
static_assert(static_cast<int>(vmspace::Overcommit::never) == VMSPACE_OVERCOMMIT_NEVER);
static_assert(static_cast<int>(vmspace::Fault::oom) == VMSPACE_FAULT_OOM);
static_assert(static_cast<int>(vmspace::Fault::segv_accerr) == VMSPACE_FAULT_SEGV_ACCERR);
static_assert(static_cast<int>(vmspace::InvalidateReason::unmap) == VMSPACE_INVALIDATE_UNMAP);
static_assert(static_cast<int>(vmspace::InvalidateReason::cow) == VMSPACE_INVALIDATE_COW);
static_assert(static_cast<int>(vmspace::InvalidateReason::other) == VMSPACE_INVALIDATE_OTHER);
static_assert(static_cast<int>(vmspace::VmStat::pgfault) == VMSPACE_STAT_PGFAULT);
static_assert(static_cast<int>(vmspace::VmStat::madvise_mmap_lock) == VMSPACE_STAT_MADVISE_MMAP_LOCK);
static_assert(static_cast<int>(vmspace::VmStat::range_lock_retry) == VMSPACE_STAT_RANGE_LOCK_RETRY);
static_assert(vmspace::kTaskSize47 == VMSPACE_TASK_SIZE_47 && vmspace::kTaskSize57 == VMSPACE_TASK_SIZE_57 &&
              vmspace::kTaskSize32 == VMSPACE_TASK_SIZE_32);

constexpr std::uint64_t kPageMask = ~std::uint64_t{4095};

// vmspace_fault_t keeps its page address (as before AccessResult became
// exact); vmspace_access_result_t has the exact one.
vmspace_fault_t to_c(vmspace::AccessResult r) {
  return vmspace_fault_t{static_cast<vmspace_fault_kind_t>(r.fault), r.addr & kPageMask};
}
vmspace_access_result_t to_c_exact(vmspace::AccessResult r) {
  return vmspace_access_result_t{static_cast<vmspace_fault_kind_t>(r.fault), r.addr, r.done};
}
vmspace::AccessKind to_kind(vmspace_access_kind_t k) {
  switch (k) {
    case VMSPACE_ACCESS_WRITE: return vmspace::AccessKind::write;
    case VMSPACE_ACCESS_EXEC: return vmspace::AccessKind::exec;
    default: return vmspace::AccessKind::read;
  }
}

// Out of host memory in an access: the fault an emulator handles as OOM.
vmspace_fault_t oom_at(std::uint64_t va) { return vmspace_fault_t{VMSPACE_FAULT_OOM, va & kPageMask}; }

// snprintf-style copy of `text` into buf[size].
std::int64_t copy_out(const std::string& text, char* buf, std::size_t size) {
  if (size > 0) {
    std::size_t n = text.size() < size - 1 ? text.size() : size - 1;
    std::memcpy(buf, text.data(), n);
    buf[n] = '\0';
  }
  return static_cast<std::int64_t>(text.size());
}

// The fields of a VMA but its name.
vmspace_vma_info_t to_c(const vmspace::VmaInfo& v) {
  vmspace_vma_info_t c{};
  c.struct_size = sizeof c;
  c.start = v.start;
  c.end = v.end;
  c.prot = v.prot;
  c.flags = v.flags;
  c.vm_flags = v.vm_flags;
  c.offset = v.offset;
  return c;
}

// A guest atomic: the common checks, and out of host memory as a fault
// (as vmspace_access_*).
template <class Op>
int run_atomic(std::uint64_t va, unsigned size, vmspace_access_result_t* res, Op&& op) {
  if (size != 1 && size != 2 && size != 4 && size != 8) return -EINVAL;  // C++ would throw
  if (res == nullptr) return -EFAULT;
  try {
    *res = to_c_exact(op());
  } catch (const std::bad_alloc&) {
    *res = vmspace_access_result_t{VMSPACE_FAULT_OOM, va, 0};
  }
  return 0;
}

void report_write(void* arg, AddressSpace&, std::uint64_t page) {
  const auto* w = static_cast<const WatchCallback*>(arg);
  w->fn(w->arg, w->vs, page);
}

// A FileBacking made of the caller's functions.  `owns_arg` is cleared
// when the open failed: arg is the caller's again, release is not called.
class CBacking final : public vmspace::FileBacking {
 public:
  CBacking(const vmspace_backing_ops_t& ops, void* arg) : ops_(ops), arg_(arg) {}
  ~CBacking() override {
    if (owns_arg.load(std::memory_order_relaxed) && ops_.release != nullptr) ops_.release(arg_);
  }
  std::int64_t size() override { return ops_.size(arg_); }
  int read_page(std::uint64_t index, void* buf) override { return ops_.read_page(arg_, index, buf); }
  int write_page(std::uint64_t index, const void* buf, std::size_t len) override {
    return ops_.write_page(arg_, index, buf, len);
  }
  int truncate(std::uint64_t bytes) override { return ops_.truncate(arg_, bytes); }
  int punch_hole(std::uint64_t offset, std::uint64_t len) override {
    return ops_.punch_hole != nullptr ? ops_.punch_hole(arg_, offset, len) : FileBacking::punch_hole(offset, len);
  }
  int sync() override { return ops_.sync != nullptr ? ops_.sync(arg_) : 0; }
  Identity identity() const override { return Identity{ops_.dev_major, ops_.dev_minor, ops_.ino}; }

  std::atomic<bool> owns_arg{true};

 private:
  const vmspace_backing_ops_t ops_;
  void* const arg_;
};

// The C options over the C++ defaults; false for a value out of range.
bool to_cpp(const vmspace_options_t& c, AddressSpaceOptions* o) {
  if (c.lock_mode < VMSPACE_LOCK_MMAP_LOCK || c.lock_mode > VMSPACE_LOCK_PER_VMA_RANGE) return false;
  if (c.thp < VMSPACE_THP_ALWAYS || c.thp > VMSPACE_THP_NEVER) return false;
  if (c.overcommit < VMSPACE_OVERCOMMIT_GUESS || c.overcommit > VMSPACE_OVERCOMMIT_NEVER) return false;
  o->mode = static_cast<vmspace::LockMode>(c.lock_mode);
  o->dac_mmap_min_addr = c.dac_mmap_min_addr;
  o->mmap_min_addr = c.mmap_min_addr;
  o->cap_sys_rawio = c.cap_sys_rawio != 0;
  o->max_map_count = c.max_map_count;
  o->mmap_base = c.mmap_base;
  o->zero_page = c.zero_page != 0;
  o->exec_only_pkey = c.exec_only_pkey != 0;
  o->thp = static_cast<vmspace::ThpMode>(c.thp);
  o->thp_align = c.thp_align != 0;
  o->stack_guard_gap = c.stack_guard_gap;
  o->rlimit_stack = c.rlimit_stack;
  o->rlimit_memlock = c.rlimit_memlock;
  o->cap_ipc_lock = c.cap_ipc_lock != 0;
  o->overcommit = static_cast<vmspace::Overcommit>(c.overcommit);
  o->overcommit_limit_pages = c.overcommit_limit_pages;
  o->brk_start = c.brk_start;
  o->rlimit_data = c.rlimit_data;
  o->phys_bytes = c.phys_bytes;
  o->phys_pretouch = c.phys_pretouch != 0;
  if (c.pool != nullptr) o->pool = c.pool->pool;
  if (c.task_size != 0 && c.task_size != vmspace::kTaskSize47 && c.task_size != vmspace::kTaskSize57 &&
      c.task_size != vmspace::kTaskSize32)
    return false;
  o->task_size = c.task_size;
  return true;
}

}  // namespace

extern "C" {

const char* vmspace_version(void) noexcept { return VMSPACE_VERSION_STRING; }

void vmspace_options_init(vmspace_options_t* opts) noexcept {
  const AddressSpaceOptions d;
  *opts = vmspace_options_t{};
  opts->struct_size = sizeof(vmspace_options_t);
  opts->lock_mode = static_cast<int>(d.mode);
  opts->dac_mmap_min_addr = d.dac_mmap_min_addr;
  opts->mmap_min_addr = d.mmap_min_addr;
  opts->cap_sys_rawio = d.cap_sys_rawio;
  opts->max_map_count = d.max_map_count;
  opts->mmap_base = d.mmap_base;
  opts->zero_page = d.zero_page;
  opts->exec_only_pkey = d.exec_only_pkey;
  opts->thp = static_cast<int>(d.thp);
  opts->thp_align = d.thp_align;
  opts->stack_guard_gap = d.stack_guard_gap;
  opts->rlimit_stack = d.rlimit_stack;
  opts->rlimit_memlock = d.rlimit_memlock;
  opts->cap_ipc_lock = d.cap_ipc_lock;
  opts->overcommit = static_cast<int>(d.overcommit);
  opts->overcommit_limit_pages = d.overcommit_limit_pages;
  opts->brk_start = d.brk_start;
  opts->rlimit_data = d.rlimit_data;
  opts->phys_bytes = d.phys_bytes;
  opts->phys_pretouch = d.phys_pretouch;
  opts->pool = nullptr;
  opts->task_size = d.task_size;
}

int vmspace_pool_create(uint64_t limit_bytes, int pretouch, vmspace_pool_t** out) noexcept {
  if (out == nullptr) return -EFAULT;
  try {
    auto pm = std::make_shared<vmspace::PhysicalMemory>(vmspace::PhysicalMemory::Options{limit_bytes, pretouch != 0});
    *out = new vmspace_pool{std::move(pm)};
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  } catch (const std::length_error&) {
    return -EINVAL;
  }
  return 0;
}

void vmspace_pool_destroy(vmspace_pool_t* pool) noexcept { delete pool; }

uint64_t vmspace_pool_free_bytes(const vmspace_pool_t* pool) noexcept { return pool->pool->free_bytes(); }

int vmspace_create(const vmspace_options_t* opts, vmspace_t** out) noexcept {
  if (out == nullptr) return -EFAULT;
  // The caller's options over ours: as much as both know (Linux's
  // copy_struct_from_user: what only the caller knows must be zero).
  vmspace_options_t c;
  vmspace_options_init(&c);
  if (opts != nullptr)
    if (int err = copy_struct_in(opts, kOptionsSizeV1, &c); err != 0) return err;
  AddressSpaceOptions o;
  if (!to_cpp(c, &o)) return -EINVAL;
  try {
    *out = new vmspace_handle(o);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  } catch (const std::length_error&) {  // PhysMem: more frames than it can index
    return -EINVAL;
  }
  return 0;
}

void vmspace_destroy(vmspace_t* vs) noexcept { delete vs; }

int vmspace_fork(vmspace_t* parent, vmspace_t** out) noexcept {
  if (out == nullptr) return -EFAULT;
  try {
    int err = 0;
    std::unique_ptr<AddressSpace> child = parent->as.fork(&err);
    if (child == nullptr) return err;
    *out = new vmspace_handle(std::move(child));
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
  return 0;
}

int vmspace_lock_mode(const vmspace_t* vs) noexcept { return static_cast<int>(vs->as.mode()); }

// ---- Mappings ---------------------------------------------------------------

int64_t vmspace_mmap(vmspace_t* vs, uint64_t addr, uint64_t len, int prot, int flags, int fd,
                     uint64_t offset) noexcept {
  try {
    return vs->as.mmap(addr, len, prot, flags, fd, offset);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_munmap(vmspace_t* vs, uint64_t addr, uint64_t len) noexcept {
  try {
    return vs->as.munmap(addr, len);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_mprotect(vmspace_t* vs, uint64_t addr, uint64_t len, int prot) noexcept {
  try {
    return vs->as.mprotect(addr, len, prot);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_madvise(vmspace_t* vs, uint64_t addr, uint64_t len, int advice) noexcept {
  try {
    return vs->as.madvise(addr, len, advice);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int64_t vmspace_mremap(vmspace_t* vs, uint64_t old_addr, uint64_t old_len, uint64_t new_len, int flags,
                       uint64_t new_addr) noexcept {
  try {
    return vs->as.mremap(old_addr, old_len, new_len, flags, new_addr);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_msync(vmspace_t* vs, uint64_t addr, uint64_t len, int flags) noexcept {
  try {
    return vs->as.msync(addr, len, flags);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_mlock(vmspace_t* vs, uint64_t addr, uint64_t len) noexcept {
  try {
    return vs->as.mlock(addr, len);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_munlock(vmspace_t* vs, uint64_t addr, uint64_t len) noexcept {
  try {
    return vs->as.munlock(addr, len);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_mlock2(vmspace_t* vs, uint64_t addr, uint64_t len, unsigned flags) noexcept {
  try {
    return vs->as.mlock2(addr, len, flags);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_mlockall(vmspace_t* vs, int flags) noexcept {
  try {
    return vs->as.mlockall(flags);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_munlockall(vmspace_t* vs) noexcept {
  try {
    return vs->as.munlockall();
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_mseal(vmspace_t* vs, uint64_t addr, uint64_t len, unsigned long flags) noexcept {
  try {
    return vs->as.mseal(addr, len, flags);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_mincore(vmspace_t* vs, uint64_t addr, uint64_t len, unsigned char* vec) noexcept {
  try {
    return vs->as.mincore(addr, len, vec);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

uint64_t vmspace_brk(vmspace_t* vs, uint64_t new_brk) noexcept {
  try {
    return vs->as.brk(new_brk);
  } catch (const std::bad_alloc&) {
    return vs->as.brk(0);  // failure: the break as it was
  }
}

// ---- Files ------------------------------------------------------------------

int vmspace_memfd_create(vmspace_t* vs, const char* name) noexcept {
  if (name == nullptr) return -EFAULT;
  try {
    return vs->as.memfd_create(name);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_open(vmspace_t* vs, const char* path, int flags, unsigned mode) noexcept {
  if (path == nullptr) return -EFAULT;
  try {
    return vs->as.open(path, flags, mode);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_ftruncate(vmspace_t* vs, int fd, int64_t length) noexcept {
  try {
    return vs->as.ftruncate(fd, length);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int64_t vmspace_pread(vmspace_t* vs, int fd, void* buf, uint64_t n, int64_t offset) noexcept {
  try {
    return vs->as.pread(fd, buf, n, offset);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int64_t vmspace_pwrite(vmspace_t* vs, int fd, const void* buf, uint64_t n, int64_t offset) noexcept {
  try {
    return vs->as.pwrite(fd, buf, n, offset);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_fsync(vmspace_t* vs, int fd) noexcept {
  try {
    return vs->as.fsync(fd);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_close(vmspace_t* vs, int fd) noexcept {
  try {
    return vs->as.close(fd);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_send_file(vmspace_t* vs, int fd, vmspace_t* to) noexcept {
  if (to == nullptr) return -EINVAL;
  try {
    return vs->as.send_file(fd, to->as);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_open_backing(vmspace_t* vs, const vmspace_backing_ops_t* ops, void* arg, const char* name,
                         int flags) noexcept {
  if (ops == nullptr || name == nullptr) return -EFAULT;
  vmspace_backing_ops_t c{};
  if (int err = copy_struct_in(ops, kBackingOpsSizeV1, &c); err != 0) return err;
  if (c.size == nullptr || c.read_page == nullptr || c.write_page == nullptr || c.truncate == nullptr)
    return -EINVAL;
  std::shared_ptr<CBacking> backing;
  int r;
  try {
    backing = std::make_shared<CBacking>(c, arg);
    r = vs->as.open_file(backing, name, flags);
  } catch (const std::bad_alloc&) {
    r = -ENOMEM;
  }
  // A failed open may let go of the backing later (a file's release can
  // be deferred): it must not call release then.
  if (r < 0 && backing != nullptr) backing->owns_arg.store(false, std::memory_order_relaxed);
  return r;
}

// ---- Guest memory access ------------------------------------------------------

const char* vmspace_fault_name(vmspace_fault_kind_t kind) noexcept {
  if (static_cast<int>(kind) < 0 || static_cast<int>(kind) > VMSPACE_FAULT_OOM) return "?";
  return vmspace::fault_name(static_cast<vmspace::Fault>(kind));
}

vmspace_fault_t vmspace_read(vmspace_t* vs, uint64_t va, void* dst, uint64_t n) noexcept {
  try {
    return to_c(vs->as.read(va, dst, n));
  } catch (const std::bad_alloc&) {
    return oom_at(va);
  }
}

vmspace_fault_t vmspace_write(vmspace_t* vs, uint64_t va, const void* src, uint64_t n) noexcept {
  try {
    return to_c(vs->as.write(va, src, n));
  } catch (const std::bad_alloc&) {
    return oom_at(va);
  }
}

vmspace_fault_t vmspace_fill(vmspace_t* vs, uint64_t va, unsigned char byte, uint64_t n) noexcept {
  try {
    return to_c(vs->as.fill(va, byte, n));
  } catch (const std::bad_alloc&) {
    return oom_at(va);
  }
}

vmspace_fault_t vmspace_fault_in(vmspace_t* vs, uint64_t va, int write) noexcept {
  try {
    vmspace::Fault f = vs->as.fault_in(va, write != 0);
    return vmspace_fault_t{static_cast<vmspace_fault_kind_t>(f), f == vmspace::Fault::none ? 0 : va & kPageMask};
  } catch (const std::bad_alloc&) {
    return oom_at(va);
  }
}

vmspace_access_result_t vmspace_access_read(vmspace_t* vs, uint64_t va, void* dst, uint64_t n) noexcept {
  try {
    return to_c_exact(vs->as.read(va, dst, n));
  } catch (const std::bad_alloc&) {
    return vmspace_access_result_t{VMSPACE_FAULT_OOM, va, 0};
  }
}

vmspace_access_result_t vmspace_access_fetch(vmspace_t* vs, uint64_t va, void* dst, uint64_t n) noexcept {
  try {
    return to_c_exact(vs->as.fetch(va, dst, n));
  } catch (const std::bad_alloc&) {
    return vmspace_access_result_t{VMSPACE_FAULT_OOM, va, 0};
  }
}

vmspace_access_result_t vmspace_access_write(vmspace_t* vs, uint64_t va, const void* src, uint64_t n) noexcept {
  try {
    return to_c_exact(vs->as.write(va, src, n));
  } catch (const std::bad_alloc&) {
    return vmspace_access_result_t{VMSPACE_FAULT_OOM, va, 0};
  }
}

vmspace_access_result_t vmspace_access_fill(vmspace_t* vs, uint64_t va, unsigned char byte, uint64_t n) noexcept {
  try {
    return to_c_exact(vs->as.fill(va, byte, n));
  } catch (const std::bad_alloc&) {
    return vmspace_access_result_t{VMSPACE_FAULT_OOM, va, 0};
  }
}

vmspace_access_result_t vmspace_access_fault_in(vmspace_t* vs, uint64_t va, vmspace_access_kind_t kind) noexcept {
  try {
    vmspace::Fault f = vs->as.fault_in(va, to_kind(kind));
    if (f == vmspace::Fault::none) return vmspace_access_result_t{VMSPACE_FAULT_NONE, 0, 0};
    return vmspace_access_result_t{static_cast<vmspace_fault_kind_t>(f), va, 0};
  } catch (const std::bad_alloc&) {
    return vmspace_access_result_t{VMSPACE_FAULT_OOM, va, 0};
  }
}

int vmspace_atomic_load(vmspace_t* vs, uint64_t va, unsigned size, uint64_t* value,
                        vmspace_access_result_t* res) noexcept {
  if (value == nullptr) return -EFAULT;
  return run_atomic(va, size, res, [&] { return vs->as.atomic_load(va, size, value); });
}

int vmspace_atomic_store(vmspace_t* vs, uint64_t va, unsigned size, uint64_t value,
                         vmspace_access_result_t* res) noexcept {
  return run_atomic(va, size, res, [&] { return vs->as.atomic_store(va, size, value); });
}

int vmspace_atomic_exchange(vmspace_t* vs, uint64_t va, unsigned size, uint64_t value, uint64_t* old,
                            vmspace_access_result_t* res) noexcept {
  return run_atomic(va, size, res, [&] { return vs->as.atomic_exchange(va, size, value, old); });
}

int vmspace_atomic_compare_exchange(vmspace_t* vs, uint64_t va, unsigned size, uint64_t* expected,
                                    uint64_t desired, int* success, vmspace_access_result_t* res) noexcept {
  if (expected == nullptr) return -EFAULT;
  return run_atomic(va, size, res, [&] {
    bool ok = false;
    vmspace::AccessResult a = vs->as.atomic_compare_exchange(va, size, expected, desired, &ok);
    if (a.ok() && success != nullptr) *success = ok ? 1 : 0;
    return a;
  });
}

int vmspace_atomic_fetch_add(vmspace_t* vs, uint64_t va, unsigned size, uint64_t value, uint64_t* old,
                             vmspace_access_result_t* res) noexcept {
  return run_atomic(va, size, res, [&] { return vs->as.atomic_fetch_add(va, size, value, old); });
}

int vmspace_futex_key(const vmspace_t* vs, uint64_t va, int shared, vmspace_futex_key_t* key) noexcept {
  if (key == nullptr) return -EFAULT;
  vmspace::FutexKey k;
  const int r = vs->as.futex_key(va, shared != 0, &k);
  if (r == 0) *key = vmspace_futex_key_t{k.object, k.offset};
  return r;
}

vmspace_scope_t* vmspace_scope_begin(vmspace_t* vs) noexcept { return new (std::nothrow) vmspace_scope(vs->as); }

void* vmspace_scope_translate(const vmspace_scope_t* scope, uint64_t va, int write) noexcept {
  return scope->scope.translate(va, write != 0);
}

void* vmspace_scope_translate_kind(const vmspace_scope_t* scope, uint64_t va, vmspace_access_kind_t kind) noexcept {
  return scope->scope.translate(va, to_kind(kind));
}

void vmspace_scope_end(vmspace_scope_t* scope) noexcept { delete scope; }

// ---- Layout queries -------------------------------------------------------------

int vmspace_find_vma(const vmspace_t* vs, uint64_t addr, vmspace_vma_info_t* info, char* name,
                     size_t name_size) noexcept {
  if (info != nullptr && info->struct_size < kVmaInfoSizeV1) return -EINVAL;
  if (name == nullptr && name_size > 0) return -EFAULT;
  try {
    vmspace::VmaInfo v;
    if (!vs->as.find_vma(addr, &v)) return -ENOENT;
    copy_out(v.name, name, name_size);
    if (info != nullptr) {
      vmspace_vma_info_t c = to_c(v);
      c.name = name_size > 0 ? name : nullptr;
      c.name_len = v.name.size();
      c.struct_size = std::min(info->struct_size, sizeof c);  // what the caller's struct gets
      std::memcpy(info, &c, c.struct_size);
    }
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
  return 0;
}

int vmspace_vmas(const vmspace_t* vs, uint64_t start, uint64_t end, vmspace_vma_fn fn, void* arg) noexcept {
  if (fn == nullptr) return -EINVAL;
  std::vector<vmspace::VmaInfo> list;
  try {
    list = vs->as.vmas(start, end);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
  // No lock held: the callback may call into the space.
  for (const vmspace::VmaInfo& v : list) {
    vmspace_vma_info_t c = to_c(v);
    c.name = v.name.c_str();
    c.name_len = v.name.size();
    if (int r = fn(arg, &c); r != 0) return r;
  }
  return 0;
}

int vmspace_set_anon_name(vmspace_t* vs, uint64_t addr, uint64_t len, const char* name) noexcept {
  try {
    return vs->as.set_anon_name(addr, len, name);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

// ---- Invalidation notifiers -------------------------------------------------------

int vmspace_notifier_register(vmspace_t* vs, const vmspace_notifier_ops_t* ops, void* arg,
                              vmspace_notifier_t** out) noexcept {
  if (ops == nullptr || out == nullptr) return -EFAULT;
  vmspace_notifier_ops_t c{};
  if (int err = copy_struct_in(ops, kNotifierOpsSizeV1, &c); err != 0) return err;
  if (c.invalidate_range_start == nullptr) return -EINVAL;
  vmspace_notifier* n;
  try {
    // Listed before it is registered: once registered, its callbacks may
    // run, and unregistering needs it listed.
    std::lock_guard<std::mutex> g(vs->notifiers_lock);
    vs->notifiers.push_back(std::make_unique<vmspace_notifier>(c, arg));
    n = vs->notifiers.back().get();
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
  int r;
  try {
    r = vs->as.register_notifier(n);
  } catch (const std::bad_alloc&) {
    r = -ENOMEM;
  }
  if (r != 0) {
    std::lock_guard<std::mutex> g(vs->notifiers_lock);
    std::erase_if(vs->notifiers, [n](const auto& p) { return p.get() == n; });
    return r;
  }
  *out = n;
  return 0;
}

int vmspace_notifier_unregister(vmspace_t* vs, vmspace_notifier_t* n) noexcept {
  if (n == nullptr) return -EINVAL;
  std::unique_ptr<vmspace_notifier> owned;
  {
    std::lock_guard<std::mutex> g(vs->notifiers_lock);
    auto it = std::find_if(vs->notifiers.begin(), vs->notifiers.end(), [n](const auto& p) { return p.get() == n; });
    if (it == vs->notifiers.end()) return -ENOENT;
    owned = std::move(*it);
    vs->notifiers.erase(it);
  }
  // Outside notifiers_lock: this waits for n's running callbacks.  Listed
  // means registered (register lists it only for the length of its call
  // before registering, and the caller has no handle to pass until then).
  return vs->as.unregister_notifier(owned.get());
}

uint64_t vmspace_translation_generation(const vmspace_t* vs) noexcept { return vs->as.translation_generation(); }

// ---- Write-watch ------------------------------------------------------------------

int vmspace_set_write_watch(vmspace_t* vs, vmspace_write_watch_fn fn, void* arg) noexcept {
  std::unique_ptr<WatchCallback> next;
  if (fn != nullptr) {
    next.reset(new (std::nothrow) WatchCallback{fn, arg, vs});
    if (next == nullptr) return -ENOMEM;
  }
  std::lock_guard<std::mutex> g(vs->watch_lock);
  vs->as.set_write_watch(fn != nullptr ? &report_write : nullptr, next.get());
  // No report uses the previous callback any more: free it.
  vs->watch = std::move(next);
  return 0;
}

int vmspace_write_watch_arm(vmspace_t* vs, uint64_t addr, uint64_t len) noexcept {
  try {
    return vs->as.write_watch_arm(addr, len);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_write_watch_disarm(vmspace_t* vs, uint64_t addr, uint64_t len) noexcept {
  try {
    return vs->as.write_watch_disarm(addr, len);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

// AddressSpace::write_watch_scan reports every written page of its range,
// so the scan goes in windows of as many pages as there is room left: a
// window cannot find more.  (With much room, one window: one call.)
int64_t vmspace_write_watch_scan(vmspace_t* vs, uint64_t addr, uint64_t len, int rearm, uint64_t* pages,
                                 size_t max_pages, uint64_t* walk_end) noexcept {
  const std::uint64_t page = vmspace::kGuestPageSize;
  const std::uint64_t plen = (len + page - 1) & ~(page - 1);
  if (addr % page != 0 || plen < len || addr + plen < addr || max_pages == 0) return -EINVAL;
  if (pages == nullptr) return -EFAULT;
  const std::uint64_t end = addr + plen;
  std::uint64_t at = addr;
  std::size_t found = 0;
  try {
    std::vector<std::uint64_t> written;
    // The whole range's checks (TASK_SIZE) before the first window arms
    // anything: a one-page scan of its end that does not re-arm.
    if (plen > 0) {
      const long r = vs->as.write_watch_scan(end - page, page, false, &written);
      if (r < 0) return r;
    }
    while (at < end && found < max_pages) {
      const std::uint64_t room = max_pages - found;
      const std::uint64_t window = room < (end - at) / page ? room * page : end - at;
      written.clear();
      const long r = vs->as.write_watch_scan(at, window, rearm != 0, &written);
      if (r < 0) {
        if (found == 0) return r;
        break;  // report what was found; the failed window is scanned again
      }
      std::copy(written.begin(), written.end(), pages + found);
      found += written.size();
      at += window;
    }
  } catch (const std::bad_alloc&) {
    if (found == 0) return -ENOMEM;
  }
  if (walk_end != nullptr) *walk_end = at;
  return static_cast<int64_t>(found);
}

// ---- Introspection ------------------------------------------------------------

int64_t vmspace_maps(const vmspace_t* vs, char* buf, size_t size) noexcept {
  try {
    return copy_out(vs->as.maps(), buf, size);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int64_t vmspace_smaps(const vmspace_t* vs, char* buf, size_t size) noexcept {
  try {
    return copy_out(vs->as.smaps(), buf, size);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
}

int vmspace_map_count(const vmspace_t* vs) noexcept { return vs->as.map_count(); }

int vmspace_vm_stat(const vmspace_t* vs, vmspace_vm_stat_t stat, uint64_t* value) noexcept {
  if (static_cast<int>(stat) < VMSPACE_STAT_PGFAULT || static_cast<int>(stat) > VMSPACE_STAT_RANGE_LOCK_RETRY)
    return -EINVAL;
  if (value == nullptr) return -EFAULT;
  *value = vs->as.vm_stat(static_cast<vmspace::VmStat>(stat));
  return 0;
}

uint64_t vmspace_rss_pages(const vmspace_t* vs) noexcept { return vs->as.rss_pages(); }

int vmspace_validate(const vmspace_t* vs, char* why, size_t size) noexcept {
  try {
    std::string reason;
    bool ok = vs->as.validate(&reason);
    copy_out(ok ? std::string() : reason, why, size);
    return ok ? 1 : 0;
  } catch (const std::bad_alloc&) {
    copy_out("out of memory", why, size);
    return 0;
  }
}

}  // extern "C"
