// SPDX-License-Identifier: MIT
// file.h - the identity of a file a VMA maps (Linux's struct file plus the
// inode numbers /proc/self/maps shows), and its page cache.  Shared
// anonymous mappings get a fresh shmem object per mmap() call (Linux's
// shmem_zero_setup), which is why two of them never merge while the pieces
// of one split mapping can; their pages live in the object's page cache,
// so every mapping of it (and every fault) sees the same frames.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "mem/phys_mem.h"
#include "sync/rwsem.h"
#include "vmspace/file_backing.h"
#include "sync/spinlock.h"

namespace vmspace::mm {
struct Vma;  // the mm layer's VMA; the file only keeps pointers (i_mmap)
}

namespace vmspace::mem {

// A file's page cache: page index -> frame, in chunks of 512 indices (one
// hash lookup per 2 MiB of file; the entries of a chunk are contiguous, so
// a walk over neighbouring pages, as fault-around does, touches a cache
// line per 8 pages).  Not thread-safe: File::i_pages guards it.
class PageCache {
 public:
  // The frame at `index`, or kNoFrame.
  pfn_t find(std::uint64_t index) const {
    const Chunk* c = chunk(index);
    return c != nullptr ? c->e[index % kChunk] : kNoFrame;
  }
  // The entries of the chunk holding `index` (entry index % kChunk is
  // `index`'s), or nullptr when it caches nothing: for walks over
  // neighbouring indices (fault-around), one hash lookup per chunk.
  static constexpr std::uint64_t kChunk = 512;
  const pfn_t* chunk_entries(std::uint64_t index) const {
    const Chunk* c = chunk(index);
    return c != nullptr ? c->e.data() : nullptr;
  }
  // Insert `pfn` at `index` unless a frame is there: returns the frame
  // now cached there (ours or the one found).  Throws std::bad_alloc.
  pfn_t insert(std::uint64_t index, pfn_t pfn);
  // Remove the frames at indices [first, last) into `out`.
  void erase_range(std::uint64_t first, std::uint64_t last, std::vector<pfn_t>& out);
  // Every cached frame (destruction).
  template <class Fn>
  void for_each(Fn&& fn) const {
    for (const auto& [base, c] : chunks_)
      for (pfn_t p : c->e)
        if (p != kNoFrame) fn(p);
  }
  // fn(index, pfn) for every cached frame at an index in [first, last),
  // in no particular order.
  template <class Fn>
  void for_each_in(std::uint64_t first, std::uint64_t last, Fn&& fn) const {
    for (const auto& [chunk_no, c] : chunks_) {
      const std::uint64_t base = chunk_no * kChunk;
      if (base >= last || base + kChunk <= first) continue;
      for (std::uint64_t i = 0; i < kChunk; ++i)
        if (c->e[i] != kNoFrame && base + i >= first && base + i < last) fn(base + i, c->e[i]);
    }
  }

 private:
  struct Chunk {
    Chunk() { e.fill(kNoFrame); }
    std::array<pfn_t, kChunk> e;
    unsigned used = 0;
  };
  const Chunk* chunk(std::uint64_t index) const {
    auto it = chunks_.find(index / kChunk);
    return it != chunks_.end() ? it->second.get() : nullptr;
  }
  std::unordered_map<std::uint64_t, std::unique_ptr<Chunk>> chunks_;
};

struct File {
  File(std::uint64_t ino_, unsigned major, unsigned minor, std::string name_, bool shmem_, PhysMem* phys_)
      : ino(ino_), dev_major(major), dev_minor(minor), name(std::move(name_)), shmem(shmem_), phys(phys_) {}
  ~File();  // drops the page cache's frame references
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  // Immutable after creation.
  const std::uint64_t ino;
  const unsigned dev_major, dev_minor;
  const std::string name;  // as /proc/self/maps prints it
  const bool shmem;
  // The shmem object behind one MAP_SHARED|MAP_ANONYMOUS mapping (Linux's
  // vma_is_anon_shmem: such VMAs may be named with PR_SET_VMA_ANON_NAME,
  // a memfd's may not).  Set by shmem_zero_setup before the file is
  // shared; immutable after.
  bool anon_shmem = false;
  PhysMem* const phys;
  // The object's size in bytes (i_size): a fault on a page wholly at or
  // past it is SIGBUS.  A shmem object behind MAP_SHARED|MAP_ANONYMOUS has
  // the size of the mmap that made it (a mapping grown by mremap extends
  // past it); a memfd's changes with ftruncate.  Written under i_pages
  // (file_set_size), so that a page is never added to the cache at or past
  // the size once the size is smaller (shmem_get_page checks under the
  // same lock); read without it where a stale size is re-checked later.
  std::atomic<std::uint64_t> i_size{0};
  // Serializes the size changes of ftruncate and of writes that extend
  // the file (Linux's inode lock).  Taken before any other lock.
  std::mutex size_lock;

