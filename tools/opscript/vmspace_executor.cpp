// vmspace_executor.cpp
#include "opscript/vmspace_executor.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <fstream>
#include <string>

#include "opscript/host_probe.h"
#include "opscript/kernel_runner.h"
#include "opscript/linux_abi.h"

namespace vmspace::opscript {

namespace {

OpResult from_int(long r) { return r < 0 ? OpResult::error(static_cast<int>(-r)) : OpResult::ok(); }

}  // namespace

AddressSpaceOptions host_like_options(LockMode mode) {
  AddressSpaceOptions o;
  o.mode = mode;
  apply_host_facts(vmspace_facts(), o);
  // Scripts touch little memory; an untouched pool costs nothing to set up.
  o.phys_bytes = 256ull << 20;
  o.phys_pretouch = false;
  return o;
}

VmspaceExecutor::VmspaceExecutor(AddressSpace& as) {
  auto main = std::make_unique<Space>();
  main->as = &as;
  spaces_[std::string(kMainSpace)] = std::move(main);
}

OpResult VmspaceExecutor::mmap(uint64_t addr, uint64_t len, unsigned prot, unsigned flags,
                               const std::string* file, uint64_t offset) {
  int fd = -1;
  if (file != nullptr) {
    auto it = cur().files.find(*file);
    if (it == cur().files.end()) return OpResult::error(EBADF);  // (well-formed scripts declare it)
    fd = it->second;
  }
  long r = as().mmap(addr, len, static_cast<int>(prot), mmap_flags_to_linux(flags), fd, offset);
  if (r < 0) return OpResult::error(static_cast<int>(-r));
  return OpResult::address(static_cast<uint64_t>(r));
}

OpResult VmspaceExecutor::munmap(uint64_t addr, uint64_t len) { return from_int(as().munmap(addr, len)); }

OpResult VmspaceExecutor::mprotect(uint64_t addr, uint64_t len, unsigned prot) {
  return from_int(as().mprotect(addr, len, static_cast<int>(prot)));
}

OpResult VmspaceExecutor::madvise(uint64_t addr, uint64_t len, Advice advice) {
  return from_int(as().madvise(addr, len, advice_to_linux(advice)));
}

OpResult VmspaceExecutor::mremap(uint64_t old_addr, uint64_t old_len, uint64_t new_len, unsigned flags,
                                 uint64_t new_addr) {
  long r = as().mremap(old_addr, old_len, new_len, mremap_flags_to_linux(flags), new_addr);
  if (r < 0) return OpResult::error(static_cast<int>(-r));
  return OpResult::address(static_cast<uint64_t>(r));
}

OpResult VmspaceExecutor::mlock(uint64_t addr, uint64_t len) { return from_int(as().mlock(addr, len)); }
OpResult VmspaceExecutor::munlock(uint64_t addr, uint64_t len) { return from_int(as().munlock(addr, len)); }
OpResult VmspaceExecutor::mlock2(uint64_t addr, uint64_t len, bool onfault) {
  return from_int(as().mlock2(addr, len, onfault ? MLOCK_ONFAULT : 0u));
}

OpResult VmspaceExecutor::mlockall(unsigned flags) { return from_int(as().mlockall(mlockall_flags_to_linux(flags))); }
OpResult VmspaceExecutor::munlockall() { return from_int(as().munlockall()); }
OpResult VmspaceExecutor::mseal(uint64_t addr, uint64_t len) { return from_int(as().mseal(addr, len)); }
OpResult VmspaceExecutor::mincore(uint64_t addr, uint64_t len) {
  return mincore_in_pieces(addr, len, [this](uint64_t a, uint64_t l, unsigned char* vec) {
    return as().mincore(a, l, vec);
  });
}
OpResult VmspaceExecutor::fork(const std::string& name) {
  if (spaces_.contains(name)) return OpResult::error(EEXIST);  // (parse errors for well-formed scripts)
  int err = 0;
  std::unique_ptr<AddressSpace> child = as().fork(&err);
  if (child == nullptr) return OpResult::error(-err);
  auto s = std::make_unique<Space>();
  s->as = child.get();
  s->owned = std::move(child);
  s->files = cur().files;  // the child's file table is a copy: same descriptors
  spaces_[name] = std::move(s);
  return OpResult::ok();
}

OpResult VmspaceExecutor::use(const std::string& name) {
  if (!spaces_.contains(name)) return OpResult::error(ESRCH);
  current_ = name;
  return OpResult::ok();
}

// A declared file: a memfd of the space, sized and filled with the
// pattern (i * 7 + 13) & 0xff, as the kernel side does.
OpResult VmspaceExecutor::file(const std::string& name, uint64_t size) {
  const int fd = as().memfd_create(name);
  if (fd < 0) return OpResult::error(-fd);
  cur().files[name] = fd;
  // Every other space sees the same file (the kernel side's memfds belong
  // to the runner and are passed to whichever space maps them).
  for (auto& [other, sp] : spaces_) {
    if (other == current_) continue;
    const int ofd = as().send_file(fd, *sp->as);
    if (ofd < 0) return OpResult::error(-ofd);
    sp->files[name] = ofd;
  }
  if (size > static_cast<uint64_t>(INT64_MAX)) return OpResult::error(EFBIG);
  if (int r = as().ftruncate(fd, static_cast<int64_t>(size)); r < 0) return OpResult::error(-r);
  static unsigned char chunk[64 * 1024];
  for (size_t i = 0; i < sizeof chunk; ++i) chunk[i] = static_cast<unsigned char>((i * 7 + 13) & 0xff);
  for (uint64_t done = 0; done < size;) {
    const uint64_t n = std::min<uint64_t>(size - done, sizeof chunk);
    const long w = as().pwrite(fd, chunk, n, static_cast<int64_t>(done));
    if (w < 0) return OpResult::error(static_cast<int>(-w));
    done += static_cast<uint64_t>(w);
  }
  return OpResult::ok();
}

OpResult VmspaceExecutor::ftruncate(const std::string& name, uint64_t size) {
  auto it = cur().files.find(name);
  if (it == cur().files.end()) return OpResult::error(EBADF);
  if (size > static_cast<uint64_t>(INT64_MAX)) return OpResult::error(EINVAL);
  return from_int(as().ftruncate(it->second, static_cast<int64_t>(size)));
}
namespace {
// Op scripts report the page of the faulting byte (runner.h);
// AccessResult::addr is the byte itself.
OpResult fault_result(const AccessResult& r) {
  const uint64_t page = r.addr & ~uint64_t{4095};
  switch (r.fault) {
    case Fault::segv_maperr: return OpResult::fault_at(FaultKind::kSegvMaperr, page);
    case Fault::segv_accerr: return OpResult::fault_at(FaultKind::kSegvAccerr, page);
    case Fault::sigbus: return OpResult::fault_at(FaultKind::kSigbus, page);
    case Fault::oom: return OpResult::error(ENOMEM);  // the kernel would OOM-kill; report it visibly
    case Fault::none: break;
  }
  return OpResult::ok();
}
}  // namespace

OpResult VmspaceExecutor::write(uint64_t addr, uint64_t len, uint8_t byte) {
  AccessResult r = as().fill(addr, byte, len);
  return r.ok() ? OpResult::ok() : fault_result(r);
}

OpResult VmspaceExecutor::read(uint64_t addr, uint64_t len) {
  uint64_t h = kFnvOffsetBasis;
  unsigned char buf[4096];
  for (uint64_t done = 0; done < len;) {
    const uint64_t chunk = std::min<uint64_t>(sizeof buf, len - done);
    AccessResult r = as().read(addr + done, buf, chunk);
    if (!r.ok()) return fault_result(r);
    h = fnv1a64_update(h, buf, chunk);
    done += chunk;
  }
  return OpResult::hash(h);
}

std::vector<MapEntry> VmspaceExecutor::maps() { return parse_proc_maps(as().maps()); }

}  // namespace vmspace::opscript
