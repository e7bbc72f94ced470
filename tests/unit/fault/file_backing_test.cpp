// SPDX-License-Identifier: MIT
// Files with a backing (issue 14): a host file descriptor and memory-only
// backings, the page cache in front of them, dirty pages and their
// write-back by msync / fsync / the last reference, and the access modes of
// descriptors (checked against the host kernel on a real file).
//   - contents: pages are read from the backing on first use; writes stay
//     in the page cache until written back; write-back writes only dirty
//     pages, only as far as the file's size, and sees a write that comes
//     after an earlier write-back (write-notify: the PTE was cleaned);
//   - a writer inside an AccessScope that holds a translation made before
//     an msync: its bytes are in the backing once msync returns;
//   - errors: a backing that fails to read gives SIGBUS / -EIO; one that
//     cannot punch holes makes MADV_REMOVE fail with nothing changed.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fault/fault.h"
#include "mem/page_table.h"
#include "mem/phys_mem.h"
#include "mm/mm_types.h"
#include "support/test_host.h"
#include "sync/rcu.h"
#include "vmspace/address_space.h"
#include "vmspace/file_backing.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kPage = 4096;
constexpr int kRW = PROT_READ | PROT_WRITE;

// `pages` pages, page i filled with 0x20 + i, then `tail` bytes of 0x7f.
std::vector<unsigned char> pattern(std::uint64_t pages, std::uint64_t tail = 0) {
  std::vector<unsigned char> v(pages * kPage + tail, 0x7f);
  for (std::uint64_t i = 0; i < pages; ++i) std::memset(v.data() + i * kPage, static_cast<int>(0x20 + i), kPage);
  return v;
}

// A temporary host file, removed at the end of the test.
struct TempFile {
  std::string path;
  explicit TempFile(const std::vector<unsigned char>& bytes) {
    char name[] = "/tmp/vmspace-backing-XXXXXX";
    const int fd = ::mkstemp(name);
    EXPECT_GE(fd, 0);
    path = name;
    EXPECT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    ::close(fd);
  }
  ~TempFile() { ::unlink(path.c_str()); }
  std::vector<unsigned char> contents() const {
    std::vector<unsigned char> v;
    const int fd = ::open(path.c_str(), O_RDONLY);
    unsigned char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) v.insert(v.end(), buf, buf + n);
    ::close(fd);
    return v;
  }
};

// Fails to read one page; counts nothing; cannot punch holes.
class FlakyBacking final : public FileBacking {
 public:
  FlakyBacking(std::uint64_t pages, std::uint64_t bad) : mem_(pattern(pages)), bad_(bad) {}
  std::int64_t size() override { return mem_.size(); }
  int read_page(std::uint64_t index, void* buf) override {
    return index == bad_ ? -EIO : mem_.read_page(index, buf);
  }
  int write_page(std::uint64_t index, const void* buf, std::size_t len) override {
    return mem_.write_page(index, buf, len);
  }
  int truncate(std::uint64_t bytes) override { return mem_.truncate(bytes); }

 private:
  MemoryBacking mem_;
  const std::uint64_t bad_;
};

// A maps line without its address range.
std::string without_range(const std::string& line) {
  const auto sp = line.find(' ');
  std::string rest = line.substr(sp);
  if (!rest.empty() && rest.back() == '\n') rest.pop_back();
  return rest;
}

