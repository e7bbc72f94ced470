#include "opscript/serialize.h"

#include <random>

#include <gtest/gtest.h>

#include "opscript/parse.h"

namespace vmspace::opscript {
namespace {

TEST(opscript_serialize, Numbers) {
  EXPECT_EQ(number_text(0), "0");
  EXPECT_EQ(number_text(9), "9");
  EXPECT_EQ(number_text(10), "0xa");
  EXPECT_EQ(number_text(0x1800), "0x1800");
  EXPECT_EQ(number_text(3 * kPageSize), "3p");
  EXPECT_EQ(addr_text(Addr::null()), "-");
  EXPECT_EQ(addr_text(Addr::at(0)), "@");
  EXPECT_EQ(addr_text(Addr::at(0x2000)), "@+2p");
  EXPECT_EQ(addr_text(Addr::at(1)), "@+1");
  EXPECT_EQ(prot_text(0), "---");
  EXPECT_EQ(prot_text(prot::kRead | prot::kExec), "r-x");
}

TEST(opscript_serialize, CanonicalText) {
  const char* text =
      "file data 3p\n"
      "mmap - 2p r-x shared,populate,noreserve,locked data 1p\n"
      "mmap @+1p 0x1800 --- private,anon,noreplace,growsdown\n"
      "madvise @ 1p dontneed\n"
      "mremap @ 1p 2p maymove,fixed,dontunmap @+0x10p\n"
      "mremap @ 1p 2p 0\n"
      "mlock @ 1p\n"
      "munlock @ 1p\n"
      "mlock2 @ 1p onfault\n"
      "mlock2 @ 1p 0\n"
      "ftruncate data 0\n"
      "write @+0xfff 1 0xff\n"
      "read @ 0\n"
      "maps\n"
      "fork child_1\n"
      "use child_1\n"
      "use main\n"
      "mlockall current,future,onfault\n"
      "mlockall future,current\n"
      "mlockall 0\n"
      "munlockall\n"
      "mseal @+0x2p 0x1000\n"
      "mincore @ 0\n"
      "madvise @ 1p guard_install\n";
  auto r = parse_script(text);
  ASSERT_TRUE(r.ok()) << r.error_text();
  EXPECT_EQ(script_text(r.script),
            "file data 3p\n"
            "mmap - 2p r-x shared,populate,noreserve,locked data 1p\n"
            "mmap @+1p 0x1800 --- private,anon,noreplace,growsdown\n"
            "madvise @ 1p dontneed\n"
            "mremap @ 1p 2p maymove,fixed,dontunmap @+16p\n"
            "mremap @ 1p 2p 0\n"
            "mlock @ 1p\n"
            "munlock @ 1p\n"
            "mlock2 @ 1p onfault\n"
            "mlock2 @ 1p 0\n"
            "ftruncate data 0\n"
            "write @+0xfff 1 0xff\n"
            "read @ 0\n"
            "maps\n"
            "fork child_1\n"
            "use child_1\n"
            "use main\n"
            "mlockall current,future,onfault\n"
            "mlockall current,future\n"
            "mlockall 0\n"
            "munlockall\n"
            "mseal @+2p 1p\n"
            "mincore @ 0\n"
            "madvise @ 1p guard_install\n");
}

// Random valid ops survive op_text -> parse_script unchanged.
TEST(opscript_serialize, RandomRoundTrip) {
  std::mt19937_64 rng(12345);
  auto pick = [&](uint64_t n) { return rng() % n; };
  auto num = [&]() -> uint64_t {
    switch (pick(4)) {
      case 0: return pick(16) * kPageSize;
      case 1: return pick(10);
      case 2: return pick(1ULL << 20);
      default: return rng();
    }
  };
  auto addr = [&]() { return pick(5) == 0 ? Addr::null() : Addr::at(pick(2) ? pick(64) * kPageSize : pick(1ULL << 40)); };
  Script s;
  Op f;
  f.kind = OpKind::kFile;
  f.has_file = true;
  f.file = "f0";
  f.len = 2 * kPageSize;
  s.ops.push_back(f);
  std::vector<std::string> spaces = {"main"};
  for (int i = 0; i < 3000; ++i) {
    Op op;
    op.kind = kAllOpKinds[pick(std::size(kAllOpKinds))];
    switch (op.kind) {
      case OpKind::kMmap:
        op.addr = addr();
        op.len = num();
        op.prot = static_cast<unsigned>(pick(8));
        op.flags = (pick(2) ? mmap_flag::kPrivate : mmap_flag::kShared) | static_cast<unsigned>(pick(64) << 3);
        if (pick(2)) {
          op.has_file = true;
          op.file = "f0";
          op.offset = num();
        } else {
          op.flags |= mmap_flag::kAnon;
        }
        break;
      case OpKind::kMremap:
        op.addr = addr();
        op.len = num();
        op.new_len = num();
        op.flags = static_cast<unsigned>(pick(8));
        if (pick(2)) op.new_addr = Addr::at(num());
        break;
      case OpKind::kMadvise:
        op.addr = addr();
        op.len = num();
        op.advice = kAllAdvice[pick(std::size(kAllAdvice))];
        break;
      case OpKind::kMprotect:
        op.addr = addr();
        op.len = num();
        op.prot = static_cast<unsigned>(pick(8));
        break;
      case OpKind::kMlock2:
        op.onfault = pick(2);
        [[fallthrough]];
      case OpKind::kMunmap:
      case OpKind::kMlock:
      case OpKind::kMunlock:
      case OpKind::kMseal:
      case OpKind::kMincore:
        op.addr = addr();
        op.len = num();
        break;
      case OpKind::kFork:
        op.space = (pick(2) ? "s" : "S_x") + std::to_string(spaces.size());
        spaces.push_back(op.space);
        break;
      case OpKind::kUse:
        op.space = spaces[pick(spaces.size())];
        break;
      case OpKind::kMlockall:
        op.flags = static_cast<unsigned>(pick(8));
        break;
      case OpKind::kMunlockall:
        break;
      case OpKind::kFile:  // only f0 exists; ftruncate it instead
      case OpKind::kFtruncate:
        op.kind = OpKind::kFtruncate;
        op.has_file = true;
        op.file = "f0";
        op.len = num();
        break;
      case OpKind::kWrite:
        op.byte = static_cast<uint8_t>(pick(256));
        [[fallthrough]];
      case OpKind::kRead:
        op.addr = Addr::at(pick(1ULL << 30));
        op.len = pick(3 * kPageSize);
        break;
      case OpKind::kMaps:
        break;
    }
    s.ops.push_back(op);
  }
  auto r = parse_script(script_text(s));
  ASSERT_TRUE(r.ok()) << r.error_text();
  ASSERT_EQ(r.script.ops.size(), s.ops.size());
  for (size_t i = 0; i < s.ops.size(); ++i) {
    Op want = s.ops[i];
    want.line = static_cast<int>(i + 1);
    ASSERT_TRUE(r.script.ops[i] == want) << "op " << i << ": " << op_text(s.ops[i]) << " -> "
                                         << op_text(r.script.ops[i]);
  }
}

}  // namespace
}  // namespace vmspace::opscript
