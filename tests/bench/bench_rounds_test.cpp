// SPDX-License-Identifier: MIT
// vmspace bench's rounds (tools/vmspace/bench_rounds.h): medians, the
// spread of the rounds kept, the outlier dropped from four rounds on, and
// the verdicts (UNSTABLE beats PASS/FAIL when the spread is too wide).
#include "bench_rounds.h"
#include "bench_charts.h"

#include <gtest/gtest.h>

#include <cmath>

#include "bench_ctx.h"

namespace vmspace::cli::bench {
namespace {

TEST(BenchRounds, MedianAndSpreadOfFewRounds) {
  Summary s = summarize({2.0});
  EXPECT_EQ(s.median, 2.0);
  EXPECT_EQ(s.spread, 1.0);
  EXPECT_EQ(s.kept, 1);
  s = summarize({3.0, 1.0, 2.0});
  EXPECT_EQ(s.median, 2.0);
  EXPECT_DOUBLE_EQ(s.spread, 3.0);
  EXPECT_EQ(s.kept, 3);
  s = summarize({1.0, 2.0});
  EXPECT_DOUBLE_EQ(s.median, 1.5);
  EXPECT_DOUBLE_EQ(s.spread, 2.0);
}

TEST(BenchRounds, FromFourRoundsTheFarthestIsDropped) {
  // 10, 10.5, 11 and one disturbed round of 30: the 30 goes.
  Summary s = summarize({10.0, 30.0, 10.5, 11.0});
  EXPECT_EQ(s.kept, 3);
  EXPECT_DOUBLE_EQ(s.median, 10.5);
  EXPECT_DOUBLE_EQ(s.spread, 1.1);
  // A low outlier goes the same way.
  s = summarize({1.0, 10.0, 10.5, 11.0});
  EXPECT_EQ(s.kept, 3);
  EXPECT_DOUBLE_EQ(s.median, 10.5);
}

TEST(BenchRounds, UnmeasuredRoundsAreLeftOut) {
  Summary s = summarize({kNaN, 4.0, kNaN});
  EXPECT_EQ(s.kept, 1);
  EXPECT_EQ(s.median, 4.0);
  s = summarize({kNaN});
  EXPECT_EQ(s.kept, 0);
  EXPECT_TRUE(std::isnan(s.median));
  // Zero and non-zero: no ratio to give.
  s = summarize({0.0, 3.0});
  EXPECT_TRUE(std::isnan(s.spread));
  EXPECT_EQ(summarize({0.0, 0.0}).spread, 1.0);
}

Target target(double value, std::string cmp = ">=", double limit = 3.0) {
  return Target{"t", std::move(cmp), value, limit, ""};
}

TEST(BenchRounds, CombinedTargetsAndVerdicts) {
  // Three rounds of one target: 3.1, 3.3, 3.2 -> median 3.2, PASS.
  std::vector<std::vector<Target>> rounds = {{target(3.1)}, {target(3.3)}, {target(3.2)}};
  std::vector<Target> c = combine_targets(rounds);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_DOUBLE_EQ(c[0].value, 3.2);
  EXPECT_EQ(c[0].rounds, 3);
  EXPECT_EQ(verdict(c[0]), Verdict::pass);
  EXPECT_TRUE(settled(c, 1.10));
  // Below the limit: FAIL; "<=" targets the other way round.
  EXPECT_EQ(verdict(target(2.9)), Verdict::fail);
  EXPECT_EQ(verdict(target(0.9, "<=", 1.0)), Verdict::pass);
  EXPECT_EQ(verdict(target(1.1, "<=", 1.0)), Verdict::fail);
  // A wide spread is UNSTABLE whichever side the median is on.
  rounds = {{target(2.0)}, {target(4.0)}, {target(3.5)}};
  c = combine_targets(rounds);
  EXPECT_EQ(verdict(c[0]), Verdict::unstable);
  EXPECT_FALSE(settled(c, 1.10));
  // Not applicable in every round: N/A, with the reason; settled ignores it.
  Target na = target(kNaN);
  na.why_na = "fault not run";
  c = combine_targets({{na}, {na}});
  EXPECT_EQ(verdict(c[0]), Verdict::na);
  EXPECT_EQ(c[0].why_na, "fault not run");
  EXPECT_TRUE(settled(c, 1.10));
  // Measured in some rounds only: judged on those.
  c = combine_targets({{na}, {target(3.5)}});
  EXPECT_EQ(verdict(c[0]), Verdict::pass);
  EXPECT_EQ(c[0].rounds, 1);
}

TEST(BenchRounds, CombinedResultsKeepTheFirstRoundsOrder) {
  std::vector<std::vector<Result>> rounds = {
      {{"fault", "a", "ns", 100, "ns"}, {"fault", "b", "ns", 200, "ns"}},
      {{"fault", "b", "ns", 220, "ns"}, {"fault", "a", "ns", 110, "ns"}, {"mmap", "a", "pairs", 5, "/s"}},
  };
  std::vector<Result> r = combine_results(rounds);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].mode, "a");
  EXPECT_DOUBLE_EQ(r[0].value, 105);
  EXPECT_DOUBLE_EQ(r[0].spread, 1.1);
  EXPECT_EQ(r[1].mode, "b");
  EXPECT_EQ(r[2].workload, "mmap");
  EXPECT_EQ(r[2].rounds, 1);
}

