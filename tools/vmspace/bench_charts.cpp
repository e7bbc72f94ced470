// SPDX-License-Identifier: MIT
// bench_charts.cpp - the SVG charts and report.html of `vmspace bench`
// (issue 18): one colour per mode in every chart, axes with values, value
// labels on bars, the fault-churn latency tail on a log scale of 1 - F
// with p99 and p99.9 marked, and no chart for a workload that did not run.
#include "bench_charts.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "bench_rounds.h"
#include "build_kind.h"

namespace vmspace::cli::bench {

namespace {

// Every mode keeps its colour in every chart.
std::string colour_of(const std::string& mode) {
  static const std::map<std::string, std::string> k = {
      {"mmap_lock", "#d62728"}, {"per_vma_rwsem", "#1f77b4"}, {"per_vma_refcount", "#2ca02c"},
      {"kernel", "#7f7f7f"},    {"floor", "#9467bd"},         {"memset", "#9467bd"},
      {"host", "#9467bd"}};
  auto it = k.find(mode);
  return it != k.end() ? it->second : "#8c564b";
}

std::string esc(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '<') o += "&lt;";
    else if (ch == '>') o += "&gt;";
    else if (ch == '&') o += "&amp;";
    else o += ch;
  }
  return o;
}

// 1, 2, 5 x 10^k steps so that [0, hi] gets about five ticks.
double nice_step(double hi) {
  if (!(hi > 0)) return 1;
  const double raw = hi / 5, p = std::pow(10, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * p) return m * p;
  return 10 * p;
}

constexpr double kW = 860, kH = 420, kL = 80, kR = 170, kT = 44, kB = 56;

std::string svg_head(const std::string& title) {
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kW << "\" height=\"" << kH
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << kL << "\" y=\"22\" font-size=\"15\">" << esc(title) << "</text>\n";
  return s.str();
}

// Grouped bars: one group per x label, one bar per series (mode) in it.
// values[g][s] (NaN: no bar).
std::string grouped_bars(const std::string& title, const std::string& unit, const std::vector<std::string>& groups,
                         const std::vector<std::string>& series, const std::vector<std::vector<double>>& values) {
  const double pw = kW - kL - kR, ph = kH - kT - kB;
  double hi = 0;
  for (const auto& row : values)
    for (double v : row)
      if (!std::isnan(v)) hi = std::max(hi, v);
  const double step = nice_step(hi);
  const double top = std::max(step, std::ceil(hi / step) * step);
  std::ostringstream s;
  s << svg_head(title);
  for (double y = 0; y <= top * 1.0001; y += step) {
    const double py = kT + ph - y / top * ph;
    s << "<line x1=\"" << kL << "\" y1=\"" << py << "\" x2=\"" << kL + pw << "\" y2=\"" << py
      << "\" stroke=\"#e5e5e5\"/>\n<text x=\"" << kL - 6 << "\" y=\"" << py + 4 << "\" text-anchor=\"end\">"
      << esc(human(y, unit, false)) << "</text>\n";
  }
  s << "<line x1=\"" << kL << "\" y1=\"" << kT + ph << "\" x2=\"" << kL + pw << "\" y2=\"" << kT + ph
    << "\" stroke=\"black\"/>\n<line x1=\"" << kL << "\" y1=\"" << kT << "\" x2=\"" << kL << "\" y2=\"" << kT + ph
    << "\" stroke=\"black\"/>\n<text x=\"16\" y=\"" << kT + ph / 2 << "\" transform=\"rotate(-90 16 " << kT + ph / 2
    << ")\" text-anchor=\"middle\">" << esc(unit) << "</text>\n";
  const double gw = pw / std::max<std::size_t>(1, groups.size());
  const double bw = gw * 0.8 / std::max<std::size_t>(1, series.size());
  for (std::size_t g = 0; g < groups.size(); ++g) {
    for (std::size_t k = 0; k < series.size(); ++k) {
      const double v = values[g][k];
      if (std::isnan(v)) continue;
      const double h = v / top * ph, bx = kL + static_cast<double>(g) * gw + gw * 0.1 + static_cast<double>(k) * bw;
      s << "<rect x=\"" << bx << "\" y=\"" << kT + ph - h << "\" width=\"" << bw * 0.92 << "\" height=\"" << h
        << "\" fill=\"" << colour_of(series[k]) << "\"><title>" << esc(series[k] + " " + groups[g] + ": " +
                                                                      human(v, unit, true))
        << "</title></rect>\n<text x=\"" << bx + bw * 0.46 << "\" y=\"" << kT + ph - h - 3
        << "\" text-anchor=\"middle\" font-size=\"9\">" << esc(human(v, unit, false)) << "</text>\n";
    }
    s << "<text x=\"" << kL + static_cast<double>(g) * gw + gw / 2 << "\" y=\"" << kT + ph + 18
      << "\" text-anchor=\"middle\">" << esc(groups[g]) << "</text>\n";
  }
  for (std::size_t k = 0; k < series.size(); ++k)
    s << "<rect x=\"" << kL + pw + 12 << "\" y=\"" << kT + 8 + 20 * static_cast<double>(k) << "\" width=\"12\" "
      << "height=\"12\" fill=\"" << colour_of(series[k]) << "\"/><text x=\"" << kL + pw + 30 << "\" y=\""
      << kT + 18 + 20 * static_cast<double>(k) << "\">" << esc(series[k]) << "</text>\n";
  s << "</svg>\n";
  return s.str();
}

