// SPDX-License-Identifier: MIT
// vmspace fuzz-kernel: random op scripts (docs/op-scripts.md) run on vmspace
// and on the host kernel; a divergence is shrunk to a minimal reproducer and
// written out as an .ops file.
#include "fuzz_kernel.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string_view>

#include "opscript/fuzz.h"
#include "opscript/host_probe.h"
#include "opscript/kernel_runner.h"
#include "opscript/parse.h"
#include "opscript/serialize.h"
#include "vmspace/lock_mode.h"

namespace vmspace::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Decimal or 0x hex, the whole string, no overflow.
std::optional<uint64_t> parse_u64(std::string_view s) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  }
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char ch : s) {
    unsigned d;
    if (ch >= '0' && ch <= '9') d = static_cast<unsigned>(ch - '0');
    else if (base == 16 && ch >= 'a' && ch <= 'f') d = static_cast<unsigned>(ch - 'a' + 10);
    else if (base == 16 && ch >= 'A' && ch <= 'F') d = static_cast<unsigned>(ch - 'A' + 10);
    else return std::nullopt;
    if (v > (UINT64_MAX - d) / static_cast<unsigned>(base)) return std::nullopt;
    v = v * static_cast<unsigned>(base) + d;
  }
  return v;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Adds the names in `list` (op kinds of kPendingOps, advice of
// kPendingAdvice, or "pending" for all of them) to `gen`; false with `why`
// for a name that is neither.
bool add_pending(std::string_view list, opscript::fuzz::GenOptions& gen, std::string& why) {
  namespace fz = opscript::fuzz;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    std::string_view name = list.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    pos = comma == std::string_view::npos ? list.size() + 1 : comma + 1;
    bool known = false;
    for (opscript::OpKind k : fz::kPendingOps) {
      if (name == opscript::op_name(k) || name == "pending") {
        if (std::find(gen.kinds.begin(), gen.kinds.end(), k) == gen.kinds.end()) gen.kinds.push_back(k);
        known = true;
      }
    }
    for (opscript::Advice a : fz::kPendingAdvice) {
      if (name == opscript::advice_name(a) || name == "pending") {
        if (std::find(gen.advice.begin(), gen.advice.end(), a) == gen.advice.end()) gen.advice.push_back(a);
        known = true;
      }
    }
    if (!known) {
      why = "'" + std::string(name) + "' is not a pending op kind or advice (";
      for (opscript::OpKind k : fz::kPendingOps) why += std::string(opscript::op_name(k)) + ", ";
      for (opscript::Advice a : fz::kPendingAdvice) why += std::string(opscript::advice_name(a)) + ", ";
      why += "or pending for all)";
      return false;
    }
  }
  return true;
}

}  // namespace

void add_fuzz_kernel(CLI::App& app, FuzzKernelArgs& args) {
  std::string kinds;
  for (opscript::OpKind k : opscript::fuzz::kEnabledOps) kinds += std::string(kinds.empty() ? "" : ", ") + opscript::op_name(k);
  auto* sub = app.add_subcommand("fuzz-kernel", "Run random op scripts (" + kinds +
                                                    ") on vmspace and on the host kernel; shrink a divergence to a "
                                                    "minimal reproducer");
  sub->add_option("--seed", args.seed,
                  "Session seed, decimal or 0x hex (default: from the clock, printed). Run i uses its own "
                  "run seed; run 0's is the session seed, so --seed <run seed> --runs 1 replays one run");
  sub->add_option("--runs", args.runs, "Number of scripts to run (at least 1)")->capture_default_str();
  sub->add_option("--ops", args.ops, "Operations per script (1 to 1000000)")->capture_default_str();
  sub->add_option("--out", args.out, "Directory for reproducers, fuzz-<seed>-<run>.ops (created if missing)")
      ->capture_default_str();
  sub->add_option("--mode", args.mode, "Lock mode of the AddressSpace: mmap_lock, per_vma_rwsem, per_vma_refcount or per_vma_range")
      ->capture_default_str();
  sub->add_option("--window", args.window, "Window base address (default 0x200000000000)");
  sub->add_option("--also", args.also,
                  "Also generate these pending op kinds or madvise advice, comma-separated (e.g. mseal,mincore,"
                  "guard_install; 'pending' for all): to try one before enabling it");
  sub->add_option("--host", args.host,
                  "Run vmspace as the host these facts describe (key=value words of the '# host:' line, e.g. "
                  "'zero_page=no') while the kernel side stays this host. A run that differs is run again with "
                  "vmspace as this host: if that agrees, it differs only where the forced facts matter and is "
                  "counted, not reported; otherwise it is a divergence");
  sub->add_flag("--keep-going", args.keep_going,
                "Do not stop at the first divergence: shrink and report every one (identical reproducers once)");
}

