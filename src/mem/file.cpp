// SPDX-License-Identifier: MIT
#include "mem/file.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <cstring>
#include <new>
#include <vector>

#include "sync/fail_nth.h"

namespace vmspace::mem {

pfn_t PageCache::insert(std::uint64_t index, pfn_t pfn) {
  auto it = chunks_.find(index / kChunk);
  if (it == chunks_.end()) {
    auto fresh = std::make_unique<Chunk>();  // may throw: nothing changed yet
    it = chunks_.emplace(index / kChunk, std::move(fresh)).first;
  }
  pfn_t& slot = it->second->e[index % kChunk];
  if (slot == kNoFrame) {
    slot = pfn;
    ++it->second->used;
  }
  return slot;
}

void PageCache::erase_range(std::uint64_t first, std::uint64_t last, std::vector<pfn_t>& out) {
  for (auto it = chunks_.begin(); it != chunks_.end();) {
    const std::uint64_t base = it->first * kChunk;
    Chunk& c = *it->second;
    if (base + kChunk > first && base < last) {
      const std::uint64_t lo = std::max(first, base) - base, hi = std::min(last - base, kChunk);
      for (std::uint64_t i = lo; i < hi; ++i)
        if (c.e[i] != kNoFrame) {
          out.push_back(c.e[i]);
          c.e[i] = kNoFrame;
          --c.used;
        }
    }
    it = c.used == 0 ? chunks_.erase(it) : std::next(it);
  }
}

namespace {

// Inode numbers only need to be distinct.
std::atomic<std::uint64_t> next_ino{1};

File* new_shmem_file(PhysMem* phys, std::string name, std::uint64_t bytes) {
  if (fail_nth::should_fail(fail_nth::Site::file)) return nullptr;  // injected (tests)
  try {
    File* f = new File(next_ino.fetch_add(1, std::memory_order_relaxed), 0, 1, std::move(name), true, phys);
    f->i_size.store(bytes, std::memory_order_relaxed);
    return f;
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

}  // namespace

namespace {

// The inode table: backed files by (pool, device, inode) or (pool,
// backing object).  Its lock is a leaf, taken without any other.
struct InodeKey {
  PhysMem* phys;
  unsigned major, minor;
  std::uint64_t ino;
  const void* backing;
  auto operator<=>(const InodeKey&) const = default;
};
struct InodeTable {
  std::mutex lock;
  std::map<InodeKey, File*> files;  // guarded by lock
};
// Never destroyed: the flusher thread may use it while the process exits.
InodeTable& inodes() {
  static InodeTable* t = new InodeTable;
  return *t;
}

InodeKey key_of(const File* f) {
  return f->hash_backing != nullptr ? InodeKey{f->phys, 0, 0, 0, f->hash_backing}
                                    : InodeKey{f->phys, f->dev_major, f->dev_minor, f->ino, nullptr};
}

// The flusher: frees released files with a backing (write-back may block).
// One thread, started on first use, never joined (it sleeps when idle).
struct Flusher {
  std::mutex lock;
  std::condition_variable work, idle;
  std::deque<File*> queue;   // guarded by lock
  PhysMem* busy = nullptr;   // guarded by lock: the pool of the file being freed
  bool started = false;      // guarded by lock

  void push(File* f) {
    std::lock_guard<std::mutex> g(lock);
    queue.push_back(f);
    if (!started) {
      std::thread(&Flusher::run, this).detach();
      started = true;
    }
    work.notify_one();
  }
  void run() {
    std::unique_lock<std::mutex> g(lock);
    for (;;) {
      work.wait(g, [&] { return !queue.empty(); });
      File* f = queue.front();
      queue.pop_front();
      PhysMem* phys = f->phys;
      busy = phys;
      g.unlock();
      delete f;  // ~File writes back, leaves the inode table, frees frames
      // Hand this thread's pending frees to RCU now: the pool's owner
      // waits for them after drain() (~AddressSpace: rcu::barrier()).
      phys->flush_deferred();
      g.lock();
      busy = nullptr;
      idle.notify_all();
    }
  }
  // Until no file of `phys` waits or is being freed (other pools' files
  // may: they do not hold this one up).
  void drain(PhysMem* phys) {
    std::unique_lock<std::mutex> g(lock);
    idle.wait(g, [&] {
      return busy != phys && std::none_of(queue.begin(), queue.end(), [&](File* f) { return f->phys == phys; });
    });
  }
};
Flusher& flusher() {
  static Flusher* f = new Flusher;  // never destroyed: its thread may outlive main
  return *f;
}

}  // namespace

void file_release(File* f) {
  if (f->can_writeback())
    flusher().push(f);
  else
    delete f;
}

void flush_released_files(PhysMem* phys) { flusher().drain(phys); }

File* file_open_backed(PhysMem* phys, std::shared_ptr<FileBacking> backing, std::string name, int* err) {
  const FileBacking::Identity id = backing->identity();
  const void* by_backing = id.ino != 0 ? nullptr : backing.get();
  const InodeKey key = by_backing != nullptr ? InodeKey{phys, 0, 0, 0, by_backing}
                                             : InodeKey{phys, id.dev_major, id.dev_minor, id.ino, nullptr};
  // The table's file with a new reference: `found` (it is open), or a
  // file being released (nullptr: wait for it to leave the table, as Linux
  // waits for an inode being freed: its write-back must end first).
  auto grab = [](File* f) -> File* {
    long r = f->refs.load(std::memory_order_relaxed);
    while (r > 0 && !f->refs.compare_exchange_weak(r, r + 1, std::memory_order_relaxed)) {
    }
    return r > 0 ? f : nullptr;
  };
  for (;;) {
    bool absent = false;
    {
      std::lock_guard<std::mutex> g(inodes().lock);
      auto it = inodes().files.find(key);
      if (it == inodes().files.end())
        absent = true;
      else if (File* f = grab(it->second))
        return f;  // open already: share its page cache
    }
    if (!absent) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      continue;
    }
    const std::int64_t size = backing->size();
    if (size < 0) {
      *err = static_cast<int>(size);
      return nullptr;
    }
    if (fail_nth::should_fail(fail_nth::Site::file)) {  // injected (tests)
      *err = -ENOMEM;
      return nullptr;
    }
    File* f;
    try {
      const std::uint64_t ino = id.ino != 0 ? id.ino : next_ino.fetch_add(1, std::memory_order_relaxed);
      f = new File(ino, id.dev_major, id.dev_minor, name, false, phys);
    } catch (const std::bad_alloc&) {
      *err = -ENOMEM;
      return nullptr;
    }
    f->backing = backing;
    f->i_size.store(static_cast<std::uint64_t>(size), std::memory_order_relaxed);
    f->hash_backing = by_backing;
    File* other = nullptr;
    {
      std::lock_guard<std::mutex> g(inodes().lock);
      auto [it, fresh] = inodes().files.try_emplace(key, f);
      if (fresh) {
        f->hashed = true;
        return f;
      }
      other = grab(it->second);  // opened meanwhile by another thread
    }
    delete f;  // never shared, never hashed
    if (other != nullptr) return other;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

int file_write_page(File* f, std::uint64_t index, pfn_t pfn) {
  std::lock_guard<std::mutex> io(f->wb_io);
  f->i_pages.lock();
  const bool cached = f->pages.find(index) == pfn;
  const std::uint64_t size = f->i_size.load(std::memory_order_relaxed);
  f->i_pages.unlock();
  const std::uint64_t off = index * kFrameSize;
  if (!cached || off >= size) return 0;
  const auto len = static_cast<std::size_t>(std::min<std::uint64_t>(kFrameSize, size - off));
  // Writers through mappings may race with this copy-out, as DMA races
  // with CPU stores in Linux: a page written meanwhile is dirty again
  // (write-back write-protected it first), so it goes out again.
  return f->backing->write_page(index, f->phys->addr(pfn), len);
}

File* shmem_zero_setup(PhysMem* phys, std::uint64_t pages) {
  File* f = new_shmem_file(phys, "/dev/zero (deleted)", pages * kFrameSize);
  if (f != nullptr) f->anon_shmem = true;  // nobody else holds it yet
  return f;
}

File* memfd_create(PhysMem* phys, const std::string& name) {
  return new_shmem_file(phys, "/memfd:" + name + " (deleted)", 0);
}

std::uint64_t file_set_size(File* f, std::uint64_t bytes) {
  f->i_pages.lock();
  ++f->invalidate_seq;
  const std::uint64_t old = f->i_size.load(std::memory_order_relaxed);
  f->i_size.store(bytes, std::memory_order_release);
  f->i_pages.unlock();
  return old;
}

void shmem_zero_tail(File* f, std::uint64_t index, std::uint64_t from) {
  if (from >= kFrameSize) return;
  f->i_pages.lock();
  const pfn_t pfn = f->pages.find(index);
  if (pfn != kNoFrame) f->phys->get(pfn);
  f->i_pages.unlock();
  if (pfn == kNoFrame) return;
  // Mapped readers may race with this (as they race with any store).
  std::memset(static_cast<unsigned char*>(f->phys->addr(pfn)) + from, 0, kFrameSize - from);
  f->phys->frame(pfn).flags.fetch_or(kPgDirty, std::memory_order_relaxed);  // as shmem_undo_range
  f->phys->put(pfn);
}

long shmem_write(File* f, const void* buf, std::uint64_t n, std::uint64_t off) {
  const auto* src = static_cast<const unsigned char*>(buf);
  std::uint64_t done = 0;
  while (done < n) {
    const std::uint64_t pos = off + done, in = pos % kFrameSize;
    const std::uint64_t chunk = std::min<std::uint64_t>(n - done, kFrameSize - in);
    // Past the size is fine: the caller holds size_lock, so no truncate
    // runs, and the size grows below once the bytes are there.
    pfn_t pfn = shmem_get_page(f, pos / kFrameSize, /*extending=*/true);
    if (pfn == kNoFrame) break;
    if (pfn == kIoError) break;
    std::memcpy(static_cast<unsigned char*>(f->phys->addr(pfn)) + in, src + done, chunk);
    // After the bytes: write-back clears the bit before it copies.
    f->phys->frame(pfn).flags.fetch_or(kPgDirty, std::memory_order_release);
    f->phys->put(pfn);
    done += chunk;
    // A reader (pread, a fault) sees the new size only after the bytes.
    f->i_pages.lock();
    if (pos + chunk > f->i_size.load(std::memory_order_relaxed)) f->i_size.store(pos + chunk, std::memory_order_release);
    f->i_pages.unlock();
  }
  if (done != 0 || n == 0) return static_cast<long>(done);
  return f->can_writeback() ? -EIO : -ENOMEM;
}

long shmem_read(File* f, void* buf, std::uint64_t n, std::uint64_t off) {
  auto* dst = static_cast<unsigned char*>(buf);
  const std::uint64_t size = f->i_size.load(std::memory_order_acquire);
  if (off >= size) return 0;
  n = std::min(n, size - off);
  for (std::uint64_t done = 0; done < n;) {
    const std::uint64_t pos = off + done, in = pos % kFrameSize;
    const std::uint64_t chunk = std::min<std::uint64_t>(n - done, kFrameSize - in);
    pfn_t pfn;
    if (f->can_writeback()) {
      // Read through the cache: the page is read from the backing once.
      pfn = shmem_get_page(f, pos / kFrameSize);
      if (pfn == kBeyondEof) return static_cast<long>(done);  // truncated meanwhile
      if (pfn == kNoFrame || pfn == kIoError) {
        if (done != 0) return static_cast<long>(done);
        return pfn == kNoFrame ? -ENOMEM : -EIO;
      }
    } else {
      f->i_pages.lock();
      pfn = f->pages.find(pos / kFrameSize);
      if (pfn != kNoFrame) f->phys->get(pfn);
      f->i_pages.unlock();
    }
    if (pfn == kNoFrame) {
      std::memset(dst + done, 0, chunk);  // a hole reads as zeros
    } else {
      std::memcpy(dst + done, static_cast<unsigned char*>(f->phys->addr(pfn)) + in, chunk);
      f->phys->put(pfn);
    }
    done += chunk;
  }
  return static_cast<long>(n);
}

File::~File() {
  // (Below: write back, then leave the inode table, so that a new open of
  // the file waits until its bytes are in the backing.)
  // Nothing maps the file any more (each mapping held a reference) and no
  // descriptor names it: its dirty pages go to the backing now, as Linux
  // writes an inode's pages back before evicting it.  Errors have nowhere
  // to go (a program that cares calls fsync or msync first).
  if (backing != nullptr)
    pages.for_each_in(0, UINT64_MAX, [&](std::uint64_t index, pfn_t pfn) {
      if (phys->frame(pfn).flags.load(std::memory_order_acquire) & kPgDirty) (void)file_write_page(this, index, pfn);
    });
  if (hashed) {
    std::lock_guard<std::mutex> g(inodes().lock);
    auto it = inodes().files.find(key_of(this));
    if (it != inodes().files.end() && it->second == this) inodes().files.erase(it);
  }
  pages.for_each([&](pfn_t pfn) { phys->put(pfn); });
  if (acct) acct->fetch_sub(static_cast<std::int64_t>(acct_pages), std::memory_order_relaxed);
}

pfn_t shmem_get_page(File* f, std::uint64_t index, bool extending) {
  f->i_pages.lock();
  if (!extending && index >= f->size_pages()) {
    f->i_pages.unlock();
    return kBeyondEof;
  }
  if (const pfn_t pfn = f->pages.find(index); pfn != kNoFrame) {
    f->phys->get(pfn);
    f->i_pages.unlock();
    return pfn;
  }
  const std::uint64_t seq = f->invalidate_seq;
  f->i_pages.unlock();
  // Allocate (and read) outside i_pages (PhysMem's lock has the same
  // class; a backing may block).  A page within the size is read from the
  // backing; past it (a write extending the file) it starts as zeros.
  const bool read = f->can_writeback() && index < f->size_pages();
  pfn_t fresh = read ? f->phys->alloc() : f->phys->alloc_zeroed();
  if (fresh == kNoFrame) return kNoFrame;
  if (read && f->backing->read_page(index, f->phys->addr(fresh)) != 0) {
    f->phys->put(fresh);
    return kIoError;
  }
  Frame& fr = f->phys->frame(fresh);
  fr.mapping.store(reinterpret_cast<std::uintptr_t>(f), std::memory_order_relaxed);
  fr.index.store(index, std::memory_order_relaxed);
  f->i_pages.lock();
  if (!extending && index >= f->size_pages()) {  // truncated while we allocated
    f->i_pages.unlock();
    f->phys->put(fresh);
    return kBeyondEof;
  }
  if (read && f->invalidate_seq != seq) {
    // A truncate or hole punch ran while we read: the bytes we hold may be
    // what it removed (Linux's invalidate_lock keeps such reads out).
    f->i_pages.unlock();
    f->phys->put(fresh);
    return shmem_get_page(f, index, extending);
  }
  pfn_t pfn;
  try {
    pfn = f->pages.insert(index, fresh);
  } catch (const std::bad_alloc&) {
    f->i_pages.unlock();
    f->phys->put(fresh);
    return kNoFrame;
  }
  f->phys->get(pfn);  // the caller's reference (the cache keeps the first)
  f->i_pages.unlock();
  if (pfn != fresh) f->phys->put(fresh);  // lost a race: somebody else cached one
  return pfn;
}

bool shmem_page_cached(File* f, std::uint64_t index, pfn_t pfn) {
  f->i_pages.lock();
  const bool cached = f->pages.find(index) == pfn;
  f->i_pages.unlock();
  return cached;
}

void shmem_truncate_range(File* f, std::uint64_t first, std::uint64_t last) {
  std::vector<pfn_t> dropped;
  f->i_pages.lock();
  ++f->invalidate_seq;
  f->pages.erase_range(first, last, dropped);
  f->i_pages.unlock();
  for (pfn_t p : dropped) f->phys->put(p);
}

}  // namespace vmspace::mem
