// SPDX-License-Identifier: MIT
// Stress tier: fork (AddressSpace::fork, Linux's dup_mmap) against a
// running parent, its children and grandchildren, in all three lock
// modes, with a shadow model of every page of every space.
//
// The parent maps three regions of 16 pages: private anonymous memory
// (kPriv), shared anonymous memory (kShm, MAP_SHARED|MAP_ANONYMOUS) and a
// memfd mapped MAP_SHARED (kMfd); plus a MADV_WIPEONFORK and a
// MADV_DONTFORK range.  Page 4m+3 of each region belongs to the mutator,
// the others to the workers.  Each round:
//   - two worker threads per space (parent and every child forked this
//     round) write and read 1 KiB slots of the worker pages.  A private
//     slot has one owner per space (slot j of page p: thread (p+j) % 2),
//     and the owner in every space is the same thread number, so parent
//     and children write the same offsets of the same pages at once: copy
//     on write from both sides, and from two threads of one space on one
//     page.  Shared slots are written by any thread of any space under a
//     per-slot mutex (one shadow for all spaces).  Every read is checked
//     against the shadow: a child's write showing up in the parent (or the
//     other way round) is caught at once;
//   - the mutator thread changes the parent's own mutator pages: writes,
//     MADV_DONTNEED, mprotect (read-only and back), munmap and mmap again,
//     mremap to a scratch address and back; each change is recorded with
//     the parent's maps() after it;
//   - the forker thread forks the parent repeatedly while all that runs.
//     A fork is atomic with respect to each mapping change, so the child's
//     maps() must equal the parent's maps() after one of the changes made
//     while it forked (minus the DONTFORK range), and the child's pages of
//     the mutator hold that state.  Private worker slots whose owner was
//     not writing during the fork (a per-slot sequence count) are copied
//     into the child's shadow; the others are unknown until the child
//     writes them (meanwhile each of their words must be zero or a stamp
//     of that slot).  The WIPEONFORK range must read zero in the child, the
//     DONTFORK range must be unmapped.  The forker also forks grandchildren
//     from idle children and destroys idle children (and some of this
//     round's, once their threads are done) while the parent runs.
// At the end of the round every thread is joined: every live space's
// maps() is compared with its model (page by page: protection, offset,
// inode; and the VMA boundaries with those the fork copied), every page's
// contents with its shadow, validate() is run on each; then some children
// are destroyed in random order.  At the end all spaces are destroyed and
// the shared frame pool must have every frame back.
//
// A mismatch is reported with the frame every live space maps at that
// address (pfn, writable, reference and map counts), and the slot read
// again 1 ms later.  VMSPACE_STRESS_SEED overrides the base seed (printed;
// the threads' interleaving is not reproducible, the operations are).
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mem/page_table.h"  // frames_at(): what a failure report shows
#include "mem/phys_mem.h"    // drain_deferred(), for the pool check
#include "mm/mm.h"
#include "sync/rcu.h"
#include "support/test_host.h"
#include "vmspace/address_space.h"
#include "vmspace/physical_memory.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kPage = 4096;
constexpr int kRW = PROT_READ | PROT_WRITE;

enum Region : unsigned { kPriv, kShm, kMfd, kRegions, kWipeRegion = kRegions, kDontforkRegion };
constexpr const char* kRegionName[] = {"private", "shared-anon", "memfd", "wipeonfork", "dontfork"};
constexpr unsigned kPages = 16;  // per region
constexpr unsigned kSlots = 4;   // per page
constexpr std::uint64_t kSlotBytes = kPage / kSlots;
constexpr std::size_t kSlotWords = kSlotBytes / 8;
constexpr std::size_t kPageWords = kPage / 8;
constexpr unsigned kMutPages = kPages / 4;  // page 4m+3 of each region: the mutator's
constexpr unsigned kWorkers = 2;            // per space
constexpr unsigned kExtraPages = 4;         // the WIPEONFORK and DONTFORK ranges

constexpr std::uint64_t kBase = 0x300000000000;
constexpr std::uint64_t kWipe = kBase + (4ull << 20);
constexpr std::uint64_t kDontfork = kBase + (5ull << 20);

// Per round: operations of each parent worker, forks of the parent (spread
// over the parent's operations), operations of each child worker.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kRounds = 8;
constexpr long kParentOps = 10000;
constexpr int kForksPerRound = 4;
constexpr long kChildOps = 5000;
#else
constexpr int kRounds = 8;
constexpr long kParentOps = 30000;
constexpr int kForksPerRound = 4;
constexpr long kChildOps = 15000;
#endif
constexpr std::size_t kMaxLive = 7;  // idle children are destroyed (or not forked) from here on

constexpr std::uint64_t kUnknown = ~std::uint64_t{0};

bool is_mut(unsigned p) { return p % 4 == 3; }
unsigned mut_page(unsigned m) { return 4 * m + 3; }
std::uint64_t home(unsigned r, unsigned p) { return kBase + r * (1ull << 20) + p * kPage; }
// Where a mutator page goes when mremap'ed away (never adjacent to another).
std::uint64_t scratch(unsigned r, unsigned m) { return kBase + (16ull << 20) + r * (1ull << 20) + m * 2 * kPage; }

// What a slot (or a whole page, slot kSlots) holds: one word repeated,
// naming the space, the region, the page, the slot and a version.  Zero:
// never written (or discarded).
std::uint64_t stamp(unsigned space, unsigned r, unsigned p, unsigned slot, std::uint64_t ver) {
  return (std::uint64_t{space} << 44) | (std::uint64_t{r} << 40) | (std::uint64_t{p} << 32) |
         (std::uint64_t{slot} << 28) | (ver & 0x0fffffff);
}

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  va_list ap, ap2;
  va_start(ap, f);
  va_copy(ap2, ap);
  const int n = std::vsnprintf(nullptr, 0, f, ap);
  va_end(ap);
  std::string out(n > 0 ? static_cast<std::size_t>(n) : 0, '\0');
  std::vsnprintf(out.data(), out.size() + 1, f, ap2);
  va_end(ap2);
  return out;
}

