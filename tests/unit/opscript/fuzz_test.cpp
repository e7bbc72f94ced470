// fuzz-kernel's library: the script generator (deterministic, valid,
// covering the subtle cases) and the shrinker (with fake executors that
// "diverge" on specific ops, so no kernel is involved).
#include "opscript/fuzz.h"

#include <map>
#include <set>

#include <gtest/gtest.h>

#include "opscript/parse.h"
#include "opscript/serialize.h"

namespace vmspace::opscript::fuzz {
namespace {

constexpr uint64_t P = kPageSize;

bool kind_enabled(OpKind k) {
  for (OpKind e : kEnabledOps)
    if (e == k) return true;
  return false;
}

TEST(opscript_fuzz, RunSeeds) {
  EXPECT_EQ(run_seed(1, 0), 1u);  // --seed <run seed> --runs 1 replays a run
  EXPECT_EQ(run_seed(12345, 0), 12345u);
  std::set<uint64_t> seen;
  for (uint64_t s = 0; s < 20; ++s)
    for (uint64_t r = 0; r < 200; ++r) seen.insert(run_seed(s, r));
  EXPECT_EQ(seen.size(), 20u * 200u);  // nearby session seeds do not repeat each other's runs
}

TEST(opscript_fuzz, Deterministic) {
  for (uint64_t seed : {0ull, 1ull, 42ull, 0xdeadbeefull}) {
    Script a = generate_script(seed);
    Script b = generate_script(seed);
    ASSERT_EQ(a.ops.size(), 150u);
    EXPECT_TRUE(a.ops == b.ops) << "seed " << seed;
    EXPECT_EQ(script_text(a), script_text(b));
  }
  EXPECT_NE(script_text(generate_script(1)), script_text(generate_script(2)));
  GenOptions small;
  small.ops = 7;
  EXPECT_EQ(generate_script(3, small).ops.size(), 7u);
}

// Every generated script parses back to the same ops, uses only the
// enabled kinds and only the mmap forms the library implements today.
TEST(opscript_fuzz, ValidAndRoundTrips) {
  for (uint64_t seed = 0; seed < 300; ++seed) {
    Script s = generate_script(run_seed(99, seed));
    std::string text = script_text(s);
    ParseResult p = parse_script(text);
    ASSERT_TRUE(p.ok()) << "seed " << seed << ":\n" << p.error_text() << text;
    ASSERT_EQ(p.script.ops.size(), s.ops.size());
    for (size_t i = 0; i < s.ops.size(); ++i) {
      const Op& op = s.ops[i];
      ASSERT_TRUE(p.script.ops[i] == op) << "seed " << seed << " op " << i + 1 << ": " << op_text(op);
      ASSERT_EQ(op.line, static_cast<int>(i + 1));
      ASSERT_TRUE(kind_enabled(op.kind)) << op_text(op);
      if (op.kind == OpKind::kMmap) {
        EXPECT_FALSE(op.has_file) << op_text(op);
        EXPECT_TRUE(op.flags & mmap_flag::kAnon) << op_text(op);
        EXPECT_EQ(op.flags & (mmap_flag::kPopulate | mmap_flag::kLocked) & ~kExtraMmapFlags, 0u) << op_text(op);
      }
    }
  }
}

// The op kinds that are not enabled yet also generate valid scripts, so
// enabling one is a one-line change to kEnabledOps.
TEST(opscript_fuzz, EveryKindRoundTrips) {
  GenOptions all;
  all.kinds = {OpKind::kMmap,  OpKind::kMunmap, OpKind::kMprotect, OpKind::kMadvise, OpKind::kMremap,
               OpKind::kMlock, OpKind::kMunlock, OpKind::kMlock2,  OpKind::kFile,    OpKind::kFtruncate,
               OpKind::kWrite, OpKind::kRead,   OpKind::kMaps};
  all.extra_mmap_flags = mmap_flag::kPopulate | mmap_flag::kLocked;
  std::set<OpKind> kinds;
  bool file_mmap = false, populate = false;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Script s = generate_script(seed, all);
    std::string text = script_text(s);
    ParseResult p = parse_script(text);
    ASSERT_TRUE(p.ok()) << "seed " << seed << ":\n" << p.error_text() << text;
    ASSERT_EQ(p.script.ops.size(), s.ops.size());
    for (size_t i = 0; i < s.ops.size(); ++i)
      ASSERT_TRUE(p.script.ops[i] == s.ops[i]) << "seed " << seed << " op " << i + 1 << ": " << op_text(s.ops[i]);
    for (const Op& op : s.ops) {
      kinds.insert(op.kind);
      if (op.kind == OpKind::kMmap && op.has_file) file_mmap = true;
      if (op.kind == OpKind::kMmap && (op.flags & mmap_flag::kPopulate)) populate = true;
      if (op.kind == OpKind::kRead || op.kind == OpKind::kWrite) {
        ASSERT_LE(op.len, 64 * P) << op_text(op);
      }
    }
  }
  EXPECT_EQ(kinds.size(), all.kinds.size());
  EXPECT_TRUE(file_mmap);
  EXPECT_TRUE(populate);
}

// The generator reaches the cases the fuzzer is for.
TEST(opscript_fuzz, CoversSubtleCases) {
  std::map<std::string, int> seen;
  auto note = [&](const char* what, bool cond) {
    if (cond) ++seen[what];
  };
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Script s = generate_script(seed);
    for (size_t i = 0; i < s.ops.size(); ++i) {
      const Op& op = s.ops[i];
      bool ranged = op.kind != OpKind::kMaps;
      if (op.kind == OpKind::kMmap) {
        note("shared", op.flags & mmap_flag::kShared);
        note("private", op.flags & mmap_flag::kPrivate);
        note("fixed", (op.flags & mmap_flag::kFixed) && !(op.flags & mmap_flag::kNoreplace));
        note("noreplace", op.flags & mmap_flag::kNoreplace);
        note("fixed+noreplace", (op.flags & mmap_flag::kNoreplace) && (op.flags & mmap_flag::kFixed));
        note("hint", !(op.flags & (mmap_flag::kFixed | mmap_flag::kNoreplace)) && !op.addr.is_null);
        note("null", op.addr.is_null);
        note("growsdown", op.flags & mmap_flag::kGrowsdown);
        note("noreserve", op.flags & mmap_flag::kNoreserve);
      }
      if (ranged) {
        note("len 0", op.len == 0);
        note("len 1", op.len == 1);
        note("unaligned len", op.len % P != 0 && op.len > P && op.len < (1ull << 40));
        note("huge len", op.len == 0xfffffffffffff000ull);
        note("unaligned addr", !op.addr.is_null && op.addr.offset % P != 0);
        note("addr in the first 256 pages", !op.addr.is_null && op.addr.offset < 256 * P);
      }
      if (op.kind == OpKind::kMadvise) seen[std::string("advice ") + advice_name(op.advice)]++;
      if (op.kind == OpKind::kMprotect) seen[std::string("mprotect ") + prot_text(op.prot)]++;
      seen[std::string("op ") + op_name(op.kind)]++;
      // The same range mmapped and then partly mprotected back and forth.
      if (op.kind == OpKind::kMprotect && i >= 1) {
        for (size_t j = 0; j < i; ++j) {
          const Op& prev = s.ops[j];
          if (prev.kind == OpKind::kMprotect && prev.addr == op.addr && prev.len == op.len && prev.prot != op.prot)
            ++seen["mprotect again"];
        }
      }
    }
  }
  for (const char* what :
       {"shared", "private", "fixed", "noreplace", "fixed+noreplace", "hint", "null", "growsdown", "noreserve", "len 0",
        "len 1", "unaligned len", "huge len", "unaligned addr", "op mmap", "op munmap", "op mprotect", "op madvise",
        "op maps", "mprotect again", "advice normal", "advice random", "advice sequential", "advice willneed",
        "advice dontneed", "advice free", "advice dontfork", "advice dofork", "advice dontdump", "advice dodump",
        "mprotect ---", "mprotect r--", "mprotect rw-", "mprotect r-x", "mprotect rwx"})
    EXPECT_GT(seen[what], 0) << what;
  // Biased toward the region, with rare NULL/hint mmaps.
  EXPECT_GT(seen["addr in the first 256 pages"], 200 * 100);
  EXPECT_LT(seen["null"] + seen["hint"], seen["op mmap"] / 8);
}

