// fuzz.cpp: random op scripts, comparison with the host kernel, shrinker.
#include "opscript/fuzz.h"

#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <random>
#include <set>
#include <utility>

#include "opscript/diff.h"
#include "opscript/kernel_runner.h"
#include "opscript/vmspace_executor.h"
#include "vmspace/address_space.h"

namespace vmspace::opscript::fuzz {

uint64_t run_seed(uint64_t seed, uint64_t run) { return seed + run * 0x9e3779b97f4a7c15ULL; }

void renumber(Script& script) {
  for (size_t i = 0; i < script.ops.size(); ++i) script.ops[i].line = static_cast<int>(i + 1);
}

namespace {

constexpr uint64_t P = kPageSize;
constexpr uint64_t kHugeLen = 0xfffffffffffff000ULL;

// The generator's idea of one page of the region. Only a bias: it follows
// the obvious semantics of successful operations and ignores the rest.
struct Page {
  bool mapped = false;
  unsigned prot = 0;
  unsigned orig_prot = 0;  // the protection it was mapped with
  unsigned attrs = 0;      // mmap_flag::kShared | kNoreserve | kGrowsdown
  uint32_t object = 0;     // shared and file mappings: one object per mmap (they never merge)
  unsigned advice = 0;     // kAdv* bits (flags madvise changes)
  std::string file;        // file mappings
  unsigned lock = 0;       // kLocked or kLockedOnfault (VM_LOCKED, VM_LOCKONFAULT)
  bool sealed = false;     // VM_SEALED
  bool guard = false;      // a guard marker (MADV_GUARD_INSTALL); no VMA flag that matters for merging

  bool same_vma_flags(const Page& o) const {
    return mapped == o.mapped && prot == o.prot && attrs == o.attrs && object == o.object && advice == o.advice &&
           lock == o.lock && sealed == o.sealed;
  }
};

constexpr unsigned kAdvRandom = 1, kAdvSequential = 2, kAdvDontfork = 4, kAdvDontdump = 8, kAdvWipeonfork = 16,
                   kAdvHugepage = 32, kAdvNohugepage = 64;
constexpr unsigned kLocked = 1, kLockedOnfault = 2;
constexpr size_t kMaxSpaces = 4;  // main and three forks: each is a process on the kernel side

// The weight of each advice among those enabled (the version 1 weights are
// the ones the generator always had).
unsigned advice_weight(Advice a) {
  switch (a) {
    case Advice::kNormal: return 10;
    case Advice::kRandom: return 10;
    case Advice::kSequential: return 10;
    case Advice::kWillneed: return 7;
    case Advice::kDontneed: return 9;
    case Advice::kFree: return 8;
    case Advice::kDontfork: return 12;
    case Advice::kDofork: return 12;
    case Advice::kDontdump: return 11;
    case Advice::kDodump: return 11;
    case Advice::kRemove: return 5;
    case Advice::kCold: return 4;
    case Advice::kPageout: return 4;
    case Advice::kWipeonfork: return 7;
    case Advice::kKeeponfork: return 5;
    case Advice::kHugepage: return 6;
    case Advice::kNohugepage: return 6;
    case Advice::kPopulateRead: return 8;
    case Advice::kPopulateWrite: return 8;
    case Advice::kGuardInstall: return 10;
    case Advice::kGuardRemove: return 6;
    case Advice::kDontneedLocked: return 6;
  }
  return 1;
}

struct Range {  // in pages, relative to the window base
  uint64_t start = 0;
  uint64_t pages = 1;
  uint64_t end() const { return start + pages; }
};

constexpr unsigned kAttrMask = mmap_flag::kShared | mmap_flag::kNoreserve | mmap_flag::kGrowsdown;

class Generator {
 public:
  Generator(uint64_t seed, const GenOptions& options) : rng_(seed), options_(options) {
    static constexpr uint64_t kRegionPages[] = {32, 64, 64, 128, 128, 256};
    region_ = kRegionPages[below(std::size(kRegionPages))];
    pages_.resize(region_);
    spaces_.push_back(Space{kMainSpace, {}, 0});
  }

  Script run() {
    Script s;
    s.ops.reserve(options_.ops);
    for (size_t i = 0; i < options_.ops; ++i) {
      Op op = generate_op(pick_kind());
      apply(op);
      s.ops.push_back(std::move(op));
    }
    renumber(s);
    return s;
  }

 private:
  // --- randomness (mt19937_64 is fully specified: same scripts everywhere)
  uint64_t below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  uint64_t between(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }  // inclusive
  bool chance(unsigned percent) { return below(100) < percent; }
  template <class Weights>
  size_t weighted_in(const Weights& weights) {
    unsigned total = 0;
    for (unsigned w : weights) total += w;
    uint64_t r = below(total);
    size_t i = 0;
    for (unsigned w : weights) {
      if (r < w) return i;
      r -= w;
      ++i;
    }
    return 0;
  }
  size_t weighted(std::initializer_list<unsigned> weights) { return weighted_in(weights); }
  bool enabled(OpKind k) const {
    return std::find(options_.kinds.begin(), options_.kinds.end(), k) != options_.kinds.end();
  }

  // --- the model
  std::vector<Range> segments() const {  // runs of mapped pages with equal flags (approximate VMAs)
    std::vector<Range> out;
    for (uint64_t p = 0; p < region_;) {
      if (!pages_[p].mapped) {
        ++p;
        continue;
      }
      uint64_t q = p + 1;
      while (q < region_ && pages_[q].same_vma_flags(pages_[p])) ++q;
      out.push_back({p, q - p});
      p = q;
    }
    return out;
  }
  uint64_t mapped_pages() const {
    uint64_t n = 0;
    for (const Page& pg : pages_) n += pg.mapped;
    return n;
  }