// buf[0..n) as runs of equal words: "0-45 0x1005...; 46-127 0xa005...".
std::string runs(const std::uint64_t* buf, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n;) {
    std::size_t k = i;
    while (k + 1 < n && buf[k + 1] == buf[i]) ++k;
    out += fmt("%s%zu-%zu %#" PRIx64, out.empty() ? "" : "; ", i, k, buf[i]);
    i = k + 1;
  }
  return out;
}

// The first word of buf[0..n) that is not `expect` (kUnknown: anything goes).
std::string check_words(const std::uint64_t* buf, std::size_t n, std::uint64_t expect) {
  if (expect == kUnknown) return "";
  for (std::size_t i = 0; i < n; ++i)
    if (buf[i] != expect)
      return fmt("word %zu is %#" PRIx64 ", expected %#" PRIx64 " (words: %s)", i, buf[i], expect, runs(buf, n).c_str());
  return "";
}

// A private slot whose contents are unknown (its owner was writing it
// while the space was forked): each word is zero or a stamp of this slot
// (of some space and version), never another slot's.
std::string check_slot(const std::uint64_t* buf, std::uint64_t expect, unsigned r, unsigned p, unsigned j) {
  if (expect != kUnknown) return check_words(buf, kSlotWords, expect);
  const std::uint64_t key = (std::uint64_t{r} << 12) | (std::uint64_t{p} << 4) | j;
  for (std::size_t i = 0; i < kSlotWords; ++i)
    if (buf[i] != 0 && ((buf[i] >> 28) & 0xffff) != key)
      return fmt("word %zu is %#" PRIx64 ", not a stamp of this slot (unknown contents)", i, buf[i]);
  return "";
}

struct Errors {
  std::mutex m;
  std::vector<std::string> msgs;
  std::atomic<int> n{0};
  void add(const std::string& s) {
    if (n.fetch_add(1) < 20) {
      std::lock_guard<std::mutex> g(m);
      msgs.push_back(s);
    }
  }
  bool any() const { return n.load(std::memory_order_relaxed) != 0; }
};

// ---- The shadow model ------------------------------------------------------

// Shared slots: one shadow for every space, each slot under its mutex
// (whoever writes or reads it through any space holds it).
struct SharedModel {
  std::mutex mtx[2][kPages][kSlots];
  std::uint64_t shadow[2][kPages][kSlots] = {};
  std::mutex& lock(unsigned r, unsigned p, unsigned j) { return mtx[r - kShm][p][j]; }
  std::uint64_t& at(unsigned r, unsigned p, unsigned j) { return shadow[r - kShm][p][j]; }
};

// The mutator's pages of the parent (written by the mutator thread only).
struct MutPage {
  bool mapped = true, at_scratch = false, ro = false;
  std::uint64_t stamp = 0;  // kPriv: the page's contents (kUnknown: being written)
};
struct MutState {
  MutPage pg[kRegions][kMutPages];
  std::uint64_t where(unsigned r, unsigned m) const {
    return pg[r][m].at_scratch ? scratch(r, m) : home(r, mut_page(m));
  }
};

// After each change of the mutator: its state and the parent's maps().
struct HistEntry {
  std::uint64_t op = 0;
  MutState st;
  std::string maps;
};
struct History {
  std::mutex m;
  std::deque<HistEntry> q;          // ascending op
  std::uint64_t pin = UINT64_MAX;   // entries from here on are kept (a fork is reading them)
  std::atomic<std::uint64_t> started{0};  // changes begun (announced before they start)
  void push(std::uint64_t op, const MutState& st, std::string maps) {
    std::lock_guard<std::mutex> g(m);
    q.push_back(HistEntry{op, st, std::move(maps)});
    while (q.size() > 1 && q.front().op < std::min(pin, q.back().op)) q.pop_front();
  }
};

// A private slot of one space: its owner bumps seq (odd) before writing,
// and again (even) once the write returned.
struct PrivSlot {
  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uint64_t> val{0};
};

struct SpaceModel {
  unsigned id = 1;
  bool child = false;
  PrivSlot priv[kPages][kSlots];  // kPriv's worker pages
  std::uint64_t wipe[kExtraPages] = {};
  std::uint64_t dontfork[kExtraPages] = {};  // the parent's (children have no such range)
  // Children: the parent states the fork may have copied (all with the
  // same maps), and the maps() right after the fork (a child's layout
  // never changes).
  std::vector<MutState> mut;
  std::string maps;
  int unknown_slots = 0;
};

struct Space {
  std::unique_ptr<AddressSpace> as;
  std::unique_ptr<SpaceModel> md;
  std::vector<std::thread> threads;  // its workers (none: idle)
  void join() {
    for (auto& t : threads) t.join();
    threads.clear();
  }
};

// ---- maps() as pages -------------------------------------------------------

struct Inodes {
  std::uint64_t ino[kRegions] = {};
};

// page address -> "perms offset inode" (the file offset of that page).
std::map<std::uint64_t, std::string> maps_pages(const std::string& maps, std::string* bad) {
  std::map<std::uint64_t, std::string> out;
  std::size_t pos = 0;
  while (pos < maps.size()) {
    std::size_t nl = maps.find('\n', pos);
    if (nl == std::string::npos) nl = maps.size();
    const std::string line = maps.substr(pos, nl - pos);
    pos = nl + 1;
    unsigned long long start = 0, end = 0, off = 0, ino = 0;
    char perms[8] = {};
    unsigned dmaj = 0, dmin = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %x:%x %llu", &start, &end, perms, &off, &dmaj, &dmin, &ino) !=
        7) {
      *bad = "unparsable maps line: " + line;
      return out;
    }
    for (std::uint64_t a = start; a < end; a += kPage)
      out[a] = fmt("%s %llx %llu", perms, ino != 0 ? off + (a - start) : 0ull, ino);
  }
  return out;
}

