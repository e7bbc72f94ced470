// fuzz-kernel's library: the script generator (deterministic, valid,
// covering the subtle cases) and the shrinker (with fake executors that
// "diverge" on specific ops, so no kernel is involved).
#include "opscript/fuzz.h"

#include <map>
#include <set>
#include <string>
#include <string_view>

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

bool advice_enabled(Advice a) {
  for (Advice e : kEnabledAdvice)
    if (e == a) return true;
  return false;
}

// Every kind and every advice, as the tests of the pending ones generate.
GenOptions everything() {
  GenOptions all;
  all.kinds.assign(std::begin(kAllOpKinds), std::end(kAllOpKinds));
  all.advice.assign(std::begin(kAllAdvice), std::end(kAllAdvice));
  all.extra_mmap_flags = mmap_flag::kPopulate | mmap_flag::kLocked;
  return all;
}

bool overlaps(const Op& a, const Op& b) {
  if (a.addr.is_null || b.addr.is_null) return false;
  return a.addr.offset < b.addr.offset + std::max<uint64_t>(b.len, 1) &&
         b.addr.offset < a.addr.offset + std::max<uint64_t>(a.len, 1);
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
      if (op.kind == OpKind::kMadvise) {
        ASSERT_TRUE(advice_enabled(op.advice)) << op_text(op);
      }
      if (op.kind == OpKind::kMmap) {
        // A file mapping names a file and is not anonymous; others are.
        EXPECT_NE(op.has_file, static_cast<bool>(op.flags & mmap_flag::kAnon)) << op_text(op);
        EXPECT_EQ(op.flags & (mmap_flag::kPopulate | mmap_flag::kLocked) & ~kExtraMmapFlags, 0u) << op_text(op);
      }
    }
  }
}

// The op kinds that are not enabled yet also generate valid scripts, so
// enabling one is a one-line change to kEnabledOps.
TEST(opscript_fuzz, EveryKindRoundTrips) {
  const GenOptions all = everything();
  std::set<OpKind> kinds;
  std::set<Advice> advice;
  bool file_mmap = false, populate = false;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Script s = generate_script(seed, all);
    std::string text = script_text(s);
    ParseResult p = parse_script(text);
    ASSERT_TRUE(p.ok()) << "seed " << seed << ":\n" << p.error_text() << text;
    ASSERT_TRUE(well_formed(s));
    ASSERT_EQ(p.script.ops.size(), s.ops.size());
    for (size_t i = 0; i < s.ops.size(); ++i)
      ASSERT_TRUE(p.script.ops[i] == s.ops[i]) << "seed " << seed << " op " << i + 1 << ": " << op_text(s.ops[i]);
    size_t forks = 0;
    for (const Op& op : s.ops) {
      kinds.insert(op.kind);
      if (op.kind == OpKind::kMadvise) advice.insert(op.advice);
      if (op.kind == OpKind::kFork) ++forks;
      if (op.kind == OpKind::kMlockall) {
        ASSERT_NE(op.flags, 0u) << "mlockall 0 is an extension; not generated";
      }
      if (op.kind == OpKind::kMmap && op.has_file) file_mmap = true;
      if (op.kind == OpKind::kMmap && (op.flags & mmap_flag::kPopulate)) populate = true;
      if (op.kind == OpKind::kRead || op.kind == OpKind::kWrite) {
        ASSERT_LE(op.len, 64 * P) << op_text(op);
      }
    }
    ASSERT_LE(forks, 3u) << "at most four spaces (processes) a script";
  }
  EXPECT_EQ(kinds.size(), std::size(kAllOpKinds));
  EXPECT_EQ(advice.size(), std::size(kAllAdvice));
  EXPECT_TRUE(file_mmap);
  EXPECT_TRUE(populate);
}