  // Page range of an op's ADDR/LEN when it is aligned, non-empty and inside
  // the window (what the model follows), clipped to the region.
  bool model_range(const Op& op, uint64_t len, uint64_t& first, uint64_t& last) const {
    if (op.addr.is_null || op.addr.offset % P != 0 || len == 0) return false;
    if (len > kWindowSize || op.addr.offset > kWindowSize - len) return false;
    first = op.addr.offset / P;
    uint64_t end = (op.addr.offset + len + P - 1) / P;
    last = std::min(end, region_);
    return true;
  }
  bool range_free(uint64_t first, uint64_t last) const {
    for (uint64_t p = first; p < last; ++p)
      if (pages_[p].mapped) return false;
    return true;
  }
  bool any_sealed(uint64_t first, uint64_t last) const {
    for (uint64_t p = first; p < last && p < region_; ++p)
      if (pages_[p].sealed) return true;
    return false;
  }
  // The range's end in pages (not clipped to the region).
  static uint64_t end_page(const Op& op, uint64_t len) { return (op.addr.offset + len + P - 1) / P; }

  void map_pages(uint64_t first, uint64_t last, const Op& op) {
    ++objects_;
    for (uint64_t p = first; p < last; ++p) {
      Page& pg = pages_[p];
      pg = Page{};
      pg.mapped = true;
      pg.prot = pg.orig_prot = op.prot;
      pg.attrs = op.flags & kAttrMask;
      if (op.has_file) {
        pg.attrs |= mmap_flag::kShared;  // files never merge across mmaps here either
        pg.file = op.file;
      }
      if ((op.flags & mmap_flag::kShared) || op.has_file) pg.object = objects_;
      pg.lock = future_lock_ != 0 ? future_lock_ : (op.flags & mmap_flag::kLocked) ? kLocked : 0;
    }
  }

  // The pages of a mapped run from `first` up to the first hole, `last` or
  // (when stop_at_sealed) the first sealed page: where a VMA walk that
  // stops at holes gets before it fails.
  uint64_t walk_end(uint64_t first, uint64_t last, bool stop_at_sealed) const {
    uint64_t p = first;
    while (p < last && pages_[p].mapped && !(stop_at_sealed && pages_[p].sealed)) ++p;
    return p;
  }

  void apply(const Op& op) {
    uint64_t first = 0, last = 0;
    switch (op.kind) {
      case OpKind::kMmap: {
        if (!model_range(op, op.len, first, last)) return;
        if ((op.flags & mmap_flag::kGrowsdown) && (op.flags & mmap_flag::kShared)) return;  // -EINVAL
        if (op.has_file && op.offset % P != 0) return;
        bool fixed = op.flags & (mmap_flag::kFixed | mmap_flag::kNoreplace);
        if ((op.flags & mmap_flag::kNoreplace) || !fixed) {
          if (!range_free(first, last)) return;  // -EEXIST, or the hint is not taken
        }
        if (any_sealed(first, last)) return;  // MAP_FIXED over a sealed page: -EPERM, nothing changes
        map_pages(first, last, op);
        return;
      }
      case OpKind::kMunmap:
        if (!model_range(op, op.len, first, last)) return;
        if (any_sealed(first, last)) return;  // -EPERM (only a head split stays behind)
        for (uint64_t p = first; p < last; ++p) pages_[p] = Page{};
        return;
      case OpKind::kMprotect:
        // Linux stops at the first hole (-ENOMEM) or sealed VMA (-EPERM) and
        // keeps the changes before it.
        if (!model_range(op, op.len, first, last)) return;
        for (uint64_t p = first, end = walk_end(first, last, true); p < end; ++p) pages_[p].prot = op.prot;
        return;
      case OpKind::kMadvise: {
        if (!model_range(op, op.len, first, last)) return;
        for (uint64_t p = first; p < last; ++p) {
          Page& pg = pages_[p];
          if (!pg.mapped) continue;
          const bool anon_ro_private = !(pg.attrs & mmap_flag::kShared) && !(pg.prot & prot::kWrite);
          switch (op.advice) {
            case Advice::kNormal: pg.advice &= ~(kAdvRandom | kAdvSequential); break;
            case Advice::kRandom: pg.advice = (pg.advice & ~kAdvSequential) | kAdvRandom; break;
            case Advice::kSequential: pg.advice = (pg.advice & ~kAdvRandom) | kAdvSequential; break;
            case Advice::kDontfork:
              if (pg.sealed && anon_ro_private) return;  // -EPERM, the walk stops
              pg.advice |= kAdvDontfork;
              break;
            case Advice::kDofork: pg.advice &= ~kAdvDontfork; break;
            case Advice::kDontdump: pg.advice |= kAdvDontdump; break;
            case Advice::kDodump: pg.advice &= ~kAdvDontdump; break;
            case Advice::kWipeonfork:
              if ((pg.attrs & mmap_flag::kShared) || (pg.sealed && anon_ro_private)) return;  // -EINVAL / -EPERM
              pg.advice |= kAdvWipeonfork;
              break;
            case Advice::kKeeponfork: pg.advice &= ~kAdvWipeonfork; break;
            case Advice::kHugepage: pg.advice = (pg.advice & ~kAdvNohugepage) | kAdvHugepage; break;
            case Advice::kNohugepage: pg.advice = (pg.advice & ~kAdvHugepage) | kAdvNohugepage; break;
            case Advice::kGuardInstall:
              if (pg.lock != 0 || (pg.sealed && anon_ro_private)) return;  // -EINVAL / -EPERM
              pg.guard = true;
              break;
            case Advice::kGuardRemove: pg.guard = false; break;
            default: break;
          }
        }
        return;
      }
      case OpKind::kMremap: {
        // Follow only a successful fixed move: the old pages go (unless
        // dontunmap, which unlocks the source), the new ones get the old
        // pages' flags (and guard markers).
        unsigned mf = mremap_flag::kMaymove | mremap_flag::kFixed;
        if ((op.flags & mf) != mf || op.new_addr.is_null) return;
        if (!model_range(op, op.len, first, last) || first >= region_ || !pages_[first].mapped) return;
        Op dst = op;
        dst.addr = op.new_addr;
        uint64_t nfirst = 0, nlast = 0;
        if (!model_range(dst, op.new_len, nfirst, nlast)) return;
        if (any_sealed(first, last) || any_sealed(nfirst, nlast)) return;  // -EPERM
        Page proto = pages_[first];
        if (!(op.flags & mremap_flag::kDontunmap)) {
          for (uint64_t p = first; p < last; ++p) pages_[p] = Page{};
        } else {
          for (uint64_t p = first; p < last; ++p) {
            pages_[p].lock = 0;
            pages_[p].guard = false;
          }
        }
        for (uint64_t p = nfirst; p < nlast; ++p) pages_[p] = proto;
        return;
      }
      case OpKind::kMlock:
      case OpKind::kMunlock:
      case OpKind::kMlock2: {
        // The VMAs up to the first hole get the new lock state.
        if (!model_range(op, op.len, first, last)) return;
        const unsigned lock = op.kind == OpKind::kMunlock ? 0 : op.onfault ? kLockedOnfault : kLocked;
        for (uint64_t p = first, end = walk_end(first, last, false); p < end; ++p) pages_[p].lock = lock;
        return;
      }
      case OpKind::kMlockall: {
        const unsigned f = op.flags;
        if (f == 0 || f == mlockall_flag::kOnfault) return;  // -EINVAL
        const unsigned lock = (f & mlockall_flag::kOnfault) ? kLockedOnfault : kLocked;
        future_lock_ = (f & mlockall_flag::kFuture) ? lock : 0;
        if (f & mlockall_flag::kCurrent)
          for (Page& pg : pages_)
            if (pg.mapped) pg.lock = lock;
        return;
      }
      case OpKind::kMunlockall:
        future_lock_ = 0;
        for (Page& pg : pages_) pg.lock = 0;
        return;
      case OpKind::kMseal:
        // All or nothing: any hole in the range (also past the region) is -ENOMEM.
        if (!model_range(op, op.len, first, last) || end_page(op, op.len) > region_) return;
        if (walk_end(first, last, false) != last) return;
        for (uint64_t p = first; p < last; ++p) pages_[p].sealed = true;
        return;
      case OpKind::kFork: {
        // The child: no DONTFORK pages, nothing locked, no MCL_FUTURE.
        std::vector<Page> child = pages_;
        for (Page& pg : child) {
          if (pg.mapped && (pg.advice & kAdvDontfork)) pg = Page{};
          pg.lock = 0;
        }
        spaces_.push_back(Space{op.space, std::move(child), 0});
        return;
      }
      case OpKind::kUse:
        for (size_t i = 0; i < spaces_.size(); ++i) {
          if (spaces_[i].name != op.space || i == current_) continue;
          spaces_[current_].pages = std::move(pages_);
          spaces_[current_].future_lock = future_lock_;
          pages_ = std::move(spaces_[i].pages);
          future_lock_ = spaces_[i].future_lock;
          current_ = i;
          return;
        }
        return;
      case OpKind::kFile:
        files_.push_back(op.file);
        return;
      default:
        return;
    }
  }

