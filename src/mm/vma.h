// SPDX-License-Identifier: MIT
// vma.h - VMA allocation, split, merge and the prepare/complete bracket
// (Linux's mm/vma.c).  Every function here requires the mmap_lock held for
// write; each write-locks (vma_start_write) every VMA it changes or removes
// before changing it, and brackets tree and VMA updates with
// vma_prepare()/vma_complete() (seed 000).
#pragma once

#include <cstdint>
#include <vector>

#include "mm/mm_types.h"

namespace vmspace::mm {

// ---- lifetime ----------------------------------------------------------
// nullptr when out of memory.  A VMA that was never attached nor linked
// is freed with `delete`.
Vma* vm_area_alloc(MmStruct* mm, std::uint64_t start, std::uint64_t end, vm_flags_t flags,
                   std::uint64_t pgoff);
// A detached copy (same range, flags, pgoff, file, anon_vma pointer), not
// yet in the tree nor linked into the reverse maps: the caller sets its
// range, then links it (anon_vma_clone, vma_prepare's insert).
Vma* vm_area_dup(const Vma* orig);
// Free a VMA that is detached (or was never attached) after an RCU grace
// period: lock_vma_under_rcu may still hold the pointer from the tree.
void vm_area_free(Vma* vma);
// vm_area_free without per_vma_range's deferral (range_writer.cpp frees a
// writer's removed VMAs with it once their write locks have ended).
void vm_area_free_now(Vma* vma);
// Hands the calling thread's batch of freed private anonymous VMAs to RCU
// now (vm_area_free_now keeps up to 32 before it does).  rcu::barrier()
// after this frees every VMA this thread removed; other live threads keep
// theirs (at most 31 each, memory only) until their batch fills or they
// exit.  AddressSpace's destructor and tests call it.
void vm_area_free_flush();

// ---- neighbours (mmap R) -----------------------------------------------
// per_vma_range: a writer holding a range finds only VMAs meeting it
// (vma.cpp, "clip"): those beyond are no business of a change inside it.
Vma* find_vma(MmStruct* mm, std::uint64_t addr);            // first VMA with end > addr
Vma* find_vma_prev_of(MmStruct* mm, std::uint64_t addr);     // last VMA with start < addr
// per_vma_range, a writer holding a range: what free_pgtables may free
// stays inside it (floor raised to its start, ceiling lowered to its end;
// ceiling 0 = no VMA above).  Other modes and whole-space holds: unchanged.
void range_clip_floor_ceiling(const MmStruct* mm, std::uint64_t* floor, std::uint64_t* ceiling);
Vma* find_vma_intersection(MmStruct* mm, std::uint64_t start, std::uint64_t end);
Vma* vma_prev(MmStruct* mm, const Vma* vma);                // the VMA before, if any
Vma* vma_next(MmStruct* mm, const Vma* vma);                // the VMA after, if any
Vma* vma_lookup(MmStruct* mm, std::uint64_t addr);          // the VMA containing addr

// ---- the prepare/complete bracket --------------------------------------
// vma_prepare() write-locks every VMA named here (vma_start_write), then
// takes the file's i_mmap_rwsem and then the anon_vma's rwsem, both for
// write (lock_order.h; seed 000), and links `insert` into the file's
// i_mmap.  Between the two, the caller changes the VMAs' ranges and pgoffs
// and stores them in the tree: reverse-map walkers, which hold only those
// locks, never see a range half-changed.  vma_complete() unlinks
// `remove`/`remove2` from the i_mmap, releases the anon_vma lock and then
// the i_mmap lock, then detaches `remove`/`remove2` (still write-locked, as
// seed 000 requires: detached before the write side is released), unlinks
// them from the anon_vma, updates map_count and frees them after a grace
// period.  Every VMA with an anon_vma here has the same one (merges
// require it; the caller links a merge target to its anon_vma before
// vma_prepare, as Linux's dup_anon_vma does).
struct VmaPrepare {
  Vma* vma = nullptr;      // the VMA being expanded/shrunk/split
  Vma* adj_next = nullptr; // a neighbour whose start moves
  Vma* insert = nullptr;   // a new VMA to add to the tree
  Vma* remove = nullptr;   // VMAs absorbed by `vma` and removed
  Vma* remove2 = nullptr;
  // Set by vma_prepare: the locks it took.
  mem::File* file = nullptr;
  AnonVma* anon_vma = nullptr;
};
void vma_prepare(VmaPrepare& vp);
void vma_complete(VmaPrepare& vp, MmStruct* mm);

// ---- split -------------------------------------------------------------
// Split `vma` at `addr` (page aligned, strictly inside).  The new VMA takes
// the part below addr if new_below, else the part above.  Returns the new
// VMA, or nullptr with *err = -ENOMEM when map_count is at the limit
// (split_vma checks it; __split_vma callers check it themselves) or memory
// for the split cannot be had (__split_vma returns nullptr); nothing is
// changed then.
Vma* split_vma(MmStruct* mm, Vma* vma, std::uint64_t addr, bool new_below, int* err);
Vma* __split_vma(MmStruct* mm, Vma* vma, std::uint64_t addr, bool new_below);

// ---- merge -------------------------------------------------------------
// Would a range with these attributes merge with `vma` lying right after
// it (merge "before" vma) / right before it (merge "after" vma)?
// `anon_vma` is the range's; `src_vma` the VMA the range belongs to or
// is copied from (null for a new mapping), which the fork-child rule of
// is_mergeable_anon_vma looks at.
// `name` is the range's anonymous name: VMAs merge only with equal names
// (Linux's is_mergeable_vma compares anon_vma_name too).
bool can_vma_merge_before(const Vma* next, vm_flags_t flags, const mem::File* file, const AnonName& name,
                          AnonVma* anon_vma, const Vma* src_vma, std::uint64_t pgoff, std::uint64_t pglen);
bool can_vma_merge_after(const Vma* prev, vm_flags_t flags, const mem::File* file, const AnonName& name,
                         AnonVma* anon_vma, const Vma* src_vma, std::uint64_t pgoff);

// A new range [start, end) with `flags`/`file`/`pgoff` and no anon_vma,
// between `prev` (may be null) and `next` (may be null): expand a neighbour
// to cover it if Linux would.  Returns the VMA now covering the range, or
// nullptr if nothing merged (the caller creates a VMA; as in Linux, also
// when a merge could not get its memory).
// `anon_src`, if given, is a VMA whose anon_vma the new range has (mremap
// moving faulted memory, Linux's vmg->anon_vma): merges must be compatible
// with it and the merged VMA takes it.  `copied_from` (mremap moving a
// VMA, Linux's vmg->copied_from): the source VMA, which must not be a fork
// child to lend its anon_vma to a neighbour without one; not given when a
// VMA grows in place (Linux's vma_merge_extend checks no source).
// `name`: the range's anonymous name.  A new mapping (mmap, brk) has none,
// so it never merges with a named neighbour; mremap passes the moved or
// grown VMA's own.
Vma* vma_merge_new_range(MmStruct* mm, Vma* prev, Vma* next, std::uint64_t start,
                         std::uint64_t end, vm_flags_t flags, const mem::File* file,
                         std::uint64_t pgoff, const Vma* anon_src = nullptr,
                         const Vma* copied_from = nullptr, const AnonName& name = {});

// Give [start, end) (inside `vma`) the flags `new_flags`: merge with the
// neighbours where Linux would (vma_merge_existing_range), else split and
// set the flags.  Returns the VMA now covering [start, end), or nullptr
// with *err set (-ENOMEM: map_count limit or no memory; a first split may
// remain when the second fails, as in Linux).  The caller then sets the
// returned VMA's flags: to *out_flags when given, which is new_flags plus
// the sticky flags (VM_STICKY, e.g. VM_MAYBE_GUARD) a merge brought in
// from a neighbour (Linux 6.18.37+ vma_modify_flags reports them back);
// setting plain new_flags would drop them.
Vma* vma_modify_flags(MmStruct* mm, Vma* vma, std::uint64_t start, std::uint64_t end,
                      vm_flags_t new_flags, int* err, vm_flags_t* out_flags = nullptr);

// Give [start, end) (inside `vma`) the anonymous name `name` (Linux
// vma_modify_name, for PR_SET_VMA_ANON_NAME): merge with a neighbour
// whose name (and everything else) then matches, else split at the
// edges.  Returns the VMA now covering [start, end), write-locked, whose
// anon_name the caller then sets; or nullptr with *err set as
// vma_modify_flags does.
Vma* vma_modify_name(MmStruct* mm, Vma* vma, std::uint64_t start, std::uint64_t end, const AnonName& name,
                     int* err);

// ---- removal (munmap, MAP_FIXED replacement) ----------------------------
// Split the VMAs at the edges of [start, end) and write-lock every VMA
// inside it, appending them to *out in address order.  They stay in the
// tree.  -ENOMEM (nothing changed) when the range lies strictly inside one
// VMA and map_count is at the limit; the edge splits are otherwise not
// checked against the limit, as in Linux's vms_gather_munmap_vmas().
// -ENOMEM also when a split cannot get its memory: if the start was split
// already, that split remains (as in Linux).  -EPERM when a VMA in the
// range is sealed (mseal): checked on the first VMA after the map_count
// test and before its split, then on each VMA before its end split; the
// splits made before that stay.
int vms_gather_munmap_vmas(MmStruct* mm, std::uint64_t start, std::uint64_t end,
                           std::vector<Vma*>* out);
// Zap the gathered VMAs' pages, free the page tables of their range when
// `free_tables` (munmap; not when a new mapping replaced them), detach them
// (they must no longer be in the tree), update map_count and locked_vm and
// free them after a grace period.  Their commit charge (VM_ACCOUNT) is the
// caller's to give back.
void vms_complete_munmap_vmas(MmStruct* mm, const std::vector<Vma*>& vmas, bool free_tables);

// ---- insertion ---------------------------------------------------------
// Attach a new VMA (write-locked) and store it in the tree (replacing
// whatever the tree had there in one step); link it into its file's
// reverse map; map_count += 1.  False (nothing changed, the caller still
// owns `vma`) when memory for the tree or the link cannot be had.
[[nodiscard]] bool vma_link(MmStruct* mm, Vma* vma);

}  // namespace vmspace::mm