std::map<std::uint64_t, std::string> expected_pages(const MutState& st, bool child, const Inodes& in) {
  std::map<std::uint64_t, std::string> out;
  auto attr = [&](unsigned r, unsigned p, bool ro) {
    const bool shared = r != kPriv;
    return fmt("%s%c %llx %llu", ro ? "r--" : "rw-", shared ? 's' : 'p',
               shared ? static_cast<unsigned long long>(p * kPage) : 0ull,
               shared ? static_cast<unsigned long long>(in.ino[r]) : 0ull);
  };
  for (unsigned r = 0; r < kRegions; ++r) {
    for (unsigned p = 0; p < kPages; ++p)
      if (!is_mut(p)) out[home(r, p)] = attr(r, p, false);
    for (unsigned m = 0; m < kMutPages; ++m)
      if (st.pg[r][m].mapped) out[st.where(r, m)] = attr(r, mut_page(m), st.pg[r][m].ro);
  }
  for (unsigned k = 0; k < kExtraPages; ++k) {
    out[kWipe + k * kPage] = "rw-p 0 0";
    if (!child) out[kDontfork + k * kPage] = "rw-p 0 0";
  }
  return out;
}

// The parent's maps() without its DONTFORK range: what a child forked
// from it shows.
std::string without_dontfork(const std::string& maps) {
  std::string out;
  std::size_t pos = 0;
  while (pos < maps.size()) {
    std::size_t nl = maps.find('\n', pos);
    if (nl == std::string::npos) nl = maps.size();
    const std::string line = maps.substr(pos, nl - pos + 1);
    pos = nl + 1;
    unsigned long long start = 0;
    if (std::sscanf(line.c_str(), "%llx-", &start) == 1 && start >= kDontfork &&
        start < kDontfork + kExtraPages * kPage)
      continue;
    out += line;
  }
  return out;
}

// ---- The test --------------------------------------------------------------

class ForkStress : public ::testing::TestWithParam<LockMode> {
 protected:
  std::shared_ptr<PhysicalMemory> pool_;
  std::unique_ptr<AddressSpace> parent_;
  SpaceModel pmd_;  // the parent's model
  SharedModel sh_;
  History hist_;
  MutState mst_;  // the mutator's current state (its thread only, while running)
  Inodes ino_;
  Errors err_;
  std::atomic<long> parent_ops_{0};
  std::uint64_t mut_ver_ = 0;
  unsigned next_id_ = 2;
  int mfd_ = -1;
  // Statistics.
  long forks_ = 0, grandchildren_ = 0, destroyed_running_ = 0, unknown_slots_ = 0, candidates_multi_ = 0;
  std::atomic<long> mut_changes_{0};
  std::vector<std::string> lineage_;  // what each child is (printed on failure)
  // Every live space, for failure reports.
  std::mutex reg_m_;
  std::map<unsigned, AddressSpace*> reg_;

  void reg_add(unsigned id, AddressSpace* as) {
    std::lock_guard<std::mutex> g(reg_m_);
    reg_[id] = as;
  }
  void reg_del(unsigned id) {
    std::lock_guard<std::mutex> g(reg_m_);
    reg_.erase(id);
  }
  // The frame each live space maps at va (a mismatch's report).
  std::string frames_at(std::uint64_t va) {
    std::lock_guard<std::mutex> g(reg_m_);
    std::string out;
    for (const auto& [id, as] : reg_) {
      rcu::ReadGuard rcu;
      const mem::pte_t pte = as->mm()->pgtables.lookup(va);
      if (!mem::pte_present(pte)) {
        out += fmt("\n  space %u: no page", id);
        continue;
      }
      const mem::pfn_t pfn = mem::pte_pfn(pte);
      const mem::Frame& fr = as->phys()->frame(pfn);
      out += fmt("\n  space %u: pfn %llu%s, refcount %d, mapcount %d", id, static_cast<unsigned long long>(pfn),
                 mem::pte_write(pte) ? " writable" : "", fr.refcount.load(), fr.mapcount.load());
    }
    return out;
  }

