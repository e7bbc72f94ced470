// The host probe and every host-dependent AddressSpace option, checked
// against the host kernel: for each fact, a script whose output depends on
// it runs on the kernel and on vmspace configured like this host (they must
// agree), and on vmspace with that fact flipped (it must differ, so the
// option is what makes them agree).  The flipped setting's own behaviour is
// checked where the host cannot show it in tests/unit/fault and
// tests/unit/mm, which also run as the other kind of host
// (VMSPACE_TEST_HOST, tests/support/test_host.h).
#include "opscript/host_probe.h"

#include <sys/mman.h>

#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "opscript/diff.h"
#include "opscript/kernel_runner.h"
#include "opscript/parse.h"
#include "opscript/runner.h"
#include "opscript/vmspace_executor.h"

namespace vmspace::opscript {
namespace {

using Lines = std::vector<std::string>;

class host_probe : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kernel_runner_available()) GTEST_SKIP() << "no child processes under ThreadSanitizer";
    ASSERT_TRUE(host_facts().probed) << host_facts().error;
    static const bool printed = std::printf("%s\n", host_facts_line(host_facts()).c_str()) > 0;
    (void)printed;
  }

  static Script parse(const std::string& text) {
    ParseResult p = parse_script(text);
    EXPECT_TRUE(p.ok()) << p.error_text();
    return p.script;
  }
  static Lines kernel(const std::string& text) {
    KernelRunResult r = run_on_kernel(parse(text));
    EXPECT_TRUE(r.ok) << r.error;
    return r.lines;
  }
  // vmspace configured like this host, with `tweak` applied to the facts.
  static Lines ours(const std::string& text, const std::function<void(HostFacts&)>& tweak = {}) {
    HostFacts f = host_facts();
    if (tweak) tweak(f);
    AddressSpaceOptions o = host_like_options(kDefaultLockMode);
    apply_host_facts(f, o);
    AddressSpace as(o);
    VmspaceExecutor ex(as);
    return run_script(parse(text), ex, Window{});
  }
  // The kernel and vmspace-like-this-host agree; flipping the fact makes
  // vmspace differ (when `must_differ`: the script shows the fact here).
  static void check(const std::string& text, const std::function<void(HostFacts&)>& flip, bool must_differ = true) {
    const Lines k = kernel(text);
    DiffResult same = diff_lines(k, ours(text));
    EXPECT_TRUE(same.equal) << text << "\n" << join(same.lines);
    if (must_differ) {
      DiffResult flipped = diff_lines(k, ours(text, flip));
      EXPECT_FALSE(flipped.equal) << "the flipped fact changed nothing:\n" << text;
    }
  }
  static std::string join(const Lines& l) {
    std::string s;
    for (const auto& x : l) s += x + "\n";
    return s;
  }
};

TEST_F(host_probe, ProbeIsRepeatableAndTheLineRoundTrips) {
  const HostFacts a = probe_host(), b = probe_host();
  EXPECT_EQ(host_facts_line(a), host_facts_line(b));
  HostFacts parsed;
  std::string why;
  ASSERT_TRUE(parse_host_facts(host_facts_line(a), parsed, &why)) << why;
  EXPECT_EQ(host_facts_line(parsed), host_facts_line(a));
  EXPECT_FALSE(parse_host_facts("zero_page=perhaps", parsed, &why));
  EXPECT_EQ(why, "bad value for zero_page: 'perhaps'");
  EXPECT_FALSE(parse_host_facts("colour=blue", parsed, &why));
  EXPECT_EQ(why, "unknown host fact 'colour'");
}

// A read fault maps the zero page or allocates; without the zero page the
// read gives the -wx VMA an anon_vma, so it keeps VM_ACCOUNT when made
// PROT_NONE and does not merge with its never-written neighbours
// (issue 11's reproducer).
TEST_F(host_probe, ZeroPage) {
  check(
      "mmap @+2p 13p rw- private,anon,fixed\n"
      "mmap @+13p 1p -wx private,anon,fixed\n"
      "read @+13p 1p\n"
      "mprotect @+7p 8p ---\n",
      [](HostFacts& f) { f.zero_page = !f.zero_page; });
}

// PROT_EXEC alone: readable, or execute-only under protection keys.
TEST_F(host_probe, ExecOnlyProtectionKeys) {
  check(
      "mmap @ 2p --x private,anon,fixed\n"
      "read @+1p 1p\n"
      "mmap @+4p 1p rw- private,anon,fixed\n"
      "write @+4p 1p 7\n"
      "mprotect @+4p 1p --x\n"
      "read @+4p 1p\n",
      [](HostFacts& f) { f.exec_only_pkey = !f.exec_only_pkey; });
}

