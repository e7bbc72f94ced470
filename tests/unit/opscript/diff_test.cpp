#include "opscript/diff.h"

#include <gtest/gtest.h>

namespace vmspace::opscript {
namespace {

using Lines = std::vector<std::string>;

TEST(opscript_diff, EqualInputsPrintOnce) {
  Lines a = {"1: = @+0x0", "@+0x0-@+0x1000 rw-p 0x0 [anon]", "2: = 0", "final maps:",
             "@+0x0-@+0x1000 rw-p 0x0 [anon]"};
  auto d = diff_lines(a, a);
  EXPECT_TRUE(d.equal);
  EXPECT_EQ(d.lines, a);
  EXPECT_TRUE(diff_lines({}, {}).equal);
}

TEST(opscript_diff, DifferingResultLineIsPrintedTwice) {
  auto d = diff_lines({"1: = @+0x0", "2: = -EINVAL", "final maps:"}, {"1: = @+0x0", "2: = 0", "final maps:"});
  EXPECT_FALSE(d.equal);
  EXPECT_EQ(d.lines, (Lines{"1: = @+0x0", "-kernel 2: = -EINVAL", "+vmspace 2: = 0", "final maps:"}));
}

TEST(opscript_diff, MissingMapsLineDoesNotShiftTheRest) {
  Lines k = {"1: = 0", "@+0x0-@+0x2000 rw-p 0x0 [anon]", "@+0x2000-@+0x4000 r--p 0x0 [anon]",
             "@+0x4000-@+0x8000 rw-p 0x0 [anon]", "2: = 0", "3: = 0", "final maps:"};
  Lines v = {"1: = 0", "@+0x0-@+0x2000 rw-p 0x0 [anon]", "@+0x4000-@+0x8000 rw-p 0x0 [anon]", "2: = 0", "3: = 0",
             "final maps:"};
  auto d = diff_lines(k, v);
  EXPECT_FALSE(d.equal);
  EXPECT_EQ(d.lines, (Lines{"1: = 0", "@+0x0-@+0x2000 rw-p 0x0 [anon]", "-kernel @+0x2000-@+0x4000 r--p 0x0 [anon]",
                            "@+0x4000-@+0x8000 rw-p 0x0 [anon]", "2: = 0", "3: = 0", "final maps:"}));
}

TEST(opscript_diff, ChangedMapsLinesArePaired) {
  Lines k = {"1: = 0", "final maps:", "@+0x0-@+0x8000 rw-p 0x0 [anon]"};
  Lines v = {"1: = 0", "final maps:", "@+0x0-@+0x4000 rw-p 0x0 [anon]", "@+0x4000-@+0x8000 rw-p 0x0 [anon]"};
  auto d = diff_lines(k, v);
  EXPECT_FALSE(d.equal);
  EXPECT_EQ(d.lines, (Lines{"1: = 0", "final maps:", "-kernel @+0x0-@+0x8000 rw-p 0x0 [anon]",
                            "+vmspace @+0x0-@+0x4000 rw-p 0x0 [anon]", "+vmspace @+0x4000-@+0x8000 rw-p 0x0 [anon]"}));
}

TEST(opscript_diff, ExtraBlocksOnOneSide) {
  auto d = diff_lines({"1: = 0", "2: = 0", "final maps:"}, {"1: = 0"});
  EXPECT_FALSE(d.equal);
  EXPECT_EQ(d.lines, (Lines{"1: = 0", "-kernel 2: = 0", "-kernel final maps:"}));
}

}  // namespace
}  // namespace vmspace::opscript