  // Where the bytes come from and go to; nullptr for a shmem file (memfd,
  // shared anonymous memory), whose page cache is its storage.  Set at
  // creation, before the file is shared.  A file with a backing can write
  // back (Linux's mapping_can_writeback): its pages carry kPgDirty, and
  // its writable shared mappings map pages read-only until a write fault
  // dirties them (vma_wants_writenotify), so write-back can clean them.
  std::shared_ptr<FileBacking> backing;
  bool can_writeback() const { return backing != nullptr; }
  // Write-back (mm/writeback.cpp).  wb_claim: one write-back of the file
  // at a time, from claiming its dirty pages to writing the last of them;
  // held across an RCU grace period, so never by a thread inside a read
  // section, and never with an mm lock held.  wb_io: around each page's
  // write to the backing and around the backing's truncate / punch_hole,
  // so a page is never written past a size or into a hole made after it
  // was claimed; taken after size_lock and wb_claim, before any mm lock,
  // held for nothing but that I/O (and i_pages inside).
  std::mutex wb_claim;
  std::mutex wb_io;
  std::uint64_t size_pages() const {
    const std::uint64_t b = i_size.load(std::memory_order_acquire);
    return (b >> 12) + ((b & 4095) != 0 ? 1 : 0);
  }

  // References: one per VMA mapping the file, per descriptor naming it,
  // and per call using it.  get/put are atomic; the last put frees the
  // File (VMAs are freed after an RCU grace period, so no reader can still
  // reach it), a file with a backing on the flusher thread, after writing
  // its dirty pages back (file_release).
  std::atomic<long> refs{1};
  // A file with a backing is in the inode table (one File per backed file
  // and pool, however often it is opened: one page cache), keyed by the
  // backing's identity, or by the backing object when that has no inode
  // number.  Set at creation.
  bool hashed = false;
  const void* hash_backing = nullptr;

  // Commit charge of a shmem object (shmem_acct_size): `acct_pages` pages
  // charged to the counter `acct` points to, given back when the object is
  // freed.  Set once at creation, before the object is shared.
  std::shared_ptr<std::atomic<std::int64_t>> acct;
  std::uint64_t acct_pages = 0;

  // The page cache: page index -> frame (holding one reference).  Guarded
  // by i_pages (class frame_lock: innermost; never allocate or free frames
  // while holding it, PhysMem's own lock is of the same class).
  SpinLock i_pages{LockClass::frame_lock};
  PageCache pages;
  // Bumped under i_pages by every size change and every removal from the
  // cache (truncate, hole punch): a page read from the backing while it
  // moved is not inserted (its bytes may be what was removed); the read
  // starts again.
  std::uint64_t invalidate_seq = 0;

