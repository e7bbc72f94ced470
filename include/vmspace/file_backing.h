// SPDX-License-Identifier: MIT
// file_backing.h - where the bytes of a file come from and go to.
//
// A file an AddressSpace maps keeps its pages in a page cache of frames
// from the space's physical memory.  A memfd (AddressSpace::memfd_create)
// has no backing: its page cache is its storage, as a Linux shmem file.  A
// file opened with AddressSpace::open_file or AddressSpace::open has a
// FileBacking: a page-cache miss reads the page from it, and dirty pages
// (written with pwrite or through a MAP_SHARED mapping) are written back to
// it by msync, fsync, and when the last reference to the file goes (its
// last descriptor closed and its last mapping unmapped).  Nothing is
// evicted: once read, a page stays cached until truncated away.
//
// The page cache assumes it is the only writer of the backing while the
// file is open: a change made behind its back is seen only in pages not
// cached yet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "vmspace/export.h"

namespace vmspace {

class VMSPACE_API FileBacking {
 public:
  virtual ~FileBacking() = default;

  // The size in bytes (>= 0), or -errno.  Called once, when a space opens
  // the file; the space keeps the size from then on.
  virtual std::int64_t size() = 0;
  // Fill `buf` (4096 bytes) with bytes [index * 4096, index * 4096 + 4096)
  // of the backing; bytes past its end read as zeros.  0, or -errno (a
  // fault that needed the page then raises SIGBUS, as Linux does on a
  // read error; pread returns the error).
  virtual int read_page(std::uint64_t index, void* buf) = 0;
  // Store `len` bytes (1..4096) from `buf` at byte offset index * 4096
  // (write-back of a dirty page; `len` stops at the file's size).  0, or
  // -errno: the page then stays dirty and msync / fsync return the error.
  virtual int write_page(std::uint64_t index, const void* buf, std::size_t len) = 0;
  // Make the backing `bytes` long (ftruncate: growing adds zeros).  0, or
  // -errno, in which case the file's size stays as it was.
  virtual int truncate(std::uint64_t bytes) = 0;
  // Deallocate [offset, offset + len), keeping the size; later reads of
  // that range give zeros (MADV_REMOVE).  0, or -errno; the default
  // refuses with -EOPNOTSUPP, as Linux does for file systems that cannot.
  virtual int punch_hole(std::uint64_t offset, std::uint64_t len);
  // Make what was written durable (fsync; msync with MS_SYNC).  0, or
  // -errno.  The default does nothing and returns 0.
  virtual int sync();

  // The device and inode numbers /proc/self/maps shows for the file; an
  // inode number of 0 lets the space choose one (device 00:00).
  struct Identity {
    unsigned dev_major = 0, dev_minor = 0;
    std::uint64_t ino = 0;
  };
  virtual Identity identity() const { return {}; }
};
// Thread safety: a space calls a backing from any of the threads that use
// it, concurrently for different pages (faults, pread) and concurrently
// with write-back; write-back of one file is serialized, and truncate and
// punch_hole never run concurrently with a write_page of the same file.
// Implementations must allow that.

// A host file descriptor: pread, pwrite, ftruncate, fallocate(PUNCH_HOLE),
// fdatasync; identity() from fstat.  With `own`, the descriptor is closed
// when the backing is destroyed (when every space has let go of the file).
VMSPACE_API std::shared_ptr<FileBacking> host_fd_backing(int fd, bool own);

// Memory-only: the bytes live in host memory (initially `initial`), grow
// with truncate, and support punch_hole.  For embedders that hold a file's
// bytes themselves (a guest executable loaded from an archive) and for
// tests, which can look at what was written back.
class VMSPACE_API MemoryBacking final : public FileBacking {
 public:
  explicit MemoryBacking(std::vector<unsigned char> initial = {}) : bytes_(std::move(initial)) {}
  std::int64_t size() override;
  int read_page(std::uint64_t index, void* buf) override;
  int write_page(std::uint64_t index, const void* buf, std::size_t len) override;
  int truncate(std::uint64_t bytes) override;
  int punch_hole(std::uint64_t offset, std::uint64_t len) override;
  int sync() override;

  // A copy of the current bytes.
  std::vector<unsigned char> contents() const;
  // Calls so far of write_page, and of sync.
  std::uint64_t pages_written() const;
  std::uint64_t syncs() const;

 private:
  mutable std::mutex lock_;  // guards all below
  std::vector<unsigned char> bytes_;
  std::uint64_t pages_written_ = 0, syncs_ = 0;
};

}  // namespace vmspace