  // --- choosing ops
  OpKind pick_kind() {
    struct W {
      OpKind kind;
      unsigned weight;
    };
    bool sparse = mapped_pages() * 8 < region_;
    const W table[] = {
        {OpKind::kMmap, sparse ? 90u : 30u}, {OpKind::kMunmap, 12}, {OpKind::kMprotect, 25},
        {OpKind::kMadvise, 20},  {OpKind::kMaps, 8},    {OpKind::kMremap, 10},
        {OpKind::kMlock, 4},     {OpKind::kMunlock, 3}, {OpKind::kMlock2, 3},
        {OpKind::kFile, files_.size() < 4 ? 3u : 0u},   {OpKind::kFtruncate, files_.empty() ? 0u : 3u},
        {OpKind::kWrite, 10},    {OpKind::kRead, 10},
        // op scripts 1.1
        {OpKind::kMlockall, 2},  {OpKind::kMunlockall, 2}, {OpKind::kMseal, 4}, {OpKind::kMincore, 8},
        {OpKind::kFork, spaces_.size() < kMaxSpaces ? 3u : 0u},
        // right after a fork, usually switch to the child (or back)
        {OpKind::kUse, spaces_.size() < 2 ? 0u : since_fork_ < 3 ? 40u : 6u},
    };
    unsigned total = 0;
    for (const W& w : table)
      if (enabled(w.kind)) total += w.weight;
    if (total == 0) return OpKind::kMaps;
    uint64_t r = below(total);
    for (const W& w : table) {
      if (!enabled(w.kind)) continue;
      if (r < w.weight) return w.kind;
      r -= w.weight;
    }
    return OpKind::kMaps;
  }

  uint64_t small_pages() {
    switch (weighted({30, 35, 25, 10})) {
      case 0: return 1;
      case 1: return between(2, 4);
      case 2: return between(5, 16);
      default: return between(17, 64);
    }
  }

  Range random_range() { return {below(region_), small_pages()}; }

  // The next few ranged ops often come back to `r` (or its edges): where a
  // guard region, a DONTUNMAP move, a seal or a lock was just made, what
  // follows (mprotect, DONTNEED, mremap, a refault, mincore) is subtle.
  void focus_on(const Range& r) {
    focus_ = r;
    focus_left_ = 4;
  }

