// SPDX-License-Identifier: MIT
// vmspace replay: run an op script (docs/op-scripts.md) on an AddressSpace
// and, with --kernel, on the host kernel, and diff the two.
#include "replay.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "opscript/diff.h"
#include "opscript/host_probe.h"
#include "opscript/kernel_runner.h"
#include "opscript/parse.h"
#include "opscript/runner.h"
#include "opscript/vmspace_executor.h"
#include "vmspace/lock_mode.h"

namespace vmspace::cli {

void add_replay(CLI::App& app, ReplayArgs& args) {
  auto* sub = app.add_subcommand("replay", "Run an op script on vmspace (and on the host kernel with --kernel)");
  sub->add_option("SCRIPT", args.script, "Op script (docs/op-scripts.md); - for standard input")->required();
  sub->add_flag("--kernel", args.kernel, "Also run it on the host kernel and print the differences");
  sub->add_option("--mode", args.mode, "Lock mode: mmap_lock, per_vma_rwsem, per_vma_refcount or per_vma_range")
      ->capture_default_str();
  sub->add_option("--window", args.window, "Window base address (default 0x200000000000)");
  sub->add_option("--host", args.host,
                  "Behave like the host these facts describe (the '# host: ...' line of a report, or some of its "
                  "key=value words, e.g. 'zero_page=no') instead of this host; not with --kernel");
}

int cmd_replay(const ReplayArgs& args) {
  std::string text;
  if (args.script == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    text = ss.str();
  } else {
    std::ifstream in(args.script);
    if (!in) {
      std::fprintf(stderr, "vmspace replay: cannot open %s\n", args.script.c_str());
      return 2;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  auto mode = parse_lock_mode(args.mode);
  if (!mode) {
    std::fprintf(stderr, "vmspace replay: unknown lock mode '%s'\n", args.mode.c_str());
    return 2;
  }
  opscript::Window window;
  if (!args.window.empty()) {
    auto base = opscript::parse_number(args.window);
    if (!base || *base % opscript::kPageSize != 0) {
      std::fprintf(stderr, "vmspace replay: bad --window '%s' (a page-aligned address)\n",
                   args.window.c_str());
      return 2;
    }
    window.base = *base;
  }
  opscript::ParseResult parsed = opscript::parse_script(text);
  if (!parsed.ok()) {
    std::fputs(parsed.error_text(args.script + ":").c_str(), stderr);
    return 2;
  }

  AddressSpaceOptions options = opscript::host_like_options(*mode);
  if (!args.host.empty()) {
    if (args.kernel) {
      std::fprintf(stderr, "vmspace replay: --host cannot be used with --kernel (the kernel is this host)\n");
      return 2;
    }
    opscript::HostFacts facts = opscript::host_facts();
    std::string why;
    if (!opscript::parse_host_facts(args.host, facts, &why)) {
      std::fprintf(stderr, "vmspace replay: bad --host: %s\n", why.c_str());
      return 2;
    }
    opscript::apply_host_facts(facts, options);
  }
  AddressSpace as(options);
  opscript::VmspaceExecutor ex(as);
  std::vector<std::string> ours = opscript::run_script(parsed.script, ex, window);
  if (!args.kernel) {
    for (const auto& l : ours) std::printf("%s\n", l.c_str());
    return 0;
  }
  if (!opscript::kernel_runner_available()) {
    std::fprintf(stderr, "vmspace replay: --kernel is not available in this build (tsan)\n");
    return 2;
  }
  opscript::KernelRunOptions kopts;
  kopts.window = window;
  opscript::KernelRunResult k = opscript::run_on_kernel(parsed.script, kopts);
  if (!k.ok) {
    std::fprintf(stderr, "vmspace replay: kernel run failed: %s\n", k.error.c_str());
    return 2;
  }
  opscript::DiffResult d = opscript::diff_lines(k.lines, ours);
  // First the host's facts (vmspace ran configured to match them), so a
  // report of a difference says which kind of host produced it.
  std::printf("%s\n", opscript::host_facts_line(opscript::host_facts()).c_str());
  for (const auto& l : d.lines) std::printf("%s\n", l.c_str());
  return d.equal ? 0 : 1;
}

}  // namespace vmspace::cli
