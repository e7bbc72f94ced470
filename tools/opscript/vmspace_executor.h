// vmspace_executor.h: runs op scripts on a vmspace AddressSpace, so that
// `vmspace replay` can print its lines next to the host kernel's.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "opscript/runner.h"
#include "vmspace/address_space.h"

namespace vmspace::opscript {

class VmspaceExecutor final : public Executor {
 public:
  explicit VmspaceExecutor(AddressSpace& as);

  OpResult mmap(uint64_t addr, uint64_t len, unsigned prot, unsigned flags, const std::string* file,
                uint64_t offset) override;
  OpResult munmap(uint64_t addr, uint64_t len) override;
  OpResult mprotect(uint64_t addr, uint64_t len, unsigned prot) override;
  OpResult madvise(uint64_t addr, uint64_t len, Advice advice) override;
  OpResult mremap(uint64_t old_addr, uint64_t old_len, uint64_t new_len, unsigned flags,
                  uint64_t new_addr) override;
  OpResult mlock(uint64_t addr, uint64_t len) override;
  OpResult munlock(uint64_t addr, uint64_t len) override;
  OpResult mlock2(uint64_t addr, uint64_t len, bool onfault) override;
  OpResult mlockall(unsigned flags) override;
  OpResult munlockall() override;
  OpResult mseal(uint64_t addr, uint64_t len) override;
  OpResult mincore(uint64_t addr, uint64_t len) override;
  // fork copies the current space (AddressSpace::fork) into a new space
  // the executor owns; use switches between them ("main" is `as`).
  // Declared files are shared by every space, as the kernel side's
  // memfds are.
  OpResult fork(const std::string& name) override;
  OpResult use(const std::string& name) override;
  OpResult file(const std::string& name, uint64_t size) override;
  OpResult ftruncate(const std::string& name, uint64_t size) override;
  OpResult write(uint64_t addr, uint64_t len, uint8_t byte) override;
  OpResult read(uint64_t addr, uint64_t len) override;
  std::vector<MapEntry> maps() override;

 private:
  struct Space {
    AddressSpace* as;
    std::unique_ptr<AddressSpace> owned;  // null for main
    std::map<std::string, int> files;     // declared file -> this space's descriptor
  };
  Space& cur() { return *spaces_.at(current_); }
  AddressSpace& as() { return *cur().as; }

  std::map<std::string, std::unique_ptr<Space>> spaces_;  // by name, "main" included
  std::string current_ = "main";
};

// AddressSpace options that make the library behave like the host kernel
// it is compared with: every fact host_facts() probed (host_probe.h), and
// an untouched 256 MiB frame pool.  `mode` is the lock mode to use.
AddressSpaceOptions host_like_options(LockMode mode);

}  // namespace vmspace::opscript