  // A range aimed at the model's VMAs: whole, left/right/middle parts,
  // across a boundary or a hole, spanning several VMAs, one edge page.
  Range target_range() {
    if (focus_left_ > 0) {
      --focus_left_;
      if (chance(45)) {
        const Range f = focus_;
        switch (weighted({50, 15, 15, 20})) {
          case 0: return f;
          case 1: return {f.start, 1};
          case 2: return {f.end() - 1, 1};
          default: return {f.start > 0 ? f.start - 1 : 0, f.pages + (f.start > 0 ? 2 : 1)};
        }
      }
    }
    std::vector<Range> segs = segments();
    if (segs.empty() || chance(10)) return random_range();
    size_t i = below(segs.size());
    const Range s = segs[i];
    const uint64_t n = s.pages;
    switch (weighted({14, 14, 14, 14, 14, 10, 10, 10})) {
      case 0: return s;                                                  // whole
      case 1: return {s.start, n > 1 ? between(1, n - 1) : 1};          // left part
      case 2: {                                                          // right part
        uint64_t k = n > 1 ? between(1, n - 1) : 1;
        return {s.end() - k, k};
      }
      case 3: {  // middle
        if (n < 3) return s;
        uint64_t a = between(1, n - 2);
        uint64_t b = between(a + 1, n - 1);
        return {s.start + a, b - a};
      }
      case 4: {  // from inside this one across its end (into the next VMA or a hole)
        uint64_t a = s.start + below(n);
        uint64_t b = s.end() + between(1, 8);
        return {a, b - a};
      }
      case 5: {  // several VMAs (with whatever holes lie between them)
        size_t j = i + below(std::min<size_t>(4, segs.size() - i));
        uint64_t a = s.start + (chance(50) ? 0 : below(n));
        uint64_t b = segs[j].end() - (chance(50) ? 0 : below(segs[j].pages));
        if (b <= a) b = a + 1;
        return {a, b - a};
      }
      case 6: {  // from before its start into it
        uint64_t back = std::min<uint64_t>(s.start, between(1, 8));
        if (back == 0) return s;
        return {s.start - back, back + between(1, n)};
      }
      default:  // one page at an edge
        return chance(50) ? Range{s.start, 1} : Range{s.end() - 1, 1};
    }
  }

  // Adjacent to a VMA (just after its end or just before its start).
  bool adjacent_range(Range& out, const Page*& neighbour) {
    std::vector<Range> segs = segments();
    if (segs.empty()) return false;
    const Range s = segs[below(segs.size())];
    uint64_t k = std::min<uint64_t>(small_pages(), 16);
    if (chance(50) || s.start == 0) {
      out = {s.end(), k};
      neighbour = &pages_[s.end() - 1];
    } else {
      k = std::min(k, s.start);
      out = {s.start - k, k};
      neighbour = &pages_[s.start];
    }
    return true;
  }

  unsigned random_prot() {
    static constexpr unsigned kProts[] = {
        prot::kRead | prot::kWrite, prot::kRead, 0, prot::kRead | prot::kExec,
        prot::kRead | prot::kWrite | prot::kExec, prot::kWrite, prot::kExec, prot::kWrite | prot::kExec};
    return kProts[weighted({35, 20, 12, 12, 6, 5, 5, 5})];
  }

  // mprotect's "back to the original protection" (re-merge) choices.
  unsigned restoring_prot(const Range& r) {
    std::vector<unsigned> choices;
    if (r.start > 0 && r.start - 1 < region_ && pages_[r.start - 1].mapped) choices.push_back(pages_[r.start - 1].prot);
    if (r.end() < region_ && pages_[r.end()].mapped) choices.push_back(pages_[r.end()].prot);
    if (r.start < region_ && pages_[r.start].mapped) choices.push_back(pages_[r.start].orig_prot);
    if (choices.empty()) return random_prot();
    return choices[below(choices.size())];
  }

  unsigned random_attrs() {
    unsigned a = 0;
    if (chance(22)) a |= mmap_flag::kShared;
    if (chance(15)) a |= mmap_flag::kNoreserve;
    // growsdown is for private mappings; shared,growsdown is -EINVAL (rarely)
    if (chance((a & mmap_flag::kShared) ? 2 : 10)) a |= mmap_flag::kGrowsdown;
    return a;
  }

  Addr page_addr(uint64_t page) { return Addr::at(page * P); }

  // Odd arguments: unaligned address, zero/one/unaligned/huge lengths.
  // `bounded`: the length must stay small (read/write touch every byte).
  // `allocates` (mmap, mremap): no lengths that could be mapped but are
  // large enough for the kernel's overcommit heuristic (which depends on
  // the host's RAM and swap) to refuse them; only lengths that no address
  // space can hold (> 128 TiB) or that the window rule rejects.
  void oddify(Op& op, uint64_t& len, bool bounded, bool allocates = false) {
    uint64_t off = op.addr.is_null ? 0 : op.addr.offset;
    switch (weighted({20, 14, 10, 24, 8, 8, 8, 8})) {
      case 0: {
        static constexpr uint64_t kDelta[] = {1, 0x800, 0xfff, 8};
        if (!op.addr.is_null) op.addr.offset += kDelta[below(std::size(kDelta))];
        return;
      }
      case 1: len = 0; return;
      case 2: len = 1; return;
      case 3: {
        static constexpr uint64_t kRem[] = {1, 0x800, 0xfff};
        len = (len / P) * P + kRem[below(std::size(kRem))];
        if (chance(30) && len > P) len = (len / P) * P - 1;
        return;
      }
      case 4:
        if (!bounded) {
          len = kHugeLen;
          return;
        }
        break;
      case 5:
        if (!bounded) {
          len = chance(50) ? ~0ULL : (1ULL << 47);
          return;
        }
        break;
      case 6:
        if (!bounded && !allocates && off < kWindowSize) {  // up to the window's end: covers every later mapping and hole
          len = kWindowSize - off;
          return;
        }
        break;
      default:
        if (!bounded && !allocates) {  // past the window's end (the window rule: unsupported)
          len = kWindowSize - std::min(off, kWindowSize) + P;
          return;
        }
        break;
    }
    len = 1;
  }

