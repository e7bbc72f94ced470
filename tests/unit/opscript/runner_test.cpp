// run_script with a scripted fake executor: argument translation, output
// order, `maps`, `final maps:`, and the window rule.
#include "opscript/runner.h"

#include <cerrno>

#include <gtest/gtest.h>

#include "opscript/parse.h"

namespace vmspace::opscript {
namespace {

class FakeExecutor final : public Executor {
 public:
  std::vector<std::string> calls;
  std::vector<MapEntry> mappings;
  OpResult next = OpResult::ok();

  OpResult mmap(uint64_t addr, uint64_t len, unsigned prot, unsigned flags, const std::string* file,
                uint64_t offset) override {
    calls.push_back("mmap " + hex(addr) + " " + hex(len) + " " + std::to_string(prot) + " " + std::to_string(flags) +
                    " " + (file ? *file : "-") + " " + hex(offset));
    return next;
  }
  OpResult munmap(uint64_t addr, uint64_t len) override { return rec("munmap", addr, len); }
  OpResult mprotect(uint64_t addr, uint64_t len, unsigned prot) override {
    return rec("mprotect", addr, len, std::to_string(prot));
  }
  OpResult madvise(uint64_t addr, uint64_t len, Advice a) override { return rec("madvise", addr, len, advice_name(a)); }
  OpResult mremap(uint64_t o, uint64_t ol, uint64_t nl, unsigned flags, uint64_t n) override {
    return rec("mremap", o, ol, hex(nl) + " " + std::to_string(flags) + " " + hex(n));
  }
  OpResult mlock(uint64_t addr, uint64_t len) override { return rec("mlock", addr, len); }
  OpResult munlock(uint64_t addr, uint64_t len) override { return rec("munlock", addr, len); }
  OpResult mlock2(uint64_t addr, uint64_t len, bool onfault) override {
    return rec("mlock2", addr, len, onfault ? "onfault" : "0");
  }
  OpResult mlockall(unsigned flags) override {
    calls.push_back("mlockall " + std::to_string(flags));
    return next;
  }
  OpResult munlockall() override {
    calls.push_back("munlockall");
    return next;
  }
  OpResult mseal(uint64_t addr, uint64_t len) override { return rec("mseal", addr, len); }
  OpResult mincore(uint64_t addr, uint64_t len) override {
    rec("mincore", addr, len);
    return next.kind == OpResult::Kind::kOk ? OpResult::vector(std::string(len / kPageSize, '1')) : next;
  }
  // Spaces: `fork_ok` says whether fork succeeds; maps() of a space other
  // than main returns `other_mappings`.
  OpResult fork(const std::string& name) override {
    calls.push_back("fork " + name);
    return fork_ok ? OpResult::ok() : OpResult::unsupported();
  }
  OpResult use(const std::string& name) override {
    calls.push_back("use " + name);
    current = name;
    return OpResult::ok();
  }
  bool fork_ok = true;
  std::string current = "main";
  std::vector<MapEntry> other_mappings;
  OpResult file(const std::string& name, uint64_t size) override { return rec("file " + name, 0, size); }
  OpResult ftruncate(const std::string& name, uint64_t size) override { return rec("ftruncate " + name, 0, size); }
  OpResult write(uint64_t addr, uint64_t len, uint8_t byte) override {
    return rec("write", addr, len, std::to_string(byte));
  }
  OpResult read(uint64_t addr, uint64_t len) override { return rec("read", addr, len); }
  std::vector<MapEntry> maps() override {
    calls.push_back("maps");
    return current == "main" ? mappings : other_mappings;
  }

