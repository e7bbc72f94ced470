// The host-kernel runner: scripts run in a forked child on the real kernel.
// These are sanity tests of the runner's own behaviour and formatting; the
// expected lines are what Linux does for these simple, stable cases.
#include "opscript/kernel_runner.h"

#include <dirent.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "opscript/fuzz.h"
#include "opscript/parse.h"
#include "opscript/serialize.h"

namespace vmspace::opscript {
namespace {

using Lines = std::vector<std::string>;

// Why a test of `mlockall current` may not run: the runner refuses it when
// its own memory is huge (AddressSanitizer's shadow).
constexpr const char* kHugeRunnerMemory =
    "mlockall(MCL_CURRENT) is unsupported here: the runner's own memory is too large (a sanitizer build?)";

std::string hash_line(size_t index, const std::vector<unsigned char>& bytes) {
  return format_op_line(index, OpResult::hash(fnv1a64_update(kFnvOffsetBasis, bytes.data(), bytes.size())), Window{});
}

std::vector<unsigned char> file_bytes(uint64_t from, uint64_t n) {
  std::vector<unsigned char> b;
  for (uint64_t i = from; i < from + n; ++i) b.push_back(static_cast<unsigned char>((i * 7 + 13) & 0xff));
  return b;
}

class opscript_kernel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kernel_runner_available()) GTEST_SKIP() << "kernel runner unavailable in this build (ThreadSanitizer)";
  }

  static Lines run(std::string_view text, const KernelRunOptions& opt = {}) {
    auto p = parse_script(text);
    EXPECT_TRUE(p.ok()) << p.error_text();
    auto r = run_on_kernel(p.script, opt);
    EXPECT_TRUE(r.ok) << r.error;
    return r.lines;
  }
};

TEST_F(opscript_kernel, SpecExample) {
  Lines got = run(
      "# split an anonymous mapping with mprotect, then merge it back\n"
      "mmap @ 8p rw- private,anon,fixed\n"
      "write @+2p 1p 0xab\n"
      "mprotect @+2p 2p r--\n"
      "maps\n"
      "mprotect @+2p 2p rw-\n"
      "read @+2p 1p\n");
  Lines want = {
      "1: = @+0x0",
      "2: = 0",
      "3: = 0",
      "@+0x0-@+0x2000 rw-p 0x0 [anon]",
      "@+0x2000-@+0x4000 r--p 0x0 [anon]",
      "@+0x4000-@+0x8000 rw-p 0x0 [anon]",
      "4: = 0",
      "5: = 0",
      hash_line(6, std::vector<unsigned char>(kPageSize, 0xab)),
      "final maps:",
      "@+0x0-@+0x8000 rw-p 0x0 [anon]",
  };
  EXPECT_EQ(got, want);
}

TEST_F(opscript_kernel, EmptyScriptPrintsEmptyFinalMaps) { EXPECT_EQ(run(""), (Lines{"final maps:"})); }

TEST_F(opscript_kernel, WriteToUnmappedIsMaperrAtTheFirstFaultingPage) {
  Lines got = run(
      "mmap @ 2p rw- private,anon,fixed\n"
      "write @+0x1800 2p 1\n"     // runs off the end of the mapping at @+0x2000
      "read @+0x1800 0x800\n"     // the bytes before the fault stay written
      "write @+0x10p 1 1\n");
  ASSERT_EQ(got.size(), 6u);
  EXPECT_EQ(got[0], "1: = @+0x0");
  EXPECT_EQ(got[1], "2: = SEGV_MAPERR @+0x2000");
  EXPECT_EQ(got[2], hash_line(3, std::vector<unsigned char>(0x800, 1)));
  EXPECT_EQ(got[3], "4: = SEGV_MAPERR @+0x10000");
  EXPECT_EQ(got[4], "final maps:");
  EXPECT_EQ(got[5], "@+0x0-@+0x2000 rw-p 0x0 [anon]");
}