// --- the shrinker, with fake executors

// Remembers nothing; every op succeeds. `bug` makes it answer -EINVAL to
// ops matching a predicate (after `armed` became true, if `needs_arming`).
class FakeExecutor final : public Executor {
 public:
  std::function<bool(const std::string& kind, uint64_t addr, uint64_t len, unsigned extra)> bug;
  std::function<bool(const std::string& kind, uint64_t addr, uint64_t len, unsigned extra)> arm;
  bool armed = false;

  OpResult check(const std::string& kind, uint64_t addr, uint64_t len, unsigned extra) {
    if (arm && arm(kind, addr, len, extra)) armed = true;
    if (bug && (armed || !arm) && bug(kind, addr, len, extra)) return OpResult::error(22);
    return OpResult::ok();
  }
  OpResult mmap(uint64_t addr, uint64_t len, unsigned prot, unsigned flags, const std::string*, uint64_t) override {
    OpResult r = check("mmap", addr, len, flags | (prot << 16));
    return r == OpResult::ok() ? OpResult::address(addr) : r;
  }
  OpResult munmap(uint64_t a, uint64_t l) override { return check("munmap", a, l, 0); }
  OpResult mprotect(uint64_t a, uint64_t l, unsigned prot) override { return check("mprotect", a, l, prot); }
  OpResult madvise(uint64_t a, uint64_t l, Advice adv) override {
    return check("madvise", a, l, static_cast<unsigned>(adv));
  }
  OpResult mremap(uint64_t, uint64_t, uint64_t, unsigned, uint64_t) override { return OpResult::unsupported(); }
  OpResult mlock(uint64_t, uint64_t) override { return OpResult::unsupported(); }
  OpResult munlock(uint64_t, uint64_t) override { return OpResult::unsupported(); }
  OpResult mlock2(uint64_t, uint64_t, bool) override { return OpResult::unsupported(); }
  OpResult file(const std::string&, uint64_t) override { return OpResult::unsupported(); }
  OpResult ftruncate(const std::string&, uint64_t) override { return OpResult::unsupported(); }
  OpResult write(uint64_t, uint64_t, uint8_t) override { return OpResult::unsupported(); }
  OpResult read(uint64_t, uint64_t) override { return OpResult::unsupported(); }
  std::vector<MapEntry> maps() override { return {}; }
};