// The huge-page fault path prepares the anon_vma even for a read, which
// later decides a merge.  Only visible where reads map the zero page.
TEST_F(host_probe, ThpFaultPath) {
  const HostFacts& h = host_facts();
  const std::string script =
      "mmap @ 1024p rw- private,anon,fixed\n"
      "mmap @+1024p 1p r-- private,anon,fixed\n"
      "madvise @ 1025p hugepage\n"
      "read @+512p 1p\n"
      "mprotect @ 1024p r--\n";
  check(script, [](HostFacts& f) { f.thp = f.thp == ThpMode::never ? ThpMode::always : ThpMode::never; },
        /*must_differ=*/h.zero_page);
}

// No hint below a MAP_GROWSDOWN mapping is honoured inside the guard gap.
TEST_F(host_probe, StackGuardGap) {
  const std::uint64_t gap = host_facts().stack_guard_gap / 4096;
  if (gap > 100000) GTEST_SKIP() << "guard gap too large for the window";
  const std::uint64_t top = gap + 64;
  const std::string script = "mmap @+" + std::to_string(top) + "p 1p rw- private,anon,fixed,growsdown\n" +
                             "mmap @+" + std::to_string(top - gap - 1) + "p 1p r-- private,anon\n" +
                             "mmap @+" + std::to_string(top - gap) + "p 1p r-- private,anon\n";
  check(script, [](HostFacts& f) { f.stack_guard_gap = f.stack_guard_gap == 4096 ? 8192 : 4096; });
}

// A MAP_GROWSDOWN mapping grows on a fault below it up to RLIMIT_STACK.
TEST_F(host_probe, RlimitStack) {
  const std::uint64_t limit = host_facts().rlimit_stack / 4096;
  if (limit > (1u << 20)) GTEST_SKIP() << "RLIMIT_STACK unlimited or huge";
  const std::uint64_t top = limit + 1024;
  const std::string script = "mmap @+" + std::to_string(top) + "p 1p rw- private,anon,fixed,growsdown\n" +
                             "read @+" + std::to_string(top - limit) + "p 1p\n" +      // size = limit + 1 page
                             "read @+" + std::to_string(top - limit + 1) + "p 1p\n" +  // size = limit
                             "maps\n";
  check(script, [](HostFacts& f) { f.rlimit_stack /= 2; });
}

// MAP_LOCKED beyond RLIMIT_MEMLOCK: -EAGAIN unless CAP_IPC_LOCK.
TEST_F(host_probe, RlimitMemlock) {
  const HostFacts& h = host_facts();
  if (h.rlimit_memlock == UINT64_MAX || h.rlimit_memlock > (64ull << 20)) GTEST_SKIP() << "RLIMIT_MEMLOCK too large";
  const std::uint64_t pages = h.rlimit_memlock / 4096 + 1;
  check("mmap @ " + std::to_string(pages) + "p rw- private,anon,fixed,locked\n",
        [](HostFacts& f) { f.cap_ipc_lock = !f.cap_ipc_lock; });
}

// The heuristic overcommit policy refuses one request above RAM + swap,
// private writable and shared alike (unless MAP_NORESERVE).
TEST_F(host_probe, Overcommit) {
  const HostFacts& h = host_facts();
  const std::uint64_t limit = h.overcommit_limit_pages;
  if (h.overcommit != Overcommit::guess || limit == 0 || limit > (1ull << 26))
    GTEST_SKIP() << "needs the heuristic policy and RAM + swap under 256 GiB";
  const std::string over = std::to_string(limit + 1) + "p";
  check("mmap @ " + over + " rw- private,anon,fixed\n" +
            "mmap @ " + over + " r-- shared,anon,fixed\n" +
            "mmap @ " + over + " r-- shared,anon,fixed,noreserve\n" +
            "mmap @ " + over + " rw- private,anon,fixed,noreserve\n" +
            "mmap @ " + std::to_string(limit) + "p rw- private,anon,fixed\n",
        [](HostFacts& f) { f.overcommit = Overcommit::always; });
}

// The hint floor: a hint below mmap_min_addr is rounded up to it.
TEST_F(host_probe, MmapMinAddr) {
  AddressSpace as(host_like_options(kDefaultLockMode));
  EXPECT_EQ(as.mmap(4096, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS),
            static_cast<long>(std::max<std::uint64_t>(host_facts().mmap_min_addr, 4096)));
}

}  // namespace
}  // namespace vmspace::opscript
