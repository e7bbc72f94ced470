// SPDX-License-Identifier: MIT
#include "vmspace/address_space.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "fault/fault.h"
#include "mem/phys_mem.h"
#include "mm/mm.h"
#include "mm/mmap_lock.h"
#include "mm/mmu_notifier.h"
#include "mm/tlb.h"
#include "mm/truncate.h"
#include "mm/writeback.h"
#include "mm/vma.h"
#include "api/soft_mmu.h"
#include "mm/write_watch.h"

namespace vmspace {

using api::to_access;
using api::to_fault;
using api::usable;

namespace {

mm::MmConfig to_config(const AddressSpaceOptions& o) {
  mm::MmConfig c;
  c.mode = o.mode;
  c.dac_mmap_min_addr = o.dac_mmap_min_addr;
  c.mmap_min_addr = o.mmap_min_addr;
  c.cap_sys_rawio = o.cap_sys_rawio;
  c.max_map_count = o.max_map_count;
  c.mmap_base = o.mmap_base;
  c.zero_page = o.zero_page;
  c.exec_only_pkey = o.exec_only_pkey;
  c.thp = o.thp;
  c.thp_align = o.thp_align;
  c.stack_guard_gap = mm::page_align(o.stack_guard_gap);
  c.rlimit_stack = o.rlimit_stack;
  c.rlimit_memlock = o.rlimit_memlock;
  c.cap_ipc_lock = o.cap_ipc_lock;
  c.overcommit = o.overcommit;
  c.overcommit_limit_pages = o.overcommit_limit_pages;
  c.start_brk = mm::page_align(o.brk_start);
  c.rlimit_data = o.rlimit_data;
  // Guest geometry (issue 17): the checked TASK_SIZE (throws
  // std::invalid_argument), and the bottom-up search's start as Linux
  // derives it from the default map window (__TASK_UNMAPPED_BASE).
  c.task_size = mm::task_size_from_option(o.task_size);
  c.mmap_legacy_base = mm::page_align(mm::map_window(c.task_size) / 3);
  return c;
}

std::unique_ptr<mem::PhysMem> make_phys(const AddressSpaceOptions& o) {
  if (o.phys != nullptr || o.pool != nullptr) return nullptr;
  mem::PhysMemOptions po;
  po.capacity_bytes = o.phys_bytes;
  po.pretouch = o.phys_pretouch;
  return std::make_unique<mem::PhysMem>(po);
}

}  // namespace

const char* fault_name(Fault f) {
  switch (f) {
    case Fault::none: return "none";
    case Fault::segv_maperr: return "SEGV_MAPERR";
    case Fault::segv_accerr: return "SEGV_ACCERR";
    case Fault::sigbus: return "SIGBUS";
    case Fault::oom: return "OOM";
  }
  return "?";
}

// The space's open files: descriptor -> file (one reference each) and how
// it was opened (mem::kFmodeRead/Write: Linux's struct file f_mode).
// Hidden: a nested class of an exported one is exported by default, and
// this one is private to the library.
struct __attribute__((visibility("hidden"))) AddressSpace::FileTable {
  static constexpr int kMaxFiles = 65536;  // RLIMIT_NOFILE's default hard limit
  struct Entry {
    mem::File* file = nullptr;
    unsigned f_mode = 0;
  };
  std::mutex lock;  // guards `open`; held only to look up, install, remove
  std::vector<Entry> open;