TEST_F(opscript_kernel, AccessToProtectedPagesIsAccerr) {
  Lines got = run(
      "mmap @ 3p rw- private,anon,fixed\n"
      "mprotect @+1p 1p r--\n"
      "mprotect @+2p 1p ---\n"
      "write @+0xff0 0x20 7\n"   // crosses into the read-only page
      "read @+1p 1p\n"           // reading it is fine: zeros
      "read @+0x2ffe 1\n"        // PROT_NONE
      "read @+0xff0 0x10\n");    // the bytes before the fault were written
  Lines want = {
      "1: = @+0x0",
      "2: = 0",
      "3: = 0",
      "4: = SEGV_ACCERR @+0x1000",
      hash_line(5, std::vector<unsigned char>(kPageSize, 0)),
      "6: = SEGV_ACCERR @+0x2000",
      "",  // filled below
      "final maps:",
      "@+0x0-@+0x1000 rw-p 0x0 [anon]",
      "@+0x1000-@+0x2000 r--p 0x0 [anon]",
      "@+0x2000-@+0x3000 ---p 0x0 [anon]",
  };
  want[6] = hash_line(7, std::vector<unsigned char>(0x10, 7));
  EXPECT_EQ(got, want);
}

TEST_F(opscript_kernel, ReadSeesWrittenBytes) {
  Lines got = run(
      "mmap @ 1p rw- private,anon,fixed\n"
      "write @+0xff0 0x10 0x5a\n"
      "read @+0xfe0 0x20\n");
  std::vector<unsigned char> b(0x20, 0);
  std::fill(b.begin() + 0x10, b.end(), 0x5a);
  ASSERT_GE(got.size(), 3u);
  EXPECT_EQ(got[2], hash_line(3, b));
}

TEST_F(opscript_kernel, FileMappingsAndSigbus) {
  Lines got = run(
      "file data 2p\n"
      "mmap @ 4p r-- shared,fixed data 0x1000\n"  // file page 1, then beyond EOF
      "read @ 1p\n"
      "read @+0x1ff0 0x20\n"                      // the page beyond EOF: SIGBUS
      "mmap @+8p 1p rw- private,fixed data 0\n"
      "write @+8p 1 0\n"                          // COW: the file is unchanged
      "ftruncate data 0\n"
      "read @ 1\n"                                // now beyond EOF
      "maps\n");
  Lines want = {
      "1: = 0",
      "2: = @+0x0",
      hash_line(3, file_bytes(0x1000, 0x1000)),
      "4: = SIGBUS @+0x1000",
      "5: = @+0x8000",
      "6: = 0",
      "7: = 0",
      "8: = SIGBUS @+0x0",
      "@+0x0-@+0x4000 r--s 0x1000 data",
      "@+0x8000-@+0x9000 rw-p 0x0 data",
      "9: = 0",
      "final maps:",
      "@+0x0-@+0x4000 r--s 0x1000 data",
      "@+0x8000-@+0x9000 rw-p 0x0 data",
  };
  EXPECT_EQ(got, want);
}

TEST_F(opscript_kernel, SharedAnonymousIsAnonWithOffsetZero) {
  Lines got = run(
      "mmap @ 4p rw- shared,anon,fixed\n"
      "mprotect @+2p 1p r--\n"  // the kernel would print pgoff 0x2000 for the split part
      "maps\n");
  Lines want = {
      "1: = @+0x0",
      "2: = 0",
      "@+0x0-@+0x2000 rw-s 0x0 [anon]",
      "@+0x2000-@+0x3000 r--s 0x0 [anon]",
      "@+0x3000-@+0x4000 rw-s 0x0 [anon]",
      "3: = 0",
      "final maps:",
      "@+0x0-@+0x2000 rw-s 0x0 [anon]",
      "@+0x2000-@+0x3000 r--s 0x0 [anon]",
      "@+0x3000-@+0x4000 rw-s 0x0 [anon]",
  };
  EXPECT_EQ(got, want);
}

TEST_F(opscript_kernel, ErrnosOutsideAndUnsupported) {
  Lines got = run(
      "mmap @ 2p rw- private,anon,fixed\n"
      "munmap @+1 1p\n"                             // unaligned: EINVAL
      "mmap @ 1p rw- private,anon,noreplace\n"      // occupied: EEXIST
      "mmap @ 0 rw- private,anon,fixed\n"           // zero length: EINVAL
      "mmap - 1p rw- private,anon\n"                // the kernel picks: outside
      "munmap - 1p\n"                               // outside the window
      "mremap @ 2p 4p maymove,fixed @+0x10p\n"
      "mremap @+0x10p 4p 8p 0\n");
  ASSERT_EQ(got.size(), 10u);
  EXPECT_EQ(got[0], "1: = @+0x0");
  EXPECT_EQ(got[1], "2: = -EINVAL");
  EXPECT_EQ(got[2], "3: = -EEXIST");
  EXPECT_EQ(got[3], "4: = -EINVAL");
  EXPECT_EQ(got[4], "5: = outside");
  EXPECT_EQ(got[5], "6: = unsupported");
  EXPECT_EQ(got[6], "7: = @+0x10000");
  EXPECT_EQ(got[7], "8: = @+0x10000");  // grows in place
  EXPECT_EQ(got[8], "final maps:");
  EXPECT_EQ(got[9], "@+0x10000-@+0x18000 rw-p 0x0 [anon]");
}

