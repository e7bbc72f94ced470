#include "opscript/result.h"

#include <cerrno>

#include <gtest/gtest.h>

namespace vmspace::opscript {
namespace {

const Window kW{};  // base 0x200000000000

TEST(opscript_result, Hex) {
  EXPECT_EQ(hex(0), "0x0");
  EXPECT_EQ(hex(0x3000), "0x3000");
  EXPECT_EQ(hex(0xABCDEF), "0xabcdef");
  EXPECT_EQ(hex(UINT64_MAX), "0xffffffffffffffff");
}

TEST(opscript_result, WindowAddr) {
  EXPECT_EQ(window_addr(kW.base, kW), "@+0x0");
  EXPECT_EQ(window_addr(kW.base + 0x3000, kW), "@+0x3000");
  EXPECT_EQ(window_addr(kW.base + kWindowSize - 1, kW), "@+0xffffffffff");
  EXPECT_EQ(window_addr(kW.base + kWindowSize, kW), "outside");
  EXPECT_EQ(window_addr(kW.base - 1, kW), "outside");
  EXPECT_EQ(window_addr(0x7f0000000000, kW), "outside");
  Window w2{0x300000000000};
  EXPECT_EQ(window_addr(0x300000001000, w2), "@+0x1000");
  EXPECT_EQ(window_addr(0x200000001000, w2), "outside");
}

TEST(opscript_result, ErrnoNames) {
  EXPECT_EQ(errno_name(EINVAL), "EINVAL");
  EXPECT_EQ(errno_name(ENOMEM), "ENOMEM");
  EXPECT_EQ(errno_name(EEXIST), "EEXIST");
  EXPECT_EQ(errno_name(EAGAIN), "EAGAIN");
  EXPECT_EQ(errno_name(100000), "E100000");
}

TEST(opscript_result, ResultText) {
  EXPECT_EQ(format_result(OpResult::ok(), kW), "= 0");
  EXPECT_EQ(format_result(OpResult::address(kW.base), kW), "= @+0x0");
  EXPECT_EQ(format_result(OpResult::address(kW.base + 0x8000), kW), "= @+0x8000");
  EXPECT_EQ(format_result(OpResult::address(0x7fffdead0000), kW), "= outside");
  EXPECT_EQ(format_result(OpResult::error(EINVAL), kW), "= -EINVAL");
  EXPECT_EQ(format_result(OpResult::error(ENOMEM), kW), "= -ENOMEM");
  EXPECT_EQ(format_result(OpResult::fault_at(FaultKind::kSegvMaperr, kW.base + 0x2000), kW),
            "= SEGV_MAPERR @+0x2000");
  EXPECT_EQ(format_result(OpResult::fault_at(FaultKind::kSegvAccerr, kW.base), kW), "= SEGV_ACCERR @+0x0");
  EXPECT_EQ(format_result(OpResult::fault_at(FaultKind::kSigbus, kW.base + 0x1000), kW), "= SIGBUS @+0x1000");
  EXPECT_EQ(format_result(OpResult::hash(0x1234), kW), "= fnv1a64 0x0000000000001234");
  EXPECT_EQ(format_result(OpResult::hash(kFnvOffsetBasis), kW), "= fnv1a64 0xcbf29ce484222325");
  EXPECT_EQ(format_result(OpResult::unsupported(), kW), "= unsupported");
  EXPECT_EQ(format_op_line(1, OpResult::address(kW.base), kW), "1: = @+0x0");
  EXPECT_EQ(format_op_line(12, OpResult::error(EEXIST), kW), "12: = -EEXIST");
}

TEST(opscript_result, Fnv1a64KnownVectors) {
  // Published FNV-1a 64 test vectors.
  const unsigned char a[] = {'a'};
  EXPECT_EQ(fnv1a64_update(kFnvOffsetBasis, a, 1), 0xaf63dc4c8601ec8cULL);
  const unsigned char foobar[] = {'f', 'o', 'o', 'b', 'a', 'r'};
  EXPECT_EQ(fnv1a64_update(kFnvOffsetBasis, foobar, 6), 0x85944171f73967e8ULL);
  EXPECT_EQ(fnv1a64_update(kFnvOffsetBasis, nullptr, 0), kFnvOffsetBasis);
}

TEST(opscript_result, MapLines) {
  MapEntry e{kW.base, kW.base + 0x8000, "rw-p", 0, "[anon]"};
  EXPECT_EQ(format_map_line(e, kW), "@+0x0-@+0x8000 rw-p 0x0 [anon]");
  MapEntry f{kW.base + 0x2000, kW.base + 0x4000, "r--s", 0x1000, "data"};
  EXPECT_EQ(format_map_line(f, kW), "@+0x2000-@+0x4000 r--s 0x1000 data");
}

TEST(opscript_result, WindowMapsFiltersClipsAndSorts) {
  std::vector<MapEntry> all = {
      {0x7f0000000000, 0x7f0000001000, "r--p", 0, "/usr/lib/libc.so.6"},
      {kW.base + 0x5000, kW.base + 0x6000, "rw-s", 0x2000, "f"},
      {kW.base - 0x2000, kW.base + 0x1000, "rw-p", 0, "[anon]"},
      {kW.base - 0x2000, kW.base + 0x1000, "rw-p", 0, "[anon]"},
      {kW.base - 0x3000, kW.base - 0x1000, "rw-p", 0, "[anon]"},
      {kW.end() - 0x1000, kW.end() + 0x1000, "r--s", 0x4000, "g"},
      {kW.base - 0x1000, kW.base + 0x1000, "r--p", 0x1000, "h"},
  };
  all.erase(all.begin() + 3);
  auto m = window_maps(all, kW);
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(format_map_line(m[0], kW), "@+0x0-@+0x1000 rw-p 0x0 [anon]");
  EXPECT_EQ(format_map_line(m[1], kW), "@+0x0-@+0x1000 r--p 0x2000 h");  // offset follows the clip
  EXPECT_EQ(format_map_line(m[2], kW), "@+0x5000-@+0x6000 rw-s 0x2000 f");
  EXPECT_EQ(format_map_line(m[3], kW), "@+0xfffffff000-@+0x10000000000 r--s 0x4000 g");
}

}  // namespace
}  // namespace vmspace::opscript