 private:
  OpResult rec(const std::string& what, uint64_t a, uint64_t l, const std::string& extra = "") {
    calls.push_back(what + " " + hex(a) + " " + hex(l) + (extra.empty() ? "" : " " + extra));
    return next;
  }
};

Script parse_ok(std::string_view text) {
  auto r = parse_script(text);
  EXPECT_TRUE(r.ok()) << r.error_text();
  return r.script;
}

TEST(opscript_runner, TranslatesAddressesAndPrintsResults) {
  const Window w{0x200000000000};
  FakeExecutor ex;
  ex.next = OpResult::address(0x200000004000);
  auto lines = run_script(parse_ok("mmap @+4p 2p rw- private,anon\nmmap - 1p r-- shared,anon\n"), ex, w);
  EXPECT_EQ(lines, (std::vector<std::string>{"1: = @+0x4000", "2: = @+0x4000", "final maps:"}));
  ASSERT_EQ(ex.calls.size(), 3u);
  EXPECT_EQ(ex.calls[0], "mmap 0x200000004000 0x2000 3 5 - 0x0");
  EXPECT_EQ(ex.calls[1], "mmap 0x0 0x1000 1 6 - 0x0");
  EXPECT_EQ(ex.calls[2], "maps");
}

TEST(opscript_runner, EveryOpReachesTheExecutor) {
  const Window w{0x100000000000};
  FakeExecutor ex;
  auto lines = run_script(parse_ok("file f 2p\n"
                                   "mmap @ 1p rw- shared,fixed f 0x1000\n"
                                   "munmap @+1p 1p\n"
                                   "mprotect @ 1p r--\n"
                                   "madvise @ 1p willneed\n"
                                   "mremap @ 1p 2p maymove,fixed @+8p\n"
                                   "mremap @ 1p 2p 0\n"
                                   "mlock @ 1p\n"
                                   "munlock @ 1p\n"
                                   "mlock2 @ 1p onfault\n"
                                   "ftruncate f 1p\n"
                                   "write @+1 2 7\n"
                                   "read @+1 2\n"),
                          ex, w);
  EXPECT_EQ(lines.size(), 14u);
  EXPECT_EQ(lines[12], "13: = 0");
  EXPECT_EQ(lines[13], "final maps:");
  const std::vector<std::string> want = {
      "file f 0x0 0x2000",
      "mmap 0x100000000000 0x1000 3 10 f 0x1000",
      "munmap 0x100000001000 0x1000",
      "mprotect 0x100000000000 0x1000 1",
      "madvise 0x100000000000 0x1000 willneed",
      "mremap 0x100000000000 0x1000 0x2000 3 0x100000008000",
      "mremap 0x100000000000 0x1000 0x2000 0 0x0",
      "mlock 0x100000000000 0x1000",
      "munlock 0x100000000000 0x1000",
      "mlock2 0x100000000000 0x1000 onfault",
      "ftruncate f 0x0 0x1000",
      "write 0x100000000001 0x2 7",
      "read 0x100000000001 0x2",
      "maps",
  };
  EXPECT_EQ(ex.calls, want);
}

TEST(opscript_runner, MapsOpPrintsWindowMappingsThenZero) {
  const Window w{};
  FakeExecutor ex;
  ex.mappings = {
      {w.base + 0x4000, w.base + 0x8000, "rw-p", 0, "[anon]"},
      {0x7f0000000000, 0x7f0000002000, "r-xp", 0, "/usr/lib/libc.so.6"},
      {w.base, w.base + 0x2000, "r--s", 0x1000, "data"},
  };
  ex.next = OpResult::error(ENOMEM);
  auto lines = run_script(parse_ok("munmap @ 1p\nmaps\n"), ex, w);
  const std::vector<std::string> want = {
      "1: = -ENOMEM",
      "@+0x0-@+0x2000 r--s 0x1000 data",
      "@+0x4000-@+0x8000 rw-p 0x0 [anon]",
      "2: = 0",
      "final maps:",
      "@+0x0-@+0x2000 r--s 0x1000 data",
      "@+0x4000-@+0x8000 rw-p 0x0 [anon]",
  };
  EXPECT_EQ(lines, want);
}

TEST(opscript_runner, RangesOutsideTheWindowAreUnsupported) {
  const Window w{};
  FakeExecutor ex;
  auto lines = run_script(parse_ok("munmap - 1p\n"                           // NULL
                                   "munmap @+0xffffffffff 2\n"               // crosses the window end
                                   "mprotect @+0x10000000000 1p r--\n"       // past the end
                                   "madvise @+0xfffffff000 0xffffffffffffffff dontneed\n"  // wraps
                                   "mmap - 1p rw- private,anon,fixed\n"      // fixed at NULL
                                   "mremap @ 1p 1p maymove,fixed -\n"        // fixed NEW at NULL
                                   "mmap @+0x20000000000 1p rw- private,anon\n"  // a hint: fine
                                   "munmap @+0xfffffff000 1p\n"              // last page: fine
                                   "mremap @ 1p 2p maymove\n"),              // kernel picks: fine
                          ex, w);
  const std::vector<std::string> want = {
      "1: = unsupported", "2: = unsupported", "3: = unsupported", "4: = unsupported", "5: = unsupported",
      "6: = unsupported", "7: = 0",           "8: = 0",           "9: = 0",           "final maps:",
  };
  EXPECT_EQ(lines, want);
  EXPECT_EQ(ex.calls.size(), 4u);  // three ops and the final maps
}

TEST(opscript_runner, StreamingEmitMatchesVector) {
  const Window w{};
  FakeExecutor ex;
  Script s = parse_ok("maps\nmunmap @ 1p\n");
  std::vector<std::string> streamed;
  run_script(s, ex, w, [&](std::string_view l) { streamed.emplace_back(l); });
  EXPECT_EQ(streamed, run_script(s, ex, w));
}


TEST(opscript_runner, Version11OpsReachTheExecutor) {
  const Window w{0x100000000000};
  FakeExecutor ex;
  auto lines = run_script(parse_ok("mlockall current,onfault\n"
                                   "munlockall\n"
                                   "mseal @+1p 2p\n"
                                   "mincore @ 3p\n"
                                   "mincore @ 0\n"
                                   "madvise @ 1p guard_install\n"),
                          ex, w);
  const std::vector<std::string> want_lines = {
      "1: = 0", "2: = 0", "3: = 0", "4: = 0 111", "5: = 0", "6: = 0", "final maps:",
  };
  EXPECT_EQ(lines, want_lines);
  const std::vector<std::string> want = {
      "mlockall 5",
      "munlockall",
      "mseal 0x100000001000 0x2000",
      "mincore 0x100000000000 0x3000",
      "mincore 0x100000000000 0x0",
      "madvise 0x100000000000 0x1000 guard_install",
      "maps",
  };
  EXPECT_EQ(ex.calls, want);
}

TEST(opscript_runner, MincoreAndMsealFollowTheWindowRule) {
  const Window w{};
  FakeExecutor ex;
  auto lines = run_script(parse_ok("mseal - 1p\n"
                                   "mincore @+0xfffffff000 2p\n"
                                   "mincore @+0xfffffff000 1p\n"
                                   "mlockall current\n"),
                          ex, w);
  const std::vector<std::string> want = {"1: = unsupported", "2: = unsupported", "3: = 0 1", "4: = 0",
                                         "final maps:"};
  EXPECT_EQ(lines, want);
}

TEST(opscript_runner, ErrorsOfTheNewOps) {
  const Window w{};
  FakeExecutor ex;
  ex.next = OpResult::error(EPERM);
  auto lines = run_script(parse_ok("mseal @ 1p\nmincore @ 1p\nmlockall future\n"), ex, w);
  EXPECT_EQ(lines, (std::vector<std::string>{"1: = -EPERM", "2: = -EPERM", "3: = -EPERM", "final maps:"}));
}

// Spaces: ops go to the current space; after the last op come main's final
// maps and then every forked space's, in creation order.
TEST(opscript_runner, ForkAndUse) {
  const Window w{};
  FakeExecutor ex;
  ex.mappings = {{w.base, w.base + 0x1000, "rw-p", 0, "[anon]"}};
  ex.other_mappings = {{w.base + 0x4000, w.base + 0x5000, "r--p", 0, "[anon]"}};
  auto lines = run_script(parse_ok("fork a\n"
                                   "use a\n"
                                   "maps\n"
                                   "fork b\n"
                                   "munmap @ 1p\n"),
                          ex, w);
  const std::vector<std::string> want = {
      "1: = 0",
      "2: = 0",
      "@+0x4000-@+0x5000 r--p 0x0 [anon]",
      "3: = 0",
      "4: = 0",
      "5: = 0",
      "final maps:",
      "@+0x0-@+0x1000 rw-p 0x0 [anon]",
      "final maps a:",
      "@+0x4000-@+0x5000 r--p 0x0 [anon]",
      "final maps b:",
      "@+0x4000-@+0x5000 r--p 0x0 [anon]",
  };
  EXPECT_EQ(lines, want);
  const std::vector<std::string> calls = {
      "fork a", "use a", "maps", "fork b", "munmap 0x200000000000 0x1000",
      "use main", "maps", "use a", "maps", "use b", "maps",
  };
  EXPECT_EQ(ex.calls, calls);
}

// A side that cannot fork: the ops in the missing space print
// "= unsupported" without running (file and ftruncate run: files belong to
// no space), its final maps block is empty, and main carries on.
TEST(opscript_runner, OpsInASpaceThatDoesNotExistAreUnsupported) {
  const Window w{};
  FakeExecutor ex;
  ex.fork_ok = false;
  ex.mappings = {{w.base, w.base + 0x1000, "rw-p", 0, "[anon]"}};
  auto lines = run_script(parse_ok("fork a\n"
                                   "use a\n"
                                   "munmap @ 1p\n"
                                   "maps\n"
                                   "file f 1p\n"
                                   "fork b\n"
                                   "use main\n"
                                   "mprotect @ 1p r--\n"
                                   "use b\n"),
                          ex, w);
  const std::vector<std::string> want = {
      "1: = unsupported", "2: = unsupported", "3: = unsupported", "4: = unsupported", "5: = 0",
      "6: = unsupported", "7: = 0",           "8: = 0",           "9: = unsupported", "final maps:",
      "@+0x0-@+0x1000 rw-p 0x0 [anon]",       "final maps a:",    "final maps b:",
  };
  EXPECT_EQ(lines, want);
  const std::vector<std::string> calls = {
      "fork a", "file f 0x0 0x1000", "use main", "mprotect 0x200000000000 0x1000 1", "use main", "maps",
  };
  EXPECT_EQ(ex.calls, calls);
}

// Without a fork nothing changes: no space headers, no use calls.
TEST(opscript_runner, NoForkNoSpaceHeaders) {
  const Window w{};
  FakeExecutor ex;
  auto lines = run_script(parse_ok("use main\nmaps\n"), ex, w);
  EXPECT_EQ(lines, (std::vector<std::string>{"1: = 0", "2: = 0", "final maps:"}));
  EXPECT_EQ(ex.calls, (std::vector<std::string>{"use main", "maps", "maps"}));
}

}  // namespace
}  // namespace vmspace::opscript
