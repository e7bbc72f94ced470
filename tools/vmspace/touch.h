// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "vmspace/address_space.h"

namespace vmspace::cli {

struct TouchArgs {
  std::string mode = "per_vma_refcount";
  std::uint64_t pages = 0;
  int rounds = 1;
};

void add_touch(CLI::App& app, TouchArgs& args);
// Exit status: 0 every fault succeeded, 1 a fault or a mapping call failed,
// 2 a setup error (usage errors: CLI11's exit codes).
int cmd_touch(const TouchArgs& args);

// One round of `vmspace touch`: MADV_DONTNEED the region first when
// `discard` (rounds 2..R), then write-fault every page in, as the bench's
// `fault` workload does.  Stops at the first failure.  Out of line and
// outside any anonymous namespace on purpose: scripts/callgrind-fault.sh
// counts only the instructions executed inside it
// (--toggle-collect='vmspace::cli::touch_round*'), so keep the name.
struct TouchRoundResult {
  int madvise_error = 0;  // -errno from madvise, 0 if none
  Fault fault = Fault::none;
  std::uint64_t addr = 0;  // the page whose fault failed
};
[[gnu::noinline]] TouchRoundResult touch_round(AddressSpace& as, std::uint64_t base, std::uint64_t pages,
                                               bool discard);

}  // namespace vmspace::cli
