// Invalidation notifiers and the translation generation (issue 17): every
// change that ends translations calls invalidate_range_start BEFORE the
// PTEs change (a translate() from inside the callback still finds the old
// page) and invalidate_range_end after (the new state holds), once per
// operation, with the right range and reason; calls that change nothing
// call nothing; truncation reaches every space mapping the file; fork's
// write-protect of the parent and copy-on-write faults are reported;
// unregister waits for running callbacks; and a translation cache
// validated by the generation never reads data older than a change that
// has returned.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "vmspace/address_space.h"
#include "vmspace/file_backing.h"
#include "vmspace/mman.h"
#include "vmspace/physical_memory.h"

namespace vmspace {
namespace {

constexpr std::uint64_t kPage = 4096;

AddressSpaceOptions opts(LockMode mode) {
  AddressSpaceOptions o;
  o.mode = mode;
  o.phys_bytes = 32ull << 20;
  return o;
}

// What a callback saw of one probe page through a fresh AccessScope.
struct Seen {
  bool start = false;
  InvalidateRange r;
  void* read_ptr = nullptr;   // translate(probe, read)
  void* write_ptr = nullptr;  // translate(probe, write)
  char byte = 0;              // *read_ptr
};

class Recorder : public InvalidationNotifier {
 public:
  explicit Recorder(AddressSpace& as, std::uint64_t probe = 0) : as_(as), probe_(probe) {}
  void invalidate_range_start(const InvalidateRange& r) override { record(true, r); }
  void invalidate_range_end(const InvalidateRange& r) override { record(false, r); }
  std::vector<Seen> events() {
    std::lock_guard<std::mutex> g(m_);
    return ev_;
  }
  void clear() {
    std::lock_guard<std::mutex> g(m_);
    ev_.clear();
  }

