// SPDX-License-Identifier: MIT
// bench_report.cpp - the table with its ratios, the PASS/FAIL targets, the
// JSON file and the SVG charts.
#include "bench_ctx.h"

#include <sys/utsname.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "bench_charts.h"
#include "bench_rounds.h"
#include "build_kind.h"

namespace vmspace::cli::bench {

// ---- report --------------------------------------------------------------

namespace {

// The ratios printed next to a figure.
std::string note_for(const Ctx& c, const Result& r) {
  const std::string& w = r.workload;
  if (w == "fault" && r.metric == "ns_per_fault") {
    double hot = c.get("fault", "memset", "floor_hot_ns"), reg = c.get("fault", "memset", "floor_region_ns");
    std::string s = ratio(r.value / hot) + " hot floor, " + ratio(r.value / reg) + " region floor";
    if (r.mode != "kernel") {
      s += ", kernel is " + ratio(c.get("fault", "kernel", "ns_per_fault") / r.value) + " slower";
      if (r.mode != "mmap_lock") s += ", " + ratio(r.value / c.get("fault", "mmap_lock", "ns_per_fault")) + " mmap_lock";
    }
    return s;
  }
  if (w == "fault-scaling" && r.metric.rfind("faults_per_s_total_", 0) == 0) {
    return ratio(r.value / c.get(w, r.mode, "faults_per_s_total_1t")) + " of 1 thread";
  }
  if (w == "fault-scaling" && r.metric.rfind("pages_per_s_total_", 0) == 0)
    return ratio(r.value / c.get(w, r.mode, "pages_per_s_total_1t")) + " of 1 thread";
  if (w == "page_fault1" || w == "page_fault2" || w == "page_fault3" || w == "mmap1" || w == "cortenmm") {
    if (r.mode == "kernel") return "";
    std::string s = ratio(r.value / c.get(w, "kernel", r.metric)) + " kernel";
    if (r.mode != "mmap_lock") s += ", " + ratio(r.value / c.get(w, "mmap_lock", r.metric)) + " mmap_lock";
    return s;
  }
  if (w == "disjoint-mmap" && r.metric.rfind("ops_per_s_", 0) == 0)
    return ratio(r.value / c.get(w, r.mode, "ops_per_s_1t")) + " of 1 thread";
  if (w == "guest-access" && (r.metric == "table_ns_per_access" || r.metric == "checked_table_ns_per_access"))
    return ratio(r.value / c.get(w, "host", "ns_per_access")) + " host";
  if (w == "guest-access" && r.mode != "host" && r.metric.find("ns_per_access") != std::string::npos) {
    std::string s = ratio(r.value / c.get(w, "host", "ns_per_access")) + " host";
    if (r.metric == "tlb_ns_per_access")
      s += ", " + ratio(r.value / c.get(w, "host", "checked_table_ns_per_access")) + " checked table";
    return s;
  }
  if (w == "maps") {
    const std::string suffix = "_with_readers";
    if (r.metric.size() > suffix.size() && r.metric.compare(r.metric.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        r.metric.find("_us_") != std::string::npos) {
      const std::string alone = r.metric.substr(0, r.metric.size() - suffix.size()) + "_alone";
      return ratio(r.value / c.get(w, r.mode, alone)) + " alone";
    }
    return "";
  }
  if (w == "fault-churn") {
    auto dot = r.metric.find('.');
    std::string kind = r.metric.substr(0, dot), what = r.metric.substr(dot + 1);
    if (kind != "none" && what == "faults_per_s") {
      std::string s = ratio(r.value / c.get(w, r.mode, "none.faults_per_s")) + " of no churn";
      if (kind != "control_spin")
        s += ", " + ratio(r.value / c.get(w, r.mode, "control_spin.faults_per_s")) + " of control";
      return s;
    }
    if (what == "p99" && r.mode != "mmap_lock")
      return ratio(r.value / c.get(w, "mmap_lock", r.metric)) + " mmap_lock";
    return "";
  }
  if (w == "lookup") {
    std::string s;
    if (r.metric != "ns_per_lookup_1024_vmas")
      s = ratio(r.value / c.get(w, r.mode, "ns_per_lookup_1024_vmas")) + " of 1K VMAs";
    if (r.mode != "floor") s += (s.empty() ? "" : ", ") + ratio(r.value / c.get(w, "floor", r.metric)) + " floor";
    return s;
  }
  if (w == "mmap" && r.mode != "kernel") return ratio(r.value / c.get(w, "kernel", "pairs_per_s")) + " kernel";
  if (w == "mremap" && r.mode != "kernel") return ratio(r.value / c.get(w, "kernel", r.metric)) + " kernel";
  if (w == "file-fault" && r.mode == "kernel" && r.metric == "ns_per_page")
    return ratio(r.value / c.get(w, "floor", "ns_per_page")) + " floor";
  if (w == "file-fault" && r.mode != "kernel" && r.mode != "floor" && r.metric == "ns_per_page")
    return ratio(c.get(w, "kernel", "ns_per_page") / r.value) + " faster than kernel, " +
           ratio(r.value / c.get(w, r.mode, "anon_ns_per_fault")) + " of anon, " +
           ratio(r.value / c.get(w, "floor", "ns_per_page")) + " floor";
  if (w == "fork") {
    // "kernel is Nx slower", left out when the kernel was not measured.
    auto vs_kernel = [&](const std::string& metric) {
      const double k = c.get(w, "kernel", metric);
      return r.mode == "kernel" || std::isnan(k) ? std::string() : "kernel is " + ratio(k / r.value) + " slower";
    };
    if (r.metric.rfind("fork_", 0) == 0 && r.metric != "fork_us_bare") {
      if (r.mode != "kernel") return vs_kernel(r.metric);
      if (r.metric == "fork_ms_256mib" || r.metric == "fork_us_1000_vmas")
        return "of which ~" + fmt(c.get(w, "kernel", "fork_us_bare")) + " us: the bare bench process";
      return "";
    }
    if (r.metric == "cow_ns_per_page") {
      std::string s = ratio(r.value / c.get(w, r.mode, "first_touch_ns_per_page")) + " first touch";
      if (std::string k = vs_kernel(r.metric); !k.empty()) s += ", " + k;
      return s;
    }
    if (r.metric == "first_touch_ns_per_page") return vs_kernel(r.metric);
  }
  return "";
}

}  // namespace

std::vector<Target> targets(const Ctx& c) {
  std::vector<Target> t;
  auto add = [&](std::string name, std::string cmp, double v, double limit, std::string na_if_nan) {
    t.push_back({std::move(name), std::move(cmp), v, limit, std::isnan(v) ? std::move(na_if_nan) : ""});
  };
  const std::string rc = "per_vma_refcount";
  double f_rc = c.get("fault", rc, "ns_per_fault");
  // The floor is memset of each 4 KiB page of the same 256 MiB region, already
  // present: the same memory in the same order, minus the fault.  The hot
  // floor (memset of an L2-resident page) is printed for reference only: a
  // fault zeroes a cold frame, and the host kernel's fault costs ~7x the
  // region floor but ~35x the hot one on our 2-core VMs.
  add("fault: per_vma_refcount ns/fault / memset floor (same region)", "<=",
      f_rc / c.get("fault", "memset", "floor_region_ns"), 1.2, "fault not run");
  add("fault: per_vma_refcount ns/fault / mmap_lock ns/fault (1 thread)", "<=",
      f_rc / c.get("fault", "mmap_lock", "ns_per_fault"), 1.05, "fault (with mmap_lock) not run");
  add("fault: kernel ns/fault / per_vma_refcount ns/fault", ">=", c.get("fault", "kernel", "ns_per_fault") / f_rc,
      3.0, "fault (with kernel) not run");
  {
    // N = the cores (the largest thread count measured that does not
    // exceed them): per_vma_refcount's scaling over the memset floor's.
    const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    const int n = cores >= 4 ? 4 : cores >= 2 ? 2 : 1;
    const std::string nt = std::to_string(n) + "t";
    const double rc_scale = c.get("fault-scaling", rc, "faults_per_s_total_" + nt) /
                            c.get("fault-scaling", rc, "faults_per_s_total_1t");
    const double floor_scale = c.get("fault-scaling", "floor", "pages_per_s_total_" + nt) /
                               c.get("fault-scaling", "floor", "pages_per_s_total_1t");
    add("fault-scaling: per_vma_refcount " + nt + "/1t scaling / memset floor's " + nt + "/1t scaling", ">=",
        n == 1 ? kNaN : rc_scale / floor_scale, 0.9,
        n == 1 ? "one core: nothing to scale" : "fault-scaling not run");
  }
  add("fault-churn (b): per_vma_refcount p99 / mmap_lock p99", "<=",
      c.get("fault-churn", rc, "b_mprotect.p99") / c.get("fault-churn", "mmap_lock", "b_mprotect.p99"), 0.01,
      "fault-churn (with mmap_lock) not run");
  add("fault-churn (b): per_vma_refcount faults/s under mprotect churn / control", ">=",
      c.get("fault-churn", rc, "b_mprotect.faults_per_s") / c.get("fault-churn", rc, "control_spin.faults_per_s"),
      0.9, "fault-churn not run");
  add("fault-churn (a): per_vma_refcount faults/s under mmap/munmap churn / control", ">=",
      c.get("fault-churn", rc, "a_mmap_munmap.faults_per_s") /
          c.get("fault-churn", rc, "control_spin.faults_per_s"),
      0.8, "fault-churn not run");
  add("lookup: per_vma_refcount ns / floor ns at 64K VMAs", "<=",
      c.get("lookup", rc, "ns_per_lookup_65536_vmas") / c.get("lookup", "floor", "ns_per_lookup_65536_vmas"), 1.3,
      kRelease ? "lookup not run" : "lookup at 64K VMAs not run (skipped in debug builds)");
  add("lookup: per_vma_refcount ns / floor ns at 1M VMAs", "<=",
      c.get("lookup", rc, "ns_per_lookup_1048576_vmas") / c.get("lookup", "floor", "ns_per_lookup_1048576_vmas"),
      1.3, c.quick ? "N/A in --quick" : "lookup at 1M VMAs not run");
  add("mmap: per_vma_refcount pairs/s / kernel pairs/s", ">=",
      c.get("mmap", rc, "pairs_per_s") / c.get("mmap", "kernel", "pairs_per_s"), 5.0, "mmap (with kernel) not run");
  add("guest-access: per_vma_refcount translation cache ns / host ns per 8-byte access", "<=",
      c.get("guest-access", rc, "tlb_ns_per_access") / c.get("guest-access", "host", "ns_per_access"), 2.0,
      "guest-access not run");
  for (const char* m : {"per_vma_rwsem", "per_vma_refcount"}) {
    add(std::string("page_fault1: ") + m + " faults/s / mmap_lock faults/s, 2 threads", ">=",
        c.get("page_fault1", m, "faults_per_s_2t") / c.get("page_fault1", "mmap_lock", "faults_per_s_2t"), 1.0,
        "page_fault1 (with mmap_lock) not run");
    add(std::string("mmap1: ") + m + " ops/s / mmap_lock ops/s, 2 threads", ">=",
        c.get("mmap1", m, "ops_per_s_2t") / c.get("mmap1", "mmap_lock", "ops_per_s_2t"), 1.0,
        "mmap1 (with mmap_lock) not run");
  }
  // Issue 19's fourth mode: N/A until a build has it (--modes lists the
  // modes this build knows).
  add("disjoint-mmap: per_vma_range ops/s, 2 threads / 1 thread", ">=",
      c.get("disjoint-mmap", "per_vma_range", "ops_per_s_2t") / c.get("disjoint-mmap", "per_vma_range", "ops_per_s_1t"),
      1.8, "disjoint-mmap (with per_vma_range) not run");
  add("disjoint-mmap: per_vma_range ops/s / per_vma_refcount ops/s, 1 thread", ">=",
      c.get("disjoint-mmap", "per_vma_range", "ops_per_s_1t") / c.get("disjoint-mmap", rc, "ops_per_s_1t"), 0.9,
      "disjoint-mmap (with per_vma_range and per_vma_refcount) not run");
  add("mremap: per_vma_refcount pages/s / kernel pages/s (grow-by-move, aligned)", ">=",
      c.get("mremap", rc, "aligned_pages_per_s") / c.get("mremap", "kernel", "aligned_pages_per_s"), 3.0,
      "mremap (with kernel) not run");
  const double ff_rc = c.get("file-fault", rc, "ns_per_page");
  add("file-fault: per_vma_refcount ns/page / its anonymous fault", "<=",
      ff_rc / c.get("file-fault", rc, "anon_ns_per_fault"), 1.2, "file-fault not run");
  add("file-fault: kernel ns/page / per_vma_refcount ns/page", ">=",
      c.get("file-fault", "kernel", "ns_per_page") / ff_rc, 3.0, "file-fault (with kernel) not run");
  add("space: per_vma_refcount default AddressSpace construction (us)", "<=",
      c.get("space", rc, "create_us_median"), 1000.0, "space not run");
  add("space: per_vma_refcount default AddressSpace resident KiB before the first fault", "<=",
      c.get("space", rc, "resident_kib_per_space"), 1024.0, "space not run");
  add("fork: kernel ms / per_vma_refcount ms, fork of 256 MiB populated", ">=",
      c.get("fork", "kernel", "fork_ms_256mib") / c.get("fork", rc, "fork_ms_256mib"), 2.0,
      "fork (with kernel) not run");
  add("fork: per_vma_refcount copy-on-write ns/page / first-touch ns/page", "<=",
      c.get("fork", rc, "cow_ns_per_page") / c.get("fork", rc, "first_touch_ns_per_page"), 1.5, "fork not run");
  return t;
}

namespace {

// "x1.04": a figure's spread over the rounds; "-" for one round or none.
std::string spread_str(double spread, int rounds) {
  if (rounds <= 1) return "-";
  if (std::isnan(spread)) return "n/a";
  char b[32];
  std::snprintf(b, sizeof b, "x%.2f", spread);
  return b;
}

}  // namespace

std::string format_report(const Ctx& c, const std::vector<Target>& ts) {
  std::string o;
  char line[512];
  auto put = [&](const char* fmt, auto... args) {
    std::snprintf(line, sizeof line, fmt, args...);
    o += line;
  };
  put("vmspace bench (%s build%s): median of %d round%s %s; spread = max/min of the rounds kept\n\n",
      vmspace::cli::build_kind(), c.quick ? ", --quick" : "", c.rounds, c.rounds == 1 ? "" : "s",
      c.warmed_up ? "after a warm-up" : "without a warm-up (--no-warmup)");
  put("%-14s %-17s %-34s %16s %-7s %s\n", "workload", "mode", "metric", "value", "spread", "ratios");
  std::string last;
  for (const Result& r : c.results) {
    if (r.workload != last && !last.empty()) o += "\n";
    last = r.workload;
    put("%-14s %-17s %-34s %16s %-7s %s\n", r.workload.c_str(), r.mode.c_str(), r.metric.c_str(),
        human(r.value, r.unit).c_str(), spread_str(r.spread, r.rounds).c_str(), note_for(c, r).c_str());
  }
  if (!c.notes.empty()) {
    o += "\nnotes (from the last round):\n";
    for (const auto& n : c.notes) o += "  " + n + "\n";
  }
  put("\ntargets (UNSTABLE: the rounds' spread is above x%.2f, too wide to judge):\n", kUnstableSpread);
  for (const Target& t : ts) {
    const Verdict v = verdict(t);
    if (v == Verdict::na) {
      put("  %-8s %-66s (%s)\n", verdict_name(v), t.name.c_str(), t.why_na.c_str());
      continue;
    }
    std::string head = verdict_name(v);
    if (v == Verdict::unstable) head += " (spread " + fmt(t.spread, 2) + ")";
    put("  %-8s %-66s %s %s %s  spread %s\n", head.c_str(), t.name.c_str(), fmt(t.value, 2).c_str(), t.cmp.c_str(),
        fmt(t.limit, 2).c_str(), spread_str(t.spread, t.rounds).c_str());
  }
  return o;
}

void print_report(const Ctx& c, const std::vector<Target>& ts) { std::fputs(format_report(c, ts).c_str(), stdout); }

namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      if (p != std::string::npos) return line.substr(line.find_first_not_of(" \t", p + 1));
    }
  return "unknown";
}

