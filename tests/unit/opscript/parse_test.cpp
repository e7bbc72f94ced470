#include "opscript/parse.h"

#include <gtest/gtest.h>

namespace vmspace::opscript {
namespace {

// The single error message of a one-error script.
std::string error_of(std::string_view text) {
  auto r = parse_script(text);
  EXPECT_EQ(r.errors.size(), 1u) << r.error_text();
  return r.errors.empty() ? std::string() : r.errors[0].to_string();
}

Op parse_one(std::string_view text) {
  auto r = parse_script(text);
  EXPECT_TRUE(r.ok()) << r.error_text();
  EXPECT_EQ(r.script.ops.size(), 1u);
  return r.script.ops.empty() ? Op{} : r.script.ops[0];
}

TEST(opscript_parse, Numbers) {
  EXPECT_EQ(parse_number("0"), 0u);
  EXPECT_EQ(parse_number("12288"), 12288u);
  EXPECT_EQ(parse_number("0x1f"), 0x1fu);
  EXPECT_EQ(parse_number("0xABc"), 0xabcu);
  EXPECT_EQ(parse_number("3p"), 12288u);
  EXPECT_EQ(parse_number("0x10p"), 65536u);
  EXPECT_EQ(parse_number("0p"), 0u);
  EXPECT_EQ(parse_number("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(parse_number("0xffffffffffffffff"), UINT64_MAX);
  EXPECT_FALSE(parse_number(""));
  EXPECT_FALSE(parse_number("p"));
  EXPECT_FALSE(parse_number("0x"));
  EXPECT_FALSE(parse_number("0xp"));
  EXPECT_FALSE(parse_number("-1"));
  EXPECT_FALSE(parse_number("12a"));
  EXPECT_FALSE(parse_number("0X10"));
  EXPECT_FALSE(parse_number("1pp"));
  EXPECT_FALSE(parse_number("18446744073709551616"));
  EXPECT_FALSE(parse_number("0x10000000000000000"));
  EXPECT_FALSE(parse_number("0x10000000000000p"));  // overflows when multiplied
}

TEST(opscript_parse, Addresses) {
  EXPECT_EQ(parse_addr("@"), Addr::at(0));
  EXPECT_EQ(parse_addr("@+0"), Addr::at(0));
  EXPECT_EQ(parse_addr("@+2p"), Addr::at(8192));
  EXPECT_EQ(parse_addr("@+0x1000"), Addr::at(4096));
  EXPECT_EQ(parse_addr("-"), Addr::null());
  EXPECT_FALSE(parse_addr("@+"));
  EXPECT_FALSE(parse_addr("@-1"));
  EXPECT_FALSE(parse_addr("0x1000"));
  EXPECT_FALSE(parse_addr("@1"));
  EXPECT_FALSE(parse_addr("--"));
}

TEST(opscript_parse, Prot) {
  EXPECT_EQ(parse_prot("---"), 0u);
  EXPECT_EQ(parse_prot("r--"), prot::kRead);
  EXPECT_EQ(parse_prot("rw-"), prot::kRead | prot::kWrite);
  EXPECT_EQ(parse_prot("rwx"), prot::kRead | prot::kWrite | prot::kExec);
  EXPECT_EQ(parse_prot("--x"), prot::kExec);
  EXPECT_FALSE(parse_prot("wr-"));
  EXPECT_FALSE(parse_prot("rw"));
  EXPECT_FALSE(parse_prot("rw-p"));
  EXPECT_FALSE(parse_prot("RW-"));
}

TEST(opscript_parse, SpecExample) {
  auto r = parse_script(
      "# split an anonymous mapping with mprotect, then merge it back\n"
      "mmap @ 8p rw- private,anon,fixed\n"
      "write @+2p 1p 0xab\n"
      "mprotect @+2p 2p r--\n"
      "maps\n"
      "mprotect @+2p 2p rw-\n"
      "read @+2p 1p\n");
  ASSERT_TRUE(r.ok()) << r.error_text();
  ASSERT_EQ(r.script.ops.size(), 6u);
  const auto& o = r.script.ops;
  EXPECT_EQ(o[0].kind, OpKind::kMmap);
  EXPECT_EQ(o[0].line, 2);
  EXPECT_EQ(o[0].addr, Addr::at(0));
  EXPECT_EQ(o[0].len, 8 * kPageSize);
  EXPECT_EQ(o[0].prot, prot::kRead | prot::kWrite);
  EXPECT_EQ(o[0].flags, mmap_flag::kPrivate | mmap_flag::kAnon | mmap_flag::kFixed);
  EXPECT_FALSE(o[0].has_file);
  EXPECT_EQ(o[1].kind, OpKind::kWrite);
  EXPECT_EQ(o[1].addr, Addr::at(2 * kPageSize));
  EXPECT_EQ(o[1].len, kPageSize);
  EXPECT_EQ(o[1].byte, 0xab);
  EXPECT_EQ(o[2].kind, OpKind::kMprotect);
  EXPECT_EQ(o[2].prot, prot::kRead);
  EXPECT_EQ(o[3].kind, OpKind::kMaps);
  EXPECT_EQ(o[3].line, 5);
  EXPECT_EQ(o[5].kind, OpKind::kRead);
  EXPECT_EQ(o[5].line, 7);
}

TEST(opscript_parse, CommentsBlankLinesAndWhitespace) {
  auto r = parse_script("\n   \n\t# only a comment\nmaps # trailing comment\n \t munmap\t@+1p   2p\t\r\n#\nmaps");
  ASSERT_TRUE(r.ok()) << r.error_text();
  ASSERT_EQ(r.script.ops.size(), 3u);
  EXPECT_EQ(r.script.ops[0].line, 4);
  EXPECT_EQ(r.script.ops[1].kind, OpKind::kMunmap);
  EXPECT_EQ(r.script.ops[1].line, 5);
  EXPECT_EQ(r.script.ops[1].addr, Addr::at(kPageSize));
  EXPECT_EQ(r.script.ops[1].len, 2 * kPageSize);
  EXPECT_EQ(r.script.ops[2].line, 7);  // no final newline
  EXPECT_TRUE(parse_script("").ok());
  EXPECT_TRUE(parse_script("").script.ops.empty());
}

TEST(opscript_parse, AllOperations) {
  auto r = parse_script(
      "file data 3p\n"
      "mmap - 2p r-x shared,populate,noreserve,locked data 0x1000\n"
      "mmap @+1p 1p --- private,anon,noreplace,growsdown\n"
      "madvise @ 1p dontneed\n"
      "mremap @ 1p 2p maymove,fixed,dontunmap @+0x10p\n"
      "mremap @ 1p 2p 0\n"
      "mlock @ 1p\n"
      "munlock @ 1p\n"
      "mlock2 @ 1p onfault\n"
      "mlock2 @ 1p 0\n"
      "ftruncate data 0\n"
      "write @ 0 255\n"
      "read @ 0\n");
  ASSERT_TRUE(r.ok()) << r.error_text();
  const auto& o = r.script.ops;
  ASSERT_EQ(o.size(), 13u);
  EXPECT_EQ(o[0].kind, OpKind::kFile);
  EXPECT_EQ(o[0].file, "data");
  EXPECT_EQ(o[0].len, 3 * kPageSize);
  EXPECT_TRUE(o[1].addr.is_null);
  EXPECT_EQ(o[1].prot, prot::kRead | prot::kExec);
  EXPECT_EQ(o[1].flags, mmap_flag::kShared | mmap_flag::kPopulate | mmap_flag::kNoreserve | mmap_flag::kLocked);
  EXPECT_TRUE(o[1].has_file);
  EXPECT_EQ(o[1].file, "data");
  EXPECT_EQ(o[1].offset, 0x1000u);
  EXPECT_EQ(o[2].flags, mmap_flag::kPrivate | mmap_flag::kAnon | mmap_flag::kNoreplace | mmap_flag::kGrowsdown);
  EXPECT_EQ(o[2].prot, 0u);
  EXPECT_EQ(o[3].advice, Advice::kDontneed);
  EXPECT_EQ(o[4].kind, OpKind::kMremap);
  EXPECT_EQ(o[4].len, kPageSize);
  EXPECT_EQ(o[4].new_len, 2 * kPageSize);
  EXPECT_EQ(o[4].flags, mremap_flag::kMaymove | mremap_flag::kFixed | mremap_flag::kDontunmap);
  EXPECT_EQ(o[4].new_addr, Addr::at(0x10000));
  EXPECT_EQ(o[5].flags, 0u);
  EXPECT_TRUE(o[5].new_addr.is_null);
  EXPECT_EQ(o[6].kind, OpKind::kMlock);
  EXPECT_EQ(o[7].kind, OpKind::kMunlock);
  EXPECT_TRUE(o[8].onfault);
  EXPECT_FALSE(o[9].onfault);
  EXPECT_EQ(o[10].kind, OpKind::kFtruncate);
  EXPECT_EQ(o[11].byte, 255);
  EXPECT_EQ(o[12].kind, OpKind::kRead);
}

TEST(opscript_parse, EveryAdvice) {
  const std::pair<const char*, Advice> all[] = {
      {"normal", Advice::kNormal},     {"random", Advice::kRandom},     {"sequential", Advice::kSequential},
      {"willneed", Advice::kWillneed}, {"dontneed", Advice::kDontneed}, {"free", Advice::kFree},
      {"dontfork", Advice::kDontfork}, {"dofork", Advice::kDofork},     {"dontdump", Advice::kDontdump},
      {"dodump", Advice::kDodump},
      // 1.1
      {"remove", Advice::kRemove},     {"cold", Advice::kCold},         {"pageout", Advice::kPageout},
      {"wipeonfork", Advice::kWipeonfork}, {"keeponfork", Advice::kKeeponfork}, {"hugepage", Advice::kHugepage},
      {"nohugepage", Advice::kNohugepage}, {"populate_read", Advice::kPopulateRead},
      {"populate_write", Advice::kPopulateWrite}, {"guard_install", Advice::kGuardInstall},
      {"guard_remove", Advice::kGuardRemove}, {"dontneed_locked", Advice::kDontneedLocked},
  };
  for (const auto& [name, advice] : all) {
    EXPECT_EQ(parse_one(std::string("madvise @ 1p ") + name).advice, advice) << name;
    EXPECT_STREQ(advice_name(advice), name);
  }
}

TEST(opscript_parse, ErrorsNameTheLine) {
  EXPECT_EQ(error_of("maps\n\n# c\nfrobnicate @ 1p\n"), "line 4: unknown operation 'frobnicate'");
  EXPECT_EQ(error_of("munmap @ 1p 2p"), "line 1: munmap: expected 2 arguments (munmap ADDR LEN), got 3");
  EXPECT_EQ(error_of("maps 1"), "line 1: maps: expected 0 arguments (maps), got 1");
  EXPECT_EQ(error_of("munmap @ 12q"),
            "line 1: bad LEN '12q' (expected a decimal or 0x hex number, optional trailing 'p')");
  EXPECT_EQ(error_of("munmap 0x1000 1p"), "line 1: bad ADDR '0x1000' (expected @, @+N or -)");
  EXPECT_EQ(error_of("mprotect @ 1p rw"),
            "line 1: bad PROT 'rw' (expected three characters: r or -, w or -, x or -)");
  EXPECT_EQ(error_of("write @ 1p 256"), "line 1: BYTE '256' is out of range (0-255)");
  EXPECT_EQ(error_of("write @ 1p 0x100"), "line 1: BYTE '0x100' is out of range (0-255)");
}

TEST(opscript_parse, MmapFlagErrors) {
  EXPECT_EQ(error_of("mmap @ 1p rw- private,shared,anon"),
            "line 1: mmap FLAGS 'private,shared,anon': both private and shared");
  EXPECT_EQ(error_of("mmap @ 1p rw- anon,fixed"),
            "line 1: mmap FLAGS 'anon,fixed': need exactly one of private or shared");
  EXPECT_EQ(error_of("mmap @ 1p rw- private,anon,huge"),
            "line 1: unknown mmap flag 'huge' (expected private, shared, anon, fixed, noreplace, populate, "
            "growsdown, noreserve, locked)");
  EXPECT_EQ(error_of("mmap @ 1p rw- private,,anon"), "line 1: bad mmap FLAGS 'private,,anon': empty flag");
  EXPECT_EQ(error_of("mmap @ 1p rw- private,anon,"), "line 1: bad mmap FLAGS 'private,anon,': empty flag");
  EXPECT_EQ(error_of("mmap @ 1p rw- private,anon,private"), "line 1: duplicate mmap flag 'private'");
  EXPECT_EQ(error_of("mmap @ 1p rw- private"), "line 1: mmap: FLAGS need anon when no FILE is given");
  EXPECT_EQ(error_of("file f 1p\nmmap @ 1p rw- private,anon f 0"), "line 2: mmap: anon together with a FILE");
  EXPECT_EQ(error_of("file f 1p\nmmap @ 1p rw- private f"),
            "line 2: mmap: FILE needs an OFFSET (mmap ADDR LEN PROT FLAGS [FILE OFFSET])");
  EXPECT_EQ(error_of("mmap @ 1p rw-"),
            "line 1: mmap: expected 4 or 6 arguments (mmap ADDR LEN PROT FLAGS [FILE OFFSET]), got 3");
  EXPECT_EQ(error_of("mmap @ 1p rw- private g 0"),
            "line 1: file 'g' is not declared (declare it with `file NAME SIZE` first)");
}

TEST(opscript_parse, OtherArgumentErrors) {
  EXPECT_EQ(error_of("mremap @ 1p 2p 1"),
            "line 1: unknown mremap flag '1' (expected 0, or maymove, fixed, dontunmap)");
  EXPECT_EQ(error_of("mremap @ 1p 2p 0,maymove"),
            "line 1: unknown mremap flag '0' (expected 0, or maymove, fixed, dontunmap)");
  EXPECT_EQ(error_of("mremap @ 1p 2p maymove,maymove"), "line 1: duplicate mremap flag 'maymove'");
  EXPECT_EQ(error_of("mremap @ 1p 2p"),
            "line 1: mremap: expected 4 or 5 arguments (mremap OLD OLDLEN NEWLEN FLAGS [NEW]), got 3");
  EXPECT_EQ(error_of("madvise @ 1p mergeable"),
            "line 1: unknown ADVICE 'mergeable' (expected normal, random, sequential, willneed, dontneed, free, "
            "dontfork, dofork, dontdump, dodump, remove, cold, pageout, wipeonfork, keeponfork, hugepage, "
            "nohugepage, populate_read, populate_write, guard_install, guard_remove, dontneed_locked)");
  EXPECT_EQ(error_of("mlock2 @ 1p 1"), "line 1: bad mlock2 flags '1' (expected onfault or 0)");
  EXPECT_EQ(error_of("file f 1p\nfile f 2p"), "line 2: file 'f' is already declared");
  EXPECT_EQ(error_of("ftruncate nosuch 0"),
            "line 1: file 'nosuch' is not declared (declare it with `file NAME SIZE` first)");
  EXPECT_EQ(error_of("file 9lives 1p"),
            "line 1: bad file name '9lives' (expected a letter or _ followed by letters, digits, _ . -; at most 200 "
            "characters)");
  EXPECT_EQ(error_of("file a/b 1p").substr(0, 26), "line 1: bad file name 'a/b");
  EXPECT_EQ(error_of("read - 1"), "line 1: read: ADDR must be @ or @+N, not -");
  EXPECT_EQ(error_of("write @+0xffffffffff 2 0"),
            "line 1: write: range @+1099511627775 length 2 extends past the 1 TiB window");
  EXPECT_TRUE(parse_script("write @+0xffffffffff 1 0").ok());
  EXPECT_TRUE(parse_script("read @+0x10000000000 0").ok());
}

TEST(opscript_parse, EveryMalformedLineIsReportedAndNothingRuns) {
  auto r = parse_script("maps\nbogus\nmmap @ 1p rw- private\nmunmap @\nmaps\n");
  ASSERT_EQ(r.errors.size(), 3u);
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_EQ(r.errors[1].line, 3);
  EXPECT_EQ(r.errors[2].line, 4);
  EXPECT_TRUE(r.script.ops.empty());
  EXPECT_EQ(r.error_text("x.ops:"),
            "x.ops:line 2: unknown operation 'bogus'\n"
            "x.ops:line 3: mmap: FLAGS need anon when no FILE is given\n"
            "x.ops:line 4: munmap: expected 2 arguments (munmap ADDR LEN), got 1\n");
}


// Op scripts 1.1: fork, use, mlockall, munlockall, mseal, mincore.
TEST(opscript_parse, Version11Operations) {
  auto r = parse_script(
      "fork child\n"
      "use child\n"
      "fork grand_child2\n"
      "use main\n"
      "use grand_child2\n"
      "fork 7\n"
      "mlockall current\n"
      "mlockall future,onfault\n"
      "mlockall onfault,current,future\n"
      "mlockall 0\n"
      "munlockall\n"
      "mseal @+1p 2p\n"
      "mseal - 0\n"
      "mincore @ 0x1001\n"
      "mincore @+0xfffffff000 1p\n");
  ASSERT_TRUE(r.ok()) << r.error_text();
  const auto& o = r.script.ops;
  ASSERT_EQ(o.size(), 15u);
  EXPECT_EQ(o[0].kind, OpKind::kFork);
  EXPECT_EQ(o[0].space, "child");
  EXPECT_EQ(o[1].kind, OpKind::kUse);
  EXPECT_EQ(o[1].space, "child");
  EXPECT_EQ(o[2].space, "grand_child2");
  EXPECT_EQ(o[3].kind, OpKind::kUse);
  EXPECT_EQ(o[3].space, "main");
  EXPECT_EQ(o[5].space, "7");  // letters, digits and _: a digit first is fine
  EXPECT_EQ(o[6].kind, OpKind::kMlockall);
  EXPECT_EQ(o[6].flags, mlockall_flag::kCurrent);
  EXPECT_EQ(o[7].flags, mlockall_flag::kFuture | mlockall_flag::kOnfault);
  EXPECT_EQ(o[8].flags, mlockall_flag::kCurrent | mlockall_flag::kFuture | mlockall_flag::kOnfault);
  EXPECT_EQ(o[9].flags, 0u);
  EXPECT_EQ(o[10].kind, OpKind::kMunlockall);
  EXPECT_EQ(o[11].kind, OpKind::kMseal);
  EXPECT_EQ(o[11].addr, Addr::at(kPageSize));
  EXPECT_EQ(o[11].len, 2 * kPageSize);
  EXPECT_TRUE(o[12].addr.is_null);  // the window rule, not the parser, refuses it
  EXPECT_EQ(o[13].kind, OpKind::kMincore);
  EXPECT_EQ(o[13].len, 0x1001u);
  EXPECT_EQ(o[14].addr, Addr::at(0xfffffff000));
  // The flag values are Linux's.
  EXPECT_EQ(mlockall_flag::kCurrent, 1u);
  EXPECT_EQ(mlockall_flag::kFuture, 2u);
  EXPECT_EQ(mlockall_flag::kOnfault, 4u);
}

TEST(opscript_parse, Version11Errors) {
  EXPECT_EQ(error_of("fork main"), "line 1: space 'main' already exists (fork needs a new NAME)");
  EXPECT_EQ(error_of("fork a\nmaps\nfork a"), "line 3: space 'a' already exists (fork needs a new NAME)");
  EXPECT_EQ(error_of("use b"), "line 1: space 'b' does not exist (create it with `fork b` first)");
  EXPECT_EQ(error_of("use b\nfork b"), "line 1: space 'b' does not exist (create it with `fork b` first)");
  EXPECT_EQ(error_of("fork a-b"), "line 1: bad space name 'a-b' (expected letters, digits and _)");
  EXPECT_EQ(error_of("use main.x"), "line 1: bad space name 'main.x' (expected letters, digits and _)");
  EXPECT_EQ(error_of("fork"), "line 1: fork: expected 1 argument (fork NAME), got 0");
  EXPECT_EQ(error_of("use a b"), "line 1: use: expected 1 argument (use NAME), got 2");
  EXPECT_EQ(error_of("mlockall"), "line 1: mlockall: expected 1 argument (mlockall FLAGS), got 0");
  EXPECT_EQ(error_of("mlockall current future"), "line 1: mlockall: expected 1 argument (mlockall FLAGS), got 2");
  EXPECT_EQ(error_of("mlockall past"), "line 1: unknown mlockall flag 'past' (expected current, future, onfault)");
  EXPECT_EQ(error_of("mlockall current,current"), "line 1: duplicate mlockall flag 'current'");
  EXPECT_EQ(error_of("mlockall current,"), "line 1: bad mlockall FLAGS 'current,': empty flag");
  EXPECT_EQ(error_of("mlockall 0,current"), "line 1: unknown mlockall flag '0' (expected current, future, onfault)");
  EXPECT_EQ(error_of("munlockall current"), "line 1: munlockall: expected 0 arguments (munlockall), got 1");
  EXPECT_EQ(error_of("mseal @"), "line 1: mseal: expected 2 arguments (mseal ADDR LEN), got 1");
  EXPECT_EQ(error_of("mseal @ 1p 0"), "line 1: mseal: expected 2 arguments (mseal ADDR LEN), got 3");
  EXPECT_EQ(error_of("mincore @ 1q"),
            "line 1: bad LEN '1q' (expected a decimal or 0x hex number, optional trailing 'p')");
  EXPECT_EQ(error_of("mincore 0 1p"), "line 1: bad ADDR '0' (expected @, @+N or -)");
  // A failed fork does not create the space: the use is an error too.
  auto r = parse_script("fork a-b\nuse a\n");
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_EQ(r.errors[1].line, 2);
}

// Scripts of version 1 parse as before: the 1.1 names are new operations,
// nothing else changed.
TEST(opscript_parse, Version11KeepsVersion1) {
  EXPECT_EQ(error_of("forks a"), "line 1: unknown operation 'forks'");
  EXPECT_TRUE(parse_script("use main\nmaps\n").ok());  // main always exists
}

}  // namespace
}  // namespace vmspace::opscript