  Op generate_op(OpKind kind) {
    ++since_fork_;
    switch (kind) {
      case OpKind::kMmap: return gen_mmap();
      case OpKind::kMunmap: return gen_ranged(OpKind::kMunmap, 12);
      case OpKind::kMprotect: {
        Range r = target_range();
        Op op = ranged(OpKind::kMprotect, r, 10, false);
        op.prot = chance(40) ? restoring_prot(r) : random_prot();
        return op;
      }
      case OpKind::kMadvise: return gen_madvise();
      case OpKind::kMremap: return gen_mremap();
      case OpKind::kMlock: return focused(gen_ranged(OpKind::kMlock, 8));
      case OpKind::kMunlock: return gen_ranged(OpKind::kMunlock, 8);
      case OpKind::kMlock2: {
        Op op = focused(gen_ranged(OpKind::kMlock2, 8));
        op.onfault = chance(50);
        return op;
      }
      case OpKind::kFile: {
        Op op;
        op.kind = OpKind::kFile;
        op.has_file = true;  // as parse_script sets it
        op.file = "f" + std::to_string(files_.size());
        op.len = between(0, 8) * P + (chance(25) ? between(1, P - 1) : 0);
        return op;
      }
      case OpKind::kFtruncate: {
        if (files_.empty()) return generate_op(enabled(OpKind::kFile) ? OpKind::kFile : OpKind::kMaps);
        Op op;
        op.kind = OpKind::kFtruncate;
        op.has_file = true;
        op.file = files_[below(files_.size())];
        op.len = between(0, 8) * P + (chance(25) ? between(1, P - 1) : 0);
        return op;
      }
      case OpKind::kWrite: {
        Op op = ranged(OpKind::kWrite, target_range(), 15, true);
        op.byte = static_cast<uint8_t>(below(256));
        return op;
      }
      case OpKind::kRead: return ranged(OpKind::kRead, target_range(), 15, true);
      case OpKind::kMaps: {
        Op op;
        op.kind = OpKind::kMaps;
        return op;
      }
      case OpKind::kMlockall: {
        Op op;
        op.kind = OpKind::kMlockall;
        namespace mf = mlockall_flag;
        static constexpr unsigned kFlags[] = {mf::kCurrent,
                                              mf::kFuture,
                                              mf::kCurrent | mf::kFuture,
                                              mf::kCurrent | mf::kOnfault,
                                              mf::kFuture | mf::kOnfault,
                                              mf::kCurrent | mf::kFuture | mf::kOnfault,
                                              mf::kOnfault};  // -EINVAL
        op.flags = kFlags[weighted({30, 15, 15, 10, 8, 10, 4})];
#if defined(__SANITIZE_ADDRESS__)
        // The kernel side cannot lock AddressSanitizer's terabytes of
        // shadow (it prints `unsupported` for MCL_CURRENT there): ask for
        // the rest only, drawing the same random numbers.
        if (op.flags & mf::kCurrent) op.flags = (op.flags & ~mf::kCurrent) | mf::kFuture;
#endif
        return op;
      }
      case OpKind::kMunlockall: {
        Op op;
        op.kind = OpKind::kMunlockall;
        return op;
      }
      case OpKind::kMseal: return gen_mseal();
      case OpKind::kMincore: return ranged(OpKind::kMincore, target_range(), 12, false);
      case OpKind::kFork: {
        if (spaces_.size() >= kMaxSpaces) return generate_op(OpKind::kMaps);
        Op op;
        op.kind = OpKind::kFork;
        op.space = "s" + std::to_string(spaces_.size());
        since_fork_ = 0;
        std::vector<Range> segs = segments();  // COW: writes and reads of a mapping both sides have
        if (!segs.empty()) focus_on(segs[below(segs.size())]);
        return op;
      }
      case OpKind::kUse: {
        if (spaces_.size() < 2) return generate_op(OpKind::kMaps);
        Op op;
        op.kind = OpKind::kUse;
        size_t i = below(spaces_.size() - 1);  // any space but the current one
        if (i >= current_) ++i;
        op.space = spaces_[i].name;
        return op;
      }
    }
    Op op;
    op.kind = OpKind::kMaps;
    return op;
  }

  Op ranged(OpKind kind, const Range& r, unsigned odd_percent, bool bounded) {
    Op op;
    op.kind = kind;
    op.addr = page_addr(r.start);
    uint64_t len = std::min<uint64_t>(r.pages, bounded ? 16 : ~0ULL) * P;
    if (chance(odd_percent)) oddify(op, len, bounded);
    op.len = len;
    return op;
  }
  Op gen_ranged(OpKind kind, unsigned odd_percent) { return ranged(kind, target_range(), odd_percent, false); }

