// SPDX-License-Identifier: MIT
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace vmspace::cli {

struct ReplayArgs {
  std::string script;
  bool kernel = false;
  std::string mode = "per_vma_refcount";
  std::string window;
  std::string host;  // host facts to follow instead of this host's
};

void add_replay(CLI::App& app, ReplayArgs& args);
// Exit status: 0 all lines agree (or no --kernel), 1 a difference, 2 a
// parse or setup error.
int cmd_replay(const ReplayArgs& args);

}  // namespace vmspace::cli
