// SPDX-License-Identifier: MIT
#include "mem/file.h"

#include <algorithm>
#include <cerrno>
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

File* shmem_zero_setup(PhysMem* phys, std::uint64_t pages) {
  return new_shmem_file(phys, "/dev/zero (deleted)", pages * kFrameSize);
}

File* memfd_create(PhysMem* phys, const std::string& name) {
  return new_shmem_file(phys, "/memfd:" + name + " (deleted)", 0);
}

std::uint64_t file_set_size(File* f, std::uint64_t bytes) {
  f->i_pages.lock();
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
    std::memcpy(static_cast<unsigned char*>(f->phys->addr(pfn)) + in, src + done, chunk);
    f->phys->frame(pfn).flags.fetch_or(kPgDirty, std::memory_order_relaxed);  // shmem_write_end
    f->phys->put(pfn);
    done += chunk;
    // A reader (pread, a fault) sees the new size only after the bytes.
    f->i_pages.lock();
    if (pos + chunk > f->i_size.load(std::memory_order_relaxed)) f->i_size.store(pos + chunk, std::memory_order_release);
    f->i_pages.unlock();
  }
  return done != 0 || n == 0 ? static_cast<long>(done) : -ENOMEM;
}

long shmem_read(File* f, void* buf, std::uint64_t n, std::uint64_t off) {
  auto* dst = static_cast<unsigned char*>(buf);
  const std::uint64_t size = f->i_size.load(std::memory_order_acquire);
  if (off >= size) return 0;
  n = std::min(n, size - off);
  for (std::uint64_t done = 0; done < n;) {
    const std::uint64_t pos = off + done, in = pos % kFrameSize;
    const std::uint64_t chunk = std::min<std::uint64_t>(n - done, kFrameSize - in);
    f->i_pages.lock();
    const pfn_t pfn = f->pages.find(pos / kFrameSize);
    if (pfn != kNoFrame) f->phys->get(pfn);
    f->i_pages.unlock();
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
  f->i_pages.unlock();
  // Allocate outside i_pages (PhysMem's lock has the same class).
  pfn_t fresh = f->phys->alloc_zeroed();
  if (fresh == kNoFrame) return kNoFrame;
  Frame& fr = f->phys->frame(fresh);
  fr.mapping.store(reinterpret_cast<std::uintptr_t>(f), std::memory_order_relaxed);
  fr.index.store(index, std::memory_order_relaxed);
  f->i_pages.lock();
  if (!extending && index >= f->size_pages()) {  // truncated while we allocated
    f->i_pages.unlock();
    f->phys->put(fresh);
    return kBeyondEof;
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
  f->pages.erase_range(first, last, dropped);
  f->i_pages.unlock();
  for (pfn_t p : dropped) f->phys->put(p);
}

}  // namespace vmspace::mem
