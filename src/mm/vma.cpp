// SPDX-License-Identifier: MIT
// vma.cpp - VMA split and merge, decided as Linux's mm/vma.c decides them.
//
// Tree discipline.  The range tree publishes each store() as one step, and
// a store trims whatever it overlaps.  So every change here is ordered as:
//   1. vma_prepare(): write-lock every VMA that changes or goes away (a
//      reader that finds one of them now fails and falls back);
//   2. change the VMA fields;
//   3. store the grown/new VMA over its whole new range: this replaces
//      the absorbed VMAs' entries and trims the shrunk one's in one step,
//      so no address that was mapped before and after is ever unmapped in
//      between (range_tree.h guarantee B);
//   4. vma_complete(): detach the removed VMAs (still write-locked) and
//      free them after a grace period.
#include "mm/vma.h"

#include <algorithm>
#include <cerrno>
#include <optional>
#include <new>
#include <type_traits>

#include "mm/mmap_lock.h"
#include "mm/rmap.h"
#include "sync/fail_nth.h"
#include "sync/tls.h"
#include "tree/node_pool.h"

namespace vmspace::mm {

// ---- lifetime ----------------------------------------------------------

Vma* vm_area_alloc(MmStruct* mm, std::uint64_t start, std::uint64_t end, vm_flags_t flags,
                   std::uint64_t pgoff) {
  if (fail_nth::should_fail(fail_nth::Site::vma)) return nullptr;  // injected (tests)
  return new (std::nothrow) Vma(mm, start, end, flags, pgoff);
}

Vma* vm_area_dup(const Vma* orig) {
  if (fail_nth::should_fail(fail_nth::Site::vma)) return nullptr;  // injected (tests)
  Vma* v = new (std::nothrow) Vma(orig->vm_mm, orig->vm_start, orig->vm_end, orig->vm_flags, orig->vm_pgoff);
  if (v == nullptr) return nullptr;
  v->vm_file = mem::get_file(orig->vm_file);
  v->anon_name = orig->anon_name;  // shared, not copied (splits and moves keep the name)
  v->anon_vma.store(orig->anon_vma.load(std::memory_order_relaxed), std::memory_order_relaxed);
  return v;
}

static_assert(sizeof(Vma) <= tree::pool::kClassSize[tree::pool::kVma] && alignof(Vma) <= 64,
              "a Vma fits a block of the pool's VMA class");

void* Vma::operator new(std::size_t size) {
  (void)size;  // == sizeof(Vma): the class has no subclasses
  return tree::pool::alloc(tree::pool::kVma);
}

void* Vma::operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return operator new(size);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

void Vma::operator delete(void* p) noexcept {
  if (p != nullptr) tree::pool::free_local(tree::pool::kVma, p);
}

void Vma::operator delete(void* p, const std::nothrow_t&) noexcept { operator delete(p); }

namespace {

Vma* vma_of_rcu(rcu::Head* h) {
  static_assert(std::is_standard_layout_v<Vma>, "offsetof(Vma, rcu) must be well defined");
  return reinterpret_cast<Vma*>(reinterpret_cast<char*>(h) - offsetof(Vma, rcu));
}

void vm_area_free_rcu(rcu::Head* h) { delete vma_of_rcu(h); }

// Private anonymous VMAs are freed in batches: one rcu::call per
// kVmaFreeBatch VMAs instead of one each, and the callback returns the
// whole batch to the pool with one exchange.  A 2-thread mmap/munmap loop
// otherwise queued callbacks faster than liburcu's single callback thread
// ran them (with the tree's retired nodes, the backlog grew the pool by
// about 140 MiB a second).
// Only VMAs whose destruction frees nothing but their own memory (no
// file: fput can free a file or a shmem object's pages) wait in a batch,
// so a batch that waits long (an idle thread's) delays nothing a caller
// can see; it is handed on at thread exit and by vm_area_free_flush().
constexpr unsigned kVmaFreeBatch = 32;

void vm_area_batch_free_rcu(rcu::Head* h) {
  tree::pool::Chain chain;
  for (Vma* v = vma_of_rcu(h); v != nullptr;) {
    Vma* next = v->list_next;
    v->~Vma();
    tree::pool::chain_push(chain, v);
    v = next;
  }
  tree::pool::free_remote(tree::pool::kVma, chain);
}

// The calling thread's batch.  Thread-private: only its thread touches it.
struct VmaFreeBatch {
  Vma* head = nullptr;
  unsigned count = 0;
  void submit() {
    if (head == nullptr) return;
    Vma* first = head;
    head = nullptr;
    count = 0;
    rcu::call(&first->rcu, vm_area_batch_free_rcu);
  }
  ~VmaFreeBatch() { submit(); }
};
VMSPACE_TLS_FAST thread_local VmaFreeBatch t_vma_free_batch;

// The only way to the batch.  It registers the thread with RCU before the
// batch's first use: thread_local destructors run in reverse order of
// construction, so the batch's (which calls rcu::call) then runs while
// the thread is still registered.  (Reached first through
// vm_area_free_flush, a batch used to be destroyed after the
// registration, re-registering a dying thread.)
VmaFreeBatch& this_threads_batch() {
  rcu::ensure_registered();
  return t_vma_free_batch;
}

}  // namespace

void vm_area_free_now(Vma* vma) {
  if (vma->vm_file != nullptr) {
    rcu::call(&vma->rcu, vm_area_free_rcu);
    return;
  }
  VmaFreeBatch& b = this_threads_batch();
  vma->list_next = b.head;
  b.head = vma;
  if (++b.count == kVmaFreeBatch) b.submit();
}

void vm_area_free_flush() { this_threads_batch().submit(); }

void vm_area_free(Vma* vma) {
  // per_vma_range: the writer that stamped the VMA still stores "unlocked"
  // into it when it ends (range_writer.h), so the free waits for that: it
  // is already on that writer's list, which frees what is marked.  A VMA
  // this writer never stamped (made and dropped before anyone saw it) has
  // no store coming and goes now.
  if (vma->vm_mm->mode == LockMode::per_vma_range) {
    if (RangeHold* h = range_hold(vma->vm_mm); h != nullptr && h->seq != kVmaUnlockedSeq &&
        vma->vm_lock_seq.load(std::memory_order_relaxed) == h->seq) {
      vma->writer_free = true;
      return;
    }
  }
  vm_area_free_now(vma);
}

// ---- neighbours --------------------------------------------------------

// per_vma_range: a writer that holds a range sees the VMAs that meet it,
// and nothing beyond: they are the only ones no other writer can change
// meanwhile (docs/range-writers.md section 10).  What lies beyond cannot
// change its decisions: the range covers the change's neighbourhood,
// guard gap included.  Lookups run in a read-side section: other writers
// retire tree nodes while we walk.
namespace {

struct Clip {
  std::uint64_t lo = 0, hi = tree::kMaxAddr;
  bool keeps(const tree::Entry& e) const { return e.start < hi && e.end > lo; }
};

Clip clip_of(const MmStruct* mm) {
  const RangeHold* h = range_hold(mm);
  if (h == nullptr || h->whole()) return {};
  const RangeLock::Interval l = h->range();
  return {l.lo, l.hi};
}

Vma* clipped(const MmStruct* mm, const std::optional<tree::Entry>& e) {
  if (!e || !clip_of(mm).keeps(*e)) return nullptr;
  return e->as<Vma>();
}

}  // namespace

Vma* find_vma(MmStruct* mm, std::uint64_t addr) {
  if (mm->mode == LockMode::per_vma_range) {
    rcu::ReadGuard rcu;
    return clipped(mm, mm->mm_mt.find_vma(addr));
  }
  auto e = mm->mm_mt.find_vma(addr);
  return e ? e->as<Vma>() : nullptr;
}

Vma* find_vma_prev_of(MmStruct* mm, std::uint64_t addr) {
  if (mm->mode == LockMode::per_vma_range) {
    rcu::ReadGuard rcu;
    return clipped(mm, mm->mm_mt.find_prev(addr));
  }
  auto e = mm->mm_mt.find_prev(addr);
  return e ? e->as<Vma>() : nullptr;
}

void range_clip_floor_ceiling(const MmStruct* mm, std::uint64_t* floor, std::uint64_t* ceiling) {
  if (mm->mode != LockMode::per_vma_range) return;
  const Clip c = clip_of(mm);
  *floor = std::max(*floor, c.lo);
  if (c.hi != tree::kMaxAddr && (*ceiling == 0 || *ceiling > c.hi)) *ceiling = c.hi;
}

Vma* find_vma_intersection(MmStruct* mm, std::uint64_t start, std::uint64_t end) {
  Vma* v = find_vma(mm, start);
  return v != nullptr && v->vm_start < end ? v : nullptr;
}

Vma* vma_prev(MmStruct* mm, const Vma* vma) { return find_vma_prev_of(mm, vma->vm_start); }

Vma* vma_next(MmStruct* mm, const Vma* vma) { return find_vma(mm, vma->vm_end); }

Vma* vma_lookup(MmStruct* mm, std::uint64_t addr) {
  if (mm->mode == LockMode::per_vma_range) {
    rcu::ReadGuard rcu;
    return clipped(mm, mm->mm_mt.find(addr));
  }
  return static_cast<Vma*>(mm->mm_mt.lookup(addr));
}

// ---- prepare / complete ------------------------------------------------

void vma_prepare(VmaPrepare& vp) {
  // Every VMA that changes or disappears is write-locked before anything
  // changes (seed 000: locking inside vma_prepare catches every caller).
  for (Vma* v : {vp.vma, vp.adj_next, vp.insert, vp.remove, vp.remove2})
    if (v != nullptr) vma_start_write(v);
  vp.file = vp.vma->vm_file;
  vp.anon_vma = vp.vma->anon_vma.load(std::memory_order_relaxed);
  if (vp.anon_vma == nullptr && vp.adj_next != nullptr)
    vp.anon_vma = vp.adj_next->anon_vma.load(std::memory_order_relaxed);
  // Lock order: the file's i_mmap_rwsem, then the anon_vma (lock_order.h).
  if (vp.file != nullptr) {
    vp.file->i_mmap_rwsem.lock();
    if (vp.insert != nullptr) __vma_link_file(vp.insert);
  }
  if (vp.anon_vma != nullptr) anon_vma_lock_write(vp.anon_vma);
}

void vma_complete(VmaPrepare& vp, MmStruct* mm) {
  if (vp.file != nullptr) {
    for (Vma* v : {vp.remove, vp.remove2})
      if (v != nullptr) __vma_unlink_file(v);
  }
  if (vp.anon_vma != nullptr) anon_vma_unlock_write(vp.anon_vma);
  if (vp.file != nullptr) vp.file->i_mmap_rwsem.unlock();
  for (Vma* v : {vp.remove, vp.remove2}) {
    if (v == nullptr) continue;
    // Detached while still write-locked (seed 000): a reader that found it
    // in the tree earlier fails to lock it and walks again (vma_lock_miss).
    vma_mark_detached(v);
    mm->map_count--;
    unlink_anon_vmas(v);
    vm_area_free(v);
  }
}

bool vma_link(MmStruct* mm, Vma* vma) {
  // What can fail first: the tree's nodes, the file's reverse-map link.
  if (!mm->mm_mt.preallocate()) return false;
  if (!vma_link_file(vma)) return false;
  vma_start_write(vma);  // new VMAs are write-locked until the session ends
  vma_mark_attached(vma);
  mm->mm_mt.store(vma->vm_start, vma->vm_end, vma);
  mm->map_count++;
  return true;
}

// ---- split -------------------------------------------------------------

Vma* __split_vma(MmStruct* mm, Vma* vma, std::uint64_t addr, bool new_below) {
  mmap_assert_write_locked(mm);
  // Everything that can fail comes first (Linux: vma_iter_prealloc,
  // vm_area_dup, anon_vma_clone), so a failure changes nothing.
  if (!mm->mm_mt.preallocate()) return nullptr;
  Vma* nv = vm_area_dup(vma);
  if (nv == nullptr) return nullptr;
  if (new_below) {
    nv->vm_end = addr;
  } else {
    nv->vm_start = addr;
    nv->vm_pgoff += (addr - vma->vm_start) >> kPageShift;
  }
  // Linux anon_vma_clone(): both pieces share the anon_vma and its chain;
  // nv's range is final before walkers can see it.  Room in the file's
  // i_mmap for vma_prepare to link nv.
  if (!file_rmap_reserve(nv->vm_file, 1) || !anon_vma_clone(nv, vma)) {
    delete nv;  // never attached nor linked: nobody can see it
    return nullptr;
  }
  VmaPrepare vp;
  vp.vma = vma;
  vp.insert = nv;
  vma_prepare(vp);
  if (new_below) {
    vma->vm_pgoff += (addr - vma->vm_start) >> kPageShift;
    vma->vm_start = addr;
  } else {
    vma->vm_end = addr;
  }
  // Storing the new VMA trims `vma`'s entry to its new range in one step.
  vma_mark_attached(nv);
  mm->mm_mt.store(nv->vm_start, nv->vm_end, nv);
  mm->map_count++;
  vma_complete(vp, mm);
  return nv;
}

Vma* split_vma(MmStruct* mm, Vma* vma, std::uint64_t addr, bool new_below, int* err) {
  Vma* nv = mm->map_count >= mm->max_map_count ? nullptr : __split_vma(mm, vma, addr, new_below);
  if (nv == nullptr) *err = -ENOMEM;
  return nv;
}

// ---- merge rules -------------------------------------------------------

namespace {

// Linux is_mergeable_vma(): equal flags apart from the ones merging
// ignores; the same file (private anonymous VMAs have none; every shared
// anonymous mmap has its own shmem object); equal anonymous names.
bool is_mergeable_vma(const Vma* vma, vm_flags_t flags, const mem::File* file, const AnonName& name) {
  return ((vma->vm_flags ^ flags) & ~VM_IGNORE_MERGE) == 0 && vma->vm_file == file &&
         anon_name_eq(vma->anon_name, name);
}

AnonVma* anon_of(const Vma* v) { return v->anon_vma.load(std::memory_order_relaxed); }

// Linux 6.18 is_mergeable_anon_vma(): may the range being merged, whose
// anon_vma is `src_anon`, join `tgt` (prev or next)?  A range without an
// anon_vma may join a VMA with one, and the other way round, unless the
// side that has it is a fork child (vma_is_fork_child: its anon_vma is
// shared with a fork family, which the other side must not enter);
// `src_vma` is the VMA the range belongs to or is copied from (mremap),
// null for a new mapping.  Two anon_vmas must be the same one.
bool is_mergeable_anon_vma(AnonVma* src_anon, const Vma* tgt, const Vma* src_vma) {
  AnonVma* tgt_anon = anon_of(tgt);
  if (tgt_anon == nullptr && src_anon != nullptr) return src_vma == nullptr || !vma_is_fork_child(src_vma);
  if (tgt_anon != nullptr && src_anon == nullptr) return !vma_is_fork_child(tgt);
  return src_anon == tgt_anon;
}

// Could prev and next, both merging with the range between them, merge
// with each other (Linux can_vma_merge_right's last test)?
bool anon_vmas_compatible(const Vma* a, const Vma* b) {
  return anon_of(a) == nullptr || anon_of(b) == nullptr || anon_of(a) == anon_of(b);
}

// The merged VMA `dst` inherits `src`'s anon_vma and chain if it has none
// yet (Linux dup_anon_vma()).  False (nothing changed) if the links cannot
// be allocated.
bool dup_anon_vma(Vma* dst, const Vma* src) {
  if (anon_of(dst) == nullptr && anon_of(src) != nullptr) {
    dst->anon_vma.store(anon_of(src), std::memory_order_release);
    if (!anon_vma_clone(dst, src)) {
      dst->anon_vma.store(nullptr, std::memory_order_release);
      return false;
    }
  }
  return true;
}

// The common tail of every merge (Linux commit_merge()): `target` grows
// to [start, end) with `pgoff`; `adjust`, if any, shrinks to [adj_start,
// adj_end) (its pgoff follows its start); `remove`/`remove2` are absorbed.
// One tree store publishes it all (it replaces the absorbed VMAs' entries
// and trims the adjusted one's), then vma_complete() detaches the absorbed
// VMAs.  `anon_src` lends target its anon_vma if target has none.
// `sticky`: the sticky flags (VM_STICKY) of every VMA and range taking part,
// which the target keeps (Linux 6.18.37+).
// nullptr, with nothing changed, if memory for the change cannot be had.
Vma* commit_merge(MmStruct* mm, Vma* target, std::uint64_t start, std::uint64_t end, std::uint64_t pgoff,
                  Vma* adjust, std::uint64_t adj_start, std::uint64_t adj_end, Vma* remove, Vma* remove2,
                  const Vma* anon_src, vm_flags_t sticky) {
  // Write-lock everything first, then give the target its anon_vma (Linux
  // dup_anon_vma, before vma_prepare: it links under the anon_vma lock
  // that vma_prepare then holds across the change).  What can fail (the
  // tree's nodes, the anon_vma link) fails before anything changes.
  if (!mm->mm_mt.preallocate()) return nullptr;
  for (Vma* v : {target, adjust, remove, remove2})
    if (v != nullptr) vma_start_write(v);
  if (anon_src != nullptr && !dup_anon_vma(target, anon_src)) return nullptr;
  VmaPrepare vp;
  vp.vma = target;
  vp.adj_next = adjust;
  vp.remove = remove;
  vp.remove2 = remove2;
  vma_prepare(vp);
  if (adjust != nullptr) {
    adjust->vm_pgoff += (adj_start - adjust->vm_start) >> kPageShift;
    adjust->vm_start = adj_start;
    adjust->vm_end = adj_end;
  }
  target->vm_start = start;
  target->vm_end = end;
  target->vm_pgoff = pgoff;
  target->vm_flags |= sticky & VM_STICKY;  // write-locked above
  mm->mm_mt.store(start, end, target);
  vma_complete(vp, mm);
  return target;
}

}  // namespace

bool can_vma_merge_before(const Vma* next, vm_flags_t flags, const mem::File* file, const AnonName& name,
                          AnonVma* anon_vma, const Vma* src_vma, std::uint64_t pgoff, std::uint64_t pglen) {
  return is_mergeable_vma(next, flags, file, name) && is_mergeable_anon_vma(anon_vma, next, src_vma) &&
         next->vm_pgoff == pgoff + pglen;
}

bool can_vma_merge_after(const Vma* prev, vm_flags_t flags, const mem::File* file, const AnonName& name,
                         AnonVma* anon_vma, const Vma* src_vma, std::uint64_t pgoff) {
  return is_mergeable_vma(prev, flags, file, name) && is_mergeable_anon_vma(anon_vma, prev, src_vma) &&
         prev->vm_pgoff + prev->pages() == pgoff;
}

Vma* vma_merge_new_range(MmStruct* mm, Vma* prev, Vma* next, std::uint64_t start, std::uint64_t end,
                         vm_flags_t flags, const mem::File* file, std::uint64_t pgoff, const Vma* anon_src,
                         const Vma* copied_from, const AnonName& name) {
  mmap_assert_write_locked(mm);
  if (flags & VM_SPECIAL) return nullptr;
  AnonVma* const anon = anon_src != nullptr ? anon_of(anon_src) : nullptr;
  const std::uint64_t pglen = (end - start) >> kPageShift;
  bool left = prev != nullptr && prev->vm_end == start &&
              can_vma_merge_after(prev, flags, file, name, anon, copied_from, pgoff);
  bool right = next != nullptr && next->vm_start == end &&
               can_vma_merge_before(next, flags, file, name, anon, copied_from, pgoff, pglen);
  // Each side is compatible with the new range; merging both also needs
  // prev and next compatible with each other.
  if (left && right && !anon_vmas_compatible(prev, next)) right = false;
  if (!left && !right) return nullptr;
  // The merged VMA takes whichever anon_vma the pieces have (one at most).
  const Vma* lend = anon != nullptr ? anon_src : nullptr;
  const vm_flags_t sticky = (flags | (left ? prev->vm_flags : 0) | (right ? next->vm_flags : 0)) & VM_STICKY;

  if (left && right)  //   prev | new | next   ->   prev.................
    return commit_merge(mm, prev, prev->vm_start, next->vm_end, prev->vm_pgoff, nullptr, 0, 0, next, nullptr,
                        anon_of(next) != nullptr ? next : lend, sticky);
  if (left)  //   prev | new          ->   prev.......
    return commit_merge(mm, prev, prev->vm_start, end, prev->vm_pgoff, nullptr, 0, 0, nullptr, nullptr, lend,
                        sticky);
  //          new | next     ->   ......next
  return commit_merge(mm, next, start, next->vm_end, pgoff, nullptr, 0, 0, nullptr, nullptr, lend, sticky);
}

namespace {

// Linux vma_merge_existing_range(): [start, end) of `middle` is getting
// `flags` and the anonymous name `name`.  Merge it into prev and/or next
// when it touches them and they would be compatible.  Returns the VMA
// covering [start, end), or nullptr: no merge, or (*tried set: Linux's
// VMA_MERGE_ERROR_NOMEM, nothing changed) a merge that could not get its
// memory.
Vma* vma_merge_existing_range(MmStruct* mm, Vma* middle, std::uint64_t start, std::uint64_t end,
                              vm_flags_t flags, const AnonName& name, bool* tried) {
  const bool left_side = start == middle->vm_start;
  const bool right_side = end == middle->vm_end;
  if ((flags & VM_SPECIAL) || (!left_side && !right_side)) return nullptr;

  const std::uint64_t pgoff = middle->vm_pgoff + ((start - middle->vm_start) >> kPageShift);
  const std::uint64_t pglen = (end - start) >> kPageShift;
  AnonVma* anon = anon_of(middle);
  Vma* prev = left_side ? vma_prev(mm, middle) : nullptr;
  Vma* next = right_side ? vma_next(mm, middle) : nullptr;

  bool merge_left = prev != nullptr && prev->vm_end == start &&
                    can_vma_merge_after(prev, flags, middle->vm_file, name, anon, middle, pgoff);
  bool merge_right = next != nullptr && next->vm_start == end &&
                     can_vma_merge_before(next, flags, middle->vm_file, name, anon, middle, pgoff, pglen);
  if (merge_left && merge_right && !anon_vmas_compatible(prev, next)) merge_right = false;
  if (!merge_left && !merge_right) return nullptr;

  *tried = true;
  const bool delete_middle = left_side && right_side;
  // Sticky flags of everything taking part survive in the merged VMA.
  const vm_flags_t sticky = (flags | middle->vm_flags | (merge_left ? prev->vm_flags : 0) |
                             (merge_right ? next->vm_flags : 0)) & VM_STICKY;
  if (merge_left && merge_right)  //   prev | middle | next   ->   prev......................
    return commit_merge(mm, prev, prev->vm_start, next->vm_end, prev->vm_pgoff, nullptr, 0, 0, middle, next,
                        anon_of(next) != nullptr ? next : middle, sticky);
  if (merge_left) {
    //   prev | middle          ->   prev.......   (middle absorbed)
    //   prev | mid|dle         ->   prev....|dle  (middle shrunk)
    if (delete_middle)
      return commit_merge(mm, prev, prev->vm_start, end, prev->vm_pgoff, nullptr, 0, 0, middle, nullptr, middle,
                          sticky);
    return commit_merge(mm, prev, prev->vm_start, end, prev->vm_pgoff, middle, end, middle->vm_end, nullptr,
                        nullptr, middle, sticky);
  }
  //   middle | next            ->   .......next   (middle absorbed)
  //   mid|dle | next           ->   mid|....next   (middle shrunk)
  if (delete_middle)
    return commit_merge(mm, next, start, next->vm_end, next->vm_pgoff - pglen, nullptr, 0, 0, middle, nullptr,
                        middle, sticky);
  return commit_merge(mm, next, start, next->vm_end, next->vm_pgoff - pglen, middle, middle->vm_start, start,
                      nullptr, nullptr, middle, sticky);
}

}  // namespace

Vma* vma_modify_flags(MmStruct* mm, Vma* vma, std::uint64_t start, std::uint64_t end,
                      vm_flags_t new_flags, int* err, vm_flags_t* out_flags) {
  mmap_assert_write_locked(mm);
  if (out_flags != nullptr) *out_flags = new_flags;
  bool tried = false;
  // The range keeps its name: it merges only with neighbours named alike.
  if (Vma* merged = vma_merge_existing_range(mm, vma, start, end, new_flags, vma->anon_name, &tried)) {
    // Linux 6.18.37+ reports the merged VMA's sticky flags back, so that
    // the caller's flag update keeps them.
    if (out_flags != nullptr) *out_flags = new_flags | (merged->vm_flags & VM_STICKY);
    return merged;
  }
  if (tried) {
    *err = -ENOMEM;  // the merge applied but could not get its memory (Linux does not split then)
    return nullptr;
  }
  // No merge: split off the parts outside [start, end).  A failure of the
  // second split leaves the first in place, as in Linux.
  if (vma->vm_start < start && split_vma(mm, vma, start, /*new_below=*/true, err) == nullptr)
    return nullptr;
  if (vma->vm_end > end && split_vma(mm, vma, end, /*new_below=*/false, err) == nullptr)
    return nullptr;
  return vma;
}

Vma* vma_modify_name(MmStruct* mm, Vma* vma, std::uint64_t start, std::uint64_t end, const AnonName& name,
                     int* err) {
  mmap_assert_write_locked(mm);
  bool tried = false;
  // A merge makes a neighbour (already carrying `name`) cover the range.
  if (Vma* merged = vma_merge_existing_range(mm, vma, start, end, vma->vm_flags, name, &tried)) return merged;
  if (tried) {
    *err = -ENOMEM;
    return nullptr;
  }
  if (vma->vm_start < start && split_vma(mm, vma, start, /*new_below=*/true, err) == nullptr) return nullptr;
  if (vma->vm_end > end && split_vma(mm, vma, end, /*new_below=*/false, err) == nullptr) return nullptr;
  // The caller changes its name: when the range is the whole VMA neither a
  // merge nor a split has write-locked it yet.
  vma_start_write(vma);
  return vma;
}

}  // namespace vmspace::mm
