// SPDX-License-Identifier: MIT
// vmspace bench: the side-by-side measurement of the three lock modes and
// the host kernel (issue 7).  Workloads:
//   fault          first touch of every page of a 256 MiB mapping; memset floors
//   fault-scaling  1, 2, 4 threads faulting their own VMAs
//   fault-churn    fault threads while a writer holds mmap_lock for writing:
//                  (a) mmap/munmap of small regions, (b) mprotect of a big
//                  populated region; latency percentiles, throughput ratio
//   lookup         lock_vma_under_rcu + vma_end_read with 1K/64K/1M VMAs
//   mmap           mmap+munmap pairs of 64 KiB
//   mremap         a populated 64 MiB region grown by moving, shrunk back
//   file-fault     first reads of a 256 MiB shared mapping of a cached memfd
//   space          a default AddressSpace: construction time, resident memory
//   fork           fork of 256 MiB populated / of 1,000 VMAs; the child's
//                  copy-on-write faults against first-touch faults
//   page_fault1/2/3, mmap1   will-it-scale's, thread mode, 1/2/2x-cores threads
//   cortenmm       CortenMM's micro-benchmarks on 16 KiB regions
//   disjoint-mmap  threads mapping, protecting and unmapping in their own areas
//   maps           mmap/munmap latency while threads read maps()
//   guest-access   8-byte guest loads/stores: read/write, a soft TLB, atomics
// Results go to stdout as a table (with the ratios that matter), optionally
// to JSON and SVG; progress goes to stderr.  This file is the command line;
// bench_ctx.h lists where the workloads and the report live.
#include "bench.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>

#include "bench_charts.h"
#include "bench_ctx.h"
#include "bench_rounds.h"
#include "build_kind.h"

