// SPDX-License-Identifier: MIT
// bench_rounds.h - how `vmspace bench` turns repeated rounds into figures
// a newcomer can trust (issue 18): every workload runs once unrecorded
// (the warm-up), then whole rounds repeat until every target's ratio has
// settled or the round budget is spent; each figure is the median of the
// rounds kept, with its spread (max/min of those rounds), and a target
// whose spread is too wide is UNSTABLE instead of PASS or FAIL.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace vmspace::cli::bench {

struct Result;
struct Target;

// The rounds to run: at least `min_rounds`; after each later one, stop
// when every applicable target's spread is at most `settle_spread`; never
// more than `max_rounds`.
struct RoundPlan {
  int min_rounds = 3;
  int max_rounds = 6;
  double settle_spread = 1.10;
};
// --quick: 2 to 4 rounds; full runs: 3 to 6; --rounds N: exactly N.
RoundPlan round_plan(bool quick, int fixed_rounds);

// A spread above this makes a target UNSTABLE (its median is printed, not
// judged).
inline constexpr double kUnstableSpread = 1.25;

// One figure over the rounds.  The rounds kept: all of them up to three;
// from four on, all but the one farthest (by ratio) from the median, so
// that one disturbed round (a daemon waking, a page-cache flush) does not
// decide the spread.  NaN rounds (not measured) are left out.
struct Summary {
  double median;  // of the kept rounds (NaN when none was measured)
  double spread;  // max / min of the kept rounds (1 for one round; NaN when a
                  // kept value is <= 0 and they differ: no ratio to give)
  int kept;       // rounds kept
};
Summary summarize(std::vector<double> values);

// The per-round results combined, in the first round's order (a figure
// first measured in a later round is appended).
std::vector<Result> combine_results(const std::vector<std::vector<Result>>& rounds);
// The per-round targets combined (all rounds have the same list): value
// = median of the rounds' ratios, spread over them; not applicable when
// no round measured it.
std::vector<Target> combine_targets(const std::vector<std::vector<Target>>& rounds);
// Every applicable target's spread is at most `spread`.
bool settled(const std::vector<Target>& combined, double spread);

enum class Verdict { pass, fail, unstable, na };
Verdict verdict(const Target& t);
const char* verdict_name(Verdict v);  // "PASS", "FAIL", "UNSTABLE", "N/A"

}  // namespace vmspace::cli::bench