// With the 1.1 operations enabled, the generator reaches the cases of the
// research note's section 9 (docs/research/linux-anon-surface.md).
TEST(opscript_fuzz, CoversVersion11Cases) {
  const GenOptions all = everything();
  std::map<std::string, int> seen;
  auto note = [&](const std::string& what, bool cond) {
    if (cond) ++seen[what];
  };
  for (uint64_t seed = 0; seed < 300; ++seed) {
    Script s = generate_script(run_seed(7, seed), all);
    std::string space = "main";
    std::set<std::string> written_in_child;
    for (size_t i = 0; i < s.ops.size(); ++i) {
      const Op& op = s.ops[i];
      if (op.kind == OpKind::kMlockall) seen["mlockall " + op_text(op).substr(9)]++;
      note("munlockall", op.kind == OpKind::kMunlockall);
      note("mincore len 0", op.kind == OpKind::kMincore && op.len == 0);
      note("mincore unaligned", op.kind == OpKind::kMincore && !op.addr.is_null && op.addr.offset % P != 0);
      note("mincore several pages", op.kind == OpKind::kMincore && op.len > 4 * P && op.len <= 256 * P);
      note("mseal one page", op.kind == OpKind::kMseal && op.len == P);
      note("mseal len 0", op.kind == OpKind::kMseal && op.len == 0);
      note("mremap fixed move", op.kind == OpKind::kMremap && (op.flags & mremap_flag::kFixed) && op.len == op.new_len);
      if (op.kind == OpKind::kUse) space = op.space;
      note("use main", op.kind == OpKind::kUse && op.space == "main");
      note("op in a forked space", op.kind != OpKind::kUse && space != "main");
      note("nested fork", op.kind == OpKind::kFork && space != "main");
      // What follows within a few ops, on an overlapping range.
      for (size_t j = i + 1; j < std::min(s.ops.size(), i + 6); ++j) {
        const Op& next = s.ops[j];
        if (!overlaps(op, next)) continue;
        const bool guard = op.kind == OpKind::kMadvise && op.advice == Advice::kGuardInstall;
        note("guard then mprotect", guard && next.kind == OpKind::kMprotect);
        note("guard then dontneed", guard && next.kind == OpKind::kMadvise && next.advice == Advice::kDontneed);
        note("guard then mremap", guard && next.kind == OpKind::kMremap);
        note("guard then read/write", guard && (next.kind == OpKind::kRead || next.kind == OpKind::kWrite));
        const bool dontunmap = op.kind == OpKind::kMremap && (op.flags & mremap_flag::kDontunmap);
        note("dontunmap then refault", dontunmap && (next.kind == OpKind::kRead || next.kind == OpKind::kWrite));
        note("seal then mprotect/munmap", op.kind == OpKind::kMseal &&
                                              (next.kind == OpKind::kMprotect || next.kind == OpKind::kMunmap));
        note("seal then madvise", op.kind == OpKind::kMseal && next.kind == OpKind::kMadvise);
        note("mlock then mremap", (op.kind == OpKind::kMlock || op.kind == OpKind::kMlock2) &&
                                      next.kind == OpKind::kMremap);
        note("dontneed then mincore", op.kind == OpKind::kMadvise && op.advice == Advice::kDontneed &&
                                          next.kind == OpKind::kMincore);
      }
      // populate over PROT_NONE: an earlier mmap or mprotect of --- on an overlapping range.
      if (op.kind == OpKind::kMadvise &&
          (op.advice == Advice::kPopulateRead || op.advice == Advice::kPopulateWrite)) {
        for (size_t j = 0; j < i; ++j)
          if ((s.ops[j].kind == OpKind::kMmap || s.ops[j].kind == OpKind::kMprotect) && s.ops[j].prot == 0 &&
              overlaps(s.ops[j], op))
            note("populate over ---", true);
      }
      // fork, write in the child, read in the parent (copy on write)
      if (op.kind == OpKind::kWrite && space != "main") written_in_child.insert(space);
      note("read in main after a child wrote", op.kind == OpKind::kRead && space == "main" &&
                                                   !written_in_child.empty());
      if (op.kind == OpKind::kMlock || op.kind == OpKind::kMunlock || op.kind == OpKind::kMlock2) {
        // across a hole: some earlier munmap inside the range
        for (size_t j = 0; j < i; ++j)
          if (s.ops[j].kind == OpKind::kMunmap && overlaps(s.ops[j], op) && s.ops[j].addr.offset > op.addr.offset)
            note("mlock across a hole", true);
      }
    }
  }
  for (const char* what :
       {"mlockall current", "mlockall future", "mlockall current,future", "mlockall current,onfault",
        "mlockall future,onfault", "mlockall current,future,onfault", "mlockall onfault", "munlockall",
        "mincore len 0", "mincore unaligned", "mincore several pages", "mseal one page", "mseal len 0",
        "mremap fixed move", "use main", "op in a forked space", "nested fork", "guard then mprotect",
        "guard then dontneed", "guard then mremap", "guard then read/write", "dontunmap then refault",
        "seal then mprotect/munmap", "seal then madvise", "mlock then mremap", "dontneed then mincore",
        "populate over ---", "read in main after a child wrote", "mlock across a hole"}) {
#if defined(__SANITIZE_ADDRESS__)
    // Under AddressSanitizer the generator never asks for MCL_CURRENT
    // (fuzz.cpp: the kernel side cannot lock the sanitizer's shadow).
    if (std::string_view(what).starts_with("mlockall current")) {
      EXPECT_EQ(seen[what], 0) << what;
      continue;
    }
#endif
    EXPECT_GT(seen[what], 0) << what;
  }
}

