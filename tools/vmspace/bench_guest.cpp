// SPDX-License-Identifier: MIT
// bench_guest.cpp - the guest-access workload (issue 17): 8-byte loads and
// stores at random guest addresses, as an emulator makes them, through
//   (a) AddressSpace::read / write,
//   (b) a direct-mapped translation cache of host page pointers, taken
//       with AccessScope::translate and kept while translation_generation()
//       is unchanged (what an emulator's soft TLB does),
//   (c) the guest atomics (atomic_load / atomic_store),
// against plain host loads and stores of the same pattern on a host
// region of the same size.
#include "bench_ctx.h"

#include <sys/mman.h>

#include <array>
#include <cstring>
#include <random>
#include <vector>

namespace vmspace::cli::bench {

namespace {

constexpr std::uint64_t kGuestLen = 64 * kMiB;
constexpr std::uint64_t kAccesses = 1u << 20;

// An emulator's soft TLB: 16384 direct-mapped entries of (guest page tag,
// host addend), flushed whole when the space's translation generation
// moves; its reach (64 MiB) is the region's, as an emulator sizes its TLB
// to its hot working set (QEMU grows its TLB up to 2^22 entries).  It
// lives across AccessScopes, as an emulator's does: an entry is used only
// inside a scope whose acquire-load of the generation found it unchanged
// since the entry was filled (address_space.h, translation_generation).
class SoftTlb {
 public:
  explicit SoftTlb(AddressSpace& as) : as_(as), gen_word_(as.translation_generation_word()) { flush(); }

  // The host address of the 8 bytes at va for a load (kWrite false) or a
  // store, or nullptr when the access faults.  The hit path is inline and
  // calls nothing (an emulator's fast path, with the access kind known
  // where the code is generated, as QEMU's is): one acquire load of the
  // generation, one compare of the entry's tag, one add of its addend.
  template <bool kWrite>
  unsigned char* lookup(const AddressSpace::AccessScope& scope, std::uint64_t va) {
    // Acquire pairs with the release increment by a change that is about
    // to end translations (address_space.h: translation_generation).
    const std::uint64_t gen = gen_word_.load(std::memory_order_acquire);
    const std::uint64_t vpn = va >> 12;
    const Entry& e = entries_[vpn & (kEntries - 1)];
    // The tag is vpn << 1 | writable: a store needs the exact tag, a load
    // either.
    const bool hit = kWrite ? e.tag == (vpn << 1 | 1) : (e.tag | 1) == (vpn << 1 | 1);
    if (__builtin_expect(gen != gen_ || !hit, 0)) return refill(scope, va, kWrite, gen);
    return reinterpret_cast<unsigned char*>(va + e.addend);
  }
  std::uint64_t misses() const { return misses_; }

 private:
  static constexpr std::uint64_t kEntries = 16384;
  // 16 bytes (the table is 256 KiB: it stays in a 1 MiB L2): the guest
  // page's number and whether the translation allows stores, and what to
  // add to a guest address of that page for the host address (QEMU's
  // CPUTLBEntry keeps separate read and write tags and the addend).
  struct Entry {
    std::uint64_t tag = ~std::uint64_t{0};
    std::uint64_t addend = 0;
  };
  void flush() { entries_.fill(Entry{}); }

  // The miss path, out of line: flush if the generation moved, translate
  // (faulting the page in if needed) and fill the entry.
  __attribute__((noinline)) unsigned char* refill(const AddressSpace::AccessScope& scope, std::uint64_t va, bool write,
                                                  std::uint64_t gen) {
    if (gen != gen_) {
      flush();
      gen_ = gen;
    }
    const std::uint64_t vpn = va >> 12;
    Entry& e = entries_[vpn & (kEntries - 1)];
    if (write ? e.tag != (vpn << 1 | 1) : (e.tag | 1) != (vpn << 1 | 1)) {
      const AccessKind kind = write ? AccessKind::write : AccessKind::read;
      void* p = scope.translate(va & ~std::uint64_t{4095}, kind);
      if (p == nullptr) {
        // Fault it in (allowed inside a scope) and translate again.
        if (as_.fault_in(va, kind) != Fault::none) return nullptr;
        p = scope.translate(va & ~std::uint64_t{4095}, kind);
        if (p == nullptr) return nullptr;
      }
      e = {vpn << 1 | (write ? 1u : 0u), reinterpret_cast<std::uintptr_t>(p) - (vpn << 12)};
      ++misses_;
    }
    return reinterpret_cast<unsigned char*>(va + e.addend);
  }