int cmd_fuzz_kernel(const FuzzKernelArgs& args) {
  const char* me = "vmspace fuzz-kernel";
  uint64_t seed = 0;
  bool seed_from_clock = args.seed.empty();
  if (seed_from_clock) {
    seed = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) % 1000000007ULL;
  } else {
    auto s = parse_u64(args.seed);
    if (!s) {
      std::fprintf(stderr, "%s: bad --seed '%s' (a decimal or 0x hex 64-bit number)\n", me, args.seed.c_str());
      return 2;
    }
    seed = *s;
  }
  auto runs = parse_u64(args.runs);
  if (!runs || *runs == 0) {
    std::fprintf(stderr, "%s: bad --runs '%s' (a number, at least 1)\n", me, args.runs.c_str());
    return 2;
  }
  auto ops = parse_u64(args.ops);
  if (!ops || *ops == 0 || *ops > 1000000) {
    std::fprintf(stderr, "%s: bad --ops '%s' (a number from 1 to 1000000)\n", me, args.ops.c_str());
    return 2;
  }
  auto mode = parse_lock_mode(args.mode);
  if (!mode) {
    std::fprintf(stderr, "%s: unknown lock mode '%s' (mmap_lock, per_vma_rwsem, per_vma_refcount or per_vma_range)\n", me,
                 args.mode.c_str());
    return 2;
  }
  opscript::Window window;
  if (!args.window.empty()) {
    auto base = opscript::parse_number(args.window);
    if (!base || *base % opscript::kPageSize != 0) {
      std::fprintf(stderr, "%s: bad --window '%s' (a page-aligned address)\n", me, args.window.c_str());
      return 2;
    }
    window.base = *base;
  }
  std::error_code ec;
  fs::create_directories(args.out, ec);
  if (ec || !fs::is_directory(args.out)) {
    std::fprintf(stderr, "%s: cannot use --out '%s' as a directory: %s\n", me, args.out.c_str(),
                 ec ? ec.message().c_str() : "not a directory");
    return 2;
  }
  if (!opscript::kernel_runner_available()) {
    std::fprintf(stderr, "%s: the kernel runner is not available in this build (tsan)\n", me);
    return 2;
  }

  opscript::fuzz::GenOptions gen;
  gen.ops = *ops;
  if (!args.also.empty()) {
    std::string why;
    if (!add_pending(args.also, gen, why)) {
      std::fprintf(stderr, "%s: bad --also: %s\n", me, why.c_str());
      return 2;
    }
  }

  // Options that `vmspace replay` needs to reproduce what we ran.
  std::string replay_opts;
  if (args.mode != "per_vma_refcount") replay_opts += " --mode " + args.mode;
  if (!args.window.empty()) replay_opts += " --window " + args.window;
  const std::string gen_opts = args.also.empty() ? "" : " --also " + args.also;

  // The host's facts first: a divergence report says which kind of host
  // produced it (vmspace is configured to match them, unless --host says
  // otherwise: then the second line says how vmspace ran).
  std::string host_line = opscript::host_facts_line(opscript::host_facts());
  opscript::HostFacts forced = opscript::host_facts();
  bool forcing = false;  // vmspace runs as a host that differs from this one
  if (!args.host.empty()) {
    std::string why;
    if (!opscript::parse_host_facts(args.host, forced, &why)) {
      std::fprintf(stderr, "%s: bad --host: %s\n", me, why.c_str());
      return 2;
    }
    std::string as = opscript::host_facts_line(forced);
    forcing = as != host_line;
    opscript::override_vmspace_facts(forced);
    host_line += "\n# vmspace as: " + as.substr(as.find("linux"));
  }
  std::printf("%s\n", host_line.c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "%s: seed %" PRIu64 "%s, %" PRIu64 " runs of %" PRIu64 " ops\n", me, seed,
               seed_from_clock ? " (from the clock; pass --seed to repeat)" : "", *runs, *ops);

  const Clock::time_point t0 = Clock::now();
  Clock::time_point last_progress = t0;
  uint64_t runs_done = 0, ops_done = 0, divergences = 0, comparisons = 0;
  uint64_t explained = 0;  // --host: runs that diverge only because of the forced facts
  std::map<std::string, std::string> reproducers;  // minimized script text -> its file

  for (uint64_t run = 0; run < *runs; ++run) {
    const uint64_t rseed = opscript::fuzz::run_seed(seed, run);
    opscript::Script script = opscript::fuzz::generate_script(rseed, gen);
    opscript::fuzz::Comparison c = opscript::fuzz::compare_with_kernel(script, *mode, window);
    ++comparisons;
    if (!c.retried.empty())
      std::fprintf(stderr, "%s: warning: run %" PRIu64 " (run seed %" PRIu64 "): kernel run failed (%s); retried\n",
                   me, run, rseed, c.retried.c_str());
    if (!c.ok) {
      std::fprintf(stderr, "%s: run %" PRIu64 " (run seed %" PRIu64 "): kernel run failed: %s\n", me, run, rseed,
                   c.error.c_str());
      return 2;
    }
    ++runs_done;
    ops_done += script.ops.size();

    if (!c.equal && forcing) {
      // The kernel behaves as this host does.  A run that agrees once
      // vmspace is this host again differs only where the forced facts
      // matter: expected, counted.  One that still differs is a bug.
      opscript::override_vmspace_facts(opscript::host_facts());
      opscript::fuzz::Comparison hc = opscript::fuzz::compare_with_kernel(script, *mode, window);
      opscript::override_vmspace_facts(forced);
      ++comparisons;
      if (hc.ok && hc.equal) {
        ++explained;
        c.equal = true;
      }
    }
    if (!c.equal) {
      ++divergences;
      std::fprintf(stderr, "%s: run %" PRIu64 " (run seed %" PRIu64 ") diverges; shrinking %zu ops...\n", me, run,
                   rseed, script.ops.size());
      opscript::fuzz::ShrinkStats stats;
      opscript::Script minimal = opscript::fuzz::shrink(
          script,
          [&](const opscript::Script& candidate) {
            ++comparisons;
            opscript::fuzz::Comparison cc = opscript::fuzz::compare_with_kernel(candidate, *mode, window);
            return cc.ok && !cc.equal;
          },
          {}, &stats);
      opscript::fuzz::Comparison mc = opscript::fuzz::compare_with_kernel(minimal, *mode, window);
      ++comparisons;
      if (!mc.ok || mc.equal) {  // cannot happen unless a side is nondeterministic: report the original
        std::fprintf(stderr, "%s: the minimized script does not reproduce (%s); reporting the original\n", me,
                     mc.ok ? "no difference" : mc.error.c_str());
        minimal = script;
        mc = c;
      }
      const std::string text = opscript::script_text(minimal);
      const std::string name = "fuzz-" + std::to_string(seed) + "-" + std::to_string(run) + ".ops";
      const fs::path path = fs::path(args.out) / name;

      auto dup = reproducers.find(text);
      if (dup != reproducers.end()) {
        std::printf("%s: run %" PRIu64 " (run seed %" PRIu64 ") diverges; same minimized reproducer as %s\n", me,
                    run, rseed, dup->second.c_str());
      } else {
        std::string header;
        header += "# vmspace fuzz-kernel: vmspace differs from the host kernel\n";
        header += host_line + "\n";
        header += "# seed " + std::to_string(seed) + ", run " + std::to_string(run) + ", run seed " +
                  std::to_string(rseed) + " (the whole run: vmspace fuzz-kernel --seed " + std::to_string(rseed) +
                  " --runs 1 --ops " + std::to_string(*ops) + gen_opts + replay_opts + ")\n";
        header += "# minimized from " + std::to_string(stats.original_ops) + " to " +
                  std::to_string(minimal.ops.size()) + " ops (" + std::to_string(stats.evaluations) +
                  " comparisons); replay: vmspace replay " + name + " --kernel" + replay_opts + "\n";
        header += "# diff (-kernel / +vmspace):\n";
        for (const auto& l : mc.diff) header += "#   " + l + "\n";
        std::ofstream f(path);
        f << header << text;
        f.close();
        if (!f) {
          std::fprintf(stderr, "%s: cannot write %s: %s\n", me, path.c_str(), std::strerror(errno));
          return 2;
        }
        reproducers.emplace(text, path.string());
        std::printf("%s: run %" PRIu64 " (run seed %" PRIu64 ") diverges; minimized from %zu to %zu ops: %s\n", me,
                    run, rseed, stats.original_ops, minimal.ops.size(), path.c_str());
        std::printf("--- script\n%s--- diff (-kernel / +vmspace)\n", text.c_str());
        for (const auto& l : mc.diff) std::printf("%s\n", l.c_str());
        std::printf("---\n");
      }
      std::fflush(stdout);
      if (!args.keep_going) break;
    }

    if (seconds_since(last_progress) >= 1.0) {
      last_progress = Clock::now();
      std::fprintf(stderr, "%s: %" PRIu64 "/%" PRIu64 " runs, %" PRIu64 " ops, %" PRIu64 " divergences%s, %.1f s\n",
                   me, runs_done, *runs, ops_done, divergences,
                   forcing ? (" (" + std::to_string(explained) + " more from the forced facts)").c_str() : "",
                   seconds_since(t0));
    }
  }

  std::fprintf(stderr, "%s: %" PRIu64 " script comparisons with the kernel in %.1f s\n", me, comparisons,
               seconds_since(t0));
  if (divergences > 0 && args.keep_going)
    std::printf("fuzz-kernel: %zu distinct minimized reproducers\n", reproducers.size());
  if (forcing)
    std::printf("fuzz-kernel: %" PRIu64 " runs differ only where the forced facts matter (they agree with vmspace "
                "configured as this host)\n",
                explained);
  std::printf("fuzz-kernel: %" PRIu64 " runs, %" PRIu64 " ops, %" PRIu64 " divergences (seed %" PRIu64 ")\n",
              runs_done, ops_done, divergences, seed);
  return divergences == 0 ? 0 : 1;
}

}  // namespace vmspace::cli