// The latency tail: x = latency (log), y = 1 - F (log, 1 down to 1e-4),
// so that p99 and p99.9 are lines one decade apart.
std::string tail_chart(const std::string& title,
                       const std::map<std::string, std::vector<std::pair<double, double>>>& cdf) {
  const double pw = kW - kL - kR, ph = kH - kT - kB;
  double lo = 1e300, hi = 0;
  for (const auto& [m, pts] : cdf)
    for (const auto& p : pts) lo = std::min(lo, p.first), hi = std::max(hi, p.first);
  const double dlo = std::floor(std::log10(std::max(1.0, lo)));
  double dhi = std::ceil(std::log10(std::max(1.0, hi)));
  if (dhi <= dlo) dhi = dlo + 1;
  constexpr double kYDecades = 4;  // 1 - F from 1 to 1e-4
  auto x = [&](double ns) { return kL + (std::log10(std::max(1.0, ns)) - dlo) / (dhi - dlo) * pw; };
  auto y = [&](double tail) {
    const double t = std::max(tail, std::pow(10, -kYDecades));
    return kT + (-std::log10(t)) / kYDecades * ph;
  };
  std::ostringstream s;
  s << svg_head(title);
  for (double d = dlo; d <= dhi; d += 1) {
    const double px = x(std::pow(10, d));
    s << "<line x1=\"" << px << "\" y1=\"" << kT << "\" x2=\"" << px << "\" y2=\"" << kT + ph
      << "\" stroke=\"#e5e5e5\"/>\n<text x=\"" << px << "\" y=\"" << kT + ph + 16 << "\" text-anchor=\"middle\">"
      << esc(human(std::pow(10, d), "ns", false)) << "</text>\n";
  }
  for (int d = 0; d <= kYDecades; ++d) {
    const double tail = std::pow(10, -d);
    const char* label[] = {"all (1)", "10%", "p99 (1%)", "p99.9 (0.1%)", "0.01%"};
    const bool mark = d == 2 || d == 3;
    s << "<line x1=\"" << kL << "\" y1=\"" << y(tail) << "\" x2=\"" << kL + pw << "\" y2=\"" << y(tail)
      << "\" stroke=\"" << (mark ? "#999" : "#e5e5e5") << "\"" << (mark ? " stroke-dasharray=\"4 3\"" : "")
      << "/>\n<text x=\"" << kL - 6 << "\" y=\"" << y(tail) + 4 << "\" text-anchor=\"end\">" << label[d]
      << "</text>\n";
  }
  s << "<rect x=\"" << kL << "\" y=\"" << kT << "\" width=\"" << pw << "\" height=\"" << ph
    << "\" fill=\"none\" stroke=\"black\"/>\n<text x=\"" << kL + pw / 2 << "\" y=\"" << kH - 14
    << "\" text-anchor=\"middle\">fault latency (log)</text>\n<text x=\"14\" y=\"" << kT + ph / 2
    << "\" transform=\"rotate(-90 14 " << kT + ph / 2
    << ")\" text-anchor=\"middle\">share of faults slower (1 - F, log)</text>\n";
  int k = 0;
  for (const auto& [m, pts] : cdf) {
    s << "<polyline fill=\"none\" stroke=\"" << colour_of(m) << "\" stroke-width=\"1.6\" points=\"";
    for (const auto& p : pts)
      if (1 - p.second > 0) s << x(p.first) << "," << y(1 - p.second) << " ";
    s << "\"/>\n<rect x=\"" << kL + pw + 12 << "\" y=\"" << kT + 8 + 20 * k << "\" width=\"12\" height=\"12\" fill=\""
      << colour_of(m) << "\"/><text x=\"" << kL + pw + 30 << "\" y=\"" << kT + 18 + 20 * k << "\">" << esc(m)
      << "</text>\n";
    ++k;
  }
  s << "</svg>\n";
  return s.str();
}

