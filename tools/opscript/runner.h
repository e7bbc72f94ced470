// runner.h: running a parsed script on some executor and producing the
// spec's output lines. The output formatting is shared; an Executor only
// performs single operations. The host-kernel executor lives in
// kernel_runner.cpp; a vmspace AddressSpace executor implements the same
// interface so that `vmspace replay --kernel` can diff the two line lists.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "opscript/result.h"
#include "opscript/script.h"

namespace vmspace::opscript {

// Performs operations. Addresses are absolute (window base already added;
// NULL is 0); flags and protections are the portable bits of script.h.
// Return OpResult::unsupported() for anything the side cannot express.
class Executor {
 public:
  virtual ~Executor() = default;

  virtual OpResult mmap(uint64_t addr, uint64_t len, unsigned prot, unsigned flags, const std::string* file,
                        uint64_t offset) = 0;
  virtual OpResult munmap(uint64_t addr, uint64_t len) = 0;
  virtual OpResult mprotect(uint64_t addr, uint64_t len, unsigned prot) = 0;
  virtual OpResult madvise(uint64_t addr, uint64_t len, Advice advice) = 0;
  // `new_addr` is 0 when the script gave no NEW (or `-`).
  virtual OpResult mremap(uint64_t old_addr, uint64_t old_len, uint64_t new_len, unsigned flags,
                          uint64_t new_addr) = 0;
  virtual OpResult mlock(uint64_t addr, uint64_t len) = 0;
  virtual OpResult munlock(uint64_t addr, uint64_t len) = 0;
  virtual OpResult mlock2(uint64_t addr, uint64_t len, bool onfault) = 0;
  // op scripts 1.1. `flags` are mlockall_flag::* (0 is possible: the
  // kernel says -EINVAL).
  virtual OpResult mlockall(unsigned flags) = 0;
  virtual OpResult munlockall() = 0;
  virtual OpResult mseal(uint64_t addr, uint64_t len) = 0;
  // OpResult::vector with bit 0 of each byte mincore(2) reports, one
  // character a page of [addr, addr + len) (len rounded up to pages; empty
  // for len 0), or OpResult::error.
  virtual OpResult mincore(uint64_t addr, uint64_t len) = 0;
  // Copies the current space, as fork(2) does, into a new space `name`;
  // the current space stays current. OpResult::ok() when the space exists
  // afterwards.
  virtual OpResult fork(const std::string& name) = 0;
  // Makes `name` the current space: "main", or a space fork() created.
  // run_script never names another one.
  virtual OpResult use(const std::string& name) = 0;
  // Declares a file of `size` bytes whose byte i is (i * 7 + 13) & 0xff.
  virtual OpResult file(const std::string& name, uint64_t size) = 0;
  virtual OpResult ftruncate(const std::string& name, uint64_t size) = 0;
  // Stores `byte` ascending; at the first fault returns OpResult::fault_at
  // with the page address of the faulting byte.
  virtual OpResult write(uint64_t addr, uint64_t len, uint8_t byte) = 0;
  // OpResult::hash (FNV-1a 64 over the bytes) or a fault as for write.
  virtual OpResult read(uint64_t addr, uint64_t len) = 0;
  // Current mappings (any order, may include mappings outside the window;
  // run_script filters and clips to the window). Anonymous mappings carry
  // name "[anon]" and offset 0; file mappings the declared name.
  virtual std::vector<MapEntry> maps() = 0;
};

// The pages an operation modifies must lie inside the window; otherwise the
// runner prints "= unsupported" without calling the executor (a script must
// not be able to unmap or overwrite the runner's own memory). Returns true
// when `op` is runnable in window `w`.
bool op_in_window(const Op& op, const Window& w);

// Runs a single op (not `maps`) on the executor and returns its result.
// `fork` and `use` go straight to the executor (run_script keeps track of
// which spaces exist).
OpResult execute_op(const Op& op, Executor& ex, const Window& w);

// Runs every op and emits the output lines in order: for op i (1-based)
// "i: = ..." (preceded, for `maps`, by the window's maps lines), then
// "final maps:" and the final maps lines of `main`; then, only when the
// script has a `fork`, "final maps NAME:" and NAME's lines for every space
// it forks, in order.
//
// Spaces: a space exists on this side when its `fork` returned
// OpResult::ok(). While the current space does not exist (a `use` of a
// space whose fork failed or was unsupported), every op except `file`,
// `ftruncate` and `use` prints "= unsupported" without running, and that
// space's final maps block has no lines. `file` and `ftruncate` do not
// depend on the space and always run.
void run_script(const Script& script, Executor& ex, const Window& w,
                const std::function<void(std::string_view)>& emit);
std::vector<std::string> run_script(const Script& script, Executor& ex, const Window& w);

// The window's maps lines as run_script prints them.
std::vector<std::string> maps_lines(Executor& ex, const Window& w);

}  // namespace vmspace::opscript