TEST_F(opscript_kernel, OtherWindowBaseGivesTheSameLines) {
  const char* text = "mmap @+1p 2p r-- private,anon,fixed\nwrite @+1p 1 0\nmaps\n";
  KernelRunOptions opt;
  opt.window.base = 0x300000000000;
  EXPECT_EQ(run(text, opt), run(text));
  EXPECT_EQ(run(text, opt)[1], "2: = SEGV_ACCERR @+0x1000");
}

TEST_F(opscript_kernel, BadWindowIsASetupError) {
  KernelRunOptions opt;
  opt.window.base = 0x200000000001;
  auto r = run_on_kernel(Script{}, opt);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("bad window base 0x200000000001"), std::string::npos) << r.error;
}

TEST_F(opscript_kernel, HungChildIsKilledAfterTheTimeout) {
  // Reading 1 TiB of untouched anonymous memory (the zero page) takes far
  // longer than the timeout and uses no memory.
  auto p = parse_script("mmap @ 0x10000000000 r-- private,anon,fixed,noreserve\nread @ 0x10000000000\n");
  ASSERT_TRUE(p.ok()) << p.error_text();
  KernelRunOptions opt;
  opt.timeout = std::chrono::milliseconds(300);
  auto start = std::chrono::steady_clock::now();
  auto r = run_on_kernel(p.script, opt);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "kernel child timed out after 300 ms (killed)");
  EXPECT_EQ(r.lines, (Lines{"1: = @+0x0"}));  // the lines before the hang arrive
}

TEST_F(opscript_kernel, ParentAddressSpaceIsUntouched) {
  // The child maps the window; the parent must not see it.
  run("mmap @ 4p rw- private,anon,fixed\nwrite @ 4p 1\n");
  std::ifstream maps("/proc/self/maps");
  std::stringstream ss;
  ss << maps.rdbuf();
  for (const auto& e : parse_proc_maps(ss.str())) {
    EXPECT_FALSE(Window{}.contains(e.start)) << e.start;
  }
}

size_t open_fds() {
  size_t n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (dirent* e = d ? readdir(d) : nullptr) n += e->d_name[0] != '.';
  if (d) closedir(d);
  return n;
}

TEST_F(opscript_kernel, NoFileDescriptorLeaks) {
  const size_t before = open_fds();
  for (int i = 0; i < 5; ++i) run("file f 1p\nmmap @ 1p r-- shared f 0\nread @ 1\n");
  auto p = parse_script("mmap @ 0x10000000000 r-- private,anon,fixed,noreserve\nread @ 0x10000000000\n");
  KernelRunOptions opt;
  opt.timeout = std::chrono::milliseconds(50);
  EXPECT_FALSE(run_on_kernel(p.script, opt).ok);  // the timeout path closes its fds too
  EXPECT_EQ(open_fds(), before);
}

TEST_F(opscript_kernel, WindowNotEmptyIsASetupError) {
  // A mapping the parent owns inside the window is inherited by the child.
  const uint64_t base = 0x380000000000;
  void* m = mmap(reinterpret_cast<void*>(base + 0x5000), 0x1000, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_EQ(m, reinterpret_cast<void*>(base + 0x5000));
  KernelRunOptions opt;
  opt.window.base = base;
  auto r = run_on_kernel(Script{}, opt);
  munmap(m, 0x1000);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error,
            "window is not empty in the kernel child: @+0x5000-@+0x6000 ---p 0x0 [anon] (choose another window base)");
  EXPECT_TRUE(r.lines.empty());
}

