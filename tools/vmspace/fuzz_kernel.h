// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

namespace vmspace::cli {

struct FuzzKernelArgs {
  std::string seed;  // empty: from the clock
  std::string runs = "100";  // parsed (and checked) by cmd_fuzz_kernel: exit 2 when bad
  std::string ops = "150";
  std::string out = ".";
  std::string mode = "per_vma_refcount";
  std::string window;
  bool keep_going = false;
  std::string also;  // pending op kinds and advice to generate as well
  std::string host;  // host facts the vmspace side follows instead of this host's
};

void add_fuzz_kernel(CLI::App& app, FuzzKernelArgs& args);
// Exit status: 0 every run agreed with the kernel, 1 a divergence (its
// minimized reproducer is written to --out), 2 a setup error.
int cmd_fuzz_kernel(const FuzzKernelArgs& args);

}  // namespace vmspace::cli
