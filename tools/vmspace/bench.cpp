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
// Results go to stdout as a table (with the ratios that matter), optionally
// to JSON and SVG; progress goes to stderr.  This file is the command line;
// bench_ctx.h lists where the workloads and the report live.
#include "bench.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <sstream>
#include <thread>

#include "bench_ctx.h"
#include "build_kind.h"

namespace vmspace::cli {

using namespace bench;

void add_bench(CLI::App& app, BenchArgs& args) {
  auto* sub = app.add_subcommand("bench", "Measure the lock modes side by side (and the host kernel)");
  sub->add_flag("--quick", args.quick, "Short runs (about 30 s on 2 cores); skips the 1M-VMA lookup");
  sub->add_option("--json", args.json, "Write machine info, results and targets as JSON to FILE");
  sub->add_option("--svg", args.svg, "Write fault-churn latency CDFs and fault-scaling bars as SVG into DIR");
  sub->add_option("--workload", args.workloads,
                  "Run only this workload (repeatable): fault, fault-scaling, fault-churn, lookup, mmap, mremap, "
                  "file-fault, space, fork");
  sub->add_option("--modes", args.modes, "Comma-separated: mmap_lock, per_vma_rwsem, per_vma_refcount, kernel")
      ->capture_default_str();
  sub->add_option("--churn-threads", args.churn_threads,
                  "fault-churn: fault threads beside the writer (default: cores - 1, at least 1, so that no "
                  "thread waits for a CPU)")
      ->check(CLI::Range(1, 64));
}

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
  if (!kRelease)
    std::fprintf(stderr,
                 "vmspace bench: WARNING: this is a %s build (NDEBUG not defined); its figures are not meaningful. "
                 "Use build/release/vmspace.\n",
                 vmspace::cli::build_kind());
  auto want = [&](const char* w) { return std::find(wl.begin(), wl.end(), w) != wl.end(); };
  auto t0 = Clock::now();
  try {
    if (want("fault")) run_fault(c);
    if (want("fault-scaling")) run_fault_scaling(c);
    if (want("fault-churn")) run_fault_churn(c);
    if (want("lookup")) run_lookup(c);
    if (want("mmap")) run_mmap(c);
    if (want("mremap")) run_mremap(c);
    if (want("file-fault")) run_file_fault(c);
    if (want("space")) run_space(c);
    if (want("fork")) run_fork(c);
    const std::vector<Target> ts = targets(c);
    print_report(c, ts);
    std::fflush(stdout);
    if (!args.json.empty()) write_json(c, ts, args.json);
    if (!args.svg.empty()) write_svgs(c, args.svg);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vmspace bench: %s\n", e.what());
    return 2;
  }
  progress("done in %.1f s", secs(Clock::now() - t0));
  return 0;
}

}  // namespace vmspace::cli