  AddressSpace& as_;
  const std::atomic<std::uint64_t>& gen_word_;
  std::uint64_t gen_ = ~std::uint64_t{0};
  std::uint64_t misses_ = 0;
  std::array<Entry, kEntries> entries_{};
};

}  // namespace

void run_guest_access(Ctx& c) {
  const int reps = c.quick ? 3 : 7;
  // The same random 8-byte-aligned offsets for every variant; even
  // accesses load, odd ones store.
  std::vector<std::uint64_t> offs(kAccesses);
  std::mt19937_64 rng(7);
  for (auto& o : offs) o = (rng() % (kGuestLen / 8)) * 8;

  auto best_of = [&](const std::function<void()>& sweep) {
    double best = 1e300;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = Clock::now();
      sweep();
      best = std::min(best, static_cast<double>(nanos(Clock::now() - t0)) / kAccesses);
    }
    return best;
  };

  // The host's plain loads and stores, on memory under the host's default
  // transparent-huge-page policy, as vmspace's physical memory is (an
  // anonymous host mapping, phys_mem.cpp): the same host paging under both,
  // so the ratio is the cost of the translation alone.  host_4k: the same
  // on a MADV_NOHUGEPAGE region (what the host TLB's misses add there).
  std::uint64_t sink = 0;
  auto host_sweep = [&](unsigned char* host) {
    std::memset(host, 1, kGuestLen);
    return best_of([&] {
      std::uint64_t acc = 0;  // in a register: no chain through memory
      for (std::uint64_t i = 0; i < kAccesses; i += 2) {  // a load, a store
        acc += *reinterpret_cast<volatile std::uint64_t*>(host + offs[i]);
        *reinterpret_cast<volatile std::uint64_t*>(host + offs[i + 1]) = i + 1;
      }
      sink += acc;
    });
  };
  progress("guest-access: host loads and stores");
  void* plain = ::mmap(nullptr, kGuestLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (plain == MAP_FAILED) fail("guest-access: host mmap failed");
  const double host_ns = host_sweep(static_cast<unsigned char*>(plain));
  // The floor of any software translation with this reach: the same
  // accesses on host memory, each through a table of 16384 host page
  // pointers (128 KiB: half the soft TLB's size, no tag, no generation),
  // so each access is a table load and a data load that depends on it,
  // where the host's is one load.  On a random pattern both miss L1, and
  // the misses in flight (the core's fill buffers) are shared between
  // them.
  progress("guest-access: host loads and stores through a page table");
  const double table_ns = [&] {
    auto* base = static_cast<unsigned char*>(plain);
    std::memset(base, 1, kGuestLen);
    std::vector<unsigned char*> table(kGuestLen >> 12);
    for (std::size_t p = 0; p < table.size(); ++p) table[p] = base + (p << 12);
    return best_of([&] {
      std::uint64_t acc = 0;
      for (std::uint64_t i = 0; i < kAccesses; i += 2) {
        acc += *reinterpret_cast<volatile std::uint64_t*>(table[offs[i] >> 12] + (offs[i] & 4095));
        *reinterpret_cast<volatile std::uint64_t*>(table[offs[i + 1] >> 12] + (offs[i + 1] & 4095)) = i + 1;
      }
      sink += acc;
    });
  }();
  // The same with the soft TLB's check: entries of (tag, addend) as
  // SoftTlb's, the tag compared and branched on before each access (a
  // cache that can miss must), no generation.  What SoftTlb adds over
  // this is its generation check.
  progress("guest-access: host loads and stores through a checked table");
  const double checked_ns = [&] {
    struct Entry {
      std::uint64_t tag, addend;
    };
    auto* base = static_cast<unsigned char*>(plain);
    std::vector<Entry> table(kGuestLen >> 12);
    for (std::uint64_t p = 0; p < table.size(); ++p)
      table[p] = {((kBase >> 12) + p) << 1 | 1, reinterpret_cast<std::uintptr_t>(base + (p << 12)) - (kBase + (p << 12))};
    const std::uint64_t mask = table.size() - 1;
    bool miss = false;
    const double ns = best_of([&] {
      std::uint64_t acc = 0;
      for (std::uint64_t i = 0; i < kAccesses; i += 2) {
        const std::uint64_t va = kBase + offs[i], vb = kBase + offs[i + 1];
        const Entry& e = table[(va >> 12) & mask];
        const Entry& f = table[(vb >> 12) & mask];
        if (__builtin_expect((e.tag | 1) != ((va >> 12) << 1 | 1), 0)) {
          miss = true;
          continue;
        }
        acc += *reinterpret_cast<volatile std::uint64_t*>(va + e.addend);
        if (__builtin_expect(f.tag != ((vb >> 12) << 1 | 1), 0)) {
          miss = true;
          continue;
        }
        *reinterpret_cast<volatile std::uint64_t*>(vb + f.addend) = i + 1;
      }
      sink += acc;
    });
    if (miss) fail("guest-access: the checked host table missed");
    return ns;
  }();
  ::munmap(plain, kGuestLen);
  unsigned char* host4k = kernel_map(kGuestLen);
  const double host4k_ns = host_sweep(host4k);
  kernel_unmap(host4k, kGuestLen);
  c.add("guest-access", "host", "ns_per_access", host_ns, "ns");
  c.add("guest-access", "host", "4k_ns_per_access", host4k_ns, "ns");
  c.add("guest-access", "host", "table_ns_per_access", table_ns, "ns");
  c.add("guest-access", "host", "checked_table_ns_per_access", checked_ns, "ns");

  for (const Mode& m : c.modes) {
    if (m.kernel) continue;
    auto as = make_space(m.lock, kGuestLen + 64 * kMiB);
    guest_map(*as, kBase, kGuestLen);
    if (as->fill(kBase, 1, kGuestLen).fault != Fault::none) fail("guest-access: populating the region failed");
    bool bad = false;

    progress("guest-access: %s, read/write", m.name.c_str());
    const double rw_ns = best_of([&] {
      for (std::uint64_t i = 0; i < kAccesses; ++i) {
        std::uint64_t v = i;
        const AccessResult r = (i & 1) ? as->write(kBase + offs[i], &v, 8) : as->read(kBase + offs[i], &v, 8);
        bad |= !r.ok();
        sink += v;
      }
    });

    progress("guest-access: %s, translation cache", m.name.c_str());
    // One TLB for every sweep (an emulator keeps its TLB; the first sweep
    // fills it), one scope per 4096 accesses: frames freed meanwhile can be
    // reused between batches (a scope is an RCU read section).
    SoftTlb tlb(*as);
    std::uint64_t misses = 0;
    const double tlb_ns = best_of([&] {
      const std::uint64_t misses_before = tlb.misses();
      std::uint64_t acc = 0;
      for (std::uint64_t i = 0; i < kAccesses;) {
        AddressSpace::AccessScope scope(*as);
        // Even i loads, odd i stores (kAccesses and 4096 are even).
        for (const std::uint64_t end = std::min(kAccesses, i + 4096); i < end; i += 2) {
          unsigned char* p = tlb.lookup<false>(scope, kBase + offs[i]);
          unsigned char* q = tlb.lookup<true>(scope, kBase + offs[i + 1]);
          if (p == nullptr || q == nullptr) {
            bad = true;
            continue;
          }
          acc += *reinterpret_cast<volatile std::uint64_t*>(p);
          *reinterpret_cast<volatile std::uint64_t*>(q) = i + 1;
        }
      }
      sink += acc;
      misses = tlb.misses() - misses_before;
    });

    // What the translation cache's time is made of, with its entries all
    // filled by the sweeps above: (frames) the same accesses through host
    // pointers to the guest's frames computed beforehand, the memory's
    // own cost; (lookup) the cache's lookups alone, no guest memory
    // touched.  A cached access is a lookup whose result the data access
    // depends on: two misses in a row where the host access has one.
    progress("guest-access: %s, frames and lookups alone", m.name.c_str());
    std::vector<unsigned char*> ptrs(kAccesses);
    {
      AddressSpace::AccessScope scope(*as);
      for (std::uint64_t i = 0; i < kAccesses; ++i)
        if ((ptrs[i] = tlb.lookup<true>(scope, kBase + offs[i])) == nullptr) bad = true;
    }
    const double frames_ns = bad ? 0.0 : best_of([&] {
      std::uint64_t acc = 0;
      for (std::uint64_t i = 0; i < kAccesses; i += 2) {  // a load, a store
        acc += *reinterpret_cast<volatile std::uint64_t*>(ptrs[i]);
        *reinterpret_cast<volatile std::uint64_t*>(ptrs[i + 1]) = i + 1;
      }
      sink += acc;
    });
    std::vector<unsigned char*>().swap(ptrs);
    const double lookup_ns = best_of([&] {
      for (std::uint64_t i = 0; i < kAccesses;) {
        AddressSpace::AccessScope scope(*as);
        std::uint64_t acc = 0;
        for (const std::uint64_t end = std::min(kAccesses, i + 4096); i < end; i += 2)
          acc += reinterpret_cast<std::uintptr_t>(tlb.lookup<false>(scope, kBase + offs[i])) +
                 reinterpret_cast<std::uintptr_t>(tlb.lookup<true>(scope, kBase + offs[i + 1]));
        sink += acc;
      }
    });

    progress("guest-access: %s, atomics", m.name.c_str());
    const double atomic_ns = best_of([&] {
      for (std::uint64_t i = 0; i < kAccesses; ++i) {
        std::uint64_t v = i;
        const AccessResult r =
            (i & 1) ? as->atomic_store(kBase + offs[i], 8, v) : as->atomic_load(kBase + offs[i], 8, &v);
        bad |= !r.ok();
        sink += v;
      }
    });
    if (bad) fail("guest-access " + m.name + ": an access faulted");
    c.add("guest-access", m.name, "read_write_ns_per_access", rw_ns, "ns");
    c.add("guest-access", m.name, "tlb_ns_per_access", tlb_ns, "ns");
    c.add("guest-access", m.name, "atomic_ns_per_access", atomic_ns, "ns");
    c.add("guest-access", m.name, "tlb_miss_pct", 100.0 * static_cast<double>(misses) / kAccesses, "%");
    c.add("guest-access", m.name, "frames_ns_per_access", frames_ns, "ns");
    c.add("guest-access", m.name, "tlb_lookup_ns", lookup_ns, "ns");
  }
  clobber(&sink);
  if (!c.warmup)
    c.notes.push_back("guest-access: " + std::to_string(kAccesses) +
                      " 8-byte accesses (loads and stores alternating) at random offsets of a populated 64 MiB "
                      "region, best of " + std::to_string(reps) +
                      " sweeps; host: plain loads and stores on a host region of the same size under the host's "
                      "default huge-page policy, as vmspace's physical memory (host 4k: on MADV_NOHUGEPAGE; host table: each "
                      "access through a 16384-entry table of host page pointers, the floor of a one-level software "
                      "translation of this reach: two dependent loads, both missing L1 on this pattern; host checked table: the "
                      "same through entries of the soft TLB's shape with its tag compare and branch, no generation); "
                      "tlb: a 16384-entry (64 MiB reach) direct-mapped cache of AccessScope::translate pointers, "
                      "flushed when translation_generation() moves, kept across sweeps (the first fills it; "
                      "tlb_miss_pct: the last sweep's), one scope per 4096 accesses; frames: the same accesses through "
                      "host pointers to the guest's frames computed beforehand (no translation); tlb_lookup: the "
                      "cache's lookups alone (no guest memory touched)");
}

}  // namespace vmspace::cli::bench