  Op gen_mmap() {
    Op op;
    op.kind = OpKind::kMmap;
    unsigned attrs = random_attrs();
    unsigned prot = random_prot();
    unsigned placement = mmap_flag::kFixed;  // kFixed, kNoreplace, both, or 0 (hint / NULL)
    bool odd = false;
    bool null_address = false;
    Range r;
    switch (weighted({22, 25, 18, 12, 8, 4, 3, 8})) {
      case 0: r = random_range(); break;  // somewhere in the region
      case 1: {                           // next to a VMA: same flags, or one thing different
        const Page* nb = nullptr;
        if (!adjacent_range(r, nb)) {
          r = random_range();
          break;
        }
        prot = nb->prot;
        attrs = nb->attrs & ~(nb->file.empty() ? 0u : unsigned(mmap_flag::kShared));
        if (!nb->file.empty() && chance(50)) attrs |= mmap_flag::kShared;
        if (chance(45)) {
          switch (below(4)) {
            case 0: prot = random_prot(); break;
            case 1: attrs ^= mmap_flag::kShared; break;
            case 2: attrs ^= mmap_flag::kNoreserve; break;
            default: attrs ^= mmap_flag::kGrowsdown; break;
          }
          if ((attrs & mmap_flag::kShared) && chance(80)) attrs &= ~mmap_flag::kGrowsdown;
        }
        break;
      }
      case 2: r = target_range(); break;  // FIXED over existing mappings
      case 3:                             // NOREPLACE, usually colliding
        r = chance(70) ? target_range() : random_range();
        placement = chance(15) ? (mmap_flag::kFixed | mmap_flag::kNoreplace) : mmap_flag::kNoreplace;
        if (chance(12)) odd = true;
        break;
      case 4:  // odd arguments
        r = chance(50) ? target_range() : random_range();
        odd = true;
        break;
      case 5:  // hint
        r = chance(50) ? target_range() : random_range();
        placement = 0;
        if (chance(15)) odd = true;
        break;
      case 6:  // NULL
        r = random_range();
        placement = 0;
        null_address = true;
        if (chance(20)) odd = true;
        break;
      default: {  // into the middle of a VMA with its own flags (a no-op change)
        std::vector<Range> segs = segments();
        if (segs.empty()) {
          r = random_range();
          break;
        }
        Range s = segs[below(segs.size())];
        const Page& pg = pages_[s.start];
        if (!pg.file.empty()) {
          r = s;
          break;
        }
        uint64_t a = below(s.pages);
        r = {s.start + a, between(1, s.pages - a)};
        prot = pg.prot;
        attrs = pg.attrs;
        break;
      }
    }
    op.addr = null_address ? Addr::null() : page_addr(r.start);
    op.prot = prot;
    op.flags = ((attrs & mmap_flag::kShared) ? mmap_flag::kShared : mmap_flag::kPrivate) | mmap_flag::kAnon |
               (attrs & (mmap_flag::kNoreserve | mmap_flag::kGrowsdown)) | placement;
    for (unsigned bit = 1; bit != 0 && bit <= options_.extra_mmap_flags; bit <<= 1)
      if ((options_.extra_mmap_flags & bit) && chance(10)) op.flags |= bit;
    if (enabled(OpKind::kFile) && !files_.empty() && chance(25)) {
      op.has_file = true;
      op.flags &= ~(mmap_flag::kAnon | mmap_flag::kGrowsdown);
      op.file = files_[below(files_.size())];
      op.offset = below(4) * P + (chance(5) ? 1 : 0);
    }
    uint64_t len = std::min<uint64_t>(r.pages, 64) * P;
    if (odd) oddify(op, len, false, true);
    op.len = len;
    return op;
  }

  Op gen_mremap() {
    Op op;
    op.kind = OpKind::kMremap;
    Range r = target_range();
    op.addr = page_addr(r.start);
    uint64_t len = std::min<uint64_t>(r.pages, 64) * P;
    if (chance(10)) oddify(op, len, false, true);
    op.len = len;
    op.new_len = chance(5) ? 0 : small_pages() * P;
    switch (weighted({25, 30, 25, 10, 5, 5})) {
      case 0: op.flags = 0; break;
      case 1: op.flags = mremap_flag::kMaymove; break;
      case 2: op.flags = mremap_flag::kMaymove | mremap_flag::kFixed; break;
      case 3: op.flags = mremap_flag::kMaymove | mremap_flag::kFixed | mremap_flag::kDontunmap; break;
      case 4: op.flags = mremap_flag::kFixed; break;                                // -EINVAL
      default: op.flags = mremap_flag::kMaymove | mremap_flag::kDontunmap; break;  // may move anywhere
    }
    if ((op.flags & mremap_flag::kFixed) && chance(25)) op.new_len = op.len;  // a move (may span several VMAs)
    if (op.flags & mremap_flag::kDontunmap) op.new_len = op.len;
    if (op.flags & mremap_flag::kFixed) {
      const uint64_t new_pages = std::max<uint64_t>(1, op.new_len / P);
      std::vector<Range> segs = segments();
      const Range s = segs.empty() ? random_range() : segs[below(segs.size())];
      switch (weighted({35, 25, 15, 10, 15})) {
        case 0: op.new_addr = page_addr(random_range().start); break;
        case 1: op.new_addr = page_addr(target_range().start); break;
        case 2: op.new_addr = page_addr(s.end()); break;  // onto a neighbour's end: may merge with it
        case 3:                                             // just before a VMA
          op.new_addr = page_addr(s.start >= new_pages ? s.start - new_pages : s.end());
          break;
        default: op.new_addr = page_addr(r.end()); break;  // right after the source (DONTUNMAP: merges with it)
      }
    }
    // Then the old range (refaults after DONTUNMAP) or the new one.
    if (op.flags & mremap_flag::kDontunmap) {
      focus_on(r);
    } else if ((op.flags & mremap_flag::kFixed) && !op.new_addr.is_null) {
      focus_on({op.new_addr.offset / P, std::max<uint64_t>(1, op.new_len / P)});
    }
    return op;
  }

  // Focus on an op's page range (see focus_on) and return the op.
  Op focused(Op op) {
    if (!op.addr.is_null && op.addr.offset < region_ * P)
      focus_on({op.addr.offset / P, std::clamp<uint64_t>(op.len / P, 1, 64)});
    return op;
  }

  // A page (among the mapped ones) for which `pred` holds; false if none.
  template <class Pred>
  bool pick_page(Pred pred, uint64_t& page) {
    std::vector<uint64_t> hits;
    for (uint64_t p = 0; p < region_; ++p)
      if (pages_[p].mapped && pred(pages_[p])) hits.push_back(p);
    if (hits.empty()) return false;
    page = hits[below(hits.size())];
    return true;
  }
  // The VMA (model segment) holding a page for which `pred` holds, or that
  // page alone.
  template <class Pred>
  bool pick_range_where(Pred pred, Range& out) {
    uint64_t page = 0;
    if (!pick_page(pred, page)) return false;
    out = {page, 1};
    if (chance(50)) {
      for (const Range& s : segments())
        if (s.start <= page && page < s.end()) out = s;
    }
    return true;
  }
  void retarget(Op& op, const Range& r) {
    op.addr = page_addr(r.start);
    op.len = std::min<uint64_t>(r.pages, 64) * P;
  }