  // The VMAs that map this file (Linux's address_space->i_mmap), for the
  // reverse map of file pages.  Write: linking and unlinking VMAs, and
  // every change of a linked VMA's vm_start/vm_end/vm_pgoff, with
  // i_mmap_rwsem held for write (vma_prepare/vma_complete, vma_link,
  // munmap).  Read: under i_mmap_rwsem for read (rmap_walk_file), which
  // then also keeps those VMAs' ranges stable.  A list: a shmem object has
  // few VMAs (the pieces of one mapping).
  RwSemaphore i_mmap_rwsem{LockClass::i_mmap_rwsem};
  std::vector<mm::Vma*> i_mmap;
  // Slots of i_mmap's capacity promised to links still to come
  // (mm::file_rmap_reserve); under i_mmap_rwsem for write.
  std::size_t i_mmap_reserved = 0;
};

// A new shmem object of `pages` pages for one MAP_SHARED|MAP_ANONYMOUS
// mmap(); nullptr when out of memory.
File* shmem_zero_setup(PhysMem* phys, std::uint64_t pages);
// A new empty memfd (Linux memfd_create: a shmem file named
// "/memfd:NAME (deleted)" in /proc/self/maps); nullptr when out of memory.
File* memfd_create(PhysMem* phys, const std::string& name);
// The file whose bytes come from `backing`, named `name` in maps, with a
// new reference: the one already open in this pool if the inode table has
// it (same device and inode, or, without an inode number, the same
// backing object; `backing` and `name` are then dropped), else a new one
// whose size is read from the backing now.  A file being freed is waited
// for (its write-back must end before its bytes are read again).  nullptr
// with *err = -errno (the backing's size() error, -ENOMEM).
File* file_open_backed(PhysMem* phys, std::shared_ptr<FileBacking> backing, std::string name, int* err);

// Write cached page `index` (frame `pfn`) of a file with a backing to it,
// as far as the file's size reaches into it, under wb_io: 0 when written
// or when the page is no longer cached there or lies past the size
// (truncated or punched meanwhile), else the backing's -errno.  Does not
// touch kPgDirty.
int file_write_page(File* f, std::uint64_t index, pfn_t pfn);

// Set the size (under i_pages).  Returns the old size.  Truncating the
// cache and unmapping are the caller's (mm::shmem_setattr).
std::uint64_t file_set_size(File* f, std::uint64_t bytes);
// Zero bytes [from, 4096) of cached page `index`, if cached (the partial
// last page after a truncate).
void shmem_zero_tail(File* f, std::uint64_t index, std::uint64_t from);
// Copy bytes between `buf` and the file at `off` through the page cache
// (pages are allocated as needed when writing, read from the backing
// first if the file has one; reading a page not cached reads zeros from a
// shmem file, and caches the page of a file with a backing).  Written
// pages become dirty (kPgDirty).  `n` is clipped to the size when reading; writing extends
// the size as far as it wrote (shmem_write needs size_lock held).
// Returns the count (0 for n == 0, the size unchanged), or -ENOMEM (-EIO:
// the backing failed) when not even the first byte could be transferred.
long shmem_write(File* f, const void* buf, std::uint64_t n, std::uint64_t off);
long shmem_read(File* f, void* buf, std::uint64_t n, std::uint64_t off);

// The frame caching page `index` of `f`, allocated on first use (zero-
// filled, or read from the backing when the file has one and the page
// lies within its size), with one extra reference for the caller.  kNoFrame when out of
// memory (it never waits for frames a grace period would free: callers
// hold mm locks), kBeyondEof when the page lies wholly past the size
// (checked under i_pages: after a truncate has set a smaller size, no
// page past it is added while it stays smaller; a page read from the
// backing across a truncate or hole punch is read again).
// With `extending` (a write that will grow the file, size_lock held),
// a page past the size is allocated too.
inline constexpr pfn_t kBeyondEof = kNoFrame - 1;
// ... and kIoError when the page had to be read from the file's backing
// and that failed (a fault raises SIGBUS; pread returns -EIO).
inline constexpr pfn_t kIoError = kNoFrame - 2;
pfn_t shmem_get_page(File* f, std::uint64_t index, bool extending = false);
// Does `f` still cache `pfn` as page `index`?  (A fault re-checks this
// under the PTE lock before mapping a frame it took from the cache.)
bool shmem_page_cached(File* f, std::uint64_t index, pfn_t pfn);
// Drop the cached pages in [first, last) (MADV_REMOVE punches a hole).
void shmem_truncate_range(File* f, std::uint64_t first, std::uint64_t last);

// How a descriptor was opened (Linux's FMODE_READ / FMODE_WRITE).
// (kFmodeAppend: O_APPEND, pwrite writes at the end.)
inline constexpr unsigned kFmodeRead = 1, kFmodeWrite = 2, kFmodeAppend = 4;

inline File* get_file(File* f) {
  if (f != nullptr) f->refs.fetch_add(1, std::memory_order_relaxed);
  return f;
}

// The last reference is gone: free `f` (a file with a backing on the
// flusher thread, which writes its dirty pages back first and takes it out
// of the inode table, so that this never blocks: callers include RCU
// callbacks).
void file_release(File* f);
// Wait until every file of pool `phys` released so far is written back and
// freed (before a pool goes away: ~AddressSpace).
void flush_released_files(PhysMem* phys);

inline void fput(File* f) {
  // acq_rel: the last put sees every other holder's accesses.
  if (f != nullptr && f->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) file_release(f);
}

}  // namespace vmspace::mem