// The host kernel's maps line for a mapping of `path` (opened O_RDWR),
// without its address range.
std::string host_maps_line(const std::string& path, std::uint64_t len, int prot, int flags) {
  const int fd = ::open(path.c_str(), O_RDWR);
  void* p = ::mmap(nullptr, len, prot, flags, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return "mmap failed";
  char start[32];
  std::snprintf(start, sizeof start, "%lx-", reinterpret_cast<unsigned long>(p));
  std::string line = "not found";
  if (FILE* f = std::fopen("/proc/self/maps", "r")) {
    char buf[4096];
    while (std::fgets(buf, sizeof buf, f))
      if (std::strncmp(buf, start, std::strlen(start)) == 0) line = without_range(buf);
    std::fclose(f);
  }
  ::munmap(p, len);
  return line;
}

struct Gate {
  std::mutex m;
  std::condition_variable cv;
  bool open = false;
  void release() {
    std::lock_guard<std::mutex> g(m);
    open = true;
    cv.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> g(m);
    cv.wait(g, [&] { return open; });
  }
  bool wait_for(std::chrono::milliseconds t) {
    std::unique_lock<std::mutex> g(m);
    return cv.wait_for(g, t, [&] { return open; });
  }
};

// read_page(block_index) reads the bytes, then stalls until released (a
// host pread that returned and whose thread was then preempted);
// write_page stalls while `block_writes` is set.
class SlowBacking final : public FileBacking {
 public:
  explicit SlowBacking(std::uint64_t pages) : mem(pattern(pages)) {}
  std::int64_t size() override { return mem.size(); }
  int read_page(std::uint64_t index, void* buf) override {
    const int r = mem.read_page(index, buf);
    if (index == block_index && !blocked_once.exchange(true)) {
      in_read.store(true);
      read_gate.wait();
    }
    return r;
  }
  int write_page(std::uint64_t index, const void* buf, std::size_t len) override {
    if (block_writes.load()) {
      in_write.store(true);
      write_gate.wait();
    }
    return mem.write_page(index, buf, len);
  }
  int truncate(std::uint64_t bytes) override { return mem.truncate(bytes); }
  int punch_hole(std::uint64_t off, std::uint64_t len) override { return mem.punch_hole(off, len); }
  MemoryBacking mem;
  std::uint64_t block_index = ~0ull;
  std::atomic<bool> blocked_once{false}, in_read{false}, block_writes{false}, in_write{false};
  Gate read_gate, write_gate;
};

class FileBackingTest : public ::testing::TestWithParam<LockMode> {
 protected:
  AddressSpaceOptions opts() const {
    AddressSpaceOptions o = test::test_options(GetParam());
    o.phys_bytes = 2048 * kPage;
    o.phys_pretouch = false;
    return o;
  }
  static unsigned char byte_at(AddressSpace& as, std::uint64_t va, Fault* fault = nullptr) {
    unsigned char b = 0xee;
    AccessResult r = as.read(va, &b, 1);
    if (fault != nullptr) *fault = r.fault;
    return b;
  }
  static void put_byte(AddressSpace& as, std::uint64_t va, unsigned char b) { ASSERT_TRUE(as.write(va, &b, 1).ok()); }
};

TEST_P(FileBackingTest, HostFileIsReadAndWrittenBack) {
  const auto initial = pattern(3, 100);
  TempFile tmp(initial);
  AddressSpace as(opts());
  const int fd = as.open(tmp.path, O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  // maps names the file by its path, with the host's device and inode:
  // the line is the host kernel's but for the addresses.
  EXPECT_EQ(without_range(as.maps()), host_maps_line(tmp.path, 4 * kPage, kRW, MAP_SHARED)) << as.maps();
  for (std::uint64_t i = 0; i < 3; ++i) EXPECT_EQ(byte_at(as, kBase + i * kPage + 7), 0x20 + i);
  EXPECT_EQ(byte_at(as, kBase + 3 * kPage + 99), 0x7f);
  EXPECT_EQ(byte_at(as, kBase + 3 * kPage + 100), 0);  // past the end of the file
  // A write stays in the page cache until written back.
  put_byte(as, kBase + kPage + 5, 'A');
  put_byte(as, kBase + 3 * kPage + 50, 'T');
  put_byte(as, kBase + 3 * kPage + 200, 'X');  // past the size: never written back
  EXPECT_EQ(tmp.contents(), initial);
  ASSERT_EQ(as.msync(kBase, 4 * kPage, MS_SYNC), 0);
  auto expect = initial;
  expect[kPage + 5] = 'A';
  expect[3 * kPage + 50] = 'T';
  EXPECT_EQ(tmp.contents(), expect);  // and the size stayed
  // A later write to the same page after write-back is written back too
  // (the PTE was write-protected: the write faulted and dirtied it).
  put_byte(as, kBase + kPage + 6, 'B');
  ASSERT_EQ(as.msync(kBase, 4 * kPage, MS_ASYNC), 0);
  expect[kPage + 6] = 'B';
  EXPECT_EQ(tmp.contents(), expect);
  // pwrite goes through the cache: the mapping sees it at once, the host
  // after fsync.
  ASSERT_EQ(as.pwrite(fd, "zz", 2, 10), 2);
  EXPECT_EQ(byte_at(as, kBase + 10), 'z');
  EXPECT_EQ(tmp.contents(), expect);
  ASSERT_EQ(as.fsync(fd), 0);
  expect[10] = expect[11] = 'z';
  EXPECT_EQ(tmp.contents(), expect);
  EXPECT_EQ(as.close(fd), 0);
  EXPECT_EQ(as.munmap(kBase, 4 * kPage), 0);
}

TEST_P(FileBackingTest, WriteBackWritesOnlyDirtyPages) {
  auto mem = std::make_shared<MemoryBacking>(pattern(8));
  AddressSpace as(opts());
  const int fd = as.open_file(mem, "/guest/data", O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(as.mmap(kBase, 8 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  EXPECT_NE(as.maps().find("/guest/data"), std::string::npos);
  for (std::uint64_t i = 0; i < 8; ++i) EXPECT_EQ(byte_at(as, kBase + i * kPage), 0x20 + i);
  ASSERT_EQ(as.msync(kBase, 8 * kPage, MS_SYNC), 0);
  EXPECT_EQ(mem->pages_written(), 0u);  // read faults dirty nothing
  EXPECT_EQ(mem->syncs(), 1u);
  put_byte(as, kBase + 2 * kPage, 'q');
  ASSERT_EQ(as.msync(kBase, 8 * kPage, MS_SYNC), 0);
  EXPECT_EQ(mem->pages_written(), 1u);
  ASSERT_EQ(as.msync(kBase, 8 * kPage, MS_SYNC), 0);
  EXPECT_EQ(mem->pages_written(), 1u);  // clean now
  put_byte(as, kBase + 2 * kPage + 1, 'r');
  ASSERT_EQ(as.msync(kBase + kPage, kPage, MS_SYNC), 0);  // another page's range: not written
  EXPECT_EQ(mem->pages_written(), 1u);
  ASSERT_EQ(as.msync(kBase + 2 * kPage, kPage, MS_SYNC), 0);
  EXPECT_EQ(mem->pages_written(), 2u);
  auto bytes = mem->contents();
  EXPECT_EQ(bytes[2 * kPage], 'q');
  EXPECT_EQ(bytes[2 * kPage + 1], 'r');
  // mprotect back to writable keeps clean pages read-only: the next write
  // still dirties its page.
  ASSERT_EQ(as.mprotect(kBase, 8 * kPage, PROT_READ), 0);
  ASSERT_EQ(as.mprotect(kBase, 8 * kPage, kRW), 0);
  put_byte(as, kBase + 2 * kPage + 2, 's');
  ASSERT_EQ(as.msync(kBase, 8 * kPage, MS_SYNC), 0);
  EXPECT_EQ(mem->contents()[2 * kPage + 2], 's');
  // A private mapping's writes are its own: never written back.
  ASSERT_EQ(as.mmap(kBase + 16 * kPage, 8 * kPage, kRW, MAP_PRIVATE | MAP_FIXED, fd, 0),
            static_cast<long>(kBase + 16 * kPage));
  put_byte(as, kBase + 16 * kPage + 3 * kPage, 'p');
  ASSERT_EQ(as.msync(kBase + 16 * kPage, 8 * kPage, MS_SYNC), 0);
  EXPECT_EQ(mem->contents()[3 * kPage], 0x23);
}

// The access modes of descriptors, as the host kernel decides them for a
// real file opened the same way.
TEST_P(FileBackingTest, AccessModesMatchTheHost) {
  TempFile tmp(pattern(2));
  struct Case {
    int oflags, prot, mflags;
  };
  const Case cases[] = {
      {O_RDONLY, PROT_READ, MAP_SHARED},  {O_RDONLY, kRW, MAP_SHARED},  {O_RDONLY, kRW, MAP_PRIVATE},
      {O_RDONLY, PROT_READ | PROT_EXEC, MAP_SHARED}, {O_WRONLY, PROT_READ, MAP_SHARED},
      {O_WRONLY, PROT_READ, MAP_PRIVATE}, {O_RDWR, kRW, MAP_SHARED},    {O_RDWR, PROT_READ, MAP_SHARED},
      {O_RDONLY, PROT_NONE, MAP_SHARED},  {O_WRONLY, PROT_NONE, MAP_PRIVATE},
      {O_ACCMODE, PROT_READ, MAP_SHARED}, {O_ACCMODE, PROT_NONE, MAP_PRIVATE},
      {O_RDWR | O_APPEND, kRW, MAP_SHARED},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("oflags " + std::to_string(c.oflags) + " prot " + std::to_string(c.prot) + " flags " +
                 std::to_string(c.mflags));
    // The host.
    const int hfd = ::open(tmp.path.c_str(), c.oflags);
    ASSERT_GE(hfd, 0);
    void* hp = ::mmap(nullptr, 2 * kPage, c.prot, c.mflags, hfd, 0);
    const long host_map = hp == MAP_FAILED ? -errno : 0;
    long host_mprotect = 1, host_pwrite, host_pread, host_ftruncate;
    if (hp != MAP_FAILED) {
      host_mprotect = ::mprotect(hp, 2 * kPage, kRW) == 0 ? 0 : -errno;
      ::munmap(hp, 2 * kPage);
    }
    char b = 0x20;  // the byte already at offset 6: the file stays as it is
    host_pwrite = ::pwrite(hfd, &b, 1, 6) >= 0 ? 0 : -errno;
    host_pread = ::pread(hfd, &b, 1, 0) >= 0 ? 0 : -errno;
    host_ftruncate = ::ftruncate(hfd, 2 * kPage) == 0 ? 0 : -errno;
    ::close(hfd);
    // vmspace.
    AddressSpace as(opts());
    const int fd = as.open(tmp.path, c.oflags);
    ASSERT_GE(fd, 0);
    const long r = as.mmap(kBase, 2 * kPage, c.prot, c.mflags | MAP_FIXED, fd, 0);
    EXPECT_EQ(r < 0 ? r : 0, host_map);
    if (r >= 0) {
      EXPECT_EQ(as.mprotect(kBase, 2 * kPage, kRW), host_mprotect);
      EXPECT_NE(as.maps().find((c.mflags & MAP_SHARED) ? "s 00000000" : "p 00000000"), std::string::npos);
    }
    if (!(c.oflags & O_APPEND)) {
      const long w = as.pwrite(fd, &b, 1, 6);
      EXPECT_EQ(w >= 0 ? 0 : w, host_pwrite);
    }
    const long rd = as.pread(fd, &b, 1, 0);
    EXPECT_EQ(rd >= 0 ? 0 : rd, host_pread);
    EXPECT_EQ(as.ftruncate(fd, 2 * kPage), host_ftruncate);
    EXPECT_EQ(as.fsync(fd), 0);
  }
  EXPECT_EQ(tmp.contents(), pattern(2));
  // Bad arguments.
  AddressSpace as(opts());
  char b0 = 0;
  ASSERT_EQ(as.memfd_create("m"), 0);
  EXPECT_EQ(as.open("/nonexistent/vmspace", O_RDONLY), -ENOENT);
  EXPECT_EQ(as.open("/tmp", O_RDONLY), -EINVAL);  // not a regular file
  EXPECT_EQ(as.open_file(nullptr, "x", O_RDONLY), -EINVAL);
  EXPECT_EQ(as.open_file(std::make_shared<MemoryBacking>(), "x", O_RDONLY | O_CREAT), -EINVAL);
  EXPECT_EQ(as.pwrite(0, &b0, 1, INT64_MAX), -EINVAL);  // offset + count past INT64_MAX (rw_verify_area)
  EXPECT_EQ(as.fsync(42), -EBADF);
}

TEST_P(FileBackingTest, TruncateReachesTheBacking) {
  auto mem = std::make_shared<MemoryBacking>(pattern(4));
  AddressSpace as(opts());
  const int fd = as.open_file(mem, "f", O_RDWR);
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  put_byte(as, kBase + 3 * kPage, 'd');  // dirty, then truncated away: never written
  put_byte(as, kBase + kPage + 10, 'k');
  ASSERT_EQ(as.ftruncate(fd, kPage + 100), 0);
  EXPECT_EQ(mem->contents().size(), kPage + 100);
  Fault f = Fault::none;
  byte_at(as, kBase + 2 * kPage, &f);
  EXPECT_EQ(f, Fault::sigbus);
  EXPECT_EQ(byte_at(as, kBase + kPage + 100), 0);  // the tail of the last page
  ASSERT_EQ(as.msync(kBase, 4 * kPage, MS_SYNC), 0);
  auto bytes = mem->contents();
  ASSERT_EQ(bytes.size(), kPage + 100);
  EXPECT_EQ(bytes[kPage + 10], 'k');
  ASSERT_EQ(as.ftruncate(fd, 4 * kPage), 0);
  EXPECT_EQ(mem->contents().size(), 4 * kPage);
  EXPECT_EQ(byte_at(as, kBase + 3 * kPage), 0);  // grown: zeros
}

TEST_P(FileBackingTest, PreadReadsTheBackingAndPwriteWaitsForFsync) {
  auto mem = std::make_shared<MemoryBacking>(pattern(4));
  AddressSpace as(opts());
  const int fd = as.open_file(mem, "f", O_RDWR);
  unsigned char buf[3] = {};
  ASSERT_EQ(as.pread(fd, buf, 3, 2 * kPage + 1), 3);
  EXPECT_EQ(buf[0], 0x22);
  ASSERT_EQ(as.pwrite(fd, "abc", 3, 6 * kPage), 3);  // extends the file
  EXPECT_EQ(mem->contents().size(), 4 * kPage);
  ASSERT_EQ(as.fsync(fd), 0);
  auto bytes = mem->contents();
  ASSERT_EQ(bytes.size(), 6 * kPage + 3);
  EXPECT_EQ(bytes[6 * kPage + 2], 'c');
  EXPECT_EQ(mem->syncs(), 1u);
}

TEST_P(FileBackingTest, TheLastReferenceWritesBack) {
  auto mem = std::make_shared<MemoryBacking>(pattern(2));
  {
    AddressSpace as(opts());
    const int fd = as.open_file(mem, "f", O_RDWR);
    ASSERT_EQ(as.mmap(kBase, 2 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
    put_byte(as, kBase + kPage + 1, 'L');
    EXPECT_EQ(as.close(fd), 0);
    EXPECT_EQ(mem->pages_written(), 0u);  // still mapped
  }  // unmapped with the space: the file goes, its dirty page is written
  EXPECT_EQ(mem->pages_written(), 1u);
  EXPECT_EQ(mem->contents()[kPage + 1], 'L');
}

TEST_P(FileBackingTest, ReadErrorsAreSigbusAndEio) {
  auto flaky = std::make_shared<FlakyBacking>(3, 1);
  AddressSpace as(opts());
  const int fd = as.open_file(flaky, "f", O_RDWR);
  ASSERT_EQ(as.mmap(kBase, 3 * kPage, kRW, MAP_PRIVATE | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  EXPECT_EQ(byte_at(as, kBase), 0x20);
  Fault f = Fault::none;
  byte_at(as, kBase + kPage, &f);
  EXPECT_EQ(f, Fault::sigbus);
  unsigned char b = 0;
  EXPECT_EQ(as.write(kBase + kPage, &b, 1).fault, Fault::sigbus);  // the copy needs the page too
  EXPECT_EQ(as.pread(fd, &b, 1, kPage + 3), -EIO);
  char two[2];
  EXPECT_EQ(as.pread(fd, two, 2, kPage - 1), 1);  // stops at the page that failed
  EXPECT_EQ(byte_at(as, kBase + 2 * kPage), 0x22);
}

TEST_P(FileBackingTest, RemovePunchesTheBackingOrFailsUnchanged) {
  auto mem = std::make_shared<MemoryBacking>(pattern(4));
  AddressSpace as(opts());
  const int fd = as.open_file(mem, "f", O_RDWR);
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  put_byte(as, kBase + kPage, 'D');  // dirty, then punched: never written
  ASSERT_EQ(as.madvise(kBase + kPage, 2 * kPage, MADV_REMOVE), 0);
  EXPECT_EQ(byte_at(as, kBase + kPage), 0);
  EXPECT_EQ(byte_at(as, kBase + 2 * kPage + 9), 0);
  EXPECT_EQ(byte_at(as, kBase + 3 * kPage), 0x23);
  ASSERT_EQ(as.msync(kBase, 4 * kPage, MS_SYNC), 0);
  auto bytes = mem->contents();
  EXPECT_EQ(bytes[kPage], 0);
  EXPECT_EQ(bytes[2 * kPage + 9], 0);
  EXPECT_EQ(mem->pages_written(), 0u);

  auto flaky = std::make_shared<FlakyBacking>(4, 99);
  const int fd2 = as.open_file(flaky, "g", O_RDWR);
  ASSERT_EQ(as.mmap(kBase + 8 * kPage, 4 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd2, 0),
            static_cast<long>(kBase + 8 * kPage));
  put_byte(as, kBase + 9 * kPage, 'K');
  EXPECT_EQ(as.madvise(kBase + 9 * kPage, kPage, MADV_REMOVE), -EOPNOTSUPP);
  EXPECT_EQ(byte_at(as, kBase + 9 * kPage), 'K');
}

// A thread inside an AccessScope holds a writable translation made before
// msync began and writes through it while msync runs: once msync returns
// (it waits for the scope to end before copying), the byte is in the
// backing.  Without that wait, msync copies first and cleans the page, and
// the byte never reaches the backing.
TEST_P(FileBackingTest, WriteThroughAnOldTranslationIsNotLost) {
  auto mem = std::make_shared<MemoryBacking>(pattern(1));
  AddressSpace as(opts());
  const int fd = as.open_file(mem, "f", O_RDWR);
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  put_byte(as, kBase, 'a');  // dirty and writable
  std::atomic<int> stage{0};
  std::thread writer([&] {
    AddressSpace::AccessScope scope(as);
    auto* p = static_cast<volatile unsigned char*>(scope.translate(kBase + 1, true));
    ASSERT_NE(p, nullptr);
    stage.store(1);
    while (stage.load() < 2) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // msync is well under way
    *p = 'W';
  });
  while (stage.load() < 1) std::this_thread::yield();
  stage.store(2);
  ASSERT_EQ(as.msync(kBase, kPage, MS_SYNC), 0);
  writer.join();
  ASSERT_EQ(as.msync(kBase, kPage, MS_SYNC), 0);
  EXPECT_EQ(mem->contents()[1], 'W');
}

// msync from inside a scope cannot wait for a grace period: it writes the
// page but leaves it dirty, so the next write-back writes it again.
TEST_P(FileBackingTest, MsyncInsideAScopeLeavesPagesDirty) {
  auto mem = std::make_shared<MemoryBacking>(pattern(1));
  AddressSpace as(opts());
  const int fd = as.open_file(mem, "f", O_RDWR);
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  put_byte(as, kBase, 'i');
  {
    AddressSpace::AccessScope scope(as);
    ASSERT_EQ(as.msync(kBase, kPage, MS_SYNC), 0);
    EXPECT_EQ(as.fsync(fd), 0);
  }
  EXPECT_EQ(mem->contents()[0], 'i');
  const auto written = mem->pages_written();
  ASSERT_EQ(as.msync(kBase, kPage, MS_SYNC), 0);
  EXPECT_EQ(mem->pages_written(), written + 1);
  ASSERT_EQ(as.msync(kBase, kPage, MS_SYNC), 0);
  EXPECT_EQ(mem->pages_written(), written + 1);
}

// Writers keep changing pages while another thread writes them back; once
// the writers stop, one more msync leaves the backing equal to memory.
TEST_P(FileBackingTest, ConcurrentWritersAndWriteBack) {
  constexpr std::uint64_t kPages = 16;
  auto mem = std::make_shared<MemoryBacking>(pattern(kPages));
  AddressSpace as(opts());
  const int fd = as.open_file(mem, "f", O_RDWR);
  ASSERT_EQ(as.mmap(kBase, kPages * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t)
    writers.emplace_back([&, t] {
      for (unsigned i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        const std::uint64_t page = (i * 7 + static_cast<unsigned>(t)) % kPages;
        const unsigned char b = static_cast<unsigned char>(i);
        if (!as.write(kBase + page * kPage + static_cast<unsigned>(t) * 64 + i % 64, &b, 1).ok()) return;
      }
    });
  for (int i = 0; i < 20; ++i) ASSERT_EQ(as.msync(kBase, kPages * kPage, i % 2 ? MS_SYNC : MS_ASYNC), 0);
  stop.store(true);
  for (auto& w : writers) w.join();
  ASSERT_EQ(as.msync(kBase, kPages * kPage, MS_SYNC), 0);
  std::vector<unsigned char> now(kPages * kPage);
  ASSERT_TRUE(as.read(kBase, now.data(), now.size()).ok());
  EXPECT_EQ(mem->contents(), now);
}

// O_APPEND: pwrite appends whatever the offset (as Linux's); write-back
// still writes pages where they belong.
TEST_P(FileBackingTest, AppendDescriptor) {
  TempFile tmp(pattern(2));
  AddressSpace as(opts());
  const int fd = as.open(tmp.path, O_RDWR | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(as.mmap(kBase, 2 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  put_byte(as, kBase, 'Z');
  ASSERT_EQ(as.msync(kBase, 2 * kPage, MS_SYNC), 0);
  ASSERT_EQ(as.pwrite(fd, "ab", 2, 0), 2);
  ASSERT_EQ(as.fsync(fd), 0);
  auto expect = pattern(2);
  expect[0] = 'Z';
  expect.push_back('a');
  expect.push_back('b');
  EXPECT_EQ(tmp.contents(), expect);
}

// A write-only descriptor writes (the host descriptor can still read the
// rest of a page it writes back), as on the host.
TEST_P(FileBackingTest, WriteOnlyDescriptorWrites) {
  TempFile tmp(pattern(2));
  AddressSpace as(opts());
  const int wfd = as.open(tmp.path, O_WRONLY);
  ASSERT_GE(wfd, 0);
  EXPECT_EQ(as.pwrite(wfd, "y", 1, 6), 1);
  ASSERT_EQ(as.fsync(wfd), 0);
  auto expect = pattern(2);
  expect[6] = 'y';
  EXPECT_EQ(tmp.contents(), expect);
}

// Every open of one host file in a pool shares one page cache: what one
// descriptor (or space) writes, the other reads at once, and write-back
// of one never undoes the other's bytes.
TEST_P(FileBackingTest, OpensOfOneFileShareThePageCache) {
  TempFile tmp(pattern(2));
  AddressSpace as(opts());
  const int a = as.open(tmp.path, O_RDWR), b = as.open(tmp.path, O_RDWR);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  unsigned char c = 0;
  ASSERT_EQ(as.pread(b, &c, 1, 0), 1);
  ASSERT_EQ(as.pwrite(a, "A", 1, 0), 1);
  ASSERT_EQ(as.pread(b, &c, 1, 0), 1);
  EXPECT_EQ(c, 'A');
  ASSERT_EQ(as.pwrite(b, "B", 1, 1), 1);
  ASSERT_EQ(as.fsync(a), 0);
  ASSERT_EQ(as.fsync(b), 0);
  EXPECT_EQ(tmp.contents()[0], 'A');
  EXPECT_EQ(tmp.contents()[1], 'B');
  // A second space on the same pool: its MAP_SHARED mapping is the same
  // pages.
  AddressSpaceOptions o2 = opts();
  o2.phys = as.phys();
  AddressSpace other(o2);
  const int d = other.open(tmp.path, O_RDWR);
  ASSERT_EQ(as.mmap(kBase, 2 * kPage, kRW, MAP_SHARED | MAP_FIXED, a, 0), static_cast<long>(kBase));
  ASSERT_EQ(other.mmap(kBase, 2 * kPage, kRW, MAP_SHARED | MAP_FIXED, d, 0), static_cast<long>(kBase));
  put_byte(as, kBase + kPage + 3, 'S');
  EXPECT_EQ(byte_at(other, kBase + kPage + 3), 'S');
  ASSERT_EQ(other.msync(kBase, 2 * kPage, MS_SYNC), 0);
  EXPECT_EQ(tmp.contents()[kPage + 3], 'S');
  EXPECT_EQ(other.munmap(kBase, 2 * kPage), 0);
  EXPECT_EQ(other.close(d), 0);
}

// A page read from the backing before a hole punch / truncate removed its
// bytes must not enter the cache after it (stale bytes in the hole).
TEST_P(FileBackingTest, ReadAcrossAPunchIsReadAgain) {
  auto b = std::make_shared<SlowBacking>(4);
  b->block_index = 2;
  AddressSpace as(opts());
  const int fd = as.open_file(b, "f", O_RDWR);
  ASSERT_EQ(as.mmap(kBase, 4 * kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  std::thread reader([&] {
    unsigned char c;
    EXPECT_EQ(as.pread(fd, &c, 1, 2 * kPage), 1);
  });
  while (!b->in_read) std::this_thread::yield();
  ASSERT_EQ(as.madvise(kBase + 2 * kPage, kPage, MADV_REMOVE), 0);
  b->read_gate.release();
  reader.join();
  EXPECT_EQ(byte_at(as, kBase + 2 * kPage), 0);
  put_byte(as, kBase + 2 * kPage + 100, 'x');
  ASSERT_EQ(as.fsync(fd), 0);
  EXPECT_EQ(b->mem.contents()[2 * kPage], 0);
  EXPECT_EQ(b->mem.contents()[2 * kPage + 100], 'x');
}

TEST_P(FileBackingTest, ReadAcrossATruncateIsReadAgain) {
  auto b = std::make_shared<SlowBacking>(4);
  b->block_index = 3;
  AddressSpace as(opts());
  const int fd = as.open_file(b, "f", O_RDWR);
  std::thread reader([&] {
    unsigned char c;
    as.pread(fd, &c, 1, 3 * kPage);
  });
  while (!b->in_read) std::this_thread::yield();
  ASSERT_EQ(as.ftruncate(fd, 0), 0);
  ASSERT_EQ(as.ftruncate(fd, 4 * kPage), 0);
  b->read_gate.release();
  reader.join();
  unsigned char c = 0xee;
  ASSERT_EQ(as.pread(fd, &c, 1, 3 * kPage), 1);
  EXPECT_EQ(c, 0);
}

// fsync inside a scope while another write-back has claimed the page
// (cleaned it, waits for a grace period): the page is written anyway.
TEST_P(FileBackingTest, FsyncInsideAScopeWritesPagesUnderWriteBack) {
  auto mem = std::make_shared<MemoryBacking>(pattern(1));
  AddressSpace as(opts());
  const int fd = as.open_file(mem, "f", O_RDWR);
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  put_byte(as, kBase, 'a');
  mem::pfn_t pfn;
  {
    rcu::ReadGuard g;
    pfn = mem::pte_pfn(as.mm()->pgtables.lookup(kBase));
  }
  std::atomic<int> stage{0};
  int inner = -1;
  unsigned char seen = 0;
  std::thread emu([&] {
    AddressSpace::AccessScope scope(as);  // holds up the other write-back's grace period
    stage = 1;
    while (as.phys()->frame(pfn).flags.load() & mem::kPgDirty) std::this_thread::yield();
    inner = as.fsync(fd);
    seen = mem->contents()[0];
  });
  while (stage < 1) std::this_thread::yield();
  std::thread wb([&] { EXPECT_EQ(as.msync(kBase, kPage, MS_SYNC), 0); });
  emu.join();
  wb.join();
  EXPECT_EQ(inner, 0);
  EXPECT_EQ(seen, 'a');
}

// A store through a PTE that a write fault has just made writable, then
// msync: the page must already be dirty.  The hook runs in the faulting
// thread with the PTE lock held, right after the PTE became writable: it
// stores through it and lets another thread msync, waiting a while for
// that msync to end (it cannot while the lock is held if it found the page
// dirty; without the fix it found it clean and returned at once).
TEST_P(FileBackingTest, PageIsDirtyBeforeItsPteIsWritable) {
#if !defined(VMSPACE_DEBUG_CHECKS)
  GTEST_SKIP() << "fault hooks are compiled out of release builds";
#endif
  auto mem = std::make_shared<MemoryBacking>(pattern(1));
  AddressSpace as(opts());
  const int fd = as.open_file(mem, "f", O_RDWR);
  ASSERT_EQ(as.mmap(kBase, kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  (void)byte_at(as, kBase);  // read-only PTE (write-notify)
  struct Ctx {
    AddressSpace* as;
    Gate go, done;
    int msync_result = 1;
  } ctx{&as, {}, {}};
  std::thread syncer([&] {
    ctx.go.wait();
    ctx.msync_result = as.msync(kBase, kPage, MS_SYNC);
    ctx.done.release();
  });
  fault::FaultHooks hooks;
  hooks.arg = &ctx;
  hooks.shared_write_mapped = [](void* arg) {
    auto* c = static_cast<Ctx*>(arg);
    {
      AddressSpace::AccessScope scope(*c->as);
      auto* p = static_cast<unsigned char*>(scope.translate(kBase + 1, true));
      if (p != nullptr) *p = 'W';
    }
    c->go.release();
    c->done.wait_for(std::chrono::milliseconds(200));
  };
  fault::set_fault_hooks(&hooks);
  EXPECT_EQ(as.fault_in(kBase, true), Fault::none);
  fault::set_fault_hooks(nullptr);
  syncer.join();
  EXPECT_EQ(ctx.msync_result, 0);
  EXPECT_EQ(mem->contents()[1], 'W');
}

// The last reference to a file with a backing goes on an RCU callback
// (munmap): its write-back runs on the flusher thread, so a slow backing
// holds up no other RCU work (here: destroying an unrelated space).
TEST_P(FileBackingTest, ReleasedFilesAreWrittenBackOffTheRcuThread) {
  auto b = std::make_shared<SlowBacking>(1);
  auto space = std::make_unique<AddressSpace>(opts());
  const int fd = space->open_file(b, "f", O_RDWR);
  ASSERT_EQ(space->mmap(kBase, kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  put_byte(*space, kBase, 'Z');
  b->block_writes = true;
  ASSERT_EQ(space->close(fd), 0);
  ASSERT_EQ(space->munmap(kBase, kPage), 0);
  for (int i = 0; i < 400 && !b->in_write; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(b->in_write);
  std::atomic<bool> done{false};
  std::thread other([&] {
    { AddressSpace unrelated(opts()); }
    done = true;
  });
  for (int i = 0; i < 400 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(done);
  b->write_gate.release();
  other.join();
  space.reset();  // waits for the flusher
  EXPECT_EQ(b->mem.contents()[0], 'Z');
}

// Spaces sharing a pool: destroying one never waits for the write-back
// of a file another one let go of (only the pool's end waits for it).
TEST_P(FileBackingTest, DestroyingASpaceWaitsNotForOtherSpacesFiles) {
  auto pool = std::make_shared<PhysicalMemory>(PhysicalMemory::Options{1024 * kPage, false});
  AddressSpaceOptions o = opts();
  o.pool = pool;
  auto a = std::make_unique<AddressSpace>(o);
  auto b = std::make_unique<AddressSpace>(o);
  auto slow = std::make_shared<SlowBacking>(1);
  const int fd = b->open_file(slow, "f", O_RDWR);
  ASSERT_EQ(b->mmap(kBase, kPage, kRW, MAP_SHARED | MAP_FIXED, fd, 0), static_cast<long>(kBase));
  put_byte(*b, kBase, 'B');
  slow->block_writes = true;
  ASSERT_EQ(b->close(fd), 0);
  ASSERT_EQ(b->munmap(kBase, kPage), 0);
  for (int i = 0; i < 400 && !slow->in_write; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(slow->in_write);  // the flusher is stuck in B's file
  std::atomic<bool> done{false};
  std::thread destroyer([&] {
    a.reset();
    done = true;
  });
  for (int i = 0; i < 400 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(done);
  slow->write_gate.release();
  destroyer.join();
  b.reset();
  pool.reset();  // the pool's end waits for the write-back
  EXPECT_EQ(slow->mem.contents()[0], 'B');
}

INSTANTIATE_TEST_SUITE_P(AllModes, FileBackingTest, ::testing::ValuesIn(kAllLockModes),
                         [](const auto& i) { return std::string(lock_mode_name(i.param)); });

}  // namespace
}  // namespace vmspace
