// SPDX-License-Identifier: MIT
// file_backing.cpp - the two FileBacking implementations the library ships:
// a host file descriptor, and bytes in host memory.
#include "vmspace/file_backing.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

namespace vmspace {

namespace {
constexpr std::uint64_t kPage = 4096;
}  // namespace

int FileBacking::punch_hole(std::uint64_t, std::uint64_t) { return -EOPNOTSUPP; }
int FileBacking::sync() { return 0; }

namespace {

class HostFdBacking final : public FileBacking {
 public:
  HostFdBacking(int fd, bool own) : fd_(fd), own_(own) {}
  ~HostFdBacking() override {
    if (own_) ::close(fd_);
  }
  HostFdBacking(const HostFdBacking&) = delete;
  HostFdBacking& operator=(const HostFdBacking&) = delete;

  std::int64_t size() override {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return -errno;
    if (!S_ISREG(st.st_mode)) return -EINVAL;  // pipes, devices: not mappable files here
    return st.st_size;
  }

  int read_page(std::uint64_t index, void* buf) override {
    auto* out = static_cast<unsigned char*>(buf);
    std::uint64_t got = 0;
    while (got < kPage) {
      const ssize_t n = ::pread(fd_, out + got, kPage - got, static_cast<off_t>(index * kPage + got));
      if (n < 0) {
        if (errno == EINTR) continue;
        return -errno;
      }
      if (n == 0) break;  // end of file: the rest reads as zeros
      got += static_cast<std::uint64_t>(n);
    }
    std::memset(out + got, 0, kPage - got);
    return 0;
  }

  int write_page(std::uint64_t index, const void* buf, std::size_t len) override {
    const auto* in = static_cast<const unsigned char*>(buf);
    std::size_t put = 0;
    while (put < len) {
      const ssize_t n = ::pwrite(fd_, in + put, len - put, static_cast<off_t>(index * kPage + put));
      if (n < 0) {
        if (errno == EINTR) continue;
        return -errno;
      }
      if (n == 0) return -EIO;
      put += static_cast<std::size_t>(n);
    }
    return 0;
  }

  int truncate(std::uint64_t bytes) override {
    if (bytes > static_cast<std::uint64_t>(INT64_MAX)) return -EINVAL;
    return ::ftruncate(fd_, static_cast<off_t>(bytes)) == 0 ? 0 : -errno;
  }

  int punch_hole(std::uint64_t offset, std::uint64_t len) override {
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                    static_cast<off_t>(len)) == 0)
      return 0;
    return -errno;
  }

  int sync() override { return ::fdatasync(fd_) == 0 ? 0 : -errno; }

  Identity identity() const override {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return {};
    return Identity{major(st.st_dev), minor(st.st_dev), st.st_ino};
  }

 private:
  const int fd_;
  const bool own_;
};

}  // namespace

std::shared_ptr<FileBacking> host_fd_backing(int fd, bool own) { return std::make_shared<HostFdBacking>(fd, own); }

std::int64_t MemoryBacking::size() {
  std::lock_guard<std::mutex> g(lock_);
  return static_cast<std::int64_t>(bytes_.size());
}

int MemoryBacking::read_page(std::uint64_t index, void* buf) {
  std::lock_guard<std::mutex> g(lock_);
  auto* out = static_cast<unsigned char*>(buf);
  const std::uint64_t off = index * kPage;
  const std::uint64_t n = off < bytes_.size() ? std::min<std::uint64_t>(kPage, bytes_.size() - off) : 0;
  if (n != 0) std::memcpy(out, bytes_.data() + off, n);
  std::memset(out + n, 0, kPage - n);
  return 0;
}

int MemoryBacking::write_page(std::uint64_t index, const void* buf, std::size_t len) {
  std::lock_guard<std::mutex> g(lock_);
  const std::uint64_t off = index * kPage;
  try {
    if (off + len > bytes_.size()) bytes_.resize(off + len);
  } catch (const std::bad_alloc&) {
    return -ENOSPC;
  }
  std::memcpy(bytes_.data() + off, buf, len);
  ++pages_written_;
  return 0;
}

int MemoryBacking::truncate(std::uint64_t bytes) {
  std::lock_guard<std::mutex> g(lock_);
  try {
    bytes_.resize(bytes);
  } catch (const std::exception&) {  // bad_alloc, length_error
    return -EFBIG;
  }
  return 0;
}

int MemoryBacking::punch_hole(std::uint64_t offset, std::uint64_t len) {
  std::lock_guard<std::mutex> g(lock_);
  if (offset < bytes_.size()) {
    const std::uint64_t end = std::min<std::uint64_t>(bytes_.size(), len > bytes_.size() - offset ? bytes_.size() : offset + len);
    std::fill(bytes_.begin() + static_cast<std::ptrdiff_t>(offset), bytes_.begin() + static_cast<std::ptrdiff_t>(end), 0);
  }
  return 0;
}

int MemoryBacking::sync() {
  std::lock_guard<std::mutex> g(lock_);
  ++syncs_;
  return 0;
}

std::vector<unsigned char> MemoryBacking::contents() const {
  std::lock_guard<std::mutex> g(lock_);
  return bytes_;
}

std::uint64_t MemoryBacking::pages_written() const {
  std::lock_guard<std::mutex> g(lock_);
  return pages_written_;
}

std::uint64_t MemoryBacking::syncs() const {
  std::lock_guard<std::mutex> g(lock_);
  return syncs_;
}

}  // namespace vmspace