TEST_F(opscript_kernel, ConcurrentRunsFromSeveralThreads) {
  // fuzz-kernel may run children from several threads: each run gets its own
  // lines even though other threads' children inherit its pipe.
  auto p = parse_script("mmap @ 2p rw- private,anon,fixed\nwrite @ 1p 3\nmaps\n");
  ASSERT_TRUE(p.ok());
  const Lines want = run_on_kernel(p.script).lines;
  ASSERT_EQ(want.size(), 6u);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto r = run_on_kernel(p.script);
        if (!r.ok || r.lines != want) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

// The same with scripts that fork: every run's space processes are its own.
TEST_F(opscript_kernel, ConcurrentForkingRunsFromSeveralThreads) {
  auto p = parse_script("mmap @ 2p rw- private,anon,fixed\nwrite @ 1p 3\nfork a\nuse a\nwrite @ 1p 4\nfork b\n"
                        "use main\nread @ 1p\nuse b\nread @ 1p\n");
  ASSERT_TRUE(p.ok());
  const Lines want = run_on_kernel(p.script).lines;
  ASSERT_EQ(want.size(), 16u);
  EXPECT_EQ(want[7], hash_line(8, std::vector<unsigned char>(kPageSize, 3)));
  EXPECT_EQ(want[9], hash_line(10, std::vector<unsigned char>(kPageSize, 4)));
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto r = run_on_kernel(p.script);
        if (!r.ok || r.lines != want) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST_F(opscript_kernel, ExampleScriptsRun) {
  int n = 0;
  for (std::string dir : {std::string(OPSCRIPT_SCRIPTS_DIR), std::string(OPSCRIPT_SCRIPTS_DIR) + "/pending"}) {
    DIR* d = opendir(dir.c_str());
    ASSERT_NE(d, nullptr) << dir;
    while (dirent* ent = readdir(d)) {
      std::string name = ent->d_name;
      if (name.size() < 5 || name.substr(name.size() - 4) != ".ops") continue;
      std::ifstream in(dir + "/" + name);
      std::stringstream ss;
      ss << in.rdbuf();
      auto p = parse_script(ss.str());
      ASSERT_TRUE(p.ok()) << p.error_text(name + ":");
      auto r = run_on_kernel(p.script);
      ASSERT_TRUE(r.ok) << name << ": " << r.error;
      // One result line per op, "final maps:" after the last one.
      std::string last = std::to_string(p.script.ops.size()) + ": ";
      auto fin = std::find(r.lines.begin(), r.lines.end(), "final maps:");
      ASSERT_NE(fin, r.lines.end()) << name;
      if (!p.script.ops.empty()) {
        EXPECT_EQ((fin - 1)->substr(0, last.size()), last) << name;
      }
      for (const auto& l : r.lines) EXPECT_EQ(l.find("unsupported"), std::string::npos) << name << ": " << l;
      ++n;
    }
    closedir(d);
  }
  EXPECT_GE(n, 1);
}


// --- op scripts 1.1

TEST_F(opscript_kernel, Mincore) {
  Lines got = run(
      "mmap @ 4p rw- private,anon,fixed\n"
      "write @+1p 1 1\n"           // page 1: an anonymous page
      "read @+2p 1\n"              // page 2: the zero page (or a fresh page): resident
      "mincore @ 4p\n"
      "mincore @ 0\n"              // nothing to report
      "mincore @+1 1p\n"           // unaligned
      "mincore @+2p 4p\n"          // runs into the hole after the mapping
      "madvise @+1p 1p dontneed\n"
      "mincore @ 0x3001\n");       // a partial page counts as a page
  ASSERT_EQ(got.size(), 11u);
  EXPECT_EQ(got[0], "1: = @+0x0");
  EXPECT_EQ(got[3], "4: = 0 0110");
  EXPECT_EQ(got[4], "5: = 0");
  EXPECT_EQ(got[5], "6: = -EINVAL");
  EXPECT_EQ(got[6], "7: = -ENOMEM");
  EXPECT_EQ(got[7], "8: = 0");
  EXPECT_EQ(got[8], "9: = 0 0010");
}

TEST_F(opscript_kernel, Mseal) {
  Lines got = run(
      "mmap @ 4p rw- private,anon,fixed\n"
      "mseal @+1p 1p\n"            // splits the VMA in three
      "maps\n"
      "munmap @ 4p\n"
      "mprotect @+1p 1p rw-\n"     // even to its own protection
      "mremap @+1p 1p 2p maymove\n"
      "mmap @+1p 1p r-- private,anon,fixed\n"
      "mseal @ 8p\n"               // a hole: nothing sealed
      "mseal @+1 1p\n"
      "mseal @+0x10p 0\n"          // length 0: fine, even on nothing
      "mseal @ 2p\n"               // the sealed pieces merge
      "maps\n");
  if (got.size() > 1 && got[1] == "2: = -ENOSYS") GTEST_SKIP() << "no mseal(2) on this kernel";
  Lines want = {
      "1: = @+0x0",
      "2: = 0",
      "@+0x0-@+0x1000 rw-p 0x0 [anon]",
      "@+0x1000-@+0x2000 rw-p 0x0 [anon]",
      "@+0x2000-@+0x4000 rw-p 0x0 [anon]",
      "3: = 0",
      "4: = -EPERM",
      "5: = -EPERM",
      "6: = -EPERM",
      "7: = -EPERM",
      "8: = -ENOMEM",
      "9: = -EINVAL",
      "10: = 0",
      "11: = 0",
      "@+0x0-@+0x2000 rw-p 0x0 [anon]",
      "@+0x2000-@+0x4000 rw-p 0x0 [anon]",
      "12: = 0",
      "final maps:",
      "@+0x0-@+0x2000 rw-p 0x0 [anon]",
      "@+0x2000-@+0x4000 rw-p 0x0 [anon]",
  };
  EXPECT_EQ(got, want);
}

// Locked and unlocked VMAs do not merge: what mlockall and munlockall do is
// visible in the maps lines.
TEST_F(opscript_kernel, MlockallAndMunlockall) {
  Lines got = run(
      "mmap @ 2p rw- private,anon,fixed\n"
      "mlockall future\n"
      "mmap @+2p 2p rw- private,anon,fixed\n"  // locked: a VMA of its own
      "maps\n"
      "munlockall\n"                           // unlocked: merges
      "maps\n"
      "mlockall current\n"                     // locks [0, 4); ends MCL_FUTURE
      "mmap @+4p 1p rw- private,anon,fixed\n"  // not locked
      "madvise @ 1p dontneed\n"                // refused on locked memory
      "madvise @ 1p dontneed_locked\n"
      "mlockall onfault\n"
      "mlockall 0\n"
      "mlockall future,onfault\n"
      "munlockall\n");
  if (got.size() > 9 && got[9] == "7: = unsupported") GTEST_SKIP() << kHugeRunnerMemory;
  Lines want = {
      "1: = @+0x0",
      "2: = 0",
      "3: = @+0x2000",
      "@+0x0-@+0x2000 rw-p 0x0 [anon]",
      "@+0x2000-@+0x4000 rw-p 0x0 [anon]",
      "4: = 0",
      "5: = 0",
      "@+0x0-@+0x4000 rw-p 0x0 [anon]",
      "6: = 0",
      "7: = 0",
      "8: = @+0x4000",
      "9: = -EINVAL",
      "10: = 0",
      "11: = -EINVAL",
      "12: = -EINVAL",
      "13: = 0",
      "14: = 0",
      "final maps:",
      "@+0x0-@+0x5000 rw-p 0x0 [anon]",
  };
  EXPECT_EQ(got, want);
}

// Each space is a process: fork copies the current one (not its DONTFORK
// pages), the copies are private (copy on write), and the final maps of
// every space follow main's. Forking from a space other than main, and a
// file mapping in another space, go through that space's process.
TEST_F(opscript_kernel, ForkAndUse) {
  std::vector<unsigned char> f_page1 = file_bytes(0x1000, 0x1000);
  Lines got = run(
      "file f 2p\n"
      "mmap @ 2p rw- private,anon,fixed\n"
      "write @ 2p 1\n"
      "madvise @+1p 1p dontfork\n"
      "fork child\n"
      "use child\n"
      "read @ 1p\n"                        // inherited
      "write @ 1p 2\n"                     // copy on write
      "maps\n"
      "read @+1p 1\n"                      // not inherited
      "use main\n"
      "read @ 1p\n"                        // still 1s
      "use child\n"
      "fork grandchild\n"                  // forked by the child's process
      "use grandchild\n"
      "read @ 1p\n"                        // the child's 2s
      "mmap @+8p 1p r-- shared,fixed f 0x1000\n"
      "read @+8p 1p\n"
      "ftruncate f 1p\n"
      "read @+8p 1\n"                      // beyond EOF now
      "use main\n");
  Lines want = {
      "1: = 0",
      "2: = @+0x0",
      "3: = 0",
      "4: = 0",
      "5: = 0",
      "6: = 0",
      hash_line(7, std::vector<unsigned char>(kPageSize, 1)),
      "8: = 0",
      "@+0x0-@+0x1000 rw-p 0x0 [anon]",
      "9: = 0",
      "10: = SEGV_MAPERR @+0x1000",
      "11: = 0",
      hash_line(12, std::vector<unsigned char>(kPageSize, 1)),
      "13: = 0",
      "14: = 0",
      "15: = 0",
      hash_line(16, std::vector<unsigned char>(kPageSize, 2)),
      "17: = @+0x8000",
      hash_line(18, f_page1),
      "19: = 0",
      "20: = SIGBUS @+0x8000",
      "21: = 0",
      "final maps:",
      "@+0x0-@+0x1000 rw-p 0x0 [anon]",
      "@+0x1000-@+0x2000 rw-p 0x0 [anon]",
      "final maps child:",
      "@+0x0-@+0x1000 rw-p 0x0 [anon]",
      "final maps grandchild:",
      "@+0x0-@+0x1000 rw-p 0x0 [anon]",
      "@+0x8000-@+0x9000 r--s 0x1000 f",
  };
  EXPECT_EQ(got, want);
}

// mlockall is per process, and a forked space inherits neither the locks
// nor MCL_FUTURE.
TEST_F(opscript_kernel, ForkedSpacesAreSeparateProcesses) {
  Lines got = run(
      "mmap @ 2p rw- private,anon,fixed\n"
      "mlockall current,future\n"             // [0, 2) locked and faulted in
      "fork a\n"
      "mmap @+2p 1p rw- private,anon,fixed\n"  // main: locked too, merges with [0, 2)
      "use a\n"
      "mmap @+2p 1p rw- private,anon,fixed\n"  // a: not locked; does not merge with [0, 2), whose
                                               // anon_vma came from the parent (not COWed yet)
      "madvise @ 1p dontneed\n"                // fine in a, where nothing is locked
      "use main\n"
      "madvise @ 1p dontneed\n");              // refused in main
  if (got.size() > 1 && got[1] == "2: = unsupported") GTEST_SKIP() << kHugeRunnerMemory;
  Lines want = {
      "1: = @+0x0",
      "2: = 0",
      "3: = 0",
      "4: = @+0x2000",
      "5: = 0",
      "6: = @+0x2000",
      "7: = 0",
      "8: = 0",
      "9: = -EINVAL",
      "final maps:",
      "@+0x0-@+0x3000 rw-p 0x0 [anon]",
      "final maps a:",
      "@+0x0-@+0x2000 rw-p 0x0 [anon]",
      "@+0x2000-@+0x3000 rw-p 0x0 [anon]",
  };
  EXPECT_EQ(got, want);
}

TEST_F(opscript_kernel, HungSpaceIsKilledAfterTheTimeout) {
  auto p = parse_script(
      "mmap @ 0x10000000000 r-- private,anon,fixed,noreserve\nfork a\nuse a\nread @ 0x10000000000\n");
  ASSERT_TRUE(p.ok()) << p.error_text();
  KernelRunOptions opt;
  opt.timeout = std::chrono::milliseconds(300);
  auto start = std::chrono::steady_clock::now();
  auto r = run_on_kernel(p.script, opt);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "kernel child timed out after 300 ms (killed)");
  EXPECT_EQ(r.lines, (Lines{"1: = @+0x0", "2: = 0", "3: = 0"}));
}

// Scripts with forks run many times over without leaking descriptors or
// leaving processes behind (the runner child reaps every space).
TEST_F(opscript_kernel, ForkingScriptsCleanUp) {
  const size_t before = open_fds();
  const char* text = "file f 1p\nmmap @ 1p rw- private,anon,fixed\nfork a\nuse a\nfork b\nuse b\n"
                     "mmap @+1p 1p r-- shared,fixed f 0\nuse main\nfork c\n";
  for (int i = 0; i < 20; ++i) {
    Lines got = run(text);
    ASSERT_EQ(got.size(), 18u);
    EXPECT_EQ(got[9], "final maps:");
    EXPECT_EQ(got[17], "@+0x0-@+0x1000 rw-p 0x0 [anon]");  // c, a copy of main
  }
  EXPECT_EQ(open_fds(), before);
}


// Generated scripts with every op kind and advice (the pending ones too:
// fork and use, mlockall, mseal, mincore, ...) run on the kernel without a
// setup error, one result line an op, a final maps block a space.
TEST_F(opscript_kernel, GeneratedScriptsOfEveryKindRun) {
  fuzz::GenOptions all;
  all.kinds.assign(std::begin(kAllOpKinds), std::end(kAllOpKinds));
  all.advice.assign(std::begin(kAllAdvice), std::end(kAllAdvice));
  all.extra_mmap_flags = mmap_flag::kPopulate | mmap_flag::kLocked;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    Script s = fuzz::generate_script(fuzz::run_seed(3, seed), all);
    auto r = run_on_kernel(s);
    ASSERT_TRUE(r.ok) << "seed " << seed << ": " << r.error << "\n" << script_text(s);
    size_t results = 0, headers = 0, forks = 0;
    for (const auto& l : r.lines) {
      results += l.find(": = ") != std::string::npos;
      headers += l.starts_with("final maps");
    }
    for (const Op& op : s.ops) forks += op.kind == OpKind::kFork;
    EXPECT_EQ(results, s.ops.size()) << "seed " << seed;
    EXPECT_EQ(headers, 1 + forks) << "seed " << seed;
  }
}