// fork and use are generated only when enabled; use only after a fork.
TEST(opscript_fuzz, ForkWithoutUseAndUseWithoutFork) {
  GenOptions only_fork = everything();
  only_fork.kinds.erase(std::find(only_fork.kinds.begin(), only_fork.kinds.end(), OpKind::kUse));
  GenOptions only_use = everything();
  only_use.kinds.erase(std::find(only_use.kinds.begin(), only_use.kinds.end(), OpKind::kFork));
  bool forked = false;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    for (const Op& op : generate_script(seed, only_fork).ops) {
      ASSERT_NE(op.kind, OpKind::kUse);
      forked |= op.kind == OpKind::kFork;
    }
    for (const Op& op : generate_script(seed, only_use).ops) {
      ASSERT_NE(op.kind, OpKind::kFork);
      ASSERT_NE(op.kind, OpKind::kUse);  // nothing to switch to
    }
  }
  EXPECT_TRUE(forked);
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
  OpResult mlockall(unsigned flags) override { return check("mlockall", 0, 0, flags); }
  OpResult munlockall() override { return check("munlockall", 0, 0, 0); }
  OpResult mseal(uint64_t a, uint64_t l) override { return check("mseal", a, l, 0); }
  OpResult mincore(uint64_t a, uint64_t l) override {
    OpResult r = check("mincore", a, l, 0);
    return r == OpResult::ok() ? OpResult::vector(std::string(l / P, '0')) : r;
  }
  OpResult fork(const std::string&) override { return check("fork", 0, 0, 0); }
  OpResult use(const std::string&) override { return OpResult::ok(); }
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


TEST(opscript_fuzz, WellFormed) {
  EXPECT_TRUE(well_formed(parse_ok("file f 1p\nmmap @ 1p r-- shared f 0\nfork a\nuse a\nuse main\n")));
  Script s = parse_ok("file f 1p\nmmap @ 1p r-- shared f 0\nftruncate f 0\nfork a\nuse a\n");
  Script no_file = s;
  no_file.ops.erase(no_file.ops.begin());
  EXPECT_FALSE(well_formed(no_file));  // mmap and ftruncate of an undeclared file
  Script no_fork = s;
  no_fork.ops.erase(no_fork.ops.begin() + 3);
  EXPECT_FALSE(well_formed(no_fork));  // use of a space never forked
  Script twice = s;
  twice.ops.push_back(s.ops[3]);
  EXPECT_FALSE(well_formed(twice));  // fork of an existing space
  Script main_again = s;
  main_again.ops[3].space = "main";
  EXPECT_FALSE(well_formed(main_again));
}

// A divergence in a forked space: the shrinker keeps the fork and the use
// it needs (never a `use` without its `fork`), drops the rest, and
// simplifies mlockall's flags.
TEST(opscript_fuzz, ShrinkKeepsForkAndUse) {
  // "Diverges" when an mseal runs while the current space is not main and
  // an mlockall with `current` came before it.
  Interesting diverges = [](const Script& c) {
    std::string space = "main";
    bool locked = false;
    for (const Op& op : c.ops) {
      if (op.kind == OpKind::kUse) space = op.space;
      if (op.kind == OpKind::kMlockall && (op.flags & mlockall_flag::kCurrent)) locked = true;
      if (op.kind == OpKind::kMseal && space != "main" && locked) return true;
    }
    return false;
  };
  Script s = parse_ok(
      "mmap @ 8p rw- private,anon,fixed\n"
      "fork a\n"
      "mlockall current,future,onfault\n"
      "fork b\n"
      "use b\n"
      "mincore @ 2p\n"
      "use a\n"
      "maps\n"
      "mseal @+1 0x1800\n"
      "munlockall\n");
  ASSERT_TRUE(diverges(s));
  Script m = shrink(s, diverges);
  EXPECT_EQ(script_text(m),
            "fork a\n"
            "mlockall current\n"
            "use a\n"
            "mseal @ 1p\n");
  EXPECT_TRUE(parse_script(script_text(m)).ok());
}

}  // namespace
}  // namespace vmspace::opscript::fuzz