const Window kWin{};

ExecutorFactory plain() {
  return [] { return std::make_unique<FakeExecutor>(); };
}

Script parse_ok(std::string_view text) {
  ParseResult p = parse_script(text);
  EXPECT_TRUE(p.ok()) << p.error_text();
  return p.script;
}

TEST(opscript_fuzz, CompareExecutors) {
  Script s = parse_ok("mmap @ 2p rw- private,anon,fixed\nmadvise @ 1p dontfork\nmaps\n");
  ExecutorFactory buggy = [] {
    auto e = std::make_unique<FakeExecutor>();
    e->bug = [](const std::string& k, uint64_t, uint64_t, unsigned adv) {
      return k == "madvise" && adv == static_cast<unsigned>(Advice::kDontfork);
    };
    return e;
  };
  Comparison same = compare_executors(s, plain(), plain(), kWin);
  EXPECT_TRUE(same.ok);
  EXPECT_TRUE(same.equal);
  Comparison c = compare_executors(s, plain(), buggy, kWin);
  EXPECT_TRUE(c.ok);
  EXPECT_FALSE(c.equal);
  EXPECT_NE(std::find(c.diff.begin(), c.diff.end(), "-kernel 2: = 0"), c.diff.end());
  EXPECT_NE(std::find(c.diff.begin(), c.diff.end(), "+vmspace 2: = -EINVAL"), c.diff.end());
}