TEST(BenchRounds, Plans) {
  RoundPlan p = round_plan(false, 0);
  EXPECT_EQ(p.min_rounds, 3);
  EXPECT_EQ(p.max_rounds, 6);
  p = round_plan(true, 0);
  EXPECT_EQ(p.min_rounds, 2);
  EXPECT_EQ(p.max_rounds, 4);
  p = round_plan(true, 7);
  EXPECT_EQ(p.min_rounds, 7);
  EXPECT_EQ(p.max_rounds, 7);
}

}  // namespace
}  // namespace vmspace::cli::bench

// The table's and charts' number format (bench_charts.h).
namespace vmspace::cli::bench {
namespace {

TEST(BenchFormat, UnitsThatFitTheValue) {
  EXPECT_EQ(human(950, "ns"), "950 ns");
  EXPECT_EQ(human(1234, "ns"), "1.23 µs");
  EXPECT_EQ(human(12345678, "ns"), "12.3 ms");
  EXPECT_EQ(human(6.5, "us"), "6.50 µs");
  EXPECT_EQ(human(2.5e6, "faults/s"), "2.50 M faults/s");
  EXPECT_EQ(human(936000, "faults/s"), "936 K faults/s");
  EXPECT_EQ(human(936000, "faults/s", false), "936 K");
  EXPECT_EQ(human(12, "%"), "12.0 %");
  EXPECT_EQ(human(kNaN, "ns"), "n/a");
}

TEST(BenchFormat, ChartsOnlyForWorkloadsThatRan) {
  Ctx c;
  EXPECT_TRUE(make_charts(c).empty());
  c.add("mmap1", "mmap_lock", "ops_per_s_1t", 5e5, "ops/s");
  c.add("mmap1", "kernel", "ops_per_s_1t", 2e5, "ops/s");
  c.add("mmap1", "mmap_lock", "ops_per_s_2t", 6e5, "ops/s");
  const std::vector<Chart> charts = make_charts(c);
  ASSERT_EQ(charts.size(), 1u);
  EXPECT_EQ(charts[0].file, "mmap1.svg");
  // Both modes in their own colours, both thread counts, value labels.
  EXPECT_NE(charts[0].svg.find("#d62728"), std::string::npos);
  EXPECT_NE(charts[0].svg.find("#7f7f7f"), std::string::npos);
  EXPECT_NE(charts[0].svg.find("2 threads"), std::string::npos);
  EXPECT_NE(charts[0].svg.find(">500 K<"), std::string::npos);
}

}  // namespace
}  // namespace vmspace::cli::bench
