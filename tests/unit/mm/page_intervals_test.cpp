// write-watch's PageIntervals (src/mm/write_watch.h) against a trivially
// correct model (a set of pages): random adds and removes, then every
// query, and the structural invariant (disjoint, non-adjacent, sorted)
// through collect().
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "mm/write_watch.h"

namespace vmspace::mm {
namespace {

constexpr std::uint64_t kP = 4096;

TEST(PageIntervals, MatchesAPageSetModel) {
  std::mt19937 rng(1717);
  for (int round = 0; round < 50; ++round) {
    PageIntervals s;
    std::set<std::uint64_t> model;
    for (int op = 0; op < 200; ++op) {
      const std::uint64_t a = (rng() % 64) * kP, n = (1 + rng() % 12) * kP;
      if (rng() % 2) {
        s.add(a, a + n);
        for (std::uint64_t p = a; p < a + n; p += kP) model.insert(p);
      } else {
        s.remove(a, a + n);
        for (std::uint64_t p = a; p < a + n; p += kP) model.erase(p);
      }
      for (std::uint64_t p = 0; p < 80 * kP; p += kP) ASSERT_EQ(s.contains(p), model.count(p) == 1) << p;
      std::vector<std::pair<std::uint64_t, std::uint64_t>> parts;
      s.collect(0, 80 * kP, &parts);
      std::set<std::uint64_t> seen;
      for (std::size_t i = 0; i < parts.size(); ++i) {
        ASSERT_LT(parts[i].first, parts[i].second);
        if (i > 0) {
          ASSERT_LT(parts[i - 1].second, parts[i].first);  // disjoint and not touching
        }
        for (std::uint64_t p = parts[i].first; p < parts[i].second; p += kP) seen.insert(p);
      }
      ASSERT_EQ(seen, model);
      const std::uint64_t qa = (rng() % 70) * kP, qn = (1 + rng() % 8) * kP;
      bool any = false;
      for (std::uint64_t p = qa; p < qa + qn; p += kP) any = any || model.count(p) == 1;
      ASSERT_EQ(s.intersects(qa, qa + qn), any);
      ASSERT_EQ(s.empty(), model.empty());
    }
  }
}

}  // namespace
}  // namespace vmspace::mm
