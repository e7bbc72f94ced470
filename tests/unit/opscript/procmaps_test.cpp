#include <gtest/gtest.h>

#include "opscript/kernel_runner.h"

namespace vmspace::opscript {
namespace {

TEST(opscript_procmaps, Naming) {
  auto m = parse_proc_maps(
      "200000000000-200000008000 rw-p 00000000 00:00 0 \n"
      "200000008000-20000000a000 rw-s 00002000 00:01 1234                       /dev/zero (deleted)\n"
      "20000000a000-20000000b000 r--s 00001000 00:01 99                         /memfd:data (deleted)\n"
      "20000000b000-20000000c000 r--p 00000000 00:01 99                         /memfd:with space (deleted)\n"
      "7ffd1000-7ffd2000 rw-p 00000000 00:00 0                          [stack]\n"
      "garbage line\n"
      "55d0c0a00000-55d0c0a21000 r-xp 00001000 fe:01 42                         /usr/bin/cat");
  ASSERT_EQ(m.size(), 6u);
  EXPECT_EQ(m[0].start, 0x200000000000u);
  EXPECT_EQ(m[0].end, 0x200000008000u);
  EXPECT_EQ(m[0].perms, "rw-p");
  EXPECT_EQ(m[0].name, "[anon]");
  EXPECT_EQ(m[1].name, "[anon]");
  EXPECT_EQ(m[1].offset, 0u);
  EXPECT_EQ(m[1].perms, "rw-s");
  EXPECT_EQ(m[2].name, "data");
  EXPECT_EQ(m[2].offset, 0x1000u);
  EXPECT_EQ(m[3].name, "with space");
  EXPECT_EQ(m[4].name, "[stack]");
  EXPECT_EQ(m[5].name, "/usr/bin/cat");
  EXPECT_EQ(m[5].offset, 0x1000u);
}

}  // namespace
}  // namespace vmspace::opscript