  Op gen_madvise() {
    Op op = gen_ranged(OpKind::kMadvise, 10);
    if (options_.advice.empty()) return op;  // normal
    std::vector<unsigned> weights;
    for (Advice a : options_.advice) weights.push_back(advice_weight(a));
    op.advice = options_.advice[weighted_in(weights)];
    // Aim some advice at the pages where it is subtle.
    Range r;
    switch (op.advice) {
      case Advice::kPopulateRead:
      case Advice::kPopulateWrite:  // PROT_NONE, read-only, write-only: -EINVAL; guard pages: -EFAULT
        if (chance(45) && pick_range_where(
                              [](const Page& pg) { return pg.prot != (prot::kRead | prot::kWrite) || pg.guard; }, r))
          retarget(op, r);
        break;
      case Advice::kDontneedLocked:
      case Advice::kCold:
      case Advice::kPageout:
      case Advice::kGuardInstall:  // locked VMAs: allowed / -EINVAL
        if (chance(35) && pick_range_where([](const Page& pg) { return pg.lock != 0; }, r)) retarget(op, r);
        break;
      case Advice::kRemove:
      case Advice::kWipeonfork:
        if (chance(40) && pick_range_where([](const Page& pg) { return (pg.attrs & mmap_flag::kShared) != 0; }, r))
          retarget(op, r);
        break;
      case Advice::kGuardRemove:
        if (chance(60) && pick_range_where([](const Page& pg) { return pg.guard; }, r)) retarget(op, r);
        break;
      default:
        break;
    }
    switch (op.advice) {
      case Advice::kDontneed:
      case Advice::kFree:
      case Advice::kRemove:
      case Advice::kPageout:
      case Advice::kPopulateRead:
      case Advice::kPopulateWrite:
      case Advice::kGuardInstall:
      case Advice::kGuardRemove:
      case Advice::kDontneedLocked:
      case Advice::kWipeonfork:
        return focused(op);
      default:
        return op;
    }
  }

  // mseal: often a whole VMA or one page at its edge or in its middle (a
  // split), so the sealed piece sits next to VMAs it would merge with.
  Op gen_mseal() {
    std::vector<Range> segs = segments();
    Range r;
    if (!segs.empty() && chance(55)) {
      const Range s = segs[below(segs.size())];
      switch (weighted({30, 25, 25, 20})) {
        case 0: r = s; break;
        case 1: r = {s.start, 1}; break;
        case 2: r = {s.end() - 1, 1}; break;
        default: r = {s.start + below(s.pages), 1}; break;
      }
    } else {
      r = target_range();
    }
    return focused(ranged(OpKind::kMseal, r, 10, false));
  }

  struct Space {
    std::string name;
    std::vector<Page> pages;   // while not current (the current space's are pages_)
    unsigned future_lock = 0;  // while not current
  };