bool ran(const Ctx& c, const std::string& w) {
  return std::any_of(c.results.begin(), c.results.end(), [&](const Result& r) { return r.workload == w; });
}

std::vector<std::string> modes_of(const Ctx& c, const std::string& w) {
  std::vector<std::string> ms;
  for (const Result& r : c.results)
    if (r.workload == w && std::find(ms.begin(), ms.end(), r.mode) == ms.end()) ms.push_back(r.mode);
  return ms;
}

// A chart of metric `prefix + suffix` for each suffix (the groups), one
// bar per mode that has it.
std::string metric_bars(const Ctx& c, const std::string& w, const std::string& title, const std::string& prefix,
                        const std::vector<std::pair<std::string, std::string>>& groups, std::string unit = "") {
  std::vector<std::string> ms;
  for (const std::string& m : modes_of(c, w))
    for (const auto& g : groups)
      if (!std::isnan(c.get(w, m, prefix + g.first)) && std::find(ms.begin(), ms.end(), m) == ms.end()) ms.push_back(m);
  std::vector<std::string> labels;
  std::vector<std::vector<double>> v;
  for (const auto& g : groups) {
    labels.push_back(g.second);
    v.emplace_back();
    for (const std::string& m : ms) v.back().push_back(c.get(w, m, prefix + g.first));
  }
  if (unit.empty())
    for (const Result& r : c.results)
      if (r.workload == w && r.metric.rfind(prefix, 0) == 0) {
        unit = r.unit;
        break;
      }
  return grouped_bars(title, unit, labels, ms, v);
}

std::vector<std::pair<std::string, std::string>> thread_groups(const Ctx& c, const std::string& w,
                                                               const std::string& prefix) {
  std::vector<std::pair<std::string, std::string>> g;
  for (int t = 1; t <= 256; t *= 2) {
    const std::string suffix = std::to_string(t) + "t";
    for (const Result& r : c.results)
      if (r.workload == w && r.metric == prefix + suffix) {
        g.emplace_back(suffix, std::to_string(t) + (t == 1 ? " thread" : " threads"));
        break;
      }
  }
  return g;
}

}  // namespace

std::string human(double v, const std::string& unit, bool with_unit) {
  if (std::isnan(v)) return "n/a";
  double x = v;
  std::string u = unit, scale;
  if (unit == "ns" || unit == "us") {
    // Durations: the unit that fits (always shown: it carries the scale).
    const double ns = unit == "us" ? v * 1e3 : v;
    if (std::fabs(ns) >= 1e6) x = ns / 1e6, u = "ms";
    else if (std::fabs(ns) >= 1e3) x = ns / 1e3, u = "µs";
    else x = ns, u = "ns";
    with_unit = true;
  } else if (unit.size() > 2 && unit.compare(unit.size() - 2, 2, "/s") == 0) {
    // Rates: K and M.
    if (std::fabs(v) >= 1e6) x = v / 1e6, scale = "M";
    else if (std::fabs(v) >= 1e3) x = v / 1e3, scale = "K";
  }
  char b[48];
  const double a = std::fabs(x);
  if (x == 0) std::snprintf(b, sizeof b, "0");
  else if (a >= 100) std::snprintf(b, sizeof b, "%.0f", x);
  else if (a >= 10) std::snprintf(b, sizeof b, "%.1f", x);
  else std::snprintf(b, sizeof b, "%.2f", x);
  std::string out = b;
  if (!scale.empty()) out += " " + scale;
  if (with_unit && !u.empty()) out += " " + u;
  return out;
}