  // The file behind `fd` with a reference for the caller (and its mode in
  // *f_mode), or nullptr.
  mem::File* get(int fd, unsigned* f_mode = nullptr) {
    std::lock_guard<std::mutex> g(lock);
    if (fd < 0 || static_cast<std::size_t>(fd) >= open.size()) return nullptr;
    const Entry& e = open[static_cast<std::size_t>(fd)];
    if (f_mode != nullptr) *f_mode = e.f_mode;
    return mem::get_file(e.file);
  }
  int install(mem::File* f, unsigned f_mode);
  ~FileTable() {
    for (const Entry& e : open) mem::fput(e.file);
  }
};

namespace {
// A reference to an open file for the length of one call.
struct FileRef {
  mem::File* f;
  ~FileRef() { mem::fput(f); }
};
}  // namespace

AddressSpace::AddressSpace(const AddressSpaceOptions& opts)
    : owned_phys_(make_phys(opts)),
      pool_(opts.pool),
      mm_(std::make_unique<mm::MmStruct>(to_config(opts), opts.pool != nullptr  ? opts.pool->internal()
                                                          : opts.phys != nullptr ? opts.phys
                                                                                 : owned_phys_.get())),
      files_(std::make_unique<FileTable>()) {
  // mm calls back into the fault layer to populate ranges (mprotect of
  // locked memory); the layering keeps mm below fault.
  mm_->populate = fault::populate_range_locked;
  mm_->faultin_page = fault::faultin_page_locked;  // MADV_POPULATE_*
  mm_->ww.owner = this;  // what write-watch callbacks are handed
}

AddressSpace::AddressSpace(ForkTag, const AddressSpace& parent)
    : owned_phys_(parent.owned_phys_),
      pool_(parent.pool_),
      mm_(std::make_unique<mm::MmStruct>(parent.mm_->cfg, parent.mm_->phys)),
      files_(std::make_unique<FileTable>()) {
  mm_->populate = fault::populate_range_locked;
  mm_->faultin_page = fault::faultin_page_locked;
  mm_->ww.owner = this;  // (no notifiers, no watches: a fresh MmStruct)
}

std::unique_ptr<AddressSpace> AddressSpace::fork(int* err) {
  // Inside an AccessScope fork cannot wait for older translations to end
  // (its own would never end): it copies writable private pages instead
  // of sharing them (fork.cpp, step 5), and cannot wait for another fork's
  // window either (that fork waits for this scope): -EAGAIN then.
  const bool in_scope = rcu::in_read_section();
  std::unique_lock<std::mutex> serial(mm_->fork_mutex, std::defer_lock);
  if (!in_scope) {
    serial.lock();
  } else if (!serial.try_lock()) {
    if (err != nullptr) *err = -EAGAIN;
    return nullptr;
  }
  std::unique_ptr<AddressSpace> child;
  try {
    child.reset(new AddressSpace(ForkTag{}, *this));
    // The file table first (Linux's copy_files comes before copy_mm): the
    // same open files, one more reference each.
    std::lock_guard<std::mutex> g(files_->lock);
    child->files_->open.reserve(files_->open.size());
    for (const FileTable::Entry& e : files_->open)
      child->files_->open.push_back(FileTable::Entry{mem::get_file(e.file), e.f_mode});
  } catch (const std::bad_alloc&) {
    if (err != nullptr) *err = -ENOMEM;
    return nullptr;
  }
  const int r = mm::dup_mmap(child->mm_.get(), mm_.get(), in_scope);
  if (!in_scope) {
    // Every translation of a now write-protected page taken before fork
    // ends before the child is handed out (the parent's TLB flush); then
    // the parent's faults stop redirecting copies to the child.
    rcu::synchronize();
    mm::fork_window_close(mm_.get());
  }
  if (r != 0) {
    if (err != nullptr) *err = r;
    return nullptr;  // ~AddressSpace releases what the child took
  }
  if (err != nullptr) *err = 0;
  return child;
}

AddressSpace::~AddressSpace() {
  mm_.reset();  // returns every mapped frame
  files_.reset();  // and every file's cached pages, once no VMA maps them
  // VMAs removed earlier are freed by RCU callbacks, and freeing a shared
  // anonymous VMA can free its shmem pages: let them all run before an
  // owned pool goes away.  (Files with a backing that were let go are
  // written back and freed on the flusher thread; ~PhysMem waits for those
  // of its pool: a shared pool outlives this space.)  Inside a read
  // section -- only a child whose fork failed inside an AccessScope is
  // destroyed there -- it must not wait, and need not: its pool is the
  // parent's, which lives on.
  mm::vm_area_free_flush();  // this thread's batch of freed VMAs, too
  if (!rcu::in_read_section()) rcu::barrier();
}

mem::PhysMem* AddressSpace::phys() const { return mm_->phys; }

long AddressSpace::mmap(std::uint64_t addr, std::uint64_t len, int prot, int flags, int fd,
                        std::uint64_t offset) {
  std::uint64_t populate = 0;
  unsigned f_mode = 0;
  FileRef file{(flags & MAP_ANONYMOUS) ? nullptr : files_->get(fd, &f_mode)};
  long r = mm::vm_mmap(mm_.get(), addr, len, prot, flags, file.f, f_mode, offset, &populate);
  if (populate != 0) {
    // vm_mmap left the mmap_lock downgraded to read (seed 003).
    fault::populate_range_locked(mm_.get(), static_cast<std::uint64_t>(r),
                                 static_cast<std::uint64_t>(r) + populate);
    mm::mmap_read_unlock(mm_.get());
  }
  return r;
}

// Install `f` (a reference the table takes over, or drops on failure),
// opened with `f_mode`, at the lowest free descriptor.
int AddressSpace::FileTable::install(mem::File* f, unsigned f_mode) {
  std::lock_guard<std::mutex> g(lock);
  std::size_t fd = 0;
  while (fd < open.size() && open[fd].file != nullptr) ++fd;
  if (fd >= static_cast<std::size_t>(kMaxFiles)) {
    mem::fput(f);
    return -EMFILE;
  }
  try {
    if (fd == open.size()) open.emplace_back();
  } catch (const std::bad_alloc&) {
    mem::fput(f);
    return -ENOMEM;
  }
  open[fd] = Entry{f, f_mode};
  return static_cast<int>(fd);
}

int AddressSpace::memfd_create(const std::string& name) {
  if (name.size() > 249) return -EINVAL;  // MFD_NAME_MAX_LEN
  mem::File* f = mem::memfd_create(mm_->phys, name);
  if (f == nullptr) return -ENOMEM;
  return files_->install(f, mem::kFmodeRead | mem::kFmodeWrite);
}

namespace {
// O_RDONLY / O_WRONLY / O_RDWR as f_mode bits (3, Linux's "neither": none),
// and O_APPEND.
unsigned fmode_of(int flags) {
  unsigned m = 0;
  switch (flags & O_ACCMODE) {
    case O_RDONLY: m = mem::kFmodeRead; break;
    case O_WRONLY: m = mem::kFmodeWrite; break;
    case O_RDWR: m = mem::kFmodeRead | mem::kFmodeWrite; break;
  }
  return (flags & O_APPEND) ? m | mem::kFmodeAppend : m;
}
}  // namespace

int AddressSpace::open_file(std::shared_ptr<FileBacking> backing, const std::string& name, int flags) {
  if (backing == nullptr || (flags & ~(O_ACCMODE | O_APPEND)) != 0) return -EINVAL;
  int err = 0;
  mem::File* f = mem::file_open_backed(mm_->phys, std::move(backing), name, &err);
  if (f == nullptr) return err;
  return files_->install(f, fmode_of(flags));
}

int AddressSpace::open(const std::string& path, int flags, unsigned mode) {
  // The host descriptor serves every descriptor of the file here (one page
  // cache), and write-back reads pages before writing parts of them: open
  // it read-write where the host allows, else as asked.  Without O_APPEND
  // (write-back writes at offsets; appending is this table's business) or
  // O_DIRECT (pages are written in part); O_CLOEXEC: it is ours, not a
  // child's.
  const int host_flags = (flags & ~(O_ACCMODE | O_APPEND | O_DIRECT)) | O_CLOEXEC;
  const int asked = flags & O_ACCMODE;
  int hfd = ::open(path.c_str(), host_flags | O_RDWR, static_cast<mode_t>(mode));
  if (hfd < 0 && asked != O_RDWR && asked != O_ACCMODE &&
      (errno == EACCES || errno == EROFS || errno == EPERM || errno == EISDIR || errno == ETXTBSY))
    hfd = ::open(path.c_str(), host_flags | asked, static_cast<mode_t>(mode));
  if (hfd < 0) return -errno;
  std::shared_ptr<FileBacking> backing;
  try {
    backing = host_fd_backing(hfd, /*own=*/true);
  } catch (const std::bad_alloc&) {
    ::close(hfd);
    return -ENOMEM;
  }
  // /proc/self/maps shows the path the kernel resolved.
  std::string name = path;
  if (char* real = ::realpath(path.c_str(), nullptr); real != nullptr) {
    name = real;
    std::free(real);
  }
  int err = 0;
  mem::File* f = mem::file_open_backed(mm_->phys, std::move(backing), std::move(name), &err);
  if (f == nullptr) return err;
  return files_->install(f, fmode_of(flags));
}

int AddressSpace::fsync(int fd) {
  FileRef file{files_->get(fd)};
  if (file.f == nullptr) return -EBADF;
  return mm::vfs_fsync_range(file.f, 0, UINT64_MAX);
}

int AddressSpace::send_file(int fd, AddressSpace& to) {
  unsigned f_mode = 0;
  mem::File* f = files_->get(fd, &f_mode);
  if (f == nullptr) return -EBADF;
  if (to.mm_->phys != mm_->phys) {
    mem::fput(f);
    return -EXDEV;
  }
  return to.files_->install(f, f_mode);
}

int AddressSpace::ftruncate(int fd, std::int64_t length) {
  if (length < 0) return -EINVAL;  // before the descriptor, as Linux
  unsigned f_mode = 0;
  FileRef file{files_->get(fd, &f_mode)};
  if (file.f == nullptr) return -EBADF;
  if (!(f_mode & mem::kFmodeWrite)) return -EINVAL;
  std::lock_guard<std::mutex> g(file.f->size_lock);
  return mm::shmem_truncate(file.f, static_cast<std::uint64_t>(length));
}

namespace {
// Linux's rw_verify_area(): a count that is negative as ssize_t, or that
// takes the offset past INT64_MAX, is -EINVAL; then at most MAX_RW_COUNT
// bytes move per call.
constexpr std::uint64_t kMaxRwCount = 0x7ffff000;
bool rw_count_ok(std::uint64_t n, std::uint64_t off) {
  return n <= static_cast<std::uint64_t>(INT64_MAX) && off + n <= static_cast<std::uint64_t>(INT64_MAX);
}
}  // namespace

long AddressSpace::pwrite(int fd, const void* buf, std::uint64_t n, std::int64_t offset) {
  if (offset < 0) return -EINVAL;  // before the descriptor, as Linux
  unsigned f_mode = 0;
  FileRef file{files_->get(fd, &f_mode)};
  if (file.f == nullptr || !(f_mode & mem::kFmodeWrite)) return -EBADF;
  auto off = static_cast<std::uint64_t>(offset);
  if (!rw_count_ok(n, off)) return -EINVAL;
  n = std::min(n, kMaxRwCount);
  std::lock_guard<std::mutex> g(file.f->size_lock);
  // O_APPEND: at the end, whatever the offset (Linux's pwrite does so).
  if (f_mode & mem::kFmodeAppend) off = file.f->i_size.load(std::memory_order_relaxed);
  if (n > static_cast<std::uint64_t>(INT64_MAX) - off) return -EFBIG;  // past MAX_LFS_FILESIZE
  return mem::shmem_write(file.f, buf, n, off);
}

long AddressSpace::pread(int fd, void* buf, std::uint64_t n, std::int64_t offset) {
  if (offset < 0) return -EINVAL;  // before the descriptor, as Linux
  unsigned f_mode = 0;
  FileRef file{files_->get(fd, &f_mode)};
  if (file.f == nullptr || !(f_mode & mem::kFmodeRead)) return -EBADF;
  if (!rw_count_ok(n, static_cast<std::uint64_t>(offset))) return -EINVAL;
  n = std::min(n, kMaxRwCount);
  return mem::shmem_read(file.f, buf, n, static_cast<std::uint64_t>(offset));
}

int AddressSpace::close(int fd) {
  mem::File* f = nullptr;
  {
    std::lock_guard<std::mutex> g(files_->lock);
    if (fd < 0 || static_cast<std::size_t>(fd) >= files_->open.size()) return -EBADF;
    std::swap(f, files_->open[static_cast<std::size_t>(fd)].file);
  }
  if (f == nullptr) return -EBADF;
  mem::fput(f);
  return 0;
}

int AddressSpace::msync(std::uint64_t addr, std::uint64_t len, int flags) {
  return mm::do_msync(mm_.get(), addr, len, flags);
}

int AddressSpace::munmap(std::uint64_t addr, std::uint64_t len) {
  return mm::vm_munmap(mm_.get(), addr, len);
}

int AddressSpace::mprotect(std::uint64_t addr, std::uint64_t len, int prot) {
  return mm::do_mprotect(mm_.get(), addr, len, prot);
}

long AddressSpace::mremap(std::uint64_t old_addr, std::uint64_t old_len, std::uint64_t new_len, int flags,
                          std::uint64_t new_addr) {
  std::uint64_t start = 0, len = 0;
  long r = mm::do_mremap(mm_.get(), old_addr, old_len, new_len, flags, new_addr, &start, &len);
  if (len != 0) {
    // A locked mapping grew; do_mremap left the mmap_lock downgraded.
    fault::populate_range_locked(mm_.get(), start, start + len);
    mm::mmap_read_unlock(mm_.get());
  }
  return r;
}

int AddressSpace::madvise(std::uint64_t addr, std::uint64_t len, int advice) {
  return mm::do_madvise(mm_.get(), addr, len, advice);
}

int AddressSpace::mlock2(std::uint64_t addr, std::uint64_t len, unsigned flags) {
  std::uint64_t start = 0, plen = 0;
  int r = mm::do_mlock(mm_.get(), addr, len, flags, &start, &plen);
  if (plen != 0) {
    // do_mlock left the mmap_lock downgraded to read (seed 003).  Unlike
    // mmap's, this populate reports its first failure.
    const int err = fault::mm_populate_locked(mm_.get(), start, start + plen, /*ignore_errors=*/false);
    mm::mmap_read_unlock(mm_.get());
    if (err != 0) r = mm::mlock_populate_error(err);
  }
  return r;
}

int AddressSpace::mlock(std::uint64_t addr, std::uint64_t len) { return mlock2(addr, len, 0); }

int AddressSpace::munlock(std::uint64_t addr, std::uint64_t len) { return mm::do_munlock(mm_.get(), addr, len); }

int AddressSpace::mlockall(int flags) {
  bool populate = false;
  const int r = mm::do_mlockall(mm_.get(), flags, &populate);
  if (populate) {
    // MCL_CURRENT: everything, failures ignored (Linux mm_populate(0,
    // TASK_SIZE)), under the downgraded lock.
    fault::populate_range_locked(mm_.get(), 0, mm_->task_size);
    mm::mmap_read_unlock(mm_.get());
  }
  return r;
}

int AddressSpace::munlockall() { return mm::do_munlockall(mm_.get()); }

int AddressSpace::mseal(std::uint64_t addr, std::uint64_t len, unsigned long flags) {
  return mm::do_mseal(mm_.get(), addr, len, flags);
}

int AddressSpace::mincore(std::uint64_t addr, std::uint64_t len, unsigned char* vec) {
  return mm::do_mincore(mm_.get(), addr, len, vec);
}

std::uint64_t AddressSpace::brk(std::uint64_t new_brk) { return mm::do_brk(mm_.get(), new_brk); }

template <class CopyFn>
AccessResult AddressSpace::access(std::uint64_t va, std::uint64_t n, AccessKind kind, CopyFn&& copy) {
  mm::MmStruct* m = mm_.get();
  std::uint64_t done = 0;
  // A translation holder (mm/tlb.h) while it copies, not while it faults:
  // a copy-on-write fault taken here then releases the old frame at once.
  mm::mm_tlb_enter(m);
  while (done < n) {
    const std::uint64_t a = va + done;
    const std::uint64_t chunk = std::min(n - done, mm::kPageSize - (a & (mm::kPageSize - 1)));
    bool hit = false;
    {
      // The frame is neither reused (freed frames wait for a grace period)
      // nor handed to a fork relative (mm/tlb.h) while we copy.
      rcu::ReadGuard rcu;
      if (void* p = usable(m, a, kind)) {
        copy(p, done, chunk);
        hit = true;
      }
    }
    if (hit) {
      done += chunk;
      continue;
    }
    mm::mm_tlb_exit(m);
    fault::FaultResult r = fault::handle_fault(m, a, to_access(kind));
    // The exact first byte not done (si_addr): the pages before a's were
    // copied whole, so that is a itself, and `done` bytes went through.
    if (r != fault::FaultResult::ok) return AccessResult{to_fault(r), a, done};
    mm::mm_tlb_enter(m);
  }
  mm::mm_tlb_exit(m);
  return AccessResult{Fault::none, 0, n};
}

AccessResult AddressSpace::read(std::uint64_t va, void* dst, std::uint64_t n) {
  auto* out = static_cast<unsigned char*>(dst);
  return access(va, n, AccessKind::read,
                [&](void* p, std::uint64_t off, std::uint64_t len) { std::memcpy(out + off, p, len); });
}

AccessResult AddressSpace::fetch(std::uint64_t va, void* dst, std::uint64_t n) {
  auto* out = static_cast<unsigned char*>(dst);
  return access(va, n, AccessKind::exec,
                [&](void* p, std::uint64_t off, std::uint64_t len) { std::memcpy(out + off, p, len); });
}

AccessResult AddressSpace::write(std::uint64_t va, const void* src, std::uint64_t n) {
  const auto* in = static_cast<const unsigned char*>(src);
  return access(va, n, AccessKind::write,
                [&](void* p, std::uint64_t off, std::uint64_t len) { std::memcpy(p, in + off, len); });
}

AccessResult AddressSpace::fill(std::uint64_t va, unsigned char byte, std::uint64_t n) {
  return access(va, n, AccessKind::write, [&](void* p, std::uint64_t, std::uint64_t len) { std::memset(p, byte, len); });
}

Fault AddressSpace::fault_in(std::uint64_t va, AccessKind kind) {
  return to_fault(fault::handle_fault(mm_.get(), va, to_access(kind)));
}

int AddressSpace::register_notifier(InvalidationNotifier* n) {
  if (n == nullptr) return -EINVAL;
  return mm::mmu_notifier_register(mm_.get(), n);
}

int AddressSpace::unregister_notifier(InvalidationNotifier* n) {
  if (n == nullptr) return -EINVAL;  // as register_notifier (the header's contract)
  return mm::mmu_notifier_unregister(mm_.get(), n);
}

const std::atomic<std::uint64_t>& AddressSpace::translation_generation_word() const {
  return mm_->notifiers.generation;
}

std::uint64_t AddressSpace::translation_generation() const {
  // Acquire: pairs with the release increments of invalidate_range_start
  // and _end (mm/mmu_notifier.h): a translation taken after this load
  // that finds the value unchanged later used no PTE older than it.
  return mm_->notifiers.generation.load(std::memory_order_acquire);
}

void AddressSpace::set_write_watch(WriteWatchFn fn, void* arg) { mm::ww_set_callback(mm_.get(), fn, arg); }

int AddressSpace::write_watch_arm(std::uint64_t addr, std::uint64_t len) { return mm::ww_arm(mm_.get(), addr, len); }

int AddressSpace::write_watch_disarm(std::uint64_t addr, std::uint64_t len) {
  return mm::ww_disarm(mm_.get(), addr, len);
}

long AddressSpace::write_watch_scan(std::uint64_t addr, std::uint64_t len, bool rearm,
                                    std::vector<std::uint64_t>* written) {
  return mm::ww_scan(mm_.get(), addr, len, rearm, written);
}

// A scope is an RCU read section and a translation holder (mm/tlb.h) for
// its whole life: frames it may have translated are neither reused nor
// handed to a fork relative until it ends.
AddressSpace::AccessScope::AccessScope(AddressSpace& as) : as_(as) {
  rcu::read_lock();
  mm::mm_tlb_enter(as_.mm_.get());
  // Pairs with the seq_cst fence of mm_tlb_held: either the change that
  // frees frames sees this scope as a holder (and defers the frames past
  // it), or a generation load in this scope sees that change's bump (which
  // precedes its fence).  What lets a cached translation outlive its scope
  // (address_space.h, translation_generation); free on x86 after the
  // locked increment, but the C++ model needs the fence for an acquire
  // load of the generation.  GCC's tsan does not model fences and rejects
  // them under -Werror (-Wtsan); tsan needs no edge from this one: frames
  // are released after mm_tlb_exit's release / mm_tlb_held's acquire or
  // after an RCU grace period (mm/tlb.cpp), both of which tsan sees.
#if defined(__SANITIZE_THREAD__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtsan"
#endif
  std::atomic_thread_fence(std::memory_order_seq_cst);
#if defined(__SANITIZE_THREAD__)
#pragma GCC diagnostic pop
#endif
}
AddressSpace::AccessScope::~AccessScope() {
  mm::mm_tlb_exit(as_.mm_.get());
  rcu::read_unlock();
}

void* AddressSpace::AccessScope::translate(std::uint64_t va, bool write) const {
  return usable(as_.mm_.get(), va, write ? AccessKind::write : AccessKind::read);
}

void* AddressSpace::AccessScope::translate(std::uint64_t va, AccessKind kind) const {
  return usable(as_.mm_.get(), va, kind);
}

std::string AddressSpace::maps() const { return mm::show_maps(mm_.get()); }

namespace {

// fs/proc/task_mmu.c show_smap_vma_flags(): the two-letter name of each
// vm_flags bit (Linux 6.18.37+ on x86-64; "" = not shown), printed in bit
// order.  vmspace sets only some of these bits; the table has them all.
constexpr const char* kVmFlagNames[64] = {
    "rd", "wr", "ex", "sh", "mr", "mw", "me", "ms",  // 0-7
    "gd", "um", "pf", "gu", "uw", "lo", "io", "sr",  // 8-15 (11: VM_MAYBE_GUARD)
    "rr", "dc", "de", "lf", "ac", "nr", "ht", "sf",  // 16-23
    "ar", "wf", "dd", "sd", "mm", "hg", "nh", "mg",  // 24-31 (24: VM_PAT; 27: soft-dirty kernels only)
    "",   "",   "",   "",   "",   "ss", "ui", "",    // 32-35 pkey bits; 37 shadow stack; 38 VM_UFFD_MINOR
    "dp", "",   "sl", "",   "",   "",   "",   "",    // 40 VM_DROPPABLE; 42 VM_SEALED
    "",   "",   "",   "",   "",   "",   "",   "",  "",   "",   "",   "",   "",   "",   "",   "",
};
static_assert(mm::VM_LOCKED == std::uint64_t{1} << 13 && mm::VM_LOCKONFAULT == std::uint64_t{1} << 19 &&
              mm::VM_DROPPABLE == std::uint64_t{1} << 40 && mm::VM_SEALED == std::uint64_t{1} << 42);

// What smaps shows of a VMA's resident pages: the part of Linux's struct
// mem_size_stats (fs/proc/task_mmu.c) vmspace has.  Sizes in bytes; the
// proportional sizes in bytes << kPssShift (Linux's PSS_SHIFT: a page
// mapped three times adds a third of a page, kept with 12 fraction bits,
// and the sums are rounded down only when shown).
constexpr unsigned kPssShift = 12;
struct MemSizeStats {
  std::uint64_t resident = 0, anonymous = 0, lazyfree = 0;
  std::uint64_t shared_clean = 0, shared_dirty = 0, private_clean = 0, private_dirty = 0;
  std::uint64_t pss = 0, pss_dirty = 0, pss_locked = 0;
};

// Linux smaps_account() + smaps_page_accumulate() for one present PTE
// mapping a normal page (not the zero page), under its PTE lock.  The
// page's references (Frame::refcount: the PTEs', the page cache's, pins)
// say whether it can be shared at all: one reference means this PTE's
// alone, private.  Otherwise its mapcount (PTEs mapping it, in any space)
// decides: two or more, shared, and this mapping's share is 1/mapcount;
// else private.  Dirty: the PTE's dirty bit or the page's (kPgDirty: a
// page-cache page written by pwrite, a write fault, or through a PTE that
// is gone).  LazyFree: anonymous pages given up with MADV_FREE (the PTE's
// kPteLazyFree, which stands for the folio's cleared swap-backed flag:
// MADV_FREE marks only pages this PTE alone maps) and still clean.
void smaps_account(MemSizeStats& mss, const mem::Frame& fr, mem::pte_t pte, bool locked) {
  constexpr std::uint64_t size = mm::kPageSize;
  const bool anon = (fr.mapping.load(std::memory_order_relaxed) & mem::kMappingAnon) != 0;
  const bool dirty = mem::pte_dirty(pte) || (fr.flags.load(std::memory_order_relaxed) & mem::kPgDirty) != 0;
  if (anon) {
    mss.anonymous += size;
    if (mem::pte_lazyfree(pte) && !dirty) mss.lazyfree += size;
  }
  mss.resident += size;
  std::uint64_t pss = size << kPssShift;
  bool exclusive = true;
  if (fr.refcount.load(std::memory_order_relaxed) != 1) {
    const std::int32_t mapcount = fr.mapcount.load(std::memory_order_relaxed);
    if (mapcount >= 2) {
      pss /= static_cast<std::uint64_t>(mapcount);
      exclusive = false;
    }
  }
  mss.pss += pss;
  if (locked) mss.pss_locked += pss;
  if (dirty) {
    mss.pss_dirty += pss;
    (exclusive ? mss.private_dirty : mss.shared_dirty) += size;
  } else {
    (exclusive ? mss.private_clean : mss.shared_clean) += size;
  }
}

// One "Name:   value kB" line: the name left-aligned in 16 columns, the
// value in kB right-aligned in 8 (Linux's SEQ_PUT_DEC).
void show_kb(std::string& out, const char* name, std::uint64_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%-16s%8" PRIu64 " kB\n", name, bytes >> 10);
  out += buf;
}

}  // namespace

std::string AddressSpace::smaps() const {
  mm::MmStruct* m = mm_.get();
  std::string out;
  mm::mmap_read_lock(m);
  std::string maps = mm::show_maps_locked(m);
  std::size_t line_start = 0;
  m->mm_mt.for_each(0, tree::kMaxAddr, [&](const tree::Entry& e) {
    const mm::Vma* v = e.as<mm::Vma>();
    std::size_t nl = maps.find('\n', line_start);
    out.append(maps, line_start, nl + 1 - line_start);
    line_start = nl + 1;
    // Every present PTE under its lock, as Linux's walk (smaps_pte_range):
    // the zero page is not a normal page and is not counted.
    MemSizeStats mss;
    const bool locked = (v->vm_flags & mm::VM_LOCKED) != 0;
    m->pgtables.for_each_present(v->vm_start, v->vm_end, [&](std::uint64_t, std::atomic<mem::pte_t>&, mem::pte_t pte) {
      const mem::pfn_t pfn = mem::pte_pfn(pte);
      if (pfn != m->phys->zero_pfn()) smaps_account(mss, m->phys->frame(pfn), pte, locked);
    });
    show_kb(out, "Size:", v->vm_end - v->vm_start);
    show_kb(out, "Rss:", mss.resident);
    show_kb(out, "Pss:", mss.pss >> kPssShift);
    show_kb(out, "Pss_Dirty:", mss.pss_dirty >> kPssShift);
    show_kb(out, "Shared_Clean:", mss.shared_clean);
    show_kb(out, "Shared_Dirty:", mss.shared_dirty);
    show_kb(out, "Private_Clean:", mss.private_clean);
    show_kb(out, "Private_Dirty:", mss.private_dirty);
    show_kb(out, "Anonymous:", mss.anonymous);
    show_kb(out, "LazyFree:", mss.lazyfree);
    show_kb(out, "Locked:", mss.pss_locked >> kPssShift);
    out += "VmFlags: ";
    for (unsigned bit = 0; bit < 64; ++bit) {
      if (kVmFlagNames[bit][0] == '\0' || !(v->vm_flags & (std::uint64_t{1} << bit))) continue;
      out += kVmFlagNames[bit];
      out += ' ';
    }
    out += '\n';
  });
  mm::mmap_read_unlock(m);
  return out;
}

std::uint64_t AddressSpace::rss_pages() const {
  return static_cast<std::uint64_t>(mm_->rss_anon.load(std::memory_order_relaxed) +
                                    mm_->rss_shmem.load(std::memory_order_relaxed));
}

bool AddressSpace::validate(std::string* why) const {
  mm::mmap_read_lock(mm_.get());
  bool ok = mm::mm_validate(mm_.get(), why) && mm::mm_validate_rmap(mm_.get(), why);
  mm::mmap_read_unlock(mm_.get());
  return ok;
}

LockMode AddressSpace::mode() const { return mm_->mode; }

int AddressSpace::map_count() const {
  mm::mmap_read_lock(mm_.get());
  int n = mm_->map_count;
  mm::mmap_read_unlock(mm_.get());
  return n;
}

static_assert(static_cast<unsigned>(VmStat::madvise_mmap_lock) ==
                  static_cast<unsigned>(mm::VmEvent::madvise_mmap_lock) &&
              static_cast<unsigned>(VmStat::range_lock_retry) ==
                  static_cast<unsigned>(mm::VmEvent::range_lock_retry) &&
              static_cast<unsigned>(VmStat::range_lock_retry) + 1 == mm::kNrVmEvents,
              "VmStat names mm::VmEvent's counters in the same order");

std::uint64_t AddressSpace::vm_stat(VmStat s) const {
  return mm_->events.read(static_cast<mm::VmEvent>(static_cast<unsigned>(s)));
}

}  // namespace vmspace
