// SPDX-License-Identifier: MIT
// bench_charts.h - `vmspace bench`'s charts (SVG) and its one-file report
// (report.html: the targets, every chart and the table).
#pragma once

#include <string>
#include <vector>

#include "bench_ctx.h"

namespace vmspace::cli::bench {

// A value in the unit that fits it: durations ("ns"/"us") as ns, µs or
// ms; rates ("…/s") with K or M; three significant digits.  `with_unit`
// appends the unit (durations always carry theirs).
std::string human(double v, const std::string& unit, bool with_unit = true);

struct Chart {
  std::string file;  // e.g. "page_fault1.svg"
  std::string svg;
};
// The charts of the workloads that ran (none for one that did not).
std::vector<Chart> make_charts(const Ctx& c);

// Every chart into dir (created).
void write_svgs(const Ctx& c, const std::string& dir);
// report.html: targets, charts (inline) and `table` (the stdout report).
void write_html(const Ctx& c, const std::vector<Target>& ts, const std::string& table, const std::string& path);

}  // namespace vmspace::cli::bench