 private:
  void record(bool start, const InvalidateRange& r) {
    Seen s;
    s.start = start;
    s.r = r;
    if (probe_ != 0) {
      // (A test-only call back into the space: lockless, as a TLB refill.)
      AddressSpace::AccessScope scope(as_);
      s.read_ptr = scope.translate(probe_, false);
      s.write_ptr = scope.translate(probe_, true);
      if (s.read_ptr != nullptr) s.byte = *static_cast<char*>(s.read_ptr);
    }
    std::lock_guard<std::mutex> g(m_);
    ev_.push_back(s);
  }
  AddressSpace& as_;
  std::uint64_t probe_;
  std::mutex m_;
  std::vector<Seen> ev_;
};

void* translate_now(AddressSpace& as, std::uint64_t va, bool write) {
  AddressSpace::AccessScope scope(as);
  return scope.translate(va, write);
}

// One start and one end, with `range` and `reason`.
void expect_pair(const std::vector<Seen>& ev, std::uint64_t start, std::uint64_t end, InvalidateReason reason) {
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_TRUE(ev[0].start);
  EXPECT_FALSE(ev[1].start);
  for (const Seen& s : ev) {
    EXPECT_EQ(s.r.start, start);
    EXPECT_EQ(s.r.end, end);
    EXPECT_EQ(s.r.reason, reason);
  }
}

class Notifier : public ::testing::TestWithParam<LockMode> {};

TEST_P(Notifier, MunmapStartSeesOldPageEndSeesNone) {
  AddressSpace as(opts(GetParam()));
  const auto va = static_cast<std::uint64_t>(as.mmap(0, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
  ASSERT_TRUE(as.fill(va, 'A', 4 * kPage).ok());
  void* old = translate_now(as, va + kPage, false);
  ASSERT_NE(old, nullptr);
  Recorder rec(as, va + kPage);
  ASSERT_EQ(as.register_notifier(&rec), 0);
  const std::uint64_t g0 = as.translation_generation();
  const std::atomic<std::uint64_t>& word = as.translation_generation_word();
  EXPECT_EQ(word.load(std::memory_order_acquire), g0);
  ASSERT_EQ(as.munmap(va + kPage, 2 * kPage), 0);
  EXPECT_GT(as.translation_generation(), g0);
  EXPECT_EQ(word.load(std::memory_order_acquire), as.translation_generation());  // the inlined check's word
  auto ev = rec.events();
  expect_pair(ev, va + kPage, va + 3 * kPage, InvalidateReason::unmap);
  EXPECT_EQ(ev[0].read_ptr, old);  // start: the old translation still works
  EXPECT_EQ(ev[0].byte, 'A');
  EXPECT_EQ(ev[1].read_ptr, nullptr);  // end: gone
  ASSERT_EQ(as.unregister_notifier(&rec), 0);
}

TEST_P(Notifier, NothingChangedNothingCalled) {
  AddressSpace as(opts(GetParam()));
  const auto va = static_cast<std::uint64_t>(as.mmap(0, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
  ASSERT_TRUE(as.fill(va, 'A', kPage).ok());
  Recorder rec(as);
  ASSERT_EQ(as.register_notifier(&rec), 0);
  const std::uint64_t g0 = as.translation_generation();
  ASSERT_EQ(as.munmap(va + 16 * kPage, kPage), 0);  // a hole
  ASSERT_EQ(as.mprotect(va, 4 * kPage, PROT_READ | PROT_WRITE), 0);  // the same protection
  EXPECT_EQ(as.fill(va + kPage, 'B', kPage).ok(), true);  // a fault only adds a translation
  EXPECT_TRUE(rec.events().empty());
  EXPECT_EQ(as.translation_generation(), g0);
  ASSERT_EQ(as.unregister_notifier(&rec), 0);
}

TEST_P(Notifier, RegisterTwiceAndUnknownUnregister) {
  AddressSpace as(opts(GetParam()));
  Recorder rec(as), other(as);
  EXPECT_EQ(as.register_notifier(&rec), 0);
  EXPECT_EQ(as.register_notifier(&rec), -EEXIST);
  EXPECT_EQ(as.unregister_notifier(&other), -ENOENT);
  EXPECT_EQ(as.unregister_notifier(&rec), 0);
  EXPECT_EQ(as.unregister_notifier(&rec), -ENOENT);
  EXPECT_EQ(as.register_notifier(nullptr), -EINVAL);
  EXPECT_EQ(as.unregister_notifier(nullptr), -EINVAL);  // as register (it said -ENOENT)
}

TEST_P(Notifier, MapFixedOverAndMprotect) {
  AddressSpace as(opts(GetParam()));
  const auto va = static_cast<std::uint64_t>(as.mmap(0, 2 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
  ASSERT_TRUE(as.fill(va, 'A', 2 * kPage).ok());
  void* old = translate_now(as, va, true);
  ASSERT_NE(old, nullptr);
  Recorder rec(as, va);
  ASSERT_EQ(as.register_notifier(&rec), 0);

  ASSERT_EQ(as.mprotect(va, 2 * kPage, PROT_READ), 0);
  auto ev = rec.events();
  expect_pair(ev, va, va + 2 * kPage, InvalidateReason::protection);
  EXPECT_EQ(ev[0].write_ptr, old);      // still writable at start
  EXPECT_EQ(ev[1].write_ptr, nullptr);  // read-only at end
  EXPECT_EQ(ev[1].read_ptr, old);
  rec.clear();

  ASSERT_EQ(as.mmap(va, kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(va));
  ev = rec.events();
  expect_pair(ev, va, va + kPage, InvalidateReason::unmap);
  EXPECT_EQ(ev[0].read_ptr, old);
  EXPECT_EQ(ev[0].byte, 'A');
  EXPECT_EQ(ev[1].read_ptr, nullptr);
  ASSERT_EQ(as.unregister_notifier(&rec), 0);
}

TEST_P(Notifier, MadviseDiscards) {
  AddressSpace as(opts(GetParam()));
  const auto va = static_cast<std::uint64_t>(as.mmap(0, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
  Recorder rec(as, va);
  ASSERT_EQ(as.register_notifier(&rec), 0);
  for (int advice : {MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_FREE, MADV_GUARD_INSTALL}) {
    SCOPED_TRACE(advice);
    ASSERT_EQ(as.madvise(va, 4 * kPage, MADV_GUARD_REMOVE), 0);
    ASSERT_TRUE(as.fill(va, 'A', 4 * kPage).ok());
    void* old = translate_now(as, va, true);
    ASSERT_NE(old, nullptr);
    rec.clear();
    ASSERT_EQ(as.madvise(va, 4 * kPage, advice), 0);
    auto ev = rec.events();
    expect_pair(ev, va, va + 4 * kPage, InvalidateReason::discard);
    EXPECT_EQ(ev[0].write_ptr, old);
    EXPECT_EQ(ev[0].byte, 'A');
    if (advice == MADV_FREE) {
      EXPECT_EQ(ev[1].write_ptr, nullptr);  // write-protected, data kept
      EXPECT_EQ(ev[1].read_ptr, old);
    } else {
      EXPECT_EQ(ev[1].read_ptr, nullptr);
    }
  }
  ASSERT_EQ(as.unregister_notifier(&rec), 0);
}

TEST_P(Notifier, MremapMovesAndBrkShrinks) {
  AddressSpaceOptions o = opts(GetParam());
  o.brk_start = 0x10000000;
  AddressSpace as(o);
  const auto va = static_cast<std::uint64_t>(as.mmap(0, 2 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
  ASSERT_TRUE(as.fill(va, 'A', 2 * kPage).ok());
  void* old = translate_now(as, va, false);
  Recorder rec(as, va);
  ASSERT_EQ(as.register_notifier(&rec), 0);
  const long to = as.mremap(va, 2 * kPage, 2 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, va + 64 * kPage);
  ASSERT_EQ(to, static_cast<long>(va + 64 * kPage));
  auto ev = rec.events();
  ASSERT_GE(ev.size(), 2u);
  EXPECT_TRUE(ev[0].start);
  EXPECT_EQ(ev[0].r.reason, InvalidateReason::remap);
  EXPECT_EQ(ev[0].r.start, va);
  EXPECT_EQ(ev[0].r.end, va + 2 * kPage);
  EXPECT_EQ(ev[0].read_ptr, old);
  EXPECT_EQ(ev[1].read_ptr, nullptr);
  EXPECT_EQ(translate_now(as, va + 64 * kPage, false), old);  // the page moved, not copied
  ASSERT_EQ(as.unregister_notifier(&rec), 0);

  const std::uint64_t b0 = as.brk(0);
  ASSERT_EQ(as.brk(b0 + 4 * kPage), b0 + 4 * kPage);
  ASSERT_TRUE(as.fill(b0, 'H', 4 * kPage).ok());
  Recorder heap(as, b0 + 2 * kPage);
  ASSERT_EQ(as.register_notifier(&heap), 0);
  ASSERT_EQ(as.brk(b0 + 2 * kPage), b0 + 2 * kPage);
  ev = heap.events();
  expect_pair(ev, b0 + 2 * kPage, b0 + 4 * kPage, InvalidateReason::unmap);
  EXPECT_EQ(ev[0].byte, 'H');
  EXPECT_EQ(ev[1].read_ptr, nullptr);
  ASSERT_EQ(as.unregister_notifier(&heap), 0);
}

TEST_P(Notifier, ForkWriteProtectsAndCowFaultReplaces) {
  AddressSpace as(opts(GetParam()));
  const auto va = static_cast<std::uint64_t>(as.mmap(0, 2 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
  ASSERT_TRUE(as.fill(va, 'A', 2 * kPage).ok());
  void* old = translate_now(as, va, true);
  Recorder rec(as, va);
  ASSERT_EQ(as.register_notifier(&rec), 0);
  std::unique_ptr<AddressSpace> child = as.fork();
  ASSERT_NE(child, nullptr);
  auto ev = rec.events();
  expect_pair(ev, va, va + 2 * kPage, InvalidateReason::fork_wrprotect);
  EXPECT_EQ(ev[0].write_ptr, old);
  EXPECT_EQ(ev[1].write_ptr, nullptr);
  EXPECT_EQ(ev[1].read_ptr, old);
  rec.clear();

  // The child does not inherit the notifier.
  ASSERT_EQ(child->munmap(va + kPage, kPage), 0);
  EXPECT_TRUE(rec.events().empty());

  // The parent's write copies: one page, reason cow, old page until end.
  ASSERT_TRUE(as.fill(va, 'B', 1).ok());
  ev = rec.events();
  expect_pair(ev, va, va + kPage, InvalidateReason::cow);
  EXPECT_EQ(ev[0].read_ptr, old);
  EXPECT_EQ(ev[0].byte, 'A');
  EXPECT_NE(ev[1].read_ptr, nullptr);
  EXPECT_NE(ev[1].read_ptr, old);
  ASSERT_EQ(as.unregister_notifier(&rec), 0);
}

// Two spaces sharing a pool map one file: a truncation notifies both, each
// through its own notifiers, before their PTEs go.
TEST_P(Notifier, TruncateNotifiesEverySpaceMappingTheFile) {
  auto pool = std::make_shared<PhysicalMemory>(PhysicalMemory::Options{8ull << 20, false});
  AddressSpaceOptions o = opts(GetParam());
  o.pool = pool;
  AddressSpace a(o), b(o);
  const int fd = a.memfd_create("shared");
  ASSERT_GE(fd, 0);
  ASSERT_EQ(a.ftruncate(fd, 4 * kPage), 0);
  const int fdb = a.send_file(fd, b);
  ASSERT_GE(fdb, 0);
  const auto va = static_cast<std::uint64_t>(a.mmap(0, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  const auto vb = static_cast<std::uint64_t>(b.mmap(0, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fdb, 0));
  ASSERT_TRUE(a.fill(va, 'F', 4 * kPage).ok());
  char c = 0;
  ASSERT_TRUE(b.read(vb + 3 * kPage, &c, 1).ok());
  ASSERT_EQ(c, 'F');
  Recorder ra(a, va + 3 * kPage), rb(b, vb + 3 * kPage);
  ASSERT_EQ(a.register_notifier(&ra), 0);
  ASSERT_EQ(b.register_notifier(&rb), 0);
  ASSERT_EQ(a.ftruncate(fd, 2 * kPage), 0);
  auto ea = ra.events(), eb = rb.events();
  expect_pair(ea, va + 2 * kPage, va + 4 * kPage, InvalidateReason::truncate);
  expect_pair(eb, vb + 2 * kPage, vb + 4 * kPage, InvalidateReason::truncate);
  EXPECT_EQ(eb[0].byte, 'F');  // b's old page, still there at start
  EXPECT_EQ(eb[1].read_ptr, nullptr);
  EXPECT_EQ(ea[1].read_ptr, nullptr);
  ASSERT_EQ(a.unregister_notifier(&ra), 0);
  ASSERT_EQ(b.unregister_notifier(&rb), 0);
  ASSERT_EQ(a.munmap(va, 4 * kPage), 0);
  ASSERT_EQ(b.munmap(vb, 4 * kPage), 0);
  a.close(fd);
  b.close(fdb);
}

// Write-back cleans (write-protects) the shared mappings of a file with a
// backing: reason other, writable translation gone after end.
TEST_P(Notifier, WritebackWriteProtects) {
  AddressSpace as(opts(GetParam()));
  auto backing = std::make_shared<MemoryBacking>(std::vector<unsigned char>(2 * kPage, 0));
  const int fd = as.open_file(backing, "f", O_RDWR);
  ASSERT_GE(fd, 0);
  const auto va = static_cast<std::uint64_t>(as.mmap(0, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_TRUE(as.fill(va, 'W', kPage).ok());
  void* old = translate_now(as, va, true);
  ASSERT_NE(old, nullptr);
  Recorder rec(as, va);
  ASSERT_EQ(as.register_notifier(&rec), 0);
  ASSERT_EQ(as.msync(va, 2 * kPage, MS_SYNC), 0);
  auto ev = rec.events();
  ASSERT_GE(ev.size(), 2u);
  EXPECT_EQ(ev[0].r.reason, InvalidateReason::other);
  EXPECT_EQ(ev[0].write_ptr, old);
  EXPECT_EQ(ev.back().write_ptr, nullptr);
  ASSERT_EQ(as.unregister_notifier(&rec), 0);
  ASSERT_EQ(as.munmap(va, 2 * kPage), 0);
  as.close(fd);
}

// A notifier counting callbacks, and failing if one arrives after its
// unregistration returned.
class Counter : public InvalidationNotifier {
 public:
  std::atomic<long> calls{0};
  std::atomic<bool> gone{false};
  std::atomic<long> late{0};
  void invalidate_range_start(const InvalidateRange&) override { hit(); }
  void invalidate_range_end(const InvalidateRange&) override { hit(); }

 private:
  void hit() {
    calls.fetch_add(1);
    // Linger a little, so that unregister has something to wait for.
    std::this_thread::yield();
    if (gone.load()) late.fetch_add(1);
  }
};

TEST_P(Notifier, UnregisterWaitsForRunningCallbacks) {
  AddressSpace as(opts(GetParam()));
  const auto va = static_cast<std::uint64_t>(as.mmap(0, 16 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
  std::atomic<bool> stop{false};
  std::thread changer([&] {
    while (!stop.load()) {
      (void)as.fill(va, 1, 16 * kPage);
      (void)as.madvise(va, 16 * kPage, MADV_DONTNEED);
    }
  });
  for (int round = 0; round < 50; ++round) {
    auto c = std::make_unique<Counter>();
    ASSERT_EQ(as.register_notifier(c.get()), 0);
    while (c->calls.load() < 4) std::this_thread::yield();
    ASSERT_EQ(as.unregister_notifier(c.get()), 0);
    c->gone.store(true);
    const long n = c->calls.load();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    EXPECT_EQ(c->calls.load(), n);  // no callback after unregister returned
    EXPECT_EQ(c->late.load(), 0);
  }  // (and c is destroyed: a late callback would be a use after free)
  stop = true;
  changer.join();
}

// The TLB-style protocol: record g = generation, translate inside a scope,
// use the pointer while the generation is still g.  A second thread
// changes the page; after each change returns it publishes a sequence
// number.  The reader must never use a cached translation older than a
// change that had returned before it looked.
enum class Change { dontneed, remap, mprotect };

void run_cache(LockMode mode, Change kind) {
  AddressSpace as(opts(mode));
  const auto va = static_cast<std::uint64_t>(as.mmap(0, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
  std::uint64_t one = 1;
  ASSERT_TRUE(as.write(va, &one, sizeof one).ok());
  // dontneed/remap: `done` = i after iteration i replaced the page and
  // wrote i into it.  mprotect: `done` odd while read-only (after the
  // read-only mprotect returned), even from just before write access
  // comes back.
  std::atomic<std::uint64_t> done{kind == Change::mprotect ? 0u : 1u};  // (mprotect: writable at first)
  std::atomic<bool> stop{false};
  std::atomic<long> stale{0}, hits{0};
  constexpr std::uint64_t kIters = 3000;
  std::thread changer([&] {
    for (std::uint64_t i = 2; i <= kIters; ++i) {
      if (kind == Change::mprotect) {
        // Odd: published after the read-only mprotect returned; even:
        // published BEFORE write access comes back, so that an odd value
        // means "read-only, and not writable again yet".
        if (!(i & 1)) done.store(i, std::memory_order_release);
        ASSERT_EQ(as.mprotect(va, kPage, (i & 1) ? PROT_READ : PROT_READ | PROT_WRITE), 0);
      } else {
        if (kind == Change::dontneed)
          ASSERT_EQ(as.madvise(va, kPage, MADV_DONTNEED), 0);
        else
          ASSERT_EQ(as.mmap(va, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
                    static_cast<long>(va));
        ASSERT_TRUE(as.write(va, &i, sizeof i).ok());
      }
      done.store(i, std::memory_order_release);
      // Writable for a moment: give the reader a chance to translate.
      if (kind == Change::mprotect && !(i & 1)) std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    stop = true;
  });
  const bool want_write = kind == Change::mprotect;
  while (!stop.load()) {
    bool miss = false;
    {
      AddressSpace::AccessScope scope(as);
      const std::uint64_t g = as.translation_generation();
      auto* p = static_cast<std::uint64_t*>(scope.translate(va, want_write));
      miss = p == nullptr;
      for (int k = 0; k < 200 && p != nullptr; ++k) {
      const std::uint64_t d = done.load(std::memory_order_acquire);
      if (as.translation_generation() != g) break;  // stale: drop it
      hits.fetch_add(1, std::memory_order_relaxed);
      if (kind == Change::mprotect) {
        if (d & 1) stale.fetch_add(1);  // a writable translation after read-only returned
      } else {
        // Older than the last change that returned (0: a fresh page the
        // changer has not written yet, never a stale one).
        const std::uint64_t v = __atomic_load_n(p, __ATOMIC_RELAXED);
        if (v != 0 && v < d) stale.fetch_add(1);
      }
      }
    }
    // Outside the scope: fault it in again (may fail while read-only).
    if (miss) (void)as.fault_in(va, want_write);
  }
  changer.join();
  EXPECT_EQ(stale.load(), 0);
  EXPECT_GT(hits.load(), 0);
}

TEST_P(Notifier, GenerationCacheDontneed) { run_cache(GetParam(), Change::dontneed); }
TEST_P(Notifier, GenerationCacheMunmapRemap) { run_cache(GetParam(), Change::remap); }
TEST_P(Notifier, GenerationCacheMprotect) { run_cache(GetParam(), Change::mprotect); }

INSTANTIATE_TEST_SUITE_P(Modes, Notifier,
                         ::testing::Values(LockMode::mmap_lock, LockMode::per_vma_rwsem, LockMode::per_vma_refcount),
                         [](const ::testing::TestParamInfo<LockMode>& i) { return std::string(lock_mode_name(i.param)); });

}  // namespace
}  // namespace vmspace
