// SPDX-License-Identifier: MIT
// A single-threaded random walk over a family of forked spaces (private
// anonymous memory only: mmap, munmap, mprotect, writes, fork with and
// without injected allocation failures, destruction, MADV_DONTNEED,
// DONTFORK/WIPEONFORK, mremap) against a content model, with validate()
// of every space after every call and a leak check (frames, commit) at
// the end of each seed.  FORK_FUZZ_SEEDS sets the number of seeds (40).
// Written by the first review of fork.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "mem/phys_mem.h"
#include "mm/mm.h"
#include "sync/fail_nth.h"
#include "vmspace/address_space.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kBase = 0x200000000000;
constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kSpan = 64;

struct Model {
  // page -> content byte; absent = unmapped.  writable: page -> bool.
  std::map<std::uint64_t, int> val;
  std::map<std::uint64_t, bool> wr;
  std::map<std::uint64_t, int> fork_mode;  // 0 normal, 1 dontfork, 2 wipeonfork
};

struct Sp {
  std::unique_ptr<AddressSpace> as;
  Model m;
};

std::uint64_t P(std::uint64_t p) { return kBase + p * kPage; }

TEST(ForkFamilyFuzz, RandomWalk) {
  const unsigned seeds = std::getenv("FORK_FUZZ_SEEDS") ? std::atoi(std::getenv("FORK_FUZZ_SEEDS")) : 40;
  mem::PhysMemOptions po;
  po.capacity_bytes = 4096 * kPage;
  mem::PhysMem pool(po);
  for (unsigned seed = 1; seed <= seeds; ++seed) {
    std::mt19937_64 rng(seed);
    auto rnd = [&](std::uint64_t n) { return rng() % n; };
    std::vector<Sp> sp;
    std::shared_ptr<std::atomic<std::int64_t>> committed;
    {
      AddressSpaceOptions o;
      o.phys = &pool;
      o.overcommit = Overcommit::never;
      sp.push_back(Sp{std::make_unique<AddressSpace>(o), {}});
      committed = sp[0].as->mm()->vm_committed;
      for (int step = 0; step < 400; ++step) {
        const std::size_t si = rnd(sp.size());
        Sp& s = sp[si];
        AddressSpace& as = *s.as;
        const std::uint64_t a = rnd(kSpan), n = 1 + rnd(8);
        const std::uint64_t e = std::min(kSpan, a + n);
        std::string what;
        switch (rnd(12)) {
          case 0: case 1: {  // mmap private anon rw
            what = "mmap";
            ASSERT_EQ(as.mmap(P(a), (e - a) * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
                      static_cast<long>(P(a)));
            for (auto p = a; p < e; ++p) { s.m.val[p] = 0; s.m.wr[p] = true; s.m.fork_mode[p] = 0; }
            break;
          }
          case 2: {
            what = "munmap";
            ASSERT_EQ(as.munmap(P(a), (e - a) * kPage), 0);
            for (auto p = a; p < e; ++p) { s.m.val.erase(p); s.m.wr.erase(p); s.m.fork_mode.erase(p); }
            break;
          }
          case 3: {
            what = "mprotect";
            bool all = true;
            for (auto p = a; p < e; ++p) all = all && s.m.val.count(p);
            if (!all) break;
            const bool w = rnd(2);
            ASSERT_EQ(as.mprotect(P(a), (e - a) * kPage, w ? PROT_READ | PROT_WRITE : PROT_READ), 0);
            for (auto p = a; p < e; ++p) s.m.wr[p] = w;
            break;
          }
          case 4: case 5: {  // write
            what = "write";
            const std::uint64_t p = a;
            const unsigned char b = static_cast<unsigned char>(1 + rnd(250));
            AccessResult r = as.fill(P(p) + rnd(kPage), b, 1);
            if (!s.m.val.count(p)) {
              EXPECT_EQ(r.fault, Fault::segv_maperr);
            } else if (!s.m.wr[p]) {
              EXPECT_EQ(r.fault, Fault::segv_accerr);
            } else {
              ASSERT_TRUE(r.ok());
              // whole page to one byte value for a simple model
              ASSERT_TRUE(as.fill(P(p), b, kPage).ok());
              s.m.val[p] = b;
            }
            break;
          }
          case 6: {  // fork (sometimes with an injected failure)
            what = "fork";
            if (sp.size() >= 6) break;
            const bool inject = rnd(3) == 0;
            int err = 0;
            std::unique_ptr<AddressSpace> c;
            if (inject) {
              fail_nth::Scope f(1 + rnd(20));
              c = as.fork(&err);
            } else {
              c = as.fork(&err);
            }
            if (c == nullptr) {
              ASSERT_TRUE(inject) << "fork failed without injection: " << err;
              ASSERT_EQ(err, -ENOMEM);
              break;
            }
            Model cm;
            for (auto& [p, v] : s.m.val) {
              const int fm = s.m.fork_mode[p];
              if (fm & 1) continue;
              cm.val[p] = (fm & 2) ? 0 : v;
              cm.wr[p] = s.m.wr[p];
              cm.fork_mode[p] = fm;
            }
            sp.push_back(Sp{std::move(c), std::move(cm)});
            break;
          }
          case 7: {  // destroy a non-main space
            what = "destroy";
            if (si == 0) break;
            sp.erase(sp.begin() + static_cast<long>(si));
            break;
          }
          case 8: {
            what = "dontneed";
            bool all = true;
            for (auto p = a; p < e; ++p) all = all && s.m.val.count(p);
            if (!all) break;
            ASSERT_EQ(as.madvise(P(a), (e - a) * kPage, MADV_DONTNEED), 0);
            for (auto p = a; p < e; ++p) s.m.val[p] = 0;
            break;
          }
          case 9: {
            what = "forkflags";
            bool all = true;
            for (auto p = a; p < e; ++p) all = all && s.m.val.count(p);
            if (!all) break;
            const int k = static_cast<int>(rnd(3));
            const int adv = k == 0 ? MADV_DOFORK : k == 1 ? MADV_DONTFORK : MADV_WIPEONFORK;
            ASSERT_EQ(as.madvise(P(a), (e - a) * kPage, adv), 0);
            for (auto p = a; p < e; ++p) {
              if (k == 0) s.m.fork_mode[p] &= ~1;
              else s.m.fork_mode[p] |= k;
            }
            break;
          }
          case 10: {  // mremap move [a,e) to another place
            what = "mremap";
            bool all = true;
            for (auto p = a; p < e; ++p) all = all && s.m.val.count(p);
            if (!all) break;
            const std::uint64_t d = rnd(kSpan - (e - a) + 1);
            if (d < e && a < d + (e - a)) break;  // overlapping: EINVAL
            const long r = as.mremap(P(a), (e - a) * kPage, (e - a) * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, P(d));
            if (r == -EFAULT) break;  // the range spans VMAs
            ASSERT_EQ(r, static_cast<long>(P(d)));
            Model nm = s.m;
            for (auto p = d; p < d + (e - a); ++p) { nm.val.erase(p); nm.wr.erase(p); nm.fork_mode.erase(p); }
            for (auto p = a; p < e; ++p) {
              nm.val[d + p - a] = s.m.val[p];
              nm.wr[d + p - a] = s.m.wr[p];
              nm.fork_mode[d + p - a] = s.m.fork_mode[p];
            }
            for (auto p = a; p < e; ++p) {
              if (p >= d && p < d + (e - a)) continue;
              nm.val.erase(p); nm.wr.erase(p); nm.fork_mode.erase(p);
            }
            s.m = std::move(nm);
            break;
          }
          default: {  // read check of a whole random space
            what = "read";
            for (auto& [p, v] : s.m.val) {
              unsigned char b = 0xee;
              ASSERT_TRUE(as.read(P(p) + 17, &b, 1).ok()) << "seed " << seed << " step " << step;
              ASSERT_EQ(b, v) << "seed " << seed << " step " << step << " space " << si << " page " << p;
            }
          }
        }
        for (std::size_t k = 0; k < sp.size(); ++k) {
          std::string why;
          ASSERT_TRUE(sp[k].as->validate(&why)) << "seed " << seed << " step " << step << " after " << what
                                                << " on " << si << ": space " << k << ": " << why;
        }
      }
      // every space's contents at the end
      for (std::size_t k = 0; k < sp.size(); ++k)
        for (auto& [p, v] : sp[k].m.val) {
          unsigned char b = 0xee;
          ASSERT_TRUE(sp[k].as->read(P(p), &b, 1).ok());
          ASSERT_EQ(b, v) << "seed " << seed << " final, space " << k << " page " << p;
        }
      sp.clear();
    }
    EXPECT_EQ(committed->load(), 0) << "commit leaked, seed " << seed;
    EXPECT_EQ(pool.free_frames(), pool.capacity_frames()) << "frames leaked, seed " << seed;
  }
}

}  // namespace
}  // namespace vmspace