  // One worker of a space: `ops` operations, counted in `progress`.
  void worker(AddressSpace& as, SpaceModel& md, unsigned t, std::uint64_t seed, long ops, std::atomic<long>* progress) {
    std::mt19937_64 rng(seed);
    std::uint64_t buf[kSlotWords], got[kSlotWords];
    std::uint64_t ver = 0;
    for (long i = 0; i < ops && !err_.any(); ++i) {
      const unsigned r = static_cast<unsigned>(rng() % kRegions);
      unsigned p;
      do p = static_cast<unsigned>(rng() % kPages);
      while (is_mut(p));
      const bool write = rng() % 2 != 0;
      if (r == kPriv) {
        // A slot this thread owns: (p + j) % kWorkers == t.
        const unsigned j = (t + kWorkers * kPages - p) % kWorkers + kWorkers * static_cast<unsigned>(rng() % (kSlots / kWorkers));
        const std::uint64_t va = home(r, p) + j * kSlotBytes;
        PrivSlot& s = md.priv[p][j];
        if (write) {
          const std::uint64_t v = stamp(md.id, r, p, j, ++ver);
          std::fill(buf, buf + kSlotWords, v);
          s.seq.fetch_add(1);
          s.val.store(v);
          const AccessResult res = as.write(va, buf, kSlotBytes);
          s.seq.fetch_add(1);
          if (!res.ok())
            err_.add(fmt("space %u thread %u: write of private page %u slot %u: %s", md.id, t, p, j, fault_name(res.fault)));
        } else {
          const AccessResult res = as.read(va, got, kSlotBytes);
          if (!res.ok())
            err_.add(fmt("space %u thread %u: read of private page %u slot %u: %s", md.id, t, p, j, fault_name(res.fault)));
          else if (std::string e = check_slot(got, s.val.load(), r, p, j); !e.empty()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            const bool again = as.read(va, got, kSlotBytes).ok();
            err_.add(fmt("space %u thread %u: private page %u slot %u (%#" PRIx64 "): %s; 1 ms later: %s", md.id, t, p, j,
                         va, e.c_str(), again ? runs(got, kSlotWords).c_str() : "unreadable") +
                     frames_at(va));
          }
        }
      } else {
        const unsigned j = static_cast<unsigned>(rng() % kSlots);
        const std::uint64_t va = home(r, p) + j * kSlotBytes;
        std::lock_guard<std::mutex> g(sh_.lock(r, p, j));
        if (write) {
          const std::uint64_t v = stamp(md.id, r, p, j, ++ver);
          std::fill(buf, buf + kSlotWords, v);
          const AccessResult res = as.write(va, buf, kSlotBytes);
          if (!res.ok())
            err_.add(fmt("space %u thread %u: write of %s page %u slot %u: %s", md.id, t, kRegionName[r], p, j, fault_name(res.fault)));
          sh_.at(r, p, j) = v;
        } else {
          const AccessResult res = as.read(va, got, kSlotBytes);
          if (!res.ok())
            err_.add(fmt("space %u thread %u: read of %s page %u slot %u: %s", md.id, t, kRegionName[r], p, j, fault_name(res.fault)));
          else if (std::string e = check_words(got, kSlotWords, sh_.at(r, p, j)); !e.empty())
            err_.add(fmt("space %u thread %u: %s page %u slot %u (%#" PRIx64 "): %s", md.id, t, kRegionName[r], p, j, va, e.c_str()));
        }
      }
      if (progress != nullptr) progress->fetch_add(1, std::memory_order_relaxed);
    }
  }

  void record(std::uint64_t op) { hist_.push(op, mst_, parent_->maps()); }