std::vector<Chart> make_charts(const Ctx& c) {
  std::vector<Chart> out;
  if (!c.cdf.empty())
    out.push_back({"fault_churn_tail.svg", tail_chart("fault-churn (b, mprotect churn): fault latency tail", c.cdf)});
  if (ran(c, "fault"))
    out.push_back({"fault.svg", metric_bars(c, "fault", "fault: first-touch fault (lower is better)", "ns_per_fault",
                                            {{"", "ns per fault"}}, "ns")});
  if (ran(c, "fault-scaling")) {
    // The floor has its own metric name: copy it into the faults' shape.
    Ctx view = c;
    for (const Result& r : c.results)
      if (r.workload == "fault-scaling" && r.mode == "floor" && r.metric.rfind("pages_per_s_total_", 0) == 0)
        view.add("fault-scaling", "floor", "faults_per_s_total_" + r.metric.substr(18), r.value, "faults/s");
    out.push_back({"fault_scaling.svg",
                   metric_bars(view, "fault-scaling", "fault-scaling: total faults/s (floor: pages zeroed/s)",
                               "faults_per_s_total_", thread_groups(view, "fault-scaling", "faults_per_s_total_"))});
  }
  for (const char* w : {"page_fault1", "page_fault2", "page_fault3", "mmap1", "disjoint-mmap"}) {
    if (!ran(c, w)) continue;
    const bool ops = std::string(w) == "mmap1" || std::string(w) == "disjoint-mmap";
    const std::string prefix = ops ? "ops_per_s_" : "faults_per_s_";
    const std::string title = ops && std::string(w) == "disjoint-mmap" ? std::string("disjoint-mmap: ops/s, each thread in its own area (higher is better)")
                                                                       : std::string("will-it-scale ") + w + " (higher is better)";
    out.push_back({std::string(w) + ".svg", metric_bars(c, w, title,
                                                        prefix, thread_groups(c, w, prefix))});
  }
  if (ran(c, "cortenmm"))
    for (const char* cont : {"low", "high"})
      for (const char* op : {"mmap", "pf", "unmap", "mmap_pf", "unmap_virt"}) {
        const std::string prefix = std::string(op) + "_" + cont + "_";
        out.push_back({"cortenmm_" + std::string(op) + "_" + cont + ".svg",
                       metric_bars(c, "cortenmm", "CortenMM " + std::string(op) + ", " + cont + " contention",
                                   prefix, thread_groups(c, "cortenmm", prefix))});
      }
  if (ran(c, "maps"))
    out.push_back({"maps.svg", metric_bars(c, "maps", "maps: mmap/munmap latency, alone and with 2 maps() readers",
                                           "", {{"mmap_median_us_alone", "mmap median, alone"},
                                                {"mmap_median_us_with_readers", "mmap median, readers"},
                                                {"munmap_median_us_alone", "munmap median, alone"},
                                                {"munmap_median_us_with_readers", "munmap median, readers"}},
                                           "us")});
  if (ran(c, "guest-access"))
    out.push_back({"guest_access.svg",
                   metric_bars(c, "guest-access", "guest-access: ns per 8-byte access (lower is better)", "",
                               {{"ns_per_access", "host"},
                                {"read_write_ns_per_access", "read/write"},
                                {"tlb_ns_per_access", "translation cache"},
                                {"atomic_ns_per_access", "atomics"}},
                               "ns")});
  return out;
}

void write_svgs(const Ctx& c, const std::string& dir) {
  std::filesystem::create_directories(dir);
  for (const Chart& ch : make_charts(c)) {
    std::ofstream out(std::filesystem::path(dir) / ch.file);
    out << ch.svg;
    if (!out) fail("cannot write " + (std::filesystem::path(dir) / ch.file).string());
  }
}

void write_html(const Ctx& c, const std::vector<Target>& ts, const std::string& table, const std::string& path) {
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>vmspace bench</title>\n<style>"
       "body{font-family:sans-serif;margin:2em;max-width:1100px}pre{font-size:12px;background:#f7f7f7;"
       "padding:1em;overflow-x:auto}td,th{padding:2px 8px;text-align:left}.PASS{color:#2ca02c}.FAIL{color:#d62728}"
       ".UNSTABLE{color:#ff7f0e}</style></head><body>\n<h1>vmspace bench</h1>\n<p>"
    << esc(vmspace::cli::build_kind()) << " build" << (c.quick ? ", --quick" : "") << "; median of " << c.rounds
    << " round(s)" << (c.warmed_up ? " after a warm-up" : "") << ".</p>\n<h2>Targets</h2>\n<table>\n";
  for (const Target& t : ts) {
    const Verdict v = verdict(t);
    h << "<tr><td class=\"" << verdict_name(v) << "\">" << verdict_name(v) << "</td><td>" << esc(t.name) << "</td><td>";
    if (v == Verdict::na) h << esc(t.why_na);
    else {
      char b[96];
      std::snprintf(b, sizeof b, "%.3g %s %.3g (spread x%.2f)", t.value, t.cmp.c_str(), t.limit, t.spread);
      h << esc(b);
    }
    h << "</td></tr>\n";
  }
  h << "</table>\n<h2>Charts</h2>\n";
  for (const Chart& ch : make_charts(c)) h << "<div>" << ch.svg << "</div>\n";
  h << "<h2>Table</h2>\n<pre>" << esc(table) << "</pre>\n</body></html>\n";
  std::ofstream out(path);
  out << h.str();
  if (!out) fail("cannot write " + path);
}

}  // namespace vmspace::cli::bench