nlohmann::json num(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }

}  // namespace

void write_json(const Ctx& c, const std::vector<Target>& ts, const std::string& path) {
  nlohmann::json j;
  utsname u{};
  ::uname(&u);
  j["machine"] = {{"cpu", cpu_model()},
                  {"cores", std::thread::hardware_concurrency()},
                  {"kernel", u.release},
                  {"build_type", vmspace::cli::build_kind()},
                  {"quick", c.quick},
                  {"rounds", c.rounds},
                  {"warmed_up", c.warmed_up},
                  {"unstable_spread", kUnstableSpread}};
  j["results"] = nlohmann::json::array();
  for (const Result& r : c.results)
    j["results"].push_back(
        {{"workload", r.workload},
         {"mode", r.mode},
         {"metric", r.metric},
         {"value", num(r.value)},
         {"unit", r.unit},
         {"spread", num(r.spread)},
         {"rounds", r.rounds}});
  j["targets"] = nlohmann::json::array();
  for (const Target& t : ts) {
    const Verdict v = verdict(t);
    nlohmann::json e = {{"name", t.name},       {"value", num(t.value)},        {"limit", t.limit},
                        {"comparison", t.cmp},  {"spread", num(t.spread)},      {"rounds", t.rounds},
                        {"status", verdict_name(v)}};
    // "pass": true/false when judged, null when N/A or UNSTABLE.
    if (v == Verdict::pass || v == Verdict::fail) e["pass"] = v == Verdict::pass;
    else if (v == Verdict::unstable) e["pass"] = nullptr;
    else {
      e["pass"] = nullptr;
      e["na"] = t.why_na;
    }
    j["targets"].push_back(e);
  }
  j["notes"] = c.notes;
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) fail("cannot write " + path);
}

}  // namespace vmspace::cli::bench