  // The parent's mutator: changes its own pages until `stop`.
  void mutator(std::uint64_t seed, const std::atomic<bool>& stop) {
    std::mt19937_64 rng(seed);
    AddressSpace& as = *parent_;
    std::uint64_t buf[kPageWords];
    while (!stop.load(std::memory_order_relaxed) && !err_.any()) {
      const unsigned r = static_cast<unsigned>(rng() % kRegions);
      const unsigned m = static_cast<unsigned>(rng() % kMutPages);
      const unsigned p = mut_page(m);
      MutPage& mp = mst_.pg[r][m];
      const std::uint64_t at = mst_.where(r, m);
      unsigned what = static_cast<unsigned>(rng() % 6);
      if (!mp.mapped) what = 6;                   // map it again first
      if ((what == 0 || what == 5) && mp.ro) what = 2;          // make it writable first
      if (what == 3 && r == kShm) what = 4;       // a new shared-anon object would not be shared: move instead
      std::uint64_t op = hist_.started.fetch_add(1) + 1;
      bool ok = true;
      std::string what_s;
      switch (what) {
        case 0:
        case 5: {  // write the whole page
          what_s = "write";
          if (r == kPriv) {
            mp.stamp = kUnknown;  // a fork during the write copies some of it
            record(op);
            op = hist_.started.fetch_add(1) + 1;
            const std::uint64_t v = stamp(1, r, p, kSlots, ++mut_ver_);
            std::fill(buf, buf + kPageWords, v);
            ok = as.write(at, buf, kPage).ok();
            mp.stamp = v;
          } else {
            std::unique_lock<std::mutex> g[kSlots];
            for (unsigned j = 0; j < kSlots; ++j) g[j] = std::unique_lock<std::mutex>(sh_.lock(r, p, j));
            for (unsigned j = 0; j < kSlots; ++j) {
              const std::uint64_t v = stamp(1, r, p, j, ++mut_ver_);
              std::fill(buf, buf + kSlotWords, v);
              ok = as.write(at + j * kSlotBytes, buf, kSlotBytes).ok() && ok;
              sh_.at(r, p, j) = v;
            }
          }
          break;
        }
        case 1:
          what_s = "MADV_DONTNEED";
          ok = as.madvise(at, kPage, MADV_DONTNEED) == 0;
          if (r == kPriv) mp.stamp = 0;  // shared memory keeps its data
          break;
        case 2:
          what_s = mp.ro ? "mprotect(rw)" : "mprotect(r)";
          ok = as.mprotect(at, kPage, mp.ro ? kRW : PROT_READ) == 0;
          mp.ro = !mp.ro;
          break;
        case 3:
          what_s = "munmap";
          ok = as.munmap(at, kPage) == 0;
          mp = MutPage{};
          mp.mapped = false;
          break;
        case 4: {
          const std::uint64_t to = mp.at_scratch ? home(r, p) : scratch(r, m);
          what_s = mp.at_scratch ? "mremap(home)" : "mremap(away)";
          ok = as.mremap(at, kPage, kPage, MREMAP_MAYMOVE | MREMAP_FIXED, to) == static_cast<long>(to);
          mp.at_scratch = !mp.at_scratch;
          break;
        }
        case 6: {
          what_s = "mmap";
          const std::uint64_t to = home(r, p);
          const long got = r == kPriv ? as.mmap(to, kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
                                      : as.mmap(to, kPage, kRW, MAP_SHARED | MAP_FIXED, mfd_, p * kPage);
          ok = got == static_cast<long>(to);
          mp = MutPage{};
          break;
        }
      }
      if (!ok) err_.add(fmt("mutator: %s of %s page %u at %#" PRIx64 " failed", what_s.c_str(), kRegionName[r], p, at));
      record(op);
      mut_changes_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // The WIPEONFORK range of a new child reads zero and the DONTFORK range
  // is not there; then the child writes its own stamps into the former.
  void check_and_fill_extras(AddressSpace& as, SpaceModel& md) {
    std::uint64_t buf[kPageWords];
    for (unsigned k = 0; k < kExtraPages; ++k) {
      const AccessResult r = as.read(kWipe + k * kPage, buf, kPage);
      if (!r.ok()) {
        err_.add(fmt("space %u: WIPEONFORK page %u: %s", md.id, k, fault_name(r.fault)));
      } else if (std::string e = check_words(buf, kPageWords, 0); !e.empty()) {
        err_.add(fmt("space %u: WIPEONFORK page %u not wiped: %s", md.id, k, e.c_str()));
      }
      const AccessResult d = as.read(kDontfork + k * kPage, buf, 8);
      if (d.fault != Fault::segv_maperr)
        err_.add(fmt("space %u: DONTFORK page %u: %s, expected SEGV_MAPERR", md.id, k, fault_name(d.fault)));
      md.wipe[k] = stamp(md.id, kWipeRegion, k, kSlots, 1);
      std::fill(buf, buf + kPageWords, md.wipe[k]);
      if (!as.write(kWipe + k * kPage, buf, kPage).ok()) err_.add(fmt("space %u: write of WIPEONFORK page %u", md.id, k));
    }
  }

  // Fork the parent (from the forker thread, while everything runs).
  std::unique_ptr<Space> fork_parent(int round) {
    std::uint64_t c1;
    {
      std::lock_guard<std::mutex> g(hist_.m);
      c1 = hist_.q.back().op;  // completed (and recorded) before the fork
      hist_.pin = c1;
    }
    std::uint32_t seq1[kPages][kSlots];
    std::uint64_t val1[kPages][kSlots];
    for (unsigned p = 0; p < kPages; ++p)
      for (unsigned j = 0; j < kSlots; ++j) {
        seq1[p][j] = pmd_.priv[p][j].seq.load();
        val1[p][j] = pmd_.priv[p][j].val.load();
      }
    int e = 1;
    auto as = parent_->fork(&e);
    const std::uint64_t c2 = hist_.started.load();  // changes begun before the fork returned
    auto sp = std::make_unique<Space>();
    sp->md = std::make_unique<SpaceModel>();
    SpaceModel& md = *sp->md;
    md.id = next_id_++;
    md.child = true;
    for (unsigned p = 0; p < kPages; ++p)
      for (unsigned j = 0; j < kSlots; ++j) {
        const std::uint32_t s2 = pmd_.priv[p][j].seq.load();
        const bool known = seq1[p][j] % 2 == 0 && s2 == seq1[p][j];
        md.priv[p][j].val.store(known ? val1[p][j] : kUnknown);
        if (!known) ++md.unknown_slots;
      }
    unknown_slots_ += md.unknown_slots;
    if (as == nullptr || e != 0) {
      std::lock_guard<std::mutex> g(hist_.m);
      hist_.pin = UINT64_MAX;
      err_.add(fmt("fork of the parent failed: %d", e));
      return nullptr;
    }
    sp->as = std::move(as);
    reg_add(md.id, sp->as.get());
    md.maps = sp->as->maps();
    // The states the child may have: after change c1 .. c2 (wait for the
    // mutator to record c2).
    std::vector<HistEntry> cands;
    for (;;) {
      {
        std::lock_guard<std::mutex> g(hist_.m);
        if (hist_.q.back().op >= c2) {
          for (const HistEntry& h : hist_.q)
            if (h.op >= c1 && h.op <= c2) cands.push_back(h);
          hist_.pin = UINT64_MAX;
          break;
        }
      }
      std::this_thread::yield();
    }
    for (const HistEntry& h : cands)
      if (without_dontfork(h.maps) == md.maps) md.mut.push_back(h.st);
    if (md.mut.empty()) {
      std::string msg = fmt("child %u: its maps() matches none of the parent's %zu states (changes %" PRIu64 "..%" PRIu64
                            ") during the fork.\nchild:\n%s",
                            md.id, cands.size(), c1, c2, md.maps.c_str());
      for (const HistEntry& h : cands) msg += fmt("parent after change %" PRIu64 ":\n", h.op) + without_dontfork(h.maps);
      err_.add(msg);
      reg_del(md.id);
      return nullptr;
    }
    if (md.mut.size() > 1) ++candidates_multi_;
    lineage_.push_back(fmt("child %u: forked from the parent in round %d (mutator changes %" PRIu64 "..%" PRIu64
                           ", %d slots unknown)", md.id, round, c1, c2, md.unknown_slots));
    check_and_fill_extras(*sp->as, md);
    ++forks_;
    return sp;
  }

  // Fork an idle child (no thread runs in it): its model is exact.
  std::unique_ptr<Space> fork_idle(Space& from, int round) {
    int e = 1;
    auto as = from.as->fork(&e);
    if (as == nullptr || e != 0) {
      err_.add(fmt("fork of child %u failed: %d", from.md->id, e));
      return nullptr;
    }
    auto sp = std::make_unique<Space>();
    sp->as = std::move(as);
    sp->md = std::make_unique<SpaceModel>();
    SpaceModel& md = *sp->md;
    md.id = next_id_++;
    md.child = true;
    reg_add(md.id, sp->as.get());
    for (unsigned p = 0; p < kPages; ++p)
      for (unsigned j = 0; j < kSlots; ++j) md.priv[p][j].val.store(from.md->priv[p][j].val.load());
    md.mut = from.md->mut;
    md.maps = sp->as->maps();
    if (md.maps != from.md->maps)
      err_.add(fmt("grandchild %u of %u: maps differ from its parent's:\n%s---\n%s", md.id, from.md->id, md.maps.c_str(),
                   from.md->maps.c_str()));
    lineage_.push_back(fmt("child %u: forked from child %u in round %d", md.id, from.md->id, round));
    check_and_fill_extras(*sp->as, md);
    ++grandchildren_;
    return sp;
  }

  // Compare a space with its model.  Shared slots are read under their
  // locks (other spaces may be running); `full`: also validate() (only when
  // no thread runs in any space of the family: validate reads frame
  // counts a relative's fork or fault may be changing).
  void check_space(AddressSpace& as, SpaceModel& md, bool full, const char* when) {
    const std::string name = md.child ? fmt("child %u", md.id) : std::string("parent");
    const std::string maps = as.maps();
    const MutState* layout;
    if (md.child) {
      if (maps != md.maps)
        err_.add(fmt("%s (%s): VMAs changed since the fork:\n%s---\n%s", name.c_str(), when, maps.c_str(), md.maps.c_str()));
      layout = &md.mut.front();
    } else {
      std::lock_guard<std::mutex> g(hist_.m);
      if (maps != hist_.q.back().maps)
        err_.add(fmt("parent (%s): maps differ from the mutator's last record:\n%s---\n%s", when, maps.c_str(),
                     hist_.q.back().maps.c_str()));
      layout = &mst_;
    }
    std::string bad;
    const auto have = maps_pages(maps, &bad);
    if (!bad.empty()) err_.add(name + ": " + bad);
    const auto want = expected_pages(*layout, md.child, ino_);
    for (const auto& [a, w] : want) {
      auto it = have.find(a);
      if (it == have.end()) {
        err_.add(fmt("%s (%s): page %#" PRIx64 " not mapped, expected \"%s\"\n%s", name.c_str(), when, a, w.c_str(), maps.c_str()));
        break;
      }
      if (it->second != w) {
        err_.add(fmt("%s (%s): page %#" PRIx64 " is \"%s\", expected \"%s\"\n%s", name.c_str(), when, a, it->second.c_str(),
                     w.c_str(), maps.c_str()));
        break;
      }
    }
    for (const auto& [a, h] : have)
      if (!want.count(a)) {
        err_.add(fmt("%s (%s): page %#" PRIx64 " (\"%s\") should not be mapped\n%s", name.c_str(), when, a, h.c_str(), maps.c_str()));
        break;
      }

    std::uint64_t buf[kPageWords];
    auto read = [&](std::uint64_t va, std::uint64_t n, const char* what) {
      const AccessResult r = as.read(va, buf, n);
      if (!r.ok()) err_.add(fmt("%s (%s): read of %s at %#" PRIx64 ": %s", name.c_str(), when, what, va, fault_name(r.fault)));
      return r.ok();
    };
    // Private worker slots.
    for (unsigned p = 0; p < kPages; ++p) {
      if (is_mut(p)) continue;
      for (unsigned j = 0; j < kSlots; ++j) {
        const std::uint64_t va = home(kPriv, p) + j * kSlotBytes;
        if (!read(va, kSlotBytes, "a private slot")) continue;
        if (std::string e = check_slot(buf, md.priv[p][j].val.load(), kPriv, p, j); !e.empty())
          err_.add(fmt("%s (%s): private page %u slot %u (%#" PRIx64 "): %s", name.c_str(), when, p, j, va, e.c_str()) +
                   frames_at(va));
      }
    }
    // Private mutator pages: the parent's state, or one of the states the
    // child may have copied.
    {
      std::uint64_t first[kMutPages] = {};
      bool uniform[kMutPages] = {};
      for (unsigned m = 0; m < kMutPages; ++m) {
        if (!layout->pg[kPriv][m].mapped) continue;
        if (!read(layout->where(kPriv, m), kPage, "a private mutator page")) continue;
        first[m] = buf[0];
        uniform[m] = check_words(buf, kPageWords, buf[0]).empty();
      }
      auto matches = [&](const MutState& st, std::string* why) {
        for (unsigned m = 0; m < kMutPages; ++m) {
          const MutPage& mp = st.pg[kPriv][m];
          if (!mp.mapped || mp.stamp == kUnknown) continue;
          if (!uniform[m] || first[m] != mp.stamp) {
            if (why != nullptr)
              *why = fmt("private mutator page %u at %#" PRIx64 ": %s, expected %#" PRIx64, mut_page(m), st.where(kPriv, m),
                         uniform[m] ? fmt("%#" PRIx64, first[m]).c_str() : "mixed words", mp.stamp);
            return false;
          }
        }
        return true;
      };
      std::string why;
      if (!md.child) {
        if (!matches(mst_, &why)) err_.add(fmt("parent (%s): %s", when, why.c_str()));
      } else if (std::none_of(md.mut.begin(), md.mut.end(), [&](const MutState& st) { return matches(st, nullptr); })) {
        matches(md.mut.front(), &why);
        err_.add(fmt("%s (%s): no state it may have been forked in matches: %s", name.c_str(), when, why.c_str()));
      }
    }
    // Shared pages: one shadow for all spaces.
    for (unsigned r = kShm; r <= kMfd; ++r) {
      for (unsigned p = 0; p < kPages; ++p) {
        std::uint64_t at = home(r, p);
        if (is_mut(p)) {
          const MutPage& mp = layout->pg[r][p / 4];
          if (!mp.mapped) continue;
          at = layout->where(r, p / 4);
        }
        for (unsigned j = 0; j < kSlots; ++j) {
          std::lock_guard<std::mutex> g(sh_.lock(r, p, j));
          if (!read(at + j * kSlotBytes, kSlotBytes, "a shared slot")) continue;
          if (std::string e = check_words(buf, kSlotWords, sh_.at(r, p, j)); !e.empty())
            err_.add(fmt("%s (%s): %s page %u slot %u (at %#" PRIx64 "): %s", name.c_str(), when, kRegionName[r], p, j,
                         at + j * kSlotBytes, e.c_str()));
        }
      }
    }
    // WIPEONFORK and DONTFORK.
    for (unsigned k = 0; k < kExtraPages; ++k) {
      if (read(kWipe + k * kPage, kPage, "a WIPEONFORK page"))
        if (std::string e = check_words(buf, kPageWords, md.wipe[k]); !e.empty())
          err_.add(fmt("%s (%s): WIPEONFORK page %u: %s", name.c_str(), when, k, e.c_str()));
      if (!md.child && read(kDontfork + k * kPage, kPage, "a DONTFORK page"))
        if (std::string e = check_words(buf, kPageWords, md.dontfork[k]); !e.empty())
          err_.add(fmt("parent (%s): DONTFORK page %u: %s", when, k, e.c_str()));
    }
    if (full) {
      std::string why;
      if (!as.validate(&why)) err_.add(fmt("%s (%s): validate: %s", name.c_str(), when, why.c_str()));
    }
  }

  void report_errors() {
    std::lock_guard<std::mutex> g(err_.m);
    if (!err_.msgs.empty()) {
      std::string l;
      for (const std::string& s : lineage_) l += s + "\n";
      std::printf("children:\n%s", l.c_str());
    }
    for (const std::string& s : err_.msgs) ADD_FAILURE() << s;
    if (err_.n.load() > static_cast<int>(err_.msgs.size()))
      ADD_FAILURE() << (err_.n.load() - static_cast<int>(err_.msgs.size())) << " more errors";
  }
};

TEST_P(ForkStress, ChildrenAndParentKeepTheirOwnPrivateMemoryAndShareTheRest) {
  const LockMode mode = GetParam();
  std::uint64_t seed = 0xf0e4'5eed'0000ull + static_cast<unsigned>(mode);
  if (const char* s = std::getenv("VMSPACE_STRESS_SEED")) seed = std::strtoull(s, nullptr, 0) + static_cast<unsigned>(mode);
  std::printf("fork_stress %s: seed %#" PRIx64 "\n", std::string(lock_mode_name(mode)).c_str(), seed);
  std::fflush(stdout);
  std::mt19937_64 main_rng(seed);
  const auto t0 = std::chrono::steady_clock::now();

  pool_ = std::make_shared<PhysicalMemory>(PhysicalMemory::Options{64ull << 20, false});
  const std::uint64_t free_at_start = pool_->free_bytes();
  AddressSpaceOptions o = test::test_options(mode);
  o.pool = pool_;
  parent_ = std::make_unique<AddressSpace>(o);
  AddressSpace& par = *parent_;
  reg_add(1, &par);

  // ---- Setup -------------------------------------------------------------
  ASSERT_EQ(par.mmap(home(kPriv, 0), kPages * kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
            static_cast<long>(home(kPriv, 0)));
  ASSERT_EQ(par.mmap(home(kShm, 0), kPages * kPage, kRW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED),
            static_cast<long>(home(kShm, 0)));
  mfd_ = par.memfd_create("fork_stress");
  ASSERT_GE(mfd_, 0);
  ASSERT_EQ(par.ftruncate(mfd_, kPages * kPage), 0);
  ASSERT_EQ(par.mmap(home(kMfd, 0), kPages * kPage, kRW, MAP_SHARED | MAP_FIXED, mfd_, 0), static_cast<long>(home(kMfd, 0)));
  ASSERT_EQ(par.mmap(kWipe, kExtraPages * kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(kWipe));
  ASSERT_EQ(par.madvise(kWipe, kExtraPages * kPage, MADV_WIPEONFORK), 0);
  ASSERT_EQ(par.mmap(kDontfork, kExtraPages * kPage, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(kDontfork));
  ASSERT_EQ(par.madvise(kDontfork, kExtraPages * kPage, MADV_DONTFORK), 0);
  {
    std::string bad;
    const auto pages = maps_pages(par.maps(), &bad);
    ASSERT_TRUE(bad.empty()) << bad;
    for (unsigned r = kShm; r <= kMfd; ++r) {
      unsigned long long ino = 0;
      ASSERT_EQ(std::sscanf(pages.at(home(r, 0)).c_str(), "%*s %*x %llu", &ino), 1);
      ASSERT_NE(ino, 0u);
      ino_.ino[r] = ino;
    }
  }
  // Half the private worker slots and some mutator pages written (the rest
  // never touched: the zero page, or no page); the extras filled.
  {
    std::uint64_t buf[kPageWords];
    for (unsigned p = 0; p < kPages; ++p) {
      if (is_mut(p)) continue;
      for (unsigned j = 0; j < kSlots; ++j) {
        if (main_rng() % 2) continue;
        const std::uint64_t v = stamp(1, kPriv, p, j, 0);
        std::fill(buf, buf + kSlotWords, v);
        ASSERT_TRUE(par.write(home(kPriv, p) + j * kSlotBytes, buf, kSlotBytes).ok());
        pmd_.priv[p][j].val.store(v);
      }
    }
    for (unsigned m = 0; m < kMutPages; m += 2) {
      const std::uint64_t v = stamp(1, kPriv, mut_page(m), kSlots, 0);
      std::fill(buf, buf + kPageWords, v);
      ASSERT_TRUE(par.write(home(kPriv, mut_page(m)), buf, kPage).ok());
      mst_.pg[kPriv][m].stamp = v;
    }
    for (unsigned k = 0; k < kExtraPages; ++k) {
      pmd_.wipe[k] = stamp(1, kWipeRegion, k, kSlots, 0);
      std::fill(buf, buf + kPageWords, pmd_.wipe[k]);
      ASSERT_TRUE(par.write(kWipe + k * kPage, buf, kPage).ok());
      pmd_.dontfork[k] = stamp(1, kDontforkRegion, k, kSlots, 0);
      std::fill(buf, buf + kPageWords, pmd_.dontfork[k]);
      ASSERT_TRUE(par.write(kDontfork + k * kPage, buf, kPage).ok());
    }
  }
  record(0);
  check_space(par, pmd_, true, "setup");
  if (err_.any()) {
    report_errors();
    FAIL() << "setup";
  }

  std::vector<std::unique_ptr<Space>> live;  // the children (the forker's during a round)
  long destroyed = 0;
  auto destroy = [&](std::size_t i) {
    reg_del(live[i]->md->id);
    live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));  // ~AddressSpace
    ++destroyed;
  };

  for (int round = 0; round < kRounds && !err_.any(); ++round) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> parent_threads;
    std::atomic<unsigned> parent_done{0};
    const long ops_at_start = parent_ops_.load();
    for (unsigned t = 0; t < kWorkers; ++t)
      parent_threads.emplace_back([&, t, s = seed * 1000 + round * 10 + t] {
        worker(par, pmd_, t, s, kParentOps, &parent_ops_);
        parent_done.fetch_add(1);
      });
    std::thread mutator_thread([&, s = seed * 1000 + round * 10 + 9] { mutator(s, stop); });

    std::thread forker([&, s = seed * 1000 + round * 10 + 7] {
      std::mt19937_64 rng(s);
      std::vector<Space*> mine;  // forked this round, threads running
      for (int k = 0; k < kForksPerRound && !err_.any(); ++k) {
        // Forks spread over the parent workers' operations.
        const long gap = kWorkers * kParentOps / (kForksPerRound + 1);
        const long target = ops_at_start + k * gap + gap / 2 + static_cast<long>(rng() % static_cast<unsigned long>(gap));
        while (parent_ops_.load() < target && parent_done.load() < kWorkers && !err_.any())
          std::this_thread::sleep_for(std::chrono::microseconds(50));
        // Idle children (from earlier rounds): destroy one, or fork it.
        std::vector<std::size_t> idle;
        auto find_idle = [&] {
          idle.clear();
          for (std::size_t i = 0; i < live.size(); ++i)
            if (live[i]->threads.empty()) idle.push_back(i);
        };
        find_idle();
        if (!idle.empty() && (live.size() >= kMaxLive || rng() % 3 == 0)) {
          const std::size_t i = idle[rng() % idle.size()];
          check_space(*live[i]->as, *live[i]->md, false, "before its destruction, parent running");
          destroy(i);
          ++destroyed_running_;
          find_idle();
        }
        if (!idle.empty() && live.size() < kMaxLive && rng() % 2 == 0) {
          Space& from = *live[idle[rng() % idle.size()]];
          if (auto g = fork_idle(from, round)) live.push_back(std::move(g));
        }
        auto child = fork_parent(round);
        if (child == nullptr) break;
        Space* c = child.get();
        for (unsigned t = 0; t < kWorkers; ++t)
          c->threads.emplace_back([this, c, t, ws = rng()] { worker(*c->as, *c->md, t, ws, kChildOps, nullptr); });
        live.push_back(std::move(child));
        mine.push_back(c);
        // Now and then a child forked this round ends while the parent runs.
        if (mine.size() >= 2 && rng() % 3 == 0) {
          Space* done = mine.front();
          mine.erase(mine.begin());
          done->join();
          check_space(*done->as, *done->md, false, "its threads done, parent running");
          for (std::size_t i = 0; i < live.size(); ++i)
            if (live[i].get() == done) {
              destroy(i);
              ++destroyed_running_;
              break;
            }
        }
      }
      for (Space* c : mine) c->join();
    });
    forker.join();
    for (auto& t : parent_threads) t.join();
    stop.store(true);
    mutator_thread.join();
    if (err_.any()) break;

    // ---- Quiescent: every space against its model ----------------------
    check_space(par, pmd_, true, fmt("end of round %d", round).c_str());
    for (auto& c : live) check_space(*c->as, *c->md, true, fmt("end of round %d", round).c_str());
    if (err_.any()) break;
    // Some children go, in random order.
    std::shuffle(live.begin(), live.end(), main_rng);
    const std::size_t keep = live.empty() ? 0 : main_rng() % (live.size() + 1);
    while (live.size() > keep) destroy(live.size() - 1);
  }
  report_errors();
  if (err_.any()) {
    // Leave the spaces to the fixture's destruction: the pool check
    // means nothing after a failure.
    for (auto& c : live) c.reset();
    reg_.clear();
    return;
  }

  // ---- The end: all spaces go, the pool gets every frame back ----------
  std::shuffle(live.begin(), live.end(), main_rng);
  const bool parent_first = main_rng() % 2 != 0;  // children outliving their parent
  reg_del(1);
  if (parent_first) parent_.reset();
  while (!live.empty()) destroy(live.size() - 1);
  parent_.reset();
  pool_->internal()->drain_deferred();
  EXPECT_EQ(pool_->free_bytes(), free_at_start) << "frames not returned: "
                                                 << (free_at_start - pool_->free_bytes()) / kPage;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("fork_stress %s: %ld forks of the parent, %ld of children, %ld destroyed (%ld while the parent ran, "
              "parent destroyed %s), %ld parent worker ops, %ld mutator changes, %ld slots unknown at fork, "
              "%ld forks with several candidate states; %.1f s\n",
              std::string(lock_mode_name(mode)).c_str(), forks_, grandchildren_, destroyed, destroyed_running_,
              parent_first ? "first" : "last", parent_ops_.load(), mut_changes_.load(), unknown_slots_,
              candidates_multi_, secs);
}

std::string mode_name(const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); }
INSTANTIATE_TEST_SUITE_P(AllModes, ForkStress, ::testing::ValuesIn(kAllLockModes), mode_name);

}  // namespace
}  // namespace vmspace
