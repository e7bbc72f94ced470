// SPDX-License-Identifier: MIT
// prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME) against Linux 6.18: scenarios of
// names on parts of mappings, neighbours with equal and different names,
// mprotect and madvise across name boundaries, munmap of a middle, mmap
// and mremap next to named VMAs, invalid names and ranges, holes, and file
// mappings (-EBADF; shared anonymous memory may be named).  After every
// step: the result and the VMAs of the window as maps prints them
// (pages relative to the window, permissions, name).
//
// Each scenario carries the expected report (Linux's rules as read from
// mm/madvise.c and mm/vma.c, see src/mm/anon_name.cpp), which vmspace must
// produce in every lock mode (AnonNameExpected).  AnonNameHost runs the
// same steps in a forked child on the host kernel with raw syscalls and
// requires the same report from the host and from vmspace; it skips when
// the host kernel was built without CONFIG_ANON_VMA_NAME (a valid prctl
// fails with -EINVAL).
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "vmspace/address_space.h"

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#endif
#ifndef PR_SET_VMA_ANON_NAME
#define PR_SET_VMA_ANON_NAME 0
#endif

namespace vmspace {
namespace {

constexpr std::uint64_t P = 4096;
constexpr std::uint64_t W = 0x200000000000;  // the window (free in a test process)
constexpr std::uint64_t kRoom = 64;          // pages of the window shown
constexpr std::uint64_t kFilePages = 16;     // the memfd "f" every scenario may map
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr std::uint64_t kAbs = ~std::uint64_t{0};  // Step::page: `len`/`addr` are absolute

enum class Kind { map, map_shared, map_file, unmap, protect, name, name_abs, remap, advise };

struct Step {
  Kind kind;
  std::uint64_t page;      // in the window (name_abs: the address itself)
  std::uint64_t pages;     // (name_abs: the length in bytes)
  std::uint64_t arg = 0;   // prot, file page, new size (remap), advice
  const char* name = nullptr;
  std::uint64_t to = kAbs;  // remap: MREMAP_FIXED destination page
  const char* expect = "";  // "<rc>|<vma>|<vma>..."
};

Step map(std::uint64_t page, std::uint64_t n, const char* e) { return {Kind::map, page, n, kRW, nullptr, kAbs, e}; }
Step name(std::uint64_t page, std::uint64_t n, const char* nm, const char* e) {
  return {Kind::name, page, n, 0, nm, kAbs, e};
}

struct Scenario {
  const char* title;
  std::vector<Step> steps;
};

// A name of n bytes.
const char* long_name(std::size_t n) {
  static std::string s79(79, 'x'), s80(80, 'x');
  return n == 79 ? s79.c_str() : s80.c_str();
}

std::vector<Scenario> scenarios() {
  static const std::string x79 = "[anon:" + std::string(79, 'x') + "]";
  static const std::string e79 = "0|0-1 rw-p " + x79 + "|1-4 rw-p";
  static const std::string e79ok =
      "0|0-1 rw-p " + x79 + "|1-2 rw-p [anon:ok with spaces ~!@#%^&*()_+{}|:\"<>?,./;'-=]|2-4 rw-p";
  return {
      {"names, merges and splits",
       {
           map(0, 8, "0|0-8 rw-p"),
           name(2, 2, "a", "0|0-2 rw-p|2-4 rw-p [anon:a]|4-8 rw-p"),
           name(4, 2, "a", "0|0-2 rw-p|2-6 rw-p [anon:a]|6-8 rw-p"),
           name(6, 2, "b", "0|0-2 rw-p|2-6 rw-p [anon:a]|6-8 rw-p [anon:b]"),
           {Kind::protect, 5, 2, PROT_READ, nullptr, kAbs,
            "0|0-2 rw-p|2-5 rw-p [anon:a]|5-6 r--p [anon:a]|6-7 r--p [anon:b]|7-8 rw-p [anon:b]"},
           {Kind::protect, 5, 2, kRW, nullptr, kAbs, "0|0-2 rw-p|2-6 rw-p [anon:a]|6-8 rw-p [anon:b]"},
           name(0, 8, nullptr, "0|0-8 rw-p"),
           name(2, 1, "c", "0|0-2 rw-p|2-3 rw-p [anon:c]|3-8 rw-p"),
           {Kind::unmap, 3, 1, 0, nullptr, kAbs, "0|0-2 rw-p|2-3 rw-p [anon:c]|4-8 rw-p"},
           map(3, 1, "0|0-2 rw-p|2-3 rw-p [anon:c]|3-8 rw-p"),
           name(0, 8, "c", "0|0-8 rw-p [anon:c]"),
           map(8, 2, "0|0-8 rw-p [anon:c]|8-10 rw-p"),
           name(8, 2, "c", "0|0-10 rw-p [anon:c]"),
           name(0, 10, "c", "0|0-10 rw-p [anon:c]"),
           {Kind::unmap, 4, 2, 0, nullptr, kAbs, "0|0-4 rw-p [anon:c]|6-10 rw-p [anon:c]"},
           name(0, 4, "", "0|0-4 rw-p [anon:]|6-10 rw-p [anon:c]"),
       }},
      {"invalid names and ranges, holes",
       {
           map(0, 4, "0|0-4 rw-p"),
           name(0, 4, "bad\x01", "-22|0-4 rw-p"),
           name(0, 4, "a$b", "-22|0-4 rw-p"),
           name(0, 4, "a[b", "-22|0-4 rw-p"),
           name(0, 4, "a]b", "-22|0-4 rw-p"),
           name(0, 4, "a\\b", "-22|0-4 rw-p"),
           name(0, 4, "a`b", "-22|0-4 rw-p"),
           name(0, 4, "a\x7f", "-22|0-4 rw-p"),
           name(0, 4, "\xc3\xa9", "-22|0-4 rw-p"),
           name(0, 4, long_name(80), "-22|0-4 rw-p"),
           name(0, 1, long_name(79),
                "0|0-1 rw-p [anon:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx]|1-4 rw-p"),
           name(1, 1, "ok with spaces ~!@#%^&*()_+{}|:\"<>?,./;'-=", e79ok.c_str()),
           name(0, 4, nullptr, "0|0-4 rw-p"),
           {Kind::name_abs, W + 1, P, 0, "a", kAbs, "-22|0-4 rw-p"},
           {Kind::name_abs, W + 1, P, 0, "a$", kAbs, "-22|0-4 rw-p"},
           {Kind::name_abs, W, 0, 0, "a", kAbs, "0|0-4 rw-p"},
           {Kind::name_abs, W, ~std::uint64_t{0}, 0, "a", kAbs, "-22|0-4 rw-p"},
           {Kind::name_abs, W, ~std::uint64_t{0} - 2 * P, 0, "a", kAbs, "-22|0-4 rw-p"},
           {Kind::name_abs, W, 1, 0, "one", kAbs, "0|0-1 rw-p [anon:one]|1-4 rw-p"},
           name(4, 2, "h", "-12|0-1 rw-p [anon:one]|1-4 rw-p"),
           map(6, 2, "0|0-1 rw-p [anon:one]|1-4 rw-p|6-8 rw-p"),
           name(2, 6, "h", "-12|0-1 rw-p [anon:one]|1-2 rw-p|2-4 rw-p [anon:h]|6-8 rw-p [anon:h]"),
           name(5, 2, "k", "-12|0-1 rw-p [anon:one]|1-2 rw-p|2-4 rw-p [anon:h]|6-7 rw-p [anon:k]|7-8 rw-p [anon:h]"),
       }},
      {"file mappings and shared anonymous memory",
       {
           {Kind::map_file, 0, 4, 0, nullptr, kAbs, "0|0-4 rw-s /memfd:f (deleted)"},
           map(4, 2, "0|0-4 rw-s /memfd:f (deleted)|4-6 rw-p"),
           {Kind::map_shared, 6, 2, 0, nullptr, kAbs,
            "0|0-4 rw-s /memfd:f (deleted)|4-6 rw-p|6-8 rw-s /dev/zero (deleted)"},
           name(4, 2, "p", "0|0-4 rw-s /memfd:f (deleted)|4-6 rw-p [anon:p]|6-8 rw-s /dev/zero (deleted)"),
           name(0, 6, "x", "-9|0-4 rw-s /memfd:f (deleted)|4-6 rw-p [anon:p]|6-8 rw-s /dev/zero (deleted)"),
           name(4, 4, "s", "0|0-4 rw-s /memfd:f (deleted)|4-6 rw-p [anon:s]|6-8 rw-s [anon_shmem:s]"),
           {Kind::map_file, 8, 2, 8, nullptr, kAbs,
            "0|0-4 rw-s /memfd:f (deleted)|4-6 rw-p [anon:s]|6-8 rw-s [anon_shmem:s]|8-10 rw-s /memfd:f (deleted)"},
           name(4, 6, "u",
                "-9|0-4 rw-s /memfd:f (deleted)|4-6 rw-p [anon:u]|6-8 rw-s [anon_shmem:u]|8-10 rw-s /memfd:f (deleted)"),
           name(6, 1, "v",
                "0|0-4 rw-s /memfd:f (deleted)|4-6 rw-p [anon:u]|6-7 rw-s [anon_shmem:v]|7-8 rw-s [anon_shmem:u]|"
                "8-10 rw-s /memfd:f (deleted)"),
           name(7, 1, "v",
                "0|0-4 rw-s /memfd:f (deleted)|4-6 rw-p [anon:u]|6-8 rw-s [anon_shmem:v]|8-10 rw-s /memfd:f (deleted)"),
           name(6, 2, nullptr,
                "0|0-4 rw-s /memfd:f (deleted)|4-6 rw-p [anon:u]|6-8 rw-s /dev/zero (deleted)|8-10 rw-s /memfd:f (deleted)"),
       }},
      {"mremap and madvise keep names",
       {
           map(0, 4, "0|0-4 rw-p"),
           name(0, 4, "m", "0|0-4 rw-p [anon:m]"),
           {Kind::remap, 0, 4, 8, nullptr, kAbs, "0|0-8 rw-p [anon:m]"},
           map(10, 2, "0|0-8 rw-p [anon:m]|10-12 rw-p"),
           name(10, 2, "m", "0|0-8 rw-p [anon:m]|10-12 rw-p [anon:m]"),
           {Kind::remap, 10, 2, 2, nullptr, 8, "0|0-10 rw-p [anon:m]"},
           {Kind::advise, 2, 2, MADV_DONTFORK, nullptr, kAbs, "0|0-2 rw-p [anon:m]|2-4 rw-p [anon:m]|4-10 rw-p [anon:m]"},
           {Kind::advise, 2, 2, MADV_DOFORK, nullptr, kAbs, "0|0-10 rw-p [anon:m]"},
           map(10, 2, "0|0-10 rw-p [anon:m]|10-12 rw-p"),
           {Kind::remap, 10, 2, 2, nullptr, 20, "0|0-10 rw-p [anon:m]|20-22 rw-p"},
           {Kind::remap, 8, 2, 2, nullptr, 18, "0|0-8 rw-p [anon:m]|18-20 rw-p [anon:m]|20-22 rw-p"},
           {Kind::protect, 0, 8, PROT_READ, nullptr, kAbs, "0|0-8 r--p [anon:m]|18-20 rw-p [anon:m]|20-22 rw-p"},
       }},
  };
}

// ---- reports -----------------------------------------------------------

// "<s>-<e> <perms>[ <name>]" for each VMA of maps text inside the window,
// pages relative to W, joined with '|'.
std::string shape(const std::string& maps) {
  std::string out;
  std::istringstream in(maps);
  std::string line;
  while (std::getline(in, line)) {
    unsigned long long s = 0, e = 0;
    char perms[8] = {};
    int name_at = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %*s %*s %*s %n", &s, &e, perms, &name_at) < 3) continue;
    if (e <= W || s >= W + kRoom * P) continue;
    std::string nm = name_at > 0 && static_cast<std::size_t>(name_at) <= line.size() ? line.substr(name_at) : "";
    out += "|" + std::to_string((s - W) / P) + "-" + std::to_string((e - W) / P) + " " + perms;
    if (!nm.empty()) out += " " + nm;
  }
  return out;
}

// The operations, on vmspace or on the host.
struct Ops {
  virtual ~Ops() = default;
  virtual long mmap(std::uint64_t a, std::uint64_t len, int prot, int flags, bool file, std::uint64_t off) = 0;
  virtual int munmap(std::uint64_t a, std::uint64_t len) = 0;
  virtual int mprotect(std::uint64_t a, std::uint64_t len, int prot) = 0;
  virtual int name(std::uint64_t a, std::uint64_t len, const char* nm) = 0;
  virtual long mremap(std::uint64_t a, std::uint64_t old_len, std::uint64_t new_len, int flags, std::uint64_t to) = 0;
  virtual int madvise(std::uint64_t a, std::uint64_t len, int advice) = 0;
  virtual std::string maps() = 0;
};

// Runs the steps; the report: one line per step, "<rc><shape>".
std::vector<std::string> run(Ops& ops, const Scenario& sc) {
  std::vector<std::string> out;
  for (const Step& st : sc.steps) {
    const std::uint64_t a = W + st.page * P, len = st.pages * P;
    long rc = 0;
    switch (st.kind) {
      case Kind::map:
        rc = ops.mmap(a, len, static_cast<int>(st.arg), MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, false, 0);
        break;
      case Kind::map_shared:
        rc = ops.mmap(a, len, kRW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, false, 0);
        break;
      case Kind::map_file: rc = ops.mmap(a, len, kRW, MAP_SHARED | MAP_FIXED, true, st.arg * P); break;
      case Kind::unmap: rc = ops.munmap(a, len); break;
      case Kind::protect: rc = ops.mprotect(a, len, static_cast<int>(st.arg)); break;
      case Kind::name: rc = ops.name(a, len, st.name); break;
      case Kind::name_abs: rc = ops.name(st.page, st.pages, st.name); break;
      case Kind::remap:
        rc = st.to == kAbs ? ops.mremap(a, len, st.arg * P, MREMAP_MAYMOVE, 0)
                           : ops.mremap(a, len, st.arg * P, MREMAP_MAYMOVE | MREMAP_FIXED, W + st.to * P);
        if (rc >= 0) rc = static_cast<std::uint64_t>(rc) == (st.to == kAbs ? a : W + st.to * P) ? 0 : -1000;
        break;
      case Kind::advise: rc = ops.madvise(a, len, static_cast<int>(st.arg)); break;
    }
    if ((st.kind == Kind::map || st.kind == Kind::map_shared || st.kind == Kind::map_file) && rc >= 0)
      rc = static_cast<std::uint64_t>(rc) == a ? 0 : -1000;
    out.push_back(std::to_string(rc) + shape(ops.maps()));
  }
  return out;
}

struct VmspaceOps : Ops {
  static AddressSpaceOptions options(LockMode mode) {
    AddressSpaceOptions o;
    o.mode = mode;
    return o;
  }
  explicit VmspaceOps(LockMode mode) : as(options(mode)) {
    fd = as.memfd_create("f");
    as.ftruncate(fd, static_cast<std::int64_t>(kFilePages * P));
  }
  long mmap(std::uint64_t a, std::uint64_t len, int prot, int flags, bool file, std::uint64_t off) override {
    return as.mmap(a, len, prot, flags, file ? fd : -1, off);
  }
  int munmap(std::uint64_t a, std::uint64_t len) override { return as.munmap(a, len); }
  int mprotect(std::uint64_t a, std::uint64_t len, int prot) override { return as.mprotect(a, len, prot); }
  int name(std::uint64_t a, std::uint64_t len, const char* nm) override { return as.set_anon_name(a, len, nm); }
  long mremap(std::uint64_t a, std::uint64_t o, std::uint64_t n, int flags, std::uint64_t to) override {
    return as.mremap(a, o, n, flags, to);
  }
  int madvise(std::uint64_t a, std::uint64_t len, int advice) override { return as.madvise(a, len, advice); }
  std::string maps() override { return as.maps(); }
  AddressSpace as;
  int fd = -1;
};

class AnonNameExpected : public ::testing::TestWithParam<LockMode> {};

TEST_P(AnonNameExpected, EveryScenario) {
  for (const Scenario& sc : scenarios()) {
    VmspaceOps ops(GetParam());
    const std::vector<std::string> got = run(ops, sc);
    for (std::size_t i = 0; i < got.size(); ++i)
      EXPECT_EQ(got[i], sc.steps[i].expect) << sc.title << ", step " << i;
    std::string why;
    EXPECT_TRUE(ops.as.validate(&why)) << sc.title << ": " << why;
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, AnonNameExpected,
                         ::testing::Values(LockMode::mmap_lock, LockMode::per_vma_rwsem, LockMode::per_vma_refcount),
                         [](const auto& p) { return std::string(lock_mode_name(p.param)); });

// ---- the host --------------------------------------------------------------

long sys_result(long r) { return r == -1 ? -errno : r; }

struct HostOps : Ops {
  HostOps() {
    fd = static_cast<int>(::syscall(SYS_memfd_create, "f", 0));
    if (fd >= 0 && ::ftruncate(fd, static_cast<off_t>(kFilePages * P)) != 0) fd = -1;
  }
  long mmap(std::uint64_t a, std::uint64_t len, int prot, int flags, bool file, std::uint64_t off) override {
    void* r = ::mmap(reinterpret_cast<void*>(a), len, prot, flags, file ? fd : -1, static_cast<off_t>(off));
    return r == MAP_FAILED ? -errno : static_cast<long>(reinterpret_cast<std::uintptr_t>(r));
  }
  int munmap(std::uint64_t a, std::uint64_t len) override {
    return static_cast<int>(sys_result(::munmap(reinterpret_cast<void*>(a), len)));
  }
  int mprotect(std::uint64_t a, std::uint64_t len, int prot) override {
    return static_cast<int>(sys_result(::mprotect(reinterpret_cast<void*>(a), len, prot)));
  }
  int name(std::uint64_t a, std::uint64_t len, const char* nm) override {
    return static_cast<int>(sys_result(::prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, a, len, nm)));
  }
  long mremap(std::uint64_t a, std::uint64_t o, std::uint64_t n, int flags, std::uint64_t to) override {
    return sys_result(::syscall(SYS_mremap, a, o, n, flags, to));
  }
  int madvise(std::uint64_t a, std::uint64_t len, int advice) override {
    return static_cast<int>(sys_result(::madvise(reinterpret_cast<void*>(a), len, advice)));
  }
  std::string maps() override {
    std::string s;
    const int m = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    char buf[4096];
    for (ssize_t n; m >= 0 && (n = ::read(m, buf, sizeof buf)) > 0;) s.append(buf, static_cast<std::size_t>(n));
    if (m >= 0) ::close(m);
    return s;
  }
  int fd = -1;
};

// Runs `sc` in a forked child on the host.  The report lines, or one line
// "UNSUPPORTED" when the kernel has no anonymous names, or "ERROR ...".
std::vector<std::string> run_on_host(const Scenario& sc) {
  int p[2];
  if (::pipe(p) != 0) return {"ERROR pipe"};
  const pid_t pid = ::fork();
  if (pid < 0) return {"ERROR fork"};
  if (pid == 0) {
    ::close(p[0]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::string out;
    HostOps ops;
    // Probe: name one page of a fresh mapping (a valid call).
    void* probe = ::mmap(nullptr, P, kRW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ops.fd < 0) {
      out = "ERROR memfd\n";
    } else if (::prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, probe, P, "probe") != 0) {
      out = errno == EINVAL ? "UNSUPPORTED\n" : "ERROR probe errno " + std::to_string(errno) + "\n";
    } else {
      ::munmap(reinterpret_cast<void*>(W), kRoom * P);  // the window starts empty
      for (const std::string& l : run(ops, sc)) out += l + "\n";
    }
    for (std::size_t off = 0; off < out.size();) {
      const ssize_t w = ::write(p[1], out.data() + off, out.size() - off);
      if (w <= 0) break;
      off += static_cast<std::size_t>(w);
    }
    ::_exit(0);
  }
  ::close(p[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  if (lines.empty()) lines.push_back("ERROR no output");
  return lines;
}

TEST(AnonNameHost, SameAsVmspace) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "fork under ThreadSanitizer";
#endif
  for (const Scenario& sc : scenarios()) {
    const std::vector<std::string> host = run_on_host(sc);
    if (host.size() == 1 && host[0] == "UNSUPPORTED")
      GTEST_SKIP() << "the host kernel has no anonymous VMA names (CONFIG_ANON_VMA_NAME)";
    ASSERT_FALSE(host.size() == 1 && host[0].rfind("ERROR", 0) == 0) << host[0];
    ASSERT_EQ(host.size(), sc.steps.size()) << sc.title;
    for (LockMode mode : {LockMode::mmap_lock, LockMode::per_vma_rwsem, LockMode::per_vma_refcount}) {
      VmspaceOps ops(mode);
      const std::vector<std::string> got = run(ops, sc);
      for (std::size_t i = 0; i < got.size(); ++i)
        EXPECT_EQ(got[i], host[i]) << sc.title << ", step " << i << " (-host, +vmspace " << lock_mode_name(mode)
                                   << ")";
    }
  }
}

// Names outside what the scenarios show: fork and splits share the name,
// the queries report it, a name survives being moved, smaps prints it.
TEST(AnonName, ForkQueriesAndSmaps) {
  AddressSpace as;
  ASSERT_EQ(as.mmap(W, 4 * P, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(W));
  ASSERT_EQ(as.set_anon_name(W + P, 2 * P, "kept"), 0);
  ASSERT_EQ(as.fill(W, 1, 4 * P).fault, Fault::none);
  auto child = as.fork();
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(shape(child->maps()), shape(as.maps()));
  EXPECT_EQ(shape(child->maps()), "|0-1 rw-p|1-3 rw-p [anon:kept]|3-4 rw-p");
  // Renaming in the parent leaves the child's alone.
  ASSERT_EQ(as.set_anon_name(W, 4 * P, "other"), 0);
  EXPECT_EQ(shape(as.maps()), "|0-4 rw-p [anon:other]");
  EXPECT_EQ(shape(child->maps()), "|0-1 rw-p|1-3 rw-p [anon:kept]|3-4 rw-p");
  VmaInfo v;
  ASSERT_TRUE(child->find_vma(W + 2 * P, &v));
  EXPECT_EQ(v.name, "[anon:kept]");
  EXPECT_NE(child->smaps().find("[anon:kept]\nSize:"), std::string::npos) << child->smaps();
  std::string why;
  EXPECT_TRUE(as.validate(&why)) << why;
  EXPECT_TRUE(child->validate(&why)) << why;
}

// The map-count limit refusing the split: -EAGAIN, as madvise.
TEST(AnonName, SplitRefusedIsEagain) {
  AddressSpaceOptions o;
  o.max_map_count = 1;
  AddressSpace as(o);
  ASSERT_EQ(as.mmap(W, 4 * P, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(W));
  EXPECT_EQ(as.set_anon_name(W + P, P, "n"), -EAGAIN);
  EXPECT_EQ(as.set_anon_name(W, 4 * P, "n"), 0);  // the whole VMA: no split
  EXPECT_EQ(shape(as.maps()), "|0-4 rw-p [anon:n]");
}

}  // namespace
}  // namespace vmspace