// One op kind "diverges" (madvise dontdump on any range): a whole random
// script shrinks to that single op, simplified to one page.
TEST(opscript_fuzz, ShrinksToOneSimplifiedOp) {
  ExecutorFactory buggy = [] {
    auto e = std::make_unique<FakeExecutor>();
    e->bug = [](const std::string& k, uint64_t, uint64_t, unsigned adv) {
      return k == "madvise" && adv == static_cast<unsigned>(Advice::kDontdump);
    };
    return e;
  };
  Interesting diverges = [&](const Script& s) { return !compare_executors(s, plain(), buggy, kWin).equal; };
  int shrunk = 0;
  for (uint64_t seed = 0; seed < 40 && shrunk < 5; ++seed) {
    Script s = generate_script(seed);
    if (!diverges(s)) continue;
    ShrinkStats stats;
    Script m = shrink(s, diverges, {}, &stats);
    ++shrunk;
    ASSERT_EQ(m.ops.size(), 1u) << script_text(m);
    EXPECT_EQ(m.ops[0].kind, OpKind::kMadvise);
    EXPECT_EQ(m.ops[0].advice, Advice::kDontdump);
    EXPECT_EQ(m.ops[0].len, P) << script_text(m);
    EXPECT_EQ(m.ops[0].line, 1);
    EXPECT_TRUE(diverges(m));
    EXPECT_EQ(stats.original_ops, 150u);
    EXPECT_EQ(stats.final_ops, 1u);
    EXPECT_GT(stats.evaluations, 0u);
    EXPECT_LT(stats.evaluations, 1000u);
  }
  EXPECT_EQ(shrunk, 5);
}

// A divergence that needs two ops in order (a growsdown mmap, then any
// munmap at a page-aligned address): both stay, everything else goes, and
// the flags that do not matter are dropped.
TEST(opscript_fuzz, ShrinkKeepsWhatTheDivergenceNeeds) {
  ExecutorFactory buggy = [] {
    auto e = std::make_unique<FakeExecutor>();
    e->arm = [](const std::string& k, uint64_t, uint64_t, unsigned flags) {
      return k == "mmap" && (flags & mmap_flag::kGrowsdown);
    };
    e->bug = [](const std::string& k, uint64_t addr, uint64_t, unsigned) { return k == "munmap" && addr % P == 0; };
    return e;
  };
  Interesting diverges = [&](const Script& s) { return !compare_executors(s, plain(), buggy, kWin).equal; };
  Script s = parse_ok(
      "mmap @ 8p rw- private,anon,fixed\n"
      "munmap @+1p 1p\n"  // before the growsdown mmap: no divergence yet
      "mprotect @ 2p r--\n"
      "mmap @+20p 0x3800 r-x private,anon,fixed,growsdown,noreserve\n"
      "maps\n"
      "madvise @ 1p dontneed\n"
      "munmap @+3 1p\n"  // unaligned: no divergence
      "mprotect @+1p 1p rw-\n"
      "munmap @+4p 0x2001\n"
      "maps\n"
      "munmap @+6p 1p\n");
  ASSERT_TRUE(diverges(s));
  Script m = shrink(s, diverges);
  EXPECT_EQ(script_text(m),
            "mmap @+20p 1p rw- private,anon,fixed,growsdown\n"
            "munmap @+6p 1p\n");
  EXPECT_TRUE(parse_script(script_text(m)).script.ops == m.ops);

  // When every op is needed, nothing is removed.
  Interesting all_three = [](const Script& c) { return c.ops.size() == 3; };
  Script three = parse_ok("maps\nmaps\nmaps\n");
  EXPECT_EQ(shrink(three, all_three).ops.size(), 3u);
}

TEST(opscript_fuzz, ShrinkRespectsTheEvaluationBudget) {
  size_t calls = 0;
  Interesting always = [&](const Script&) {
    ++calls;
    return false;
  };
  Script s = generate_script(5);
  ShrinkOptions opt;
  opt.max_evaluations = 17;
  ShrinkStats stats;
  Script m = shrink(s, always, opt, &stats);
  EXPECT_EQ(calls, 17u);
  EXPECT_EQ(stats.evaluations, 17u);
  EXPECT_TRUE(m.ops == s.ops);
}

}  // namespace
}  // namespace vmspace::opscript::fuzz
