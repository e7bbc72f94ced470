// SPDX-License-Identifier: MIT
// bench_rounds.cpp - rounds, medians, spreads and verdicts (bench_rounds.h).
#include "bench_rounds.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <tuple>

#include "bench_ctx.h"

namespace vmspace::cli::bench {

RoundPlan round_plan(bool quick, int fixed_rounds) {
  RoundPlan p;
  if (fixed_rounds > 0) {
    p.min_rounds = p.max_rounds = fixed_rounds;
  } else if (quick) {
    p.min_rounds = 2;
    p.max_rounds = 4;
  }
  return p;
}

namespace {

double median_of_sorted(const std::vector<double>& v) {
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// How far x is from m, as a ratio >= 1 (values of either sign: by the
// absolute difference, scaled so that only the order matters).
double distance(double x, double m) {
  if (x > 0 && m > 0) return std::max(x / m, m / x);
  return 1 + std::fabs(x - m);
}

}  // namespace

Summary summarize(std::vector<double> values) {
  std::erase_if(values, [](double v) { return std::isnan(v); });
  if (values.empty()) return {kNaN, kNaN, 0};
  std::sort(values.begin(), values.end());
  if (values.size() >= 4) {
    const double m = median_of_sorted(values);
    // Sorted, so the farthest value is at one end.
    if (distance(values.front(), m) > distance(values.back(), m)) values.erase(values.begin());
    else values.pop_back();
  }
  const double lo = values.front(), hi = values.back();
  double spread;
  if (lo == hi) spread = 1;
  else if (lo > 0) spread = hi / lo;
  else spread = kNaN;
  return {median_of_sorted(values), spread, static_cast<int>(values.size())};
}

std::vector<Result> combine_results(const std::vector<std::vector<Result>>& rounds) {
  using Key = std::tuple<std::string, std::string, std::string>;
  std::vector<Key> order;
  std::map<Key, std::vector<double>> values;
  std::map<Key, std::string> units;
  for (const auto& round : rounds)
    for (const Result& r : round) {
      Key k{r.workload, r.mode, r.metric};
      auto [it, fresh] = values.try_emplace(k);
      if (fresh) {
        order.push_back(k);
        units[k] = r.unit;
      }
      it->second.push_back(r.value);
    }
  std::vector<Result> out;
  out.reserve(order.size());
  for (const Key& k : order) {
    const Summary s = summarize(values[k]);
    Result r{std::get<0>(k), std::get<1>(k), std::get<2>(k), s.median, units[k]};
    r.spread = s.spread;
    r.rounds = s.kept;
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<Target> combine_targets(const std::vector<std::vector<Target>>& rounds) {
  std::vector<Target> out;
  if (rounds.empty()) return out;
  for (std::size_t i = 0; i < rounds.front().size(); ++i) {
    Target t = rounds.front()[i];
    std::vector<double> v;
    std::string why_na = t.why_na;
    for (const auto& round : rounds) {
      if (i >= round.size()) continue;
      const Target& r = round[i];
      if (r.why_na.empty()) v.push_back(r.value);
      else why_na = r.why_na;
    }
    const Summary s = summarize(v);
    t.value = s.median;
    t.spread = s.spread;
    t.rounds = s.kept;
    t.why_na = s.kept == 0 ? why_na : "";
    out.push_back(std::move(t));
  }
  return out;
}

bool settled(const std::vector<Target>& combined, double spread) {
  for (const Target& t : combined)
    if (t.why_na.empty() && !(t.spread <= spread)) return false;
  return true;
}

Verdict verdict(const Target& t) {
  if (!t.why_na.empty() || std::isnan(t.value)) return Verdict::na;
  if (!(t.spread <= kUnstableSpread)) return Verdict::unstable;
  const bool ok = t.cmp == "<=" ? t.value <= t.limit : t.value >= t.limit;
  return ok ? Verdict::pass : Verdict::fail;
}

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::pass: return "PASS";
    case Verdict::fail: return "FAIL";
    case Verdict::unstable: return "UNSTABLE";
    case Verdict::na: return "N/A";
  }
  return "?";
}

}  // namespace vmspace::cli::bench
