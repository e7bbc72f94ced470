// kernel_runner.h: runs an op script on the host kernel.
//
// The script runs in a forked child process that performs the real
// syscalls inside the window and sends its output lines back over a pipe;
// the calling process's address space is never touched.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "opscript/result.h"
#include "opscript/script.h"

namespace vmspace::opscript {

struct KernelRunOptions {
  Window window;                                 // default base 0x200000000000
  std::chrono::milliseconds timeout{30'000};     // the child is killed after this
};

struct KernelRunResult {
  bool ok = false;                 // false: setup error (see `error`)
  std::vector<std::string> lines;  // the output lines (partial when !ok)
  std::string error;               // setup error message when !ok
};

// Runs `script` in a forked child on the host kernel and returns its output
// lines (the same lines run_script prints for any executor). A setup error
// (bad window, fork/pipe failure, window not empty in the child, child
// crashed or timed out) gives ok == false with a message.
KernelRunResult run_on_kernel(const Script& script, const KernelRunOptions& options = {});

// Parses /proc/<pid>/maps text into entries with the spec's naming: no path
// or a shared anonymous mapping ("/dev/zero (deleted)") -> "[anon]" with
// offset 0; a memfd ("/memfd:NAME (deleted)") -> "NAME" with its file
// offset; anything else keeps its path and offset. Malformed lines are
// skipped.
std::vector<MapEntry> parse_proc_maps(std::string_view text);

// Whether this build can run the kernel runner: false under
// ThreadSanitizer, whose fixed memory layout (shadow and metadata ranges)
// and instrumented accesses conflict with mapping and touching the window.
bool kernel_runner_available();

}  // namespace vmspace::opscript