// mlockall(MCL_CURRENT) would fault in the runner's own memory too; with
// more than 4 GiB of it (AddressSanitizer's shadow, here a stand-in the
// test maps read-only, so that even a faulted-in copy would only map the
// zero page) the kernel side prints "= unsupported" instead.
TEST_F(opscript_kernel, MlockallCurrentWithHugeRunnerMemoryIsUnsupported) {
  const size_t big = 5ull << 30;
  void* m = mmap(nullptr, big, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  Lines got = run("mmap @ 1p rw- private,anon,fixed\nmlockall current\nmlockall future\nmunlockall\n");
  munmap(m, big);
  EXPECT_EQ(got, (Lines{"1: = @+0x0", "2: = unsupported", "3: = 0", "4: = 0", "final maps:",
                        "@+0x0-@+0x1000 rw-p 0x0 [anon]"}));
}


// Guard regions as the 1.1 spec says they print: SEGV_MAPERR at the page,
// after the VMA's protection (SEGV_ACCERR); past the end of a file
// SEGV_MAPERR too, not SIGBUS; mincore 0; POPULATE -EFAULT.
TEST_F(opscript_kernel, GuardRegions) {
  Lines got = run(
      "file f 1p\n"
      "mmap @ 4p rw- private,anon,fixed\n"
      "write @ 4p 7\n"
      "madvise @+1p 2p guard_install\n"
      "read @ 4p\n"
      "write @+1p 1 1\n"
      "mincore @ 4p\n"
      "mprotect @+2p 1p ---\n"
      "read @+2p 1\n"
      "mprotect @+2p 1p r--\n"
      "write @+2p 1 1\n"
      "read @+2p 1\n"
      "madvise @ 4p populate_read\n"
      "madvise @+1p 1p guard_remove\n"
      "read @+1p 1\n"
      "mmap @+8p 2p r-- shared,fixed f 0\n"
      "madvise @+9p 1p guard_install\n"
      "read @+9p 1\n");
  Lines want = {
      "1: = 0",
      "2: = @+0x0",
      "3: = 0",
      "4: = 0",
      "5: = SEGV_MAPERR @+0x1000",
      "6: = SEGV_MAPERR @+0x1000",
      "7: = 0 1001",
      "8: = 0",
      "9: = SEGV_ACCERR @+0x2000",
      "10: = 0",
      "11: = SEGV_ACCERR @+0x2000",
      "12: = SEGV_MAPERR @+0x2000",
      "13: = -EFAULT",
      "14: = 0",
      hash_line(15, std::vector<unsigned char>(1, 0)),
      "16: = @+0x8000",
      "17: = 0",
      "18: = SEGV_MAPERR @+0x9000",
      "final maps:",
      "@+0x0-@+0x2000 rw-p 0x0 [anon]",
      "@+0x2000-@+0x3000 r--p 0x0 [anon]",
      "@+0x3000-@+0x4000 rw-p 0x0 [anon]",
      "@+0x8000-@+0xa000 r--s 0x0 f",
  };
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace vmspace::opscript
