// SPDX-License-Identifier: MIT
#include "mem/file.h"

#include <new>
#include <vector>

#include "sync/fail_nth.h"

namespace vmspace::mem {

File* shmem_zero_setup(PhysMem* phys, std::uint64_t pages) {
  // Inode numbers only need to be distinct.
  static std::atomic<std::uint64_t> next_ino{1};
  if (fail_nth::should_fail(fail_nth::Site::file)) return nullptr;  // injected (tests)
  try {
    File* f = new File(next_ino.fetch_add(1, std::memory_order_relaxed), 0, 1, "/dev/zero (deleted)", true, phys);
    f->size_pages = pages;
    return f;
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

File::~File() {
  for (auto& [index, pfn] : pages) phys->put(pfn);
  if (acct) acct->fetch_sub(static_cast<std::int64_t>(acct_pages), std::memory_order_relaxed);
}

pfn_t shmem_get_page(File* f, std::uint64_t index) {
  f->i_pages.lock();
  if (auto it = f->pages.find(index); it != f->pages.end()) {
    pfn_t pfn = it->second;
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
  auto [it, inserted] = f->pages.emplace(index, fresh);
  pfn_t pfn = it->second;
  f->phys->get(pfn);  // the caller's reference (the cache keeps the first)
  f->i_pages.unlock();
  if (!inserted) f->phys->put(fresh);  // lost a race: somebody else cached one
  return pfn;
}

bool shmem_page_cached(File* f, std::uint64_t index, pfn_t pfn) {
  f->i_pages.lock();
  auto it = f->pages.find(index);
  const bool cached = it != f->pages.end() && it->second == pfn;
  f->i_pages.unlock();
  return cached;
}

void shmem_truncate_range(File* f, std::uint64_t first, std::uint64_t last) {
  std::vector<pfn_t> dropped;
  f->i_pages.lock();
  for (auto it = f->pages.begin(); it != f->pages.end();) {
    if (it->first >= first && it->first < last) {
      dropped.push_back(it->second);
      it = f->pages.erase(it);
    } else {
      ++it;
    }
  }
  f->i_pages.unlock();
  for (pfn_t p : dropped) f->phys->put(p);
}

}  // namespace vmspace::mem