  std::mt19937_64 rng_;
  const GenOptions& options_;
  uint64_t region_ = 64;
  std::vector<Page> pages_;  // the current space's
  unsigned future_lock_ = 0;  // the current space's mlockall(MCL_FUTURE): kLocked or kLockedOnfault
  std::vector<Space> spaces_;  // in creation order; main first
  size_t current_ = 0;
  size_t since_fork_ = 1000;  // ops generated since the last fork
  Range focus_;
  unsigned focus_left_ = 0;
  std::vector<std::string> files_;
  uint32_t objects_ = 0;
};

// Simpler variants of one op, simplest first.
std::vector<Op> simplifications(const Op& op) {
  std::vector<Op> out;
  auto add = [&](Op c) {
    if (!(c == op) && std::find(out.begin(), out.end(), c) == out.end()) out.push_back(std::move(c));
  };
  bool has_range = false;
  switch (op.kind) {
    case OpKind::kMmap:
    case OpKind::kMunmap:
    case OpKind::kMprotect:
    case OpKind::kMadvise:
    case OpKind::kMremap:
    case OpKind::kMlock:
    case OpKind::kMunlock:
    case OpKind::kMlock2:
    case OpKind::kWrite:
    case OpKind::kRead:
    case OpKind::kMseal:
    case OpKind::kMincore:
      has_range = true;
      break;
    case OpKind::kFile:
    case OpKind::kFtruncate:
    case OpKind::kMaps:
    case OpKind::kFork:
    case OpKind::kUse:
    case OpKind::kMlockall:
    case OpKind::kMunlockall:
      break;
  }
  if (has_range) {
    Op c = op;
    c.len = P;
    add(c);
    if (op.len % P != 0 && op.len < kHugeLen) {
      c = op;
      c.len = (op.len + P - 1) / P * P;
      add(c);
    }
    if (op.len / P > 2 && op.len <= 1024 * P) {  // (not into sizes the overcommit heuristic sees)
      c = op;
      c.len = op.len / P / 2 * P;
      add(c);
    }
    if (!op.addr.is_null && op.addr.offset % P != 0) {
      c = op;
      c.addr.offset = op.addr.offset / P * P;
      add(c);
    }
  }
  switch (op.kind) {
    case OpKind::kMmap: {
      Op c = op;
      for (unsigned bit : {mmap_flag::kNoreserve, mmap_flag::kGrowsdown, mmap_flag::kPopulate, mmap_flag::kLocked}) {
        if (op.flags & bit) {
          c = op;
          c.flags &= ~bit;
          add(c);
        }
      }
      if (op.flags & mmap_flag::kShared) {
        c = op;
        c.flags = (c.flags & ~mmap_flag::kShared) | mmap_flag::kPrivate;
        add(c);
      }
      if ((op.flags & mmap_flag::kNoreplace) && (op.flags & mmap_flag::kFixed)) {
        c = op;
        c.flags &= ~mmap_flag::kFixed;
        add(c);
      }
      if (op.prot != (prot::kRead | prot::kWrite)) {
        c = op;
        c.prot = prot::kRead | prot::kWrite;
        add(c);
      }
      break;
    }
    case OpKind::kMprotect:
      if (op.prot != (prot::kRead | prot::kWrite)) {
        Op c = op;
        c.prot = prot::kRead | prot::kWrite;
        add(c);
      }
      break;
    case OpKind::kMadvise:
      if (op.advice != Advice::kNormal) {
        Op c = op;
        c.advice = Advice::kNormal;
        add(c);
      }
      break;
    case OpKind::kMremap: {
      Op c = op;
      c.new_len = P;
      add(c);
      if (op.flags & mremap_flag::kDontunmap) {
        c = op;
        c.flags &= ~mremap_flag::kDontunmap;
        add(c);
      }
      break;
    }
    case OpKind::kMlock2:
      if (op.onfault) {
        Op c = op;
        c.onfault = false;
        add(c);
      }
      break;
    case OpKind::kMlockall: {
      // current alone, then one flag fewer (never none: that is a different error)
      Op c = op;
      c.flags = mlockall_flag::kCurrent;
      add(c);
      for (unsigned bit : {mlockall_flag::kOnfault, mlockall_flag::kFuture, mlockall_flag::kCurrent}) {
        if ((op.flags & bit) && (op.flags & ~bit) != 0) {
          c = op;
          c.flags &= ~bit;
          add(c);
        }
      }
      break;
    }
    default:
      break;
  }
  return out;
}

}  // namespace

Script generate_script(uint64_t seed, const GenOptions& options) { return Generator(seed, options).run(); }

bool well_formed(const Script& script) {
  std::set<std::string, std::less<>> files;
  std::set<std::string, std::less<>> spaces{kMainSpace};
  for (const Op& op : script.ops) {
    switch (op.kind) {
      case OpKind::kFile:
        if (!files.insert(op.file).second) return false;
        break;
      case OpKind::kFtruncate:
        if (!files.contains(op.file)) return false;
        break;
      case OpKind::kMmap:
        if (op.has_file && !files.contains(op.file)) return false;
        break;
      case OpKind::kFork:
        if (!spaces.insert(op.space).second) return false;
        break;
      case OpKind::kUse:
        if (!spaces.contains(op.space)) return false;
        break;
      default:
        break;
    }
  }
  return true;
}

Comparison compare_with_kernel(const Script& script, LockMode mode, const Window& window) {
  Comparison c;
  KernelRunOptions kopts;
  kopts.window = window;
  kopts.timeout = std::chrono::milliseconds(10'000);  // a script of this size takes milliseconds
  KernelRunResult k = run_on_kernel(script, kopts);
  if (!k.ok) {
    c.retried = k.error;
    k = run_on_kernel(script, kopts);
    if (!k.ok) {
      c.error = k.error + " (twice; the first time: " + c.retried + ")";
      return c;
    }
  }
  AddressSpace as(host_like_options(mode));
  VmspaceExecutor ex(as);
  std::vector<std::string> ours = run_script(script, ex, window);
  DiffResult d = diff_lines(k.lines, ours);
  c.ok = true;
  c.equal = d.equal;
  c.diff = std::move(d.lines);
  return c;
}

Comparison compare_executors(const Script& script, const ExecutorFactory& a, const ExecutorFactory& b,
                             const Window& window) {
  std::unique_ptr<Executor> ea = a();
  std::unique_ptr<Executor> eb = b();
  DiffResult d = diff_lines(run_script(script, *ea, window), run_script(script, *eb, window));
  Comparison c;
  c.ok = true;
  c.equal = d.equal;
  c.diff = std::move(d.lines);
  return c;
}

Script shrink(Script script, const Interesting& interesting, const ShrinkOptions& options, ShrinkStats* stats) {
  renumber(script);
  size_t evaluations = 0;
  const size_t original = script.ops.size();
  auto test = [&](Script& candidate) {
    if (!well_formed(candidate)) return false;  // (no evaluation: a reproducer must parse)
    if (evaluations >= options.max_evaluations) return false;
    ++evaluations;
    renumber(candidate);
    return interesting(candidate);
  };

  bool changed = true;
  while (changed && evaluations < options.max_evaluations) {
    changed = false;
    // Remove chunks: halves, quarters, ..., single ops.
    for (size_t chunk = std::max<size_t>(1, script.ops.size() / 2);; chunk /= 2) {
      for (size_t i = 0; i < script.ops.size() && script.ops.size() > 1;) {
        Script candidate;
        size_t end = std::min(script.ops.size(), i + chunk);
        candidate.ops.reserve(script.ops.size() - (end - i));
        candidate.ops.insert(candidate.ops.end(), script.ops.begin(), script.ops.begin() + i);
        candidate.ops.insert(candidate.ops.end(), script.ops.begin() + end, script.ops.end());
        if (test(candidate)) {
          script = std::move(candidate);
          changed = true;
        } else {
          i += chunk;
        }
      }
      if (chunk <= 1) break;
    }
    // Simplify single ops; take the first (simplest) variant that keeps it interesting.
    for (size_t i = 0; i < script.ops.size(); ++i) {
      bool again = true;
      while (again) {
        again = false;
        for (const Op& variant : simplifications(script.ops[i])) {
          Script candidate = script;
          candidate.ops[i] = variant;
          if (test(candidate)) {
            script = std::move(candidate);
            changed = again = true;
            break;
          }
        }
      }
    }
  }
  renumber(script);
  if (stats) {
    stats->evaluations = evaluations;
    stats->original_ops = original;
    stats->final_ops = script.ops.size();
  }
  return script;
}

}  // namespace vmspace::opscript::fuzz