namespace vmspace::cli {

using namespace bench;

void add_bench(CLI::App& app, BenchArgs& args) {
  auto* sub = app.add_subcommand("bench", "Measure the lock modes side by side (and the host kernel)");
  sub->add_flag("--quick", args.quick,
                "Fewer rounds (2 to 4) of shorter runs at smaller sizes; skips the 1M-VMA lookup (about 4 to 7 "
                "minutes on 2 cores with the default modes, warm-up included; progress lines give the estimate as "
                "it runs)");
  sub->add_option("--json", args.json,
                  "Write machine info, results and targets as JSON to FILE (checked writable before measuring)");
  sub->add_option("--svg", args.svg,
                  "Write a chart per workload that ran (SVG) and report.html (targets, charts and table in one "
                  "file) into DIR (created, and checked writable, before measuring)");
  sub->add_option("--workload", args.workloads,
                  "Run only this workload (repeatable): fault, fault-scaling, fault-churn, lookup, mmap, mremap, "
                  "file-fault, space, fork, page_fault1, page_fault2, page_fault3, mmap1, cortenmm, maps, guest-access, disjoint-mmap");
  sub->add_option("--modes", args.modes, "Comma-separated: mmap_lock, per_vma_rwsem, per_vma_refcount, per_vma_range, kernel")
      ->capture_default_str();
  sub->add_option("--churn-threads", args.churn_threads,
                  "fault-churn: fault threads beside the writer (default: cores - 1, at least 1, so that no "
                  "thread waits for a CPU)")
      ->check(CLI::Range(1, 64));
  sub->add_option("--rounds", args.rounds,
                  "Run exactly N measured rounds (default: 3 to 6, or 2 to 4 with --quick, stopping once every "
                  "target's spread over the rounds is at most 1.10)")
      ->check(CLI::Range(1, 100));
  sub->add_flag("!--no-warmup", args.warmup, "Skip the unrecorded warm-up round (a --quick pass of every workload)");
  sub->add_flag("--check", args.check,
                "Exit with status 1 when a target FAILs (UNSTABLE and N/A do not count); without it the exit "
                "status is 0 whatever the figures");
}

namespace {

// The output paths, checked before anything is measured (a bad --json
// path must fail at once, not after minutes of measuring): the JSON file
// can be opened for writing (it is created if missing, left as it is
// otherwise); the SVG directory exists or can be created, and is
// writable.  "" if both are fine, else what is wrong.
std::string check_output_paths(const BenchArgs& args) {
  if (!args.json.empty()) {
    const int fd = ::open(args.json.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return "cannot write --json file " + args.json + ": " + std::strerror(errno);
    ::close(fd);
  }
  if (!args.svg.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(args.svg, ec);
    if (ec) return "cannot create --svg directory " + args.svg + ": " + ec.message();
    if (!std::filesystem::is_directory(args.svg, ec)) return "--svg " + args.svg + " is not a directory";
    if (::access(args.svg.c_str(), W_OK) != 0)
      return "cannot write into --svg directory " + args.svg + ": " + std::strerror(errno);
  }
  return "";
}

}  // namespace

int cmd_bench(const BenchArgs& args) {
  Ctx c;
  c.quick = args.quick;
  c.churn_threads = args.churn_threads > 0
                        ? args.churn_threads
                        : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) - 1);
  std::stringstream ms(args.modes);
  std::string item;
  while (std::getline(ms, item, ',')) {
    if (item.empty()) continue;
    if (item == "kernel") c.modes.push_back({"kernel", true, LockMode::mmap_lock});
    else if (auto m = parse_lock_mode(item)) c.modes.push_back({item, false, *m});
    else {
      std::fprintf(stderr, "vmspace bench: unknown mode '%s'\n", item.c_str());
      return 2;
    }
  }
  if (c.modes.empty()) {
    std::fprintf(stderr, "vmspace bench: no modes\n");
    return 2;
  }
  std::vector<std::string> wl = args.workloads.empty() ? kWorkloads : args.workloads;
  for (const auto& w : wl)
    if (std::find(kWorkloads.begin(), kWorkloads.end(), w) == kWorkloads.end()) {
      std::fprintf(stderr, "vmspace bench: unknown workload '%s'\n", w.c_str());
      return 2;
    }
  if (const std::string bad = check_output_paths(args); !bad.empty()) {
    std::fprintf(stderr, "vmspace bench: %s\n", bad.c_str());
    return 2;
  }
  if (!kRelease)
    std::fprintf(stderr,
                 "vmspace bench: WARNING: this is a %s build (NDEBUG not defined); its figures are not meaningful. "
                 "Use build/release/vmspace.\n",
                 vmspace::cli::build_kind());
  auto want = [&](const char* w) { return std::find(wl.begin(), wl.end(), w) != wl.end(); };
  auto run_all = [&](Ctx& r) {
    if (want("fault")) run_fault(r);
    if (want("fault-scaling")) run_fault_scaling(r);
    if (want("fault-churn")) run_fault_churn(r);
    if (want("lookup")) run_lookup(r);
    if (want("mmap")) run_mmap(r);
    if (want("mremap")) run_mremap(r);
    if (want("file-fault")) run_file_fault(r);
    if (want("space")) run_space(r);
    if (want("fork")) run_fork(r);
    if (want("page_fault1")) run_page_fault1(r);
    if (want("page_fault2")) run_page_fault2(r);
    if (want("page_fault3")) run_page_fault3(r);
    if (want("mmap1")) run_mmap1(r);
    if (want("cortenmm")) run_cortenmm(r);
    if (want("maps")) run_maps_bench(r);
    if (want("guest-access")) run_guest_access(r);
    if (want("disjoint-mmap")) run_disjoint_mmap(r);
  };
  auto t0 = Clock::now();
  bool failed = false;
  try {
    if (args.warmup) {
      // Every pool, every kernel region and every code path touched once,
      // and the CPU's frequency up, before anything is recorded: a fresh
      // machine's first figures are not its own (issue 18).
      progress("warm-up: one unrecorded --quick round of every workload");
      const auto tw = Clock::now();
      Ctx w = c;
      w.quick = true;
      w.warmup = true;
      run_all(w);
      c.warmed_up = true;
      progress("warm-up took %.0f s", secs(Clock::now() - tw));
    }
    const RoundPlan plan = round_plan(c.quick, args.rounds);
    std::vector<std::vector<Result>> results;
    std::vector<std::vector<Target>> round_targets;
    std::vector<Target> ts;
    for (int round = 1; round <= plan.max_rounds; ++round) {
      progress("round %d (at least %d, at most %d)", round, plan.min_rounds, plan.max_rounds);
      const auto tr = Clock::now();
      // Notes and the latency CDF are the last round's; figures combine.
      c.results.clear();
      c.notes.clear();
      c.cdf.clear();
      run_all(c);
      // How long the rest may take, from this round's length (rounds are
      // alike: the same workloads at the same sizes).
      const double round_s = secs(Clock::now() - tr);
      if (round < plan.max_rounds)
        progress("round %d took %.0f s; %d to %d more round(s): %.0f to %.0f s more", round, round_s,
                 std::max(0, plan.min_rounds - round), plan.max_rounds - round,
                 round_s * std::max(0, plan.min_rounds - round), round_s * (plan.max_rounds - round));
      results.push_back(c.results);
      round_targets.push_back(targets(c));
      ts = combine_targets(round_targets);
      if (round >= plan.min_rounds && settled(ts, plan.settle_spread)) break;
    }
    c.results = combine_results(results);
    c.rounds = static_cast<int>(results.size());
    const std::string table = format_report(c, ts);
    std::fputs(table.c_str(), stdout);
    std::fflush(stdout);
    if (!args.json.empty()) write_json(c, ts, args.json);
    if (!args.svg.empty()) {
      write_svgs(c, args.svg);
      write_html(c, ts, table, (std::filesystem::path(args.svg) / "report.html").string());
    }
    for (const Target& t : ts) failed |= verdict(t) == Verdict::fail;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vmspace bench: %s\n", e.what());
    return 2;
  }
  progress("done in %.1f s", secs(Clock::now() - t0));
  return args.check && failed ? 1 : 0;
}

}  // namespace vmspace::cli
