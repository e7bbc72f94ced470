// SPDX-License-Identifier: MIT
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace vmspace::cli {

struct BenchArgs {
  bool quick = false;
  std::string json;                    // write results as JSON here
  std::string svg;                     // write SVG charts into this directory
  std::vector<std::string> workloads;  // empty: all
  std::string modes = "mmap_lock,per_vma_rwsem,per_vma_refcount,per_vma_range,kernel";
  int churn_threads = 0;
  int rounds = 0;      // 0: until the targets settle (bench_rounds.h); N: exactly N
  bool warmup = true;  // one unrecorded round first
  bool check = false;  // exit 1 when a target FAILs  // fault-churn fault threads; 0: one per core left by the writer (>= 1)
};

void add_bench(CLI::App& app, BenchArgs& args);
// Exit status: 0 measured (whether or not the targets pass, unless
// --check: then 1 when one FAILs), 2 a usage or setup error.
int cmd_bench(const BenchArgs& args);

}  // namespace vmspace::cli
