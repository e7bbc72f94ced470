// SPDX-License-Identifier: MIT
// vmspace - command-line front end.  Subcommands:
//   info         version, build configuration and the supported lock modes
//   replay       run an op script on vmspace (and the host kernel) and diff
//   fuzz-kernel  random op scripts on vmspace and the host kernel; shrink
//                a divergence to a minimal reproducer
//   bench        the lock modes and the host kernel measured side by side
//                (table on stdout, optional JSON and SVG)
//   touch        fault every page of one region in, R rounds with
//                MADV_DONTNEED between them (for scripts/callgrind-fault.sh)
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "bench.h"
#include "build_kind.h"
#include "fuzz_kernel.h"
#include "replay.h"
#include "sync/lockdep.h"
#include "touch.h"
#include "vmspace/lock_mode.h"
#include "vmspace/version.h"

namespace {

int cmd_info() {
  std::printf("vmspace %s (%s build, lock-order checker %s)\n", vmspace::kVersion, vmspace::cli::build_kind(),
              vmspace::lockdep::enabled ? "on" : "off");
  std::printf("lock modes:\n");
  for (vmspace::LockMode m : vmspace::kAllLockModes) {
    std::string_view name = vmspace::lock_mode_name(m);
    std::printf("  %-18.*s %.*s\n", static_cast<int>(name.size()), name.data(),
                static_cast<int>(vmspace::lock_mode_summary(m).size()),
                vmspace::lock_mode_summary(m).data());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vmspace: a Linux-compatible user-space address space with per-VMA locks"};
  app.set_version_flag("-V,--version", std::string("vmspace ") + vmspace::kVersion);
  app.require_subcommand(0, 1);

  auto* info = app.add_subcommand("info", "Print version, build configuration and lock modes");
  vmspace::cli::ReplayArgs replay;
  vmspace::cli::add_replay(app, replay);
  vmspace::cli::FuzzKernelArgs fuzz_kernel;
  vmspace::cli::add_fuzz_kernel(app, fuzz_kernel);
  vmspace::cli::BenchArgs bench;
  vmspace::cli::add_bench(app, bench);
  vmspace::cli::TouchArgs touch;
  vmspace::cli::add_touch(app, touch);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help / --version exit 0; every usage error exits 2, as each
    // subcommand's header promises (CLI11's own codes are 100 and up).
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (app.got_subcommand("replay")) return vmspace::cli::cmd_replay(replay);
  if (app.got_subcommand("fuzz-kernel")) return vmspace::cli::cmd_fuzz_kernel(fuzz_kernel);
  if (app.got_subcommand("bench")) return vmspace::cli::cmd_bench(bench);
  if (app.got_subcommand("touch")) return vmspace::cli::cmd_touch(touch);
  if (info->parsed() || app.get_subcommands().empty()) return cmd_info();
  return 0;
}
