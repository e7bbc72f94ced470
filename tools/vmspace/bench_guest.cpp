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

// An emulator's soft TLB: 16384 direct-mapped entries of (guest page, host
// page, writable), flushed whole when the space's translation generation
// moves; its reach (64 MiB) is the region's, as an emulator sizes its TLB
// to its hot working set (QEMU grows its TLB up to 2^22 entries).  Valid
// only inside the AccessScope its pointers came from.
class SoftTlb {
 public:
  explicit SoftTlb(AddressSpace& as) : as_(as) { flush(); }

  // The host address of the 8 bytes at va for a load (write = false) or a
  // store, or nullptr when the access faults.
  unsigned char* lookup(const AddressSpace::AccessScope& scope, std::uint64_t va, bool write) {
    // Acquire pairs with the release increment by a change that is about
    // to end translations (address_space.h: translation_generation).
    const std::uint64_t gen = as_.translation_generation();
    if (gen != gen_) {
      flush();
      gen_ = gen;
    }
    const std::uint64_t vpn = va >> 12;
    Entry& e = entries_[vpn & (kEntries - 1)];
    if (e.vpn != vpn || (write && !e.writable)) {
      void* p = scope.translate(va & ~std::uint64_t{4095}, write ? AccessKind::write : AccessKind::read);
      if (p == nullptr) {
        // Fault it in (allowed inside a scope) and translate again.
        if (as_.fault_in(va, write ? AccessKind::write : AccessKind::read) != Fault::none) return nullptr;
        p = scope.translate(va & ~std::uint64_t{4095}, write ? AccessKind::write : AccessKind::read);
        if (p == nullptr) return nullptr;
      }
      e = {vpn, static_cast<unsigned char*>(p), write};
      ++misses_;
    }
    return e.page + (va & 4095);
  }
  std::uint64_t misses() const { return misses_; }

 private:
  static constexpr std::uint64_t kEntries = 16384;
  struct Entry {
    std::uint64_t vpn = ~std::uint64_t{0};
    unsigned char* page = nullptr;
    bool writable = false;
  };
  void flush() { entries_.fill(Entry{}); }

  AddressSpace& as_;
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

  progress("guest-access: host loads and stores");
  unsigned char* host = kernel_map(kGuestLen);
  std::memset(host, 1, kGuestLen);
  std::uint64_t sink = 0;
  const double host_ns = best_of([&] {
    for (std::uint64_t i = 0; i < kAccesses; ++i) {
      auto* p = reinterpret_cast<std::uint64_t*>(host + offs[i]);
      if (i & 1) *reinterpret_cast<volatile std::uint64_t*>(p) = i;
      else sink += *reinterpret_cast<volatile std::uint64_t*>(p);
    }
  });
  kernel_unmap(host, kGuestLen);
  c.add("guest-access", "host", "ns_per_access", host_ns, "ns");

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
    std::uint64_t misses = 0;
    const double tlb_ns = best_of([&] {
      // One scope per 4096 accesses: frames freed meanwhile can be reused
      // between batches (a scope is an RCU read section).
      SoftTlb tlb(*as);
      for (std::uint64_t i = 0; i < kAccesses;) {
        AddressSpace::AccessScope scope(*as);
        for (const std::uint64_t end = std::min(kAccesses, i + 4096); i < end; ++i) {
          unsigned char* p = tlb.lookup(scope, kBase + offs[i], i & 1);
          if (p == nullptr) {
            bad = true;
            continue;
          }
          if (i & 1) *reinterpret_cast<volatile std::uint64_t*>(p) = i;
          else sink += *reinterpret_cast<volatile std::uint64_t*>(p);
        }
      }
      misses = tlb.misses();
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
  }
  clobber(&sink);
  if (!c.warmup)
    c.notes.push_back("guest-access: " + std::to_string(kAccesses) +
                      " 8-byte accesses (loads and stores alternating) at random offsets of a populated 64 MiB "
                      "region, best of " + std::to_string(reps) +
                      " sweeps; host: plain loads and stores on a host region of the same size (4 KiB pages); "
                      "tlb: a 16384-entry (64 MiB reach) direct-mapped cache of AccessScope::translate pointers, "
                      "flushed when translation_generation() moves, rebuilt every sweep, one scope per 4096 "
                      "accesses");
}

}  // namespace vmspace::cli::bench
