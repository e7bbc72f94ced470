// Hostile arguments at every public entry point (issue 12).
//
// A table of mmap/munmap/mprotect/madvise/mincore/brk/mlock/munlock/mlock2/
// mlockall/mseal calls with arguments chosen to reach every argument check:
// lengths that overflow the address when added, unaligned addresses,
// unknown flag bits and mapping types, PROT bits above PROT_EXEC, negative
// and unknown advice values, addresses above the task size, a NULL mincore
// vector, breaks below the heap and beyond the task size.  The answers are
// not typed by hand: one forked child runs the whole table on the host
// kernel with raw syscall(2) and reports, per case, the result and the
// window's part of /proc/self/maps afterwards.  The same table then runs on
// AddressSpaces configured like this host
// (host_like_options), once per lock mode, and each case must give the same
// result (errno, or success) and leave the same window maps; a failing call
// must leave them as the kernel does (unchanged, or what Linux commits
// partially); validate() must hold after every call.
//
// Both sides start every case from the same layout in the op-script window
// (a few VMAs with holes, made by the same fixed mmaps) and are reset to it
// after every case (munmap of the whole window, then the layout again).
//
// The child must not clobber itself.  Before a call that could change
// memory outside the window if its argument checks pass (MAP_FIXED, munmap,
// mprotect, madvise), it computes conservatively the range the call could
// touch (reach(), Linux 6.18's checks) and, if that range meets one of its
// own mappings (program, heap, stack, sanitizer shadow...), skips the case
// and reports why; such a call would not be comparable anyway (vmspace has
// nothing there).  Mappings the kernel creates outside the window are
// unmapped again right after the call.  What outlives a call in the
// process (a seal; mlockall's MCL_FUTURE) is done by a child of the child,
// which reports and exits: mlockall always, mseal when its argument checks
// pass.  mlockall(MCL_CURRENT) without MCL_ONFAULT would fault in the whole
// process and is skipped (and without CAP_IPC_LOCK so is any MCL_CURRENT:
// the size of the whole process decides it).  On the vmspace side, mseal
// runs on a space of its own and mlockall is followed by munlockall.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "vmspace/mman.h"
#include "opscript/host_probe.h"
#include "opscript/kernel_runner.h"
#include "opscript/result.h"
#include "opscript/vmspace_executor.h"
#include "sync/rcu.h"
#include "vmspace/address_space.h"

// Linux UAPI values glibc may not define (x86-64).
#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_ABOVE4G
#define MAP_ABOVE4G 0x80
#endif
#ifndef MAP_UNINITIALIZED
#define MAP_UNINITIALIZED 0x4000000
#endif
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#ifndef PROT_SEM
#define PROT_SEM 0x8
#endif
#ifndef SYS_mseal
#define SYS_mseal 462
#endif

namespace vmspace::opscript {
namespace {

constexpr uint64_t P = kPageSize;
constexpr uint64_t W = kDefaultWindowBase;
// x86-64 TASK_SIZE with 4-level paging (vmspace's task size; the test
// skips on a host that uses 5-level paging).
constexpr uint64_t kTaskSize = (uint64_t{1} << 47) - P;
constexpr uint64_t kAllOnes = ~uint64_t{0};
constexpr uint64_t kPageMask = ~(P - 1);
constexpr uint64_t k2M = uint64_t{2} << 20;
constexpr uint64_t k1G = uint64_t{1} << 30;

// Advice values Linux 6.18 knows (madvise_behavior_valid with every option);
// 100/101 (MADV_HWPOISON/SOFT_OFFLINE) only with CONFIG_MEMORY_FAILURE.
constexpr int kMadvPopulateRead = 22, kMadvPopulateWrite = 23, kMadvCollapse = 25;
constexpr int kMadvHwpoison = 100, kMadvSoftOffline = 101;
constexpr int kMadvGuardInstall = 102, kMadvGuardRemove = 103;

uint64_t page_align(uint64_t x) { return (x + P - 1) & kPageMask; }
uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }  // 0 on overflow
bool in_window(uint64_t a) { return a >= W && a - W < kWindowSize; }

// ---------------------------------------------------------------------------
// The layout both sides start every case from (window-relative).

struct LayoutMap {
  uint64_t off, len;
  int prot, flags;
};
const std::vector<LayoutMap>& layout() {
  static const std::vector<LayoutMap> l = {
      {0 * P, 4 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE},           // A
      {6 * P, 2 * P, PROT_READ, MAP_PRIVATE},                        // B (hole before)
      {8 * P, 2 * P, PROT_READ | PROT_WRITE, MAP_SHARED},            // C (right after B)
      {16 * P, 4 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_GROWSDOWN},  // D: a stack
      {24 * P, 2 * P, PROT_NONE, MAP_PRIVATE},                       // E
      {28 * P, 1 * P, PROT_EXEC, MAP_PRIVATE},                       // F: execute-only
      {30 * P, 2 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_LOCKED},  // G: locked
  };
  return l;
}

// ---------------------------------------------------------------------------
// The table.

enum class Op : uint8_t {
  mmap, munmap, mprotect, madvise, mincore, brk, mlock, munlock, mlock2, mlockall, mseal, mremap, msync
};
constexpr const char* kOpNames[] = {"mmap",  "munmap",  "mprotect", "madvise",  "mincore", "brk",
                                    "mlock", "munlock", "mlock2",   "mlockall", "mseal",   "mremap",
                                    "msync"};

// mincore's vector: a buffer of kVecBytes, or NULL.
enum : int { kVecBuffer = 0, kVecNull = 1 };
constexpr size_t kVecBytes = 65536;
constexpr size_t kVecShown = 48;  // entries compared (the layout's runs are shorter)
// brk's argument: `addr` itself, or `addr` (two's complement) added to the
// side's heap start or to its break just before the call, so that both
// sides ask the same of their own heap.
enum : int { kBrkAbsolute = 0, kBrkFromStart = 1, kBrkFromCurrent = 2 };
// brk's result, encoded the same on both sides (its heap is not the
// child's): the break it had (failure, or a query), the break asked for.
enum : long { kBrkOld = 0, kBrkAsked = 1, kBrkOther = 2 };

struct Case {
  Op op = Op::mmap;
  uint64_t addr = 0, len = 0;
  int arg = 0;    // prot (mmap, mprotect) or advice (madvise)
  int flags = 0;  // mmap; mincore: kVec*; brk: kBrk*
  int fd = -1;    // mmap
  uint64_t off = 0;  // mmap
  uint64_t xflags = 0;  // mlock2, mlockall (truncated to int, as the kernel does), mseal
  // mremap: `len` is old_len, `flags` the MREMAP_* flags (sign-extended, as
  // glibc passes them); and, when seal_len is not 0, the window-relative
  // range [seal_off, seal_off + seal_len) is sealed (mseal) just before.
  uint64_t new_len = 0, new_addr = 0;
  uint64_t seal_off = 0, seal_len = 0;
};

// mremap's result when the seal before it failed (not an errno).
constexpr long kSealFailed = -100000;

std::string addr_text(uint64_t a) {
  if (a >= W && a - W < kWindowSize) return "W+" + hex(a - W);
  if (a == kTaskSize) return "TASK_SIZE";
  return hex(a);
}

std::string flags_text(int flags) {
  static const std::pair<int, const char*> kNames[] = {
      {MAP_FIXED, "FIXED"},         {MAP_ANONYMOUS, "ANON"},     {MAP_32BIT, "32BIT"},
      {MAP_ABOVE4G, "ABOVE4G"},     {MAP_GROWSDOWN, "GROWSDOWN"}, {MAP_DENYWRITE, "DENYWRITE"},
      {MAP_EXECUTABLE, "EXECUTABLE"}, {MAP_LOCKED, "LOCKED"},    {MAP_NORESERVE, "NORESERVE"},
      {MAP_POPULATE, "POPULATE"},   {MAP_NONBLOCK, "NONBLOCK"},  {MAP_STACK, "STACK"},
      {MAP_HUGETLB, "HUGETLB"},     {MAP_SYNC, "SYNC"},          {MAP_FIXED_NOREPLACE, "FIXED_NOREPLACE"},
  };
  std::string s;
  switch (flags & MAP_TYPE) {
    case 0: s = "NOTYPE"; break;
    case MAP_SHARED: s = "SHARED"; break;
    case MAP_PRIVATE: s = "PRIVATE"; break;
    case MAP_SHARED_VALIDATE: s = "SHARED_VALIDATE"; break;
    case MAP_DROPPABLE: s = "DROPPABLE"; break;
    default: s = "TYPE" + hex(static_cast<unsigned>(flags & MAP_TYPE)); break;
  }
  unsigned rest = static_cast<unsigned>(flags) & ~static_cast<unsigned>(MAP_TYPE);
  for (auto [bit, name] : kNames) {
    if (rest & static_cast<unsigned>(bit)) {
      s += '|';
      s += name;
      rest &= ~static_cast<unsigned>(bit);
    }
  }
  if (flags & MAP_HUGETLB) {
    const unsigned log = (rest >> MAP_HUGE_SHIFT) & 0x3f;
    if (log != 0) s += "|HUGE_LOG" + std::to_string(log);
    rest &= ~(0x3fu << MAP_HUGE_SHIFT);
  }
  if (rest != 0) s += "|" + hex(rest);
  return s;
}

std::string int_text(int v) { return v < 0 ? std::to_string(v) : hex(static_cast<unsigned>(v)); }

std::string mremap_flags_text(int flags) {
  static const std::pair<int, const char*> kNames[] = {
      {MREMAP_MAYMOVE, "MAYMOVE"}, {MREMAP_FIXED, "FIXED"}, {MREMAP_DONTUNMAP, "DONTUNMAP"}};
  std::string s;
  unsigned rest = static_cast<unsigned>(flags);
  for (auto [bit, name] : kNames) {
    if (rest & static_cast<unsigned>(bit)) {
      s += s.empty() ? "" : "|";
      s += name;
      rest &= ~static_cast<unsigned>(bit);
    }
  }
  if (rest != 0 || s.empty()) s += (s.empty() ? "" : "|") + hex(rest);
  return s;
}

std::string case_text(const Case& c) {
  std::string s = kOpNames[static_cast<int>(c.op)];
  s += "(" + addr_text(c.addr) + ", " + hex(c.len);
  switch (c.op) {
    case Op::mmap:
      s += ", prot " + int_text(c.arg) + ", " + flags_text(c.flags) + ", fd " + std::to_string(c.fd) +
           ", off " + hex(c.off) + ")";
      break;
    case Op::munmap: s += ")"; break;
    case Op::mprotect: s += ", prot " + int_text(c.arg) + ")"; break;
    case Op::madvise: s += ", advice " + std::to_string(c.arg) + ")"; break;
    case Op::mincore: s += c.flags == kVecNull ? ", NULL)" : ", vec)"; break;
    case Op::mlock:
    case Op::munlock: s += ")"; break;
    case Op::mlock2:
    case Op::mseal: s += ", flags " + hex(c.xflags) + ")"; break;
    case Op::msync: s += ", " + int_text(c.flags) + ")"; break;
    case Op::mlockall: s = "mlockall(" + hex(c.xflags) + ")"; break;
    case Op::mremap:
      s += " -> " + hex(c.new_len) + ", " + mremap_flags_text(c.flags) + ", " + addr_text(c.new_addr) + ")";
      if (c.seal_len != 0) s += " after mseal(W+" + hex(c.seal_off) + ", " + hex(c.seal_len) + ")";
      break;
    case Op::brk: {
      static const char* const kBase[] = {"", "start_brk", "brk"};
      const int64_t d = static_cast<int64_t>(c.addr);
      s = "brk(";
      if (c.flags == kBrkAbsolute) s += addr_text(c.addr);
      else s += std::string(kBase[c.flags]) + (d < 0 ? " - " + hex(0 - c.addr) : " + " + hex(c.addr));
      s += ")";
      break;
    }
  }
  return s;
}

// Addresses: the low end, the window's VMAs, holes and their edges
// (aligned and not), and the top of the address space and beyond (the last
// 4095 look like error values to Linux's get_unmapped_area).
std::vector<uint64_t> addresses() {
  return {0,          1,          P - 1,      P,          0xf000,     W,
          W + 1,      W + 0x800,  W + 2 * P,  W + 4 * P,  W + 6 * P,  W + 9 * P,
          W + 12 * P, W + 15 * P, W + 16 * P, W + 24 * P, W + 28 * P, W + 30 * P,
          W + 40 * P, kTaskSize - P, kTaskSize, kTaskSize + P, uint64_t{1} << 47,
          uint64_t{1} << 56, uint64_t{1} << 63, kAllOnes & kPageMask, kAllOnes - 4096, kAllOnes - 4094,
          kAllOnes - 21, kAllOnes};
}

// Lengths for address a: small ones, the whole layout, up to / one page
// past the task size, ones that wrap a + len to 0 or to one page, and the
// largest values.  `placement`: only the lengths whose outcome does not
// depend on what else the host process has mapped (for non-fixed mmap,
// where vmspace's otherwise empty space would find room the kernel child
// does not have).
std::vector<uint64_t> lengths(uint64_t a, bool placement) {
  std::vector<uint64_t> l = {0, 1, P, 2 * P, 3 * P, 40 * P, 0 - a, 0 - a + P, kAllOnes, kAllOnes & kPageMask,
                             kTaskSize, uint64_t{1} << 63};
  if (!placement && a <= kTaskSize) {
    l.push_back(kTaskSize - a);
    l.push_back(kTaskSize - a + P);
  }
  std::vector<uint64_t> out;
  for (uint64_t x : l)
    if (std::find(out.begin(), out.end(), x) == out.end()) out.push_back(x);
  return out;
}

// (address, length) pairs for the sweeps over flags, prot and advice.
struct Pair {
  uint64_t addr, len;
};
std::vector<Pair> sweep_pairs() {
  return {{W, P},          {W + 2 * P, 3 * P}, {W + 4 * P, 2 * P}, {W + 1, P},          {W, 0},
          {W, kAllOnes},   {W + 6 * P, 4 * P}, {W + 16 * P, P},    {W + 17 * P, P},     {W + 24 * P, P},
          {W + 28 * P, P}, {W + 30 * P, P},    {0, P},             {kTaskSize, P}};
}

std::vector<int> prot_values() {
  std::vector<int> v;
  for (int p = 0; p <= 7; ++p) v.push_back(p);
  for (int p : {PROT_SEM, PROT_SEM | PROT_READ, 0x10, 0x20, 0x40, 0x80, 0x100, 0x10000, 0x800000,
                PROT_GROWSDOWN, PROT_GROWSDOWN | PROT_READ, PROT_GROWSUP, PROT_GROWSUP | PROT_READ,
                PROT_GROWSDOWN | PROT_GROWSUP, PROT_GROWSDOWN | PROT_GROWSUP | PROT_READ, 0x04000000,
                INT_MIN, INT_MAX, -1})
    v.push_back(p);
  return v;
}

bool advice_valid_in_6_18(int a) {
  return (a >= 0 && a <= 4) || (a >= 8 && a <= 25) || a == kMadvHwpoison || a == kMadvSoftOffline ||
         a == kMadvGuardInstall || a == kMadvGuardRemove;
}

std::vector<Case> build_table() {
  std::vector<Case> t;
  auto add = [&](Case c) { t.push_back(c); };
  const int RW = PROT_READ | PROT_WRITE;

  // munmap: every address with every length.
  for (uint64_t a : addresses())
    for (uint64_t l : lengths(a, false)) add({Op::munmap, a, l});

  // mprotect: every address and length, plainly and with PROT_GROWSDOWN
  // (which starts at the VMA's start); then every prot value on the pairs.
  for (uint64_t a : addresses())
    for (uint64_t l : lengths(a, false)) {
      add({Op::mprotect, a, l, PROT_READ});
      add({Op::mprotect, a, l, PROT_GROWSDOWN | PROT_READ});
    }
  for (int p : prot_values())
    for (Pair q : sweep_pairs()) add({Op::mprotect, q.addr, q.len, p});

  // madvise: every address and length with content advice and with flag
  // advice; then every advice value, valid ones on all pairs, the unknown
  // ones in 26..101 on a few (each fails the same way), other unknown ones
  // on all pairs.
  for (uint64_t a : addresses())
    for (uint64_t l : lengths(a, false)) {
      add({Op::madvise, a, l, MADV_DONTNEED});
      add({Op::madvise, a, l, MADV_DONTFORK});
    }
  for (int adv : {INT_MIN, -1, 5, 6, 7, 104, 105, 1000, 0x10000, INT_MAX})
    for (Pair q : sweep_pairs()) add({Op::madvise, q.addr, q.len, adv});
  for (int adv = 0; adv <= kMadvGuardRemove; ++adv) {
    if (advice_valid_in_6_18(adv) && adv != kMadvHwpoison && adv != kMadvSoftOffline) {
      for (Pair q : sweep_pairs()) add({Op::madvise, q.addr, q.len, adv});
    } else {
      // Unknown values (and the memory-failure ones: only where they fail
      // their argument checks or do nothing; see reach()).
      for (Pair q : {Pair{W, P}, Pair{W + 1, P}, Pair{W, 0}, Pair{W, kAllOnes}})
        add({Op::madvise, q.addr, q.len, adv});
    }
  }

  // mmap: fixed, fixed-noreplace and hinted private anonymous mappings at
  // every address with every length.
  for (uint64_t a : addresses())
    for (uint64_t l : lengths(a, false)) {
      add({Op::mmap, a, l, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED});
      add({Op::mmap, a, l, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE});
    }
  for (uint64_t a : addresses())
    for (uint64_t l : lengths(a, true)) add({Op::mmap, a, l, RW, MAP_PRIVATE | MAP_ANONYMOUS});
  // Flags: each mapping type with each modifier, then the other type values.
  const std::vector<int> modifiers = {
      0,
      MAP_FIXED,
      MAP_FIXED_NOREPLACE,
      MAP_FIXED | MAP_FIXED_NOREPLACE,
      MAP_GROWSDOWN,
      MAP_GROWSDOWN | MAP_FIXED,
      MAP_HUGETLB,
      MAP_HUGETLB | MAP_NORESERVE,
      MAP_HUGETLB | MAP_FIXED,
      MAP_HUGETLB | (21 << MAP_HUGE_SHIFT),
      MAP_HUGETLB | (30 << MAP_HUGE_SHIFT),
      MAP_HUGETLB | MAP_UNINITIALIZED,  // size log 1: no such huge page size
      MAP_HUGETLB | (20 << MAP_HUGE_SHIFT),
      static_cast<int>(MAP_HUGETLB | (63u << MAP_HUGE_SHIFT)),
      MAP_32BIT,
      MAP_32BIT | MAP_FIXED,
      MAP_ABOVE4G,
      MAP_32BIT | MAP_ABOVE4G,
      MAP_UNINITIALIZED,
      MAP_SYNC,
      MAP_SYNC | MAP_FIXED,
      MAP_STACK | MAP_FIXED,
      MAP_LOCKED,
      MAP_LOCKED | MAP_GROWSDOWN,
      MAP_POPULATE,
      MAP_POPULATE | MAP_NONBLOCK,
      MAP_NORESERVE,
      MAP_STACK,
      MAP_DENYWRITE | MAP_EXECUTABLE,
      0x200,
      0x400,
      0x200000,
      0x800000,
      0x01000000,
      0x40000000,
      INT_MIN,  // bit 31
      static_cast<int>(~0x41ff9ffu),  // every bit x86-64 does not define (the size bits mean nothing here)
  };
  // (0x10000: the lowest hint taken; 0x7ffff000: a MAP_32BIT hint that
  // does not end below 2 GiB.)
  const std::vector<Pair> flag_pairs = {{W + 4 * P, 2 * P}, {W + 2 * P, 3 * P}, {0, P},
                                        {W + 1, P},         {0x10000, P},       {0x7ffff000, 2 * P}};
  for (int type : {MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE, MAP_DROPPABLE})
    for (int m : modifiers)
      for (Pair q : flag_pairs) add({Op::mmap, q.addr, q.len, RW, type | m | MAP_ANONYMOUS});
  for (int type : {0, 4, 5, 6, 7, 9, 10, 11, 12, 15})
    for (int m : {0, MAP_FIXED})
      for (Pair q : flag_pairs) add({Op::mmap, q.addr, q.len, RW, type | m | MAP_ANONYMOUS});
  for (Pair q : flag_pairs) add({Op::mmap, q.addr, q.len, RW, -1});  // every bit: MAP_HUGETLB, size log 63
  // Prot values (mmap checks none of them).
  for (int p : prot_values())
    for (int f : {MAP_PRIVATE | MAP_ANONYMOUS, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                  MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED})
      add({Op::mmap, W + 4 * P, 2 * P, p, f});
  // Offsets (anonymous memory ignores an aligned one) and fds (ignored with
  // MAP_ANONYMOUS; without it no fd here is open: -EBADF).
  for (uint64_t off : {uint64_t{1}, P - 1, P, uint64_t{1} << 40, kAllOnes & kPageMask, kAllOnes, uint64_t{1} << 63})
    for (int f : {MAP_PRIVATE | MAP_ANONYMOUS, MAP_SHARED | MAP_ANONYMOUS, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                  MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED}) {
      Case c{Op::mmap, W + 4 * P, 2 * P, RW, f};
      c.off = off;
      add(c);
    }
  for (int fd : {0, 0x7ffffff0, INT_MIN})
    for (int f : {MAP_PRIVATE | MAP_ANONYMOUS, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED}) {
      Case c{Op::mmap, W + 4 * P, 2 * P, RW, f};
      c.fd = fd;
      add(c);
    }
  for (int fd : {-1, 0x7ffffff0, INT_MIN})
    for (int f : {MAP_PRIVATE, MAP_SHARED, 0, MAP_PRIVATE | MAP_FIXED, MAP_PRIVATE | MAP_HUGETLB})
      for (uint64_t l : {uint64_t{0}, 2 * P}) {
        Case c{Op::mmap, W + 4 * P, l, RW, f};
        c.fd = fd;
        add(c);
        c.off = 1;  // the offset check comes first
        add(c);
      }

  // mincore: every address and length with a buffer; the pairs with NULL
  // (-EFAULT at the first copy, unless the checks or the lookup fail
  // first), and a length of exactly the top of the address space.
  for (uint64_t a : addresses())
    for (uint64_t l : lengths(a, false)) add({Op::mincore, a, l, 0, kVecBuffer});
  for (Pair q : sweep_pairs()) add({Op::mincore, q.addr, q.len, 0, kVecNull});
  for (uint64_t a : {kTaskSize - P, W})
    for (uint64_t l : {kTaskSize - a, kTaskSize - a + 1, kTaskSize - a - 1})
      for (int v : {kVecBuffer, kVecNull}) add({Op::mincore, a, l, 0, v});

  // brk: queries and breaks every Linux check refuses (below the heap's
  // start, beyond the task size, wrapping when page-aligned); what would
  // move the kernel child's own heap is left out.
  // (Not TASK_SIZE itself: the child fails that for the mappings above its
  // heap, vmspace only because the host's overcommit limit refuses the
  // size.)
  for (uint64_t b : {uint64_t{0}, uint64_t{1}, P, uint64_t{0xf000}, W, kTaskSize + P, uint64_t{1} << 47,
                     uint64_t{1} << 56, uint64_t{1} << 63, kAllOnes & kPageMask, kAllOnes - 4095, kAllOnes - 1,
                     kAllOnes})
    add({Op::brk, b, 0, 0, kBrkAbsolute});
  for (uint64_t d : {uint64_t{0} - 1, uint64_t{0} - P, uint64_t{0} - (uint64_t{1} << 30)})
    add({Op::brk, d, 0, 0, kBrkFromStart});
  for (uint64_t d : {uint64_t{0}, uint64_t{1} << 46, uint64_t{1} << 47, uint64_t{0} - (uint64_t{1} << 47)})
    add({Op::brk, d, 0, 0, kBrkFromCurrent});

  // mlock, munlock: every address and length (no alignment check: the
  // range widens to whole pages); mlock2's flags on the pairs.
  for (uint64_t a : addresses())
    for (uint64_t l : lengths(a, false)) {
      add({Op::mlock, a, l});
      add({Op::munlock, a, l});
    }
  for (uint64_t f : {uint64_t{0}, uint64_t{MLOCK_ONFAULT}, uint64_t{2}, uint64_t{3}, uint64_t{0x80000000},
                     uint64_t{0xffffffff}, uint64_t{1} << 32 | MLOCK_ONFAULT})
    for (Pair q : sweep_pairs()) {
      Case c{Op::mlock2, q.addr, q.len};
      c.xflags = f;
      add(c);
    }
  // mlockall: every combination of the three flags, unknown bits.
  for (uint64_t f : std::initializer_list<uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 0x10, 2 | 8, 0x80000000, 0xffffffff,
                                                     0x100000002}) {
    Case c{Op::mlockall};
    c.xflags = f;
    add(c);
  }
  // msync: every address and length with each valid flag combination;
  // the others (unknown bits, MS_ASYNC|MS_SYNC, none) on the pairs.
  for (uint64_t a : addresses())
    for (uint64_t l : lengths(a, false))
      for (int f : {MS_SYNC, MS_ASYNC, MS_INVALIDATE, MS_SYNC | MS_INVALIDATE, MS_ASYNC | MS_INVALIDATE}) {
        Case c{Op::msync, a, l};
        c.flags = f;
        add(c);
      }
  for (int f : {0, MS_ASYNC | MS_SYNC, MS_ASYNC | MS_SYNC | MS_INVALIDATE, 8, 0x10, 0x100, INT_MIN, -1})
    for (Pair q : sweep_pairs()) {
      Case c{Op::msync, q.addr, q.len};
      c.flags = f;
      add(c);
    }

  // mseal: every address and length; flags (any is -EINVAL) on the pairs.
  for (uint64_t a : addresses())
    for (uint64_t l : lengths(a, false)) add({Op::mseal, a, l});
  for (uint64_t f : {uint64_t{1}, uint64_t{2}, uint64_t{1} << 32, uint64_t{1} << 63, kAllOnes})
    for (Pair q : sweep_pairs()) {
      Case c{Op::mseal, q.addr, q.len};
      c.xflags = f;
      add(c);
    }

  // mremap.  MAYMOVE, FIXED, DONTUNMAP as MM, FX, DU; `remap` adds one
  // call, after sealing [W + seal_off, + seal_len) when seal_len is not 0.
  constexpr int MM = MREMAP_MAYMOVE, FX = MREMAP_FIXED, DU = MREMAP_DONTUNMAP;
  auto remap = [&](uint64_t a, uint64_t old_len, uint64_t new_len, int f, uint64_t na, uint64_t seal_off = 0,
                   uint64_t seal_len = 0) {
    Case c{Op::mremap, a, old_len, 0, f};
    c.new_len = new_len;
    c.new_addr = na;
    c.seal_off = seal_off;
    c.seal_len = seal_len;
    add(c);
  };
  // Every address with every length as old_len: resized to one page in
  // place; grown by two pages (in place, or moved where the kernel
  // chooses); moved, same size, to a hole (remap_move: several VMAs and
  // holes); moved and resized to one page (mremap_to).  (new_addr is
  // ignored without FIXED and DONTUNMAP: ~0 there.)
  for (uint64_t a : addresses())
    for (uint64_t l : lengths(a, false)) {
      remap(a, l, P, 0, kAllOnes);
      remap(a, l, l + 2 * P, MM, kAllOnes);
      remap(a, l, l, MM | FX, W + 64 * P);
      remap(a, l, P, MM | FX, W + 64 * P);
    }
  // ...and kept in place with DONTUNMAP (only a range inside one VMA can
  // be: the lengths up to the layout's).
  for (uint64_t a : addresses())
    for (uint64_t l : {uint64_t{1}, P, 2 * P, 3 * P}) remap(a, l, l, MM | DU, 0);
  // new_len: every kind of value on whole VMAs, parts of them, each type
  // of VMA (A private, B read-only, C shared, D a stack, G locked), with
  // each way of moving.  (A huge length with neither FIXED nor DONTUNMAP
  // is moved where the kernel chooses: 1 TiB, which fits on both sides;
  // more would depend on the rest of the host process.)
  const std::vector<std::pair<uint64_t, uint64_t>> sources = {{W, 4 * P},      {W + P, 2 * P},  {W + 6 * P, 2 * P},
                                                              {W + 8 * P, 2 * P}, {W + 16 * P, 4 * P}, {W + 30 * P, 2 * P}};
  for (auto [a, old] : sources) {
    std::vector<uint64_t> news = {0,        1,         P,         old - P,  old,        old + 1,
                                  old + P,  2 * old,   8 * P,     uint64_t{1} << 40, kTaskSize, kTaskSize + P,
                                  uint64_t{1} << 47, kAllOnes & kPageMask, kAllOnes, kAllOnes - 4094};
    for (uint64_t nl : news)
      for (std::pair<int, uint64_t> f : std::initializer_list<std::pair<int, uint64_t>>{
               {0, 0}, {MM, 0}, {MM | FX, W + 40 * P}, {MM | DU, 0}, {MM | FX | DU, W + 40 * P}})
        remap(a, old, nl, f.first, f.second);
  }
  // Flags: every combination of the three, and unknown bits (before any
  // other check: with an unaligned address too), on calls of every kind.
  const std::vector<int> remap_flags = {0,        1,          2,       3,       4,       5,      6,
                                        7,        8,          8 | MM,  0x10,    0x10 | MM | FX, 0x20, 0x100,
                                        0x40000000, INT_MIN,  -1,      ~7};
  struct RemapArgs {
    uint64_t a = 0, old_len = 0, new_len = 0, new_addr = 0;
  };
  const std::vector<RemapArgs> flag_calls = {
      {W, P, P, W + 40 * P},           {W, 2 * P, 4 * P, W + 40 * P},  {W, 4 * P, P, W + 40 * P},
      {W + 1, P, P, W + 40 * P},       {W + 6 * P, 4 * P, 4 * P, W + 40 * P}, {W + 8 * P, 0, 2 * P, W + 40 * P},
      {W + 4 * P, P, P, W + 40 * P},   {W + 30 * P, 2 * P, 3 * P, W + 40 * P}, {W + 2 * P, 2 * P, 2 * P, W + 3 * P},
      {W, P, 0, W + 40 * P},           {W + 16 * P, P, 2 * P, W + 12 * P}, {W, P, P, W + 1}};
  for (int f : remap_flags)
    for (const RemapArgs& q : flag_calls) remap(q.a, q.old_len, q.new_len, f, q.new_addr);
  // new_addr: holes (far, adjacent to the source, before a stack, after
  // the last VMA), other VMAs (replaced), the source itself (overlap),
  // unaligned values, the bottom of the address space (0 and below
  // mmap_min_addr: a FIXED move there needs CAP_SYS_RAWIO; a DONTUNMAP
  // hint is taken as it is), the top (TASK_SIZE - len fits, more does
  // not), beyond it, and the largest values.
  const std::vector<uint64_t> new_addrs = {
      W + 40 * P, W + 4 * P,  W + 2 * P,  W + 6 * P,  W + 8 * P,  W + 12 * P, W + 17 * P, W + 24 * P,
      W + 29 * P, W + 32 * P, W + 1,      W + 0x800,  W - P,      0,          P,          0x10000,
      kTaskSize - P, kTaskSize - 2 * P, kTaskSize, kTaskSize + P, uint64_t{1} << 47, kAllOnes & kPageMask, kAllOnes};
  const std::vector<RemapArgs> to_calls = {{W, P, P},         {W, 2 * P, P},     {W, P, 2 * P},
                                           {W + 8 * P, 0, P}, {W + 6 * P, 4 * P, 4 * P}, {W + 2 * P, 2 * P, 2 * P}};
  for (uint64_t na : new_addrs)
    for (const RemapArgs& q : to_calls)
      for (int f : {MM | FX, MM | DU, MM | FX | DU}) remap(q.a, q.old_len, q.new_len, f, na);
  // old_len 0: a second mapping of a shared VMA (also reaching past its
  // end); refused for private ones; a hole.
  for (uint64_t a : {W + 8 * P, W + 9 * P, W, W + 6 * P, W + 16 * P, W + 30 * P, W + 4 * P})
    for (uint64_t nl : {uint64_t{0}, P, 2 * P, 4 * P})
      for (std::pair<int, uint64_t> f : std::initializer_list<std::pair<int, uint64_t>>{
               {0, 0}, {MM, 0}, {MM | FX, W + 40 * P}, {MM | DU, 0}, {MM | FX | DU, W + 40 * P}})
        remap(a, 0, nl, f.first, f.second);
  // Several VMAs and holes (FIXED same-size moves, 6.17+): adjacent VMAs
  // of different kinds, VMAs with holes between and after them, a range
  // starting in a hole; to a hole, onto other VMAs (what lines up with the
  // source's holes stays), overlapping; with DONTUNMAP; and what may not
  // span VMAs (a resize, DONTUNMAP without FIXED).
  const std::vector<Pair> spans = {{W + 6 * P, 4 * P},  {W, 8 * P},         {W + 2 * P, 5 * P},
                                   {W + 4 * P, 4 * P},  {W + 16 * P, 16 * P}, {W + 24 * P, 16 * P},
                                   {W, 32 * P},         {W + 9 * P, 8 * P}};
  for (Pair q : spans) {
    for (uint64_t na : {W + 40 * P, W + 16 * P, W + 24 * P, W + 64 * P, W + 8 * P})
      for (int f : {MM | FX, MM | FX | DU}) remap(q.addr, q.len, q.len, f, na);
    remap(q.addr, q.len, q.len + P, MM | FX, W + 40 * P);
    remap(q.addr, q.len, q.len - P, MM | FX, W + 40 * P);
    remap(q.addr, q.len, q.len, MM | DU, 0);
    remap(q.addr, q.len, q.len, MM, 0);
    remap(q.addr, q.len, q.len + P, MM, 0);
  }
  // Seals (made in the case: a seal cannot be undone): a sealed source
  // (shrunk, kept, grown, moved, duplicated, also spanning past the sealed
  // VMA), a sealed destination, a shrink whose tail reaches a sealed VMA,
  // a multi-VMA move that stops at the sealed piece.
  for (Pair s : {Pair{6 * P, 2 * P}, Pair{2 * P, 2 * P}, Pair{8 * P, 2 * P}, Pair{30 * P, 2 * P}}) {
    const uint64_t a = W + s.addr;
    for (std::pair<int, uint64_t> f : std::initializer_list<std::pair<int, uint64_t>>{
             {0, 0}, {MM, 0}, {MM | FX, W + 40 * P}, {MM | DU, 0}})
      for (uint64_t nl : {P, 2 * P, 3 * P}) remap(a, 2 * P, nl, f.first, f.second, s.addr, s.len);
    remap(a, 0, P, MM, 0, s.addr, s.len);
    remap(a, 4 * P, 5 * P, MM, 0, s.addr, s.len);
    remap(a, 4 * P, 4 * P, MM | FX, W + 40 * P, s.addr, s.len);
    remap(W + 12 * P, P, P, MM | FX, a, s.addr, s.len);  // (W+12P: a hole, so not moved: -EFAULT)
    remap(W + 16 * P, P, P, MM | FX, a, s.addr, s.len);
    remap(W + 16 * P, 2 * P, P, MM | FX, a, s.addr, s.len);
    remap(W + 16 * P, P, 2 * P, MM | FX, a, s.addr, s.len);
    remap(W + 16 * P, P, P, MM | FX | DU, a, s.addr, s.len);
    remap(W, 10 * P, 10 * P, MM | FX, W + 40 * P, s.addr, s.len);
    remap(W, 32 * P, 32 * P, MM | FX, W + 40 * P, s.addr, s.len);
    remap(W, 8 * P, P, 0, 0, s.addr, s.len);
  }
  return t;
}

// ---------------------------------------------------------------------------
// What a call could touch on the host kernel.

struct Range {
  uint64_t start, end;  // end may be 0 when the range runs to the top of the address space
};

// The range [start, end) a call could change if it passes its argument
// checks, or nullopt when it cannot change any existing mapping: it fails
// Linux 6.18's checks before touching anything (conservatively: a check not
// modelled here only makes the range larger), or it is a non-fixed mmap
// (which only adds a mapping where the kernel chooses; undone afterwards).
std::optional<Range> reach(const Case& c) {
  switch (c.op) {
    case Op::munmap: {  // do_vmi_munmap
      if (c.addr % P != 0 || c.addr > kTaskSize || c.len > kTaskSize - c.addr) return std::nullopt;
      const uint64_t end = c.addr + page_align(c.len);
      if (end == c.addr) return std::nullopt;
      return Range{c.addr, end};
    }
    case Op::mprotect: {  // do_mprotect_pkey (prot sign-extended, as glibc passes it)
      const uint64_t prot = static_cast<uint64_t>(static_cast<int64_t>(c.arg));
      const uint64_t grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
      if (grows == (PROT_GROWSDOWN | PROT_GROWSUP)) return std::nullopt;
      if (c.addr % P != 0 || c.len == 0) return std::nullopt;
      const uint64_t end = c.addr + page_align(c.len);
      if (end <= c.addr) return std::nullopt;
      if ((prot & ~grows) & ~uint64_t{PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM}) return std::nullopt;
      return Range{c.addr, end};
    }
    case Op::madvise: {  // madvise_should_skip; any advice may be valid (a later kernel knows more)
      if (c.addr % P != 0) return std::nullopt;
      const uint64_t len = page_align(c.len);
      if (c.len != 0 && len == 0) return std::nullopt;
      if (c.addr + len <= c.addr) return std::nullopt;
      return Range{c.addr, c.addr + len};
    }
    case Op::mmap: {
      if (c.off % P != 0) return std::nullopt;  // x86 sys_mmap
      if (!(c.flags & MAP_ANONYMOUS)) return std::nullopt;  // no fd in the table is open: -EBADF
      if (!(c.flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))) return std::nullopt;
      if (c.len == 0 || c.addr % P != 0) return std::nullopt;
      if (c.flags & MAP_HUGETLB) {
        // The length is rounded up to the huge page size first; take the
        // larger of the two sizes this host may use, and no task-size check.
        const uint64_t len = std::max(align_up(c.len, k2M), align_up(c.len, k1G));
        if (len == 0) return std::nullopt;
        const uint64_t end = c.addr + len;
        return Range{c.addr, end < c.addr ? 0 : end};
      }
      const uint64_t len = page_align(c.len);
      if (len == 0 || len > kTaskSize || c.addr > kTaskSize - len) return std::nullopt;
      return Range{c.addr, c.addr + len};
    }
    case Op::mlock:
    case Op::munlock:
    case Op::mlock2: {  // do_mlock / munlock: the range widens to whole pages
      if (c.op == Op::mlock2 && (static_cast<unsigned>(c.xflags) & ~unsigned{MLOCK_ONFAULT})) return std::nullopt;
      const uint64_t start = c.addr & kPageMask, len = page_align(c.len + (c.addr & (P - 1)));
      if (len == 0 || start + len < start) return std::nullopt;  // nothing, or -EINVAL
      return Range{start, start + len};
    }
    case Op::mseal: {  // do_mseal
      if (c.xflags != 0 || c.addr % P != 0) return std::nullopt;
      const uint64_t len = page_align(c.len);
      if (len == 0 || c.addr + len < c.addr) return std::nullopt;
      return Range{c.addr, c.addr + len};
    }
    case Op::mremap: {  // check_mremap_params, then the source VMA's lookup
      const uint64_t flags = static_cast<uint64_t>(static_cast<int64_t>(c.flags));
      if (flags & ~uint64_t{MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP}) return std::nullopt;
      if (c.addr % P != 0) return std::nullopt;
      const uint64_t old_len = page_align(c.len), new_len = page_align(c.new_len);
      if (new_len == 0 || new_len > kTaskSize) return std::nullopt;
      if (flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) {
        if (c.new_addr > kTaskSize - new_len || c.new_addr % P != 0) return std::nullopt;
        if (!(flags & MREMAP_MAYMOVE)) return std::nullopt;
        if ((flags & MREMAP_DONTUNMAP) && old_len != new_len) return std::nullopt;
        if (c.addr + old_len > c.new_addr && c.new_addr + new_len > c.addr) return std::nullopt;  // overlap
      }
      // Nothing (no VMA) lies at or above TASK_SIZE: -EFAULT before the
      // destination is touched.
      if (c.addr >= kTaskSize) return std::nullopt;
      // The source range, and what a grow in place would take (whether it
      // can depends on what follows the VMA).  A move to where the kernel
      // chooses changes nothing that exists; a FIXED destination is
      // mremap_destination().
      const uint64_t end = c.addr + std::max(old_len, new_len);
      return Range{c.addr, end < c.addr ? 0 : end};
    }
    case Op::mlockall:  // the whole process: runs in a child of its own (mlockall_skip)
    case Op::mincore:  // reads only (see mincore_reads)
    case Op::msync:    // reads only (see msync_walks)
    case Op::brk:      // outside the window; the child guards its own heap (brk_moves_me)
      return std::nullopt;
  }
  return std::nullopt;
}

// The destination a FIXED mremap unmaps and maps if it passes its argument
// checks, or nullopt.
std::optional<Range> mremap_destination(const Case& c) {
  if (c.op != Op::mremap || !(c.flags & MREMAP_FIXED) || !reach(c)) return std::nullopt;
  return Range{c.new_addr, c.new_addr + page_align(c.new_len)};
}

// Whether this mremap, if its checks pass, could grow the layout's locked
// VMA by more than `limit` (populated at once, on both sides).
bool mremap_populates_more_than(const Case& c, uint64_t limit) {
  if (c.op != Op::mremap || page_align(c.new_len) <= page_align(c.len) + limit) return false;
  for (const LayoutMap& m : layout())
    if ((m.flags & MAP_LOCKED) && c.addr >= W + m.off && c.addr < W + m.off + m.len) return true;
  return false;
}

// [start, start + len) is not wholly inside the window (the window is
// reset after every case; what lies outside must be unmapped by hand).
bool leaves_window(uint64_t start, uint64_t len) {
  return !in_window(start) || len > kWindowSize - (start - W);
}

// The range mincore would look at if it passes its argument checks (x86
// access_ok: no wrap, nothing above 0x7ffffffff000), or nullopt.  It reads
// the run of VMAs from addr up to the first hole; the child skips a case
// whose run holds one of its own mappings (vmspace has nothing there).
std::optional<Range> mincore_reads(const Case& c) {
  if (c.op != Op::mincore || c.addr % P != 0 || c.len == 0) return std::nullopt;
  if (c.addr + c.len < c.addr || c.addr + c.len > kTaskSize) return std::nullopt;
  return Range{c.addr, c.addr + page_align(c.len)};
}

// The range msync walks if it passes its argument checks (flags,
// alignment, no wrap, not empty), or nullopt.  It only reads the VMAs
// there; the child skips a case whose range holds one of its own.
std::optional<Range> msync_walks(const Case& c) {
  if (c.op != Op::msync) return std::nullopt;
  const unsigned f = static_cast<unsigned>(c.flags);
  if ((f & ~unsigned{MS_ASYNC | MS_INVALIDATE | MS_SYNC}) || c.addr % P != 0) return std::nullopt;
  if ((f & MS_ASYNC) && (f & MS_SYNC)) return std::nullopt;
  const uint64_t end = c.addr + page_align(c.len);
  if (end <= c.addr) return std::nullopt;
  return Range{c.addr, end};
}

// brk's argument on a side whose heap starts at `start` and whose break is
// `cur`.
uint64_t brk_value(const Case& c, uint64_t start, uint64_t cur) {
  switch (c.flags) {
    case kBrkFromStart: return start + c.addr;
    case kBrkFromCurrent: return cur + c.addr;
    default: return c.addr;
  }
}

long brk_encode(uint64_t result, uint64_t old, uint64_t asked) {
  return result == old ? kBrkOld : result == asked ? kBrkAsked : kBrkOther;
}

// mincore's vector as compared: its first kVecShown entries, '.' where
// untouched.
constexpr unsigned char kVecUntouched = 0xaa;
std::string vec_text(const unsigned char* v, uint64_t len) {
  const uint64_t pages = len / P + (len % P != 0);
  std::string s;
  for (uint64_t i = 0; i < std::min<uint64_t>(pages, kVecShown); ++i)
    s += v[i] == kVecUntouched ? '.' : v[i] <= 1 ? static_cast<char>('0' + v[i]) : '?';
  return s;
}

// MAP_POPULATE / MAP_LOCKED fault the whole mapping in: never let the
// kernel child do that for more than this (page tables alone would exhaust
// the host).
constexpr uint64_t kMaxPopulate = 64ull << 20;

// ---------------------------------------------------------------------------
// Results.

struct Outcome {
  bool ran = false;
  long ret = 0;                    // >= 0, or -errno
  std::vector<std::string> maps;   // the window's maps lines after the call
  std::string vec;                 // mincore: vec_text() after the call
  std::string note;                // why the case was skipped
};

std::vector<std::string> window_lines(std::string_view maps_text) {
  Window w;
  std::vector<std::string> out;
  for (const MapEntry& e : window_maps(parse_proc_maps(maps_text), w)) out.push_back(format_map_line(e, w));
  return out;
}

std::string result_text(const Case& c, long r) {
  if (c.op == Op::brk) return r == kBrkOld ? "the old break" : r == kBrkAsked ? "the break asked for" : "another break";
  if (c.op == Op::mremap && r == kSealFailed) return "(the seal before it failed)";
  if (r < 0) return "-" + errno_name(static_cast<int>(-r));
  if (c.op != Op::mmap && c.op != Op::mremap) return std::to_string(r);
  const uint64_t a = static_cast<uint64_t>(r);
  return in_window(a) ? "W+" + hex(a - W) : hex(a) + " (outside)";
}

// ---------------------------------------------------------------------------
// The kernel child.

bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

class Child {
 public:
  explicit Child(int fd) : fd_(fd) { buf_.resize(1 << 20); }

  std::string_view read_maps() {
    int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(std::string("open /proc/self/maps: ") + std::strerror(errno));
    size_t used = 0;
    for (;;) {
      if (used == buf_.size()) buf_.resize(buf_.size() * 2);
      ssize_t n = ::read(fd, buf_.data() + used, buf_.size() - used);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail(std::string("read /proc/self/maps: ") + std::strerror(errno));
      if (n == 0) break;
      used += static_cast<size_t>(n);
    }
    ::close(fd);
    return std::string_view(buf_.data(), used);
  }

  void send(std::string_view line) {
    out_.append(line);
    out_ += '\n';
    if (out_.size() >= 16384) flush();
  }
  void flush() {
    if (!write_all(fd_, out_.data(), out_.size())) ::_exit(4);
    out_.clear();
  }
  [[noreturn]] void fail(const std::string& why) {
    send("X " + why);
    flush();
    ::_exit(3);
  }

  // Unmap the whole window and map the layout again.
  void reset_layout() {
    if (::syscall(SYS_munmap, W, kWindowSize) != 0) fail(std::string("munmap window: ") + std::strerror(errno));
    for (const LayoutMap& m : layout()) {
      long r = ::syscall(SYS_mmap, W + m.off, m.len, m.prot, m.flags | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      if (r != static_cast<long>(W + m.off)) fail(std::string("layout mmap: ") + std::strerror(errno));
    }
  }

  // The first of the child's own mappings (outside the window) in [s, e),
  // as a maps line, or "" when there is none.
  std::string foreign_in(uint64_t s, uint64_t e) {
    for (const MapEntry& m : parse_proc_maps(read_maps())) {
      const bool meets = m.start < (e == 0 ? kAllOnes : e) && s < m.end;
      if (meets && !(in_window(m.start) && m.end - W <= kWindowSize))
        return hex(m.start) + "-" + hex(m.end) + " " + m.perms + " " + m.name;
    }
    return "";
  }

  // mprotect changes only the run of adjacent VMAs starting at the first
  // one in [start, end) (it stops at the first hole), and without
  // PROT_GROWSDOWN only if that VMA holds `start`: the part of the range
  // that run covers, or nullopt when it changes nothing.
  std::optional<Range> mprotect_run(uint64_t start, uint64_t end, bool growsdown) {
    std::vector<MapEntry> all = parse_proc_maps(read_maps());
    uint64_t run_end = 0;
    bool found = false;
    for (const MapEntry& m : all) {
      if (!found) {
        if (m.end > start && m.start < end) {
          if (m.start > start && !growsdown) return std::nullopt;  // -ENOMEM
          found = true;
          start = std::min(start, m.start);
          run_end = m.end;
        }
      } else if (m.start == run_end) {
        run_end = m.end;
      } else {
        break;
      }
    }
    if (!found) return std::nullopt;
    return Range{start, std::min(run_end, end)};
  }

  // The heap's start (/proc/self/stat field 47, start_brk); 0 if unknown.
  uint64_t start_brk() {
    int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char b[4096];
    ssize_t n = ::read(fd, b, sizeof b - 1);
    ::close(fd);
    if (n <= 0) return 0;
    b[n] = '\0';
    const char* p = std::strrchr(b, ')');
    if (p == nullptr) return 0;
    // Fields after the command name start with field 3.
    for (int field = 3; field <= 47; ++field) {
      p = std::strchr(p + 1, ' ');
      if (p == nullptr) return 0;
    }
    return std::strtoull(p + 1, nullptr, 10);
  }

  // Why running brk(value) could move this process's own break (a shrink
  // would free what malloc holds; a growth that fits below the next mapping
  // succeeds; a move inside the break's page changes it), or "".
  std::string brk_moves_me(uint64_t value, uint64_t start, uint64_t cur) {
    if (value >= start && value < cur) return "would shrink the child's own heap";
    const uint64_t newbrk = page_align(value), oldbrk = page_align(cur);
    if (value != cur && newbrk == oldbrk) return "would move the child's break within its page";
    if (value > cur && newbrk > oldbrk && newbrk <= kTaskSize) {
      uint64_t next = kTaskSize;
      for (const MapEntry& m : parse_proc_maps(read_maps()))
        if (m.end > oldbrk && m.start < next) next = std::max(m.start, oldbrk);
      if (newbrk + P <= next) return "would grow the child's own heap";
    }
    return "";
  }

 private:
  int fd_;
  std::vector<char> buf_;
  std::string out_;
};

long raw_call(const Case& c) {
  long r = -1;
  // int arguments are sign-extended, as glibc's wrappers pass them.
  switch (c.op) {
    case Op::mmap:
      r = ::syscall(SYS_mmap, c.addr, c.len, static_cast<long>(c.arg), static_cast<long>(c.flags),
                    static_cast<long>(c.fd), c.off);
      break;
    case Op::munmap: r = ::syscall(SYS_munmap, c.addr, c.len); break;
    case Op::mprotect: r = ::syscall(SYS_mprotect, c.addr, c.len, static_cast<long>(c.arg)); break;
    case Op::madvise: r = ::syscall(SYS_madvise, c.addr, c.len, static_cast<long>(c.arg)); break;
    case Op::mlock: r = ::syscall(SYS_mlock, c.addr, c.len); break;
    case Op::munlock: r = ::syscall(SYS_munlock, c.addr, c.len); break;
    case Op::mlock2: r = ::syscall(SYS_mlock2, c.addr, c.len, c.xflags); break;
    case Op::mlockall: r = ::syscall(SYS_mlockall, static_cast<long>(static_cast<int>(static_cast<uint32_t>(c.xflags)))); break;
    case Op::mseal: r = ::syscall(SYS_mseal, c.addr, c.len, c.xflags); break;
    case Op::msync: r = ::syscall(SYS_msync, c.addr, c.len, c.flags); break;
    case Op::mremap:
      if (c.seal_len != 0 && ::syscall(SYS_mseal, W + c.seal_off, c.seal_len, 0) != 0) return kSealFailed;
      r = ::syscall(SYS_mremap, c.addr, c.len, c.new_len, static_cast<long>(c.flags), c.new_addr);
      break;
    case Op::mincore:
    case Op::brk:
      break;  // child_main runs them
  }
  return r == -1 ? -errno : r;
}

// The kernel child's mincore vector (no allocation between the calls).
unsigned char g_vec[kVecBytes];

// Why the child must not run this mlockall at all, or "".
std::string mlockall_skip(const Case& c) {
  const int f = static_cast<int>(static_cast<uint32_t>(c.xflags));
  const bool valid = f != 0 && !(f & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)) && f != MCL_ONFAULT;
  if (!valid || !(f & MCL_CURRENT)) return "";
  if (!(f & MCL_ONFAULT)) return "mlockall(MCL_CURRENT) would fault in the whole test process";
  if (!host_facts().cap_ipc_lock) return "without CAP_IPC_LOCK the size of the whole test process decides MCL_CURRENT";
  return "";
}

// A call whose effect outlives it in the process (a seal, MCL_FUTURE):
// a child of the child makes it, reports as child_main would, and exits.
void run_in_grandchild(Child& ch, size_t i, const Case& c) {
  ch.flush();
  const pid_t pid = ::fork();
  if (pid < 0) ch.fail(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    const long ret = raw_call(c);
    const std::vector<std::string> after = window_lines(ch.read_maps());
    ch.send("R " + std::to_string(i) + " " + std::to_string(ret));
    for (const std::string& l : after) ch.send("M " + l);
    ch.send("E");
    ch.flush();
    ::_exit(0);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    ch.fail("case " + std::to_string(i) + ": the grandchild died (status " + std::to_string(status) + ")");
}

// Frames: "H <start_brk> <brk>" first, "B <line>" baseline maps; per case
// "R <i> <ret>", "V <mincore vector>", "M <line>"..., "E"; or "S <i> <why>"
// (skipped); "X <error>"; "D" at the end.
[[noreturn]] void child_main(const std::vector<Case>& cases, int out_fd) {
  Child ch(out_fd);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  struct rlimit no_core = {0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);

  for (const std::string& l : window_lines(ch.read_maps())) ch.fail("window is not empty in the child: " + l);
  const uint64_t start_brk = ch.start_brk();
  if (start_brk == 0) ch.fail("cannot read start_brk from /proc/self/stat");
  ch.send("H " + std::to_string(start_brk) + " " + std::to_string(::syscall(SYS_brk, 0)));
  ch.reset_layout();
  for (const std::string& l : window_lines(ch.read_maps())) ch.send("B " + l);

  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    std::optional<Range> r = reach(c);
    if (r && c.op == Op::mprotect) r = ch.mprotect_run(r->start, r->end, c.arg & PROT_GROWSDOWN);
    std::string why;
    if (r && c.op == Op::madvise && (c.arg == kMadvHwpoison || c.arg == kMadvSoftOffline)) {
      why = "memory-failure injection would act on real pages (with CONFIG_MEMORY_FAILURE)";
    } else if (c.op == Op::mmap && (c.flags & (MAP_POPULATE | MAP_LOCKED)) && page_align(c.len) > kMaxPopulate) {
      why = "would populate more than 64 MiB";
    } else if (r && mremap_populates_more_than(c, kMaxPopulate)) {
      why = "would populate more than 64 MiB (grows the locked VMA)";
    } else if (r) {
      std::string f = ch.foreign_in(r->start, r->end);
      if (std::optional<Range> d = mremap_destination(c); f.empty() && d) f = ch.foreign_in(d->start, d->end);
      if (!f.empty()) why = "would touch the child's own mapping " + f;
    } else if (std::optional<Range> m = mincore_reads(c)) {
      if (std::optional<Range> run = ch.mprotect_run(m->start, m->end, false)) {
        const std::string f = ch.foreign_in(run->start, run->end);
        if (!f.empty()) why = "would read the child's own mapping " + f;
        else if ((run->end - run->start) / P > kVecBytes) why = "would fill more than the vector";
      }
    } else if (std::optional<Range> w = msync_walks(c)) {
      const std::string f = ch.foreign_in(w->start, w->end);
      if (!f.empty()) why = "would walk the child's own mapping " + f;
    } else if (c.op == Op::brk) {
      const uint64_t cur = static_cast<uint64_t>(::syscall(SYS_brk, 0));
      why = ch.brk_moves_me(brk_value(c, start_brk, cur), start_brk, cur);
    } else if (c.op == Op::mlockall) {
      why = mlockall_skip(c);
    }
    if (!why.empty()) {
      ch.send("S " + std::to_string(i) + " " + why);
      continue;
    }
    if (c.op == Op::mlockall || (c.op == Op::mseal && r) || (c.op == Op::mremap && c.seal_len != 0)) {
      run_in_grandchild(ch, i, c);
      continue;
    }

    long ret;
    std::string vec;
    if (c.op == Op::mincore) {
      std::memset(g_vec, kVecUntouched, sizeof g_vec);
      ret = ::syscall(SYS_mincore, c.addr, c.len, c.flags == kVecNull ? nullptr : g_vec);
      if (ret == -1) ret = -errno;
      if (c.flags == kVecBuffer) vec = vec_text(g_vec, c.len);
    } else if (c.op == Op::brk) {
      const uint64_t old = static_cast<uint64_t>(::syscall(SYS_brk, 0));
      const uint64_t asked = brk_value(c, start_brk, old);
      ret = brk_encode(static_cast<uint64_t>(::syscall(SYS_brk, asked)), old, asked);
    } else {
      ret = raw_call(c);
    }
    std::vector<std::string> after = window_lines(ch.read_maps());
    if (c.op == Op::mmap && ret >= 0) {
      // Undo it: a hugetlb mapping by its VMA (its length was rounded up to
      // the huge page size), anything else by the length asked for.
      const uint64_t a = static_cast<uint64_t>(ret);
      uint64_t len = page_align(c.len);
      if (c.flags & MAP_HUGETLB) {
        len = 0;
        for (const MapEntry& m : parse_proc_maps(ch.read_maps()))
          if (m.start == a) len = m.end - m.start;
      }
      if (len == 0 || ::syscall(SYS_munmap, a, len) != 0)
        ch.fail("case " + std::to_string(i) + ": cannot unmap the new mapping at " + hex(a));
    }
    if (c.op == Op::mremap) {
      // What a move put outside the window: a FIXED destination (even when
      // the call failed after moving some pieces), a place the kernel chose.
      const uint64_t len = page_align(c.new_len);
      if (std::optional<Range> d = mremap_destination(c); d && leaves_window(d->start, len) &&
                                                           ::syscall(SYS_munmap, d->start, len) != 0)
        ch.fail("case " + std::to_string(i) + ": cannot unmap the destination at " + hex(d->start));
      if (ret >= 0 && leaves_window(static_cast<uint64_t>(ret), len) && ::syscall(SYS_munmap, ret, len) != 0)
        ch.fail("case " + std::to_string(i) + ": cannot unmap the moved mapping at " + hex(ret));
    }
    ch.reset_layout();
    ch.send("R " + std::to_string(i) + " " + std::to_string(ret));
    if (c.op == Op::mincore) ch.send("V " + vec);
    for (const std::string& l : after) ch.send("M " + l);
    ch.send("E");
  }
  ch.send("D");
  ch.flush();
  ::_exit(0);
}

struct KernelRun {
  std::string error;
  std::vector<std::string> baseline;
  std::vector<Outcome> outcomes;
  uint64_t start_brk = 0, brk = 0;  // the child's heap when it started
};

KernelRun run_kernel(const std::vector<Case>& cases) {
  KernelRun kr;
  kr.outcomes.resize(cases.size());
  (void)host_facts();  // probed here, not in the child (mlockall_skip reads it)
  rcu::barrier();  // idle the call_rcu worker before fork (see kernel_runner.cpp)
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    kr.error = std::string("pipe2: ") + std::strerror(errno);
    return kr;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    kr.error = std::string("fork: ") + std::strerror(errno);
    ::close(fds[0]);
    ::close(fds[1]);
    return kr;
  }
  if (pid == 0) {
    ::close(fds[0]);
    child_main(cases, fds[1]);
  }
  ::close(fds[1]);

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::string buf;
  bool done = false;
  long current = -1;
  size_t last = 0;
  char chunk[65536];
  while (!done && kr.error.empty()) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      kr.error = "kernel child timed out";
      break;
    }
    struct pollfd pfd = {fds[0], POLLIN, 0};
    int pr = ::poll(&pfd, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (pr < 0 && errno != EINTR) {
      kr.error = std::string("poll: ") + std::strerror(errno);
      break;
    }
    if (pr <= 0) continue;
    ssize_t n = ::read(fds[0], chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; !done && (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::string_view f(buf.data() + start, nl - start);
      if (f.starts_with("H ")) {
        std::string s(f.substr(2));
        kr.start_brk = std::stoull(s);
        kr.brk = std::stoull(s.substr(s.find(' ') + 1));
      } else if (f.starts_with("V ") && current >= 0) {
        kr.outcomes[static_cast<size_t>(current)].vec = std::string(f.substr(2));
      } else if (f.starts_with("B ")) {
        kr.baseline.emplace_back(f.substr(2));
      } else if (f.starts_with("R ")) {
        std::string s(f.substr(2));
        size_t sp = s.find(' ');
        current = std::stol(s.substr(0, sp));
        kr.outcomes[static_cast<size_t>(current)].ran = true;
        kr.outcomes[static_cast<size_t>(current)].ret = std::stol(s.substr(sp + 1));
        last = static_cast<size_t>(current);
      } else if (f.starts_with("M ") && current >= 0) {
        kr.outcomes[static_cast<size_t>(current)].maps.emplace_back(f.substr(2));
      } else if (f == "E") {
        current = -1;
      } else if (f.starts_with("S ")) {
        std::string s(f.substr(2));
        size_t sp = s.find(' ');
        last = std::stoul(s.substr(0, sp));
        kr.outcomes[last].note = s.substr(sp + 1);
      } else if (f.starts_with("X ")) {
        kr.error = "kernel child: " + std::string(f.substr(2));
      } else if (f == "D") {
        done = true;
      } else {
        kr.error = "garbled output from the kernel child: " + std::string(f);
      }
    }
    buf.erase(0, start);
  }
  if (!done) ::kill(pid, SIGKILL);
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (kr.error.empty() && !done) {
    kr.error = WIFSIGNALED(status) ? "kernel child killed by signal " + std::to_string(WTERMSIG(status))
                                   : "kernel child exited early (status " + std::to_string(WEXITSTATUS(status)) + ")";
    kr.error += "; last case reported: " + std::to_string(last) + " " + case_text(cases[last]);
  }
  return kr;
}

// ---------------------------------------------------------------------------
// The vmspace side.

// *vec: mincore's vector as compared (vec_text).
long api_call(AddressSpace& as, const Case& c, uint64_t start_brk, std::string* vec) {
  switch (c.op) {
    case Op::mmap: return as.mmap(c.addr, c.len, c.arg, c.flags, c.fd, c.off);
    case Op::munmap: return as.munmap(c.addr, c.len);
    case Op::mprotect: return as.mprotect(c.addr, c.len, c.arg);
    case Op::madvise: return as.madvise(c.addr, c.len, c.arg);
    case Op::mincore: {
      if (c.flags == kVecNull) return as.mincore(c.addr, c.len, nullptr);
      std::vector<unsigned char> buf(kVecBytes, kVecUntouched);
      const int r = as.mincore(c.addr, c.len, buf.data());
      *vec = vec_text(buf.data(), c.len);
      return r;
    }
    case Op::brk: {
      const uint64_t old = as.brk(0);
      const uint64_t asked = brk_value(c, start_brk, old);
      return brk_encode(as.brk(asked), old, asked);
    }
    case Op::mlock: return as.mlock(c.addr, c.len);
    case Op::munlock: return as.munlock(c.addr, c.len);
    case Op::mlock2: return as.mlock2(c.addr, c.len, static_cast<unsigned>(c.xflags));
    case Op::mlockall: return as.mlockall(static_cast<int>(static_cast<uint32_t>(c.xflags)));
    case Op::mseal: return as.mseal(c.addr, c.len, c.xflags);
    case Op::msync: return as.msync(c.addr, c.len, c.flags);
    case Op::mremap:
      if (c.seal_len != 0 && as.mseal(W + c.seal_off, c.seal_len, 0) != 0) return kSealFailed;
      return as.mremap(c.addr, c.len, c.new_len, c.flags, c.new_addr);
  }
  return 0;
}

// Returns "" or what went wrong.
std::string reset_layout(AddressSpace& as) {
  if (int r = as.munmap(W, kWindowSize); r != 0) return "munmap of the window: " + errno_name(-r);
  for (const LayoutMap& m : layout()) {
    long r = as.mmap(W + m.off, m.len, m.prot, m.flags | MAP_ANONYMOUS | MAP_FIXED);
    if (r != static_cast<long>(W + m.off)) return "layout mmap at W+" + hex(m.off) + ": " + result_text({}, r);
  }
  return "";
}

bool same_result(const Case& c, long k, long v) {
  if (k < 0 || v < 0 || (c.op != Op::mmap && c.op != Op::mremap)) return k == v;
  const uint64_t ka = static_cast<uint64_t>(k), va = static_cast<uint64_t>(v);
  if (c.op == Op::mremap) {
    // A move without FIXED goes where the kernel chooses, as a non-fixed
    // mmap does: outside the window on both sides, or the same address;
    // a DONTUNMAP hint the kernel took must be taken by vmspace too.
    if ((c.flags & MREMAP_FIXED) || in_window(ka) || in_window(va)) return ka == va;
    if ((c.flags & MREMAP_DONTUNMAP) && c.new_addr != 0 && ka == c.new_addr) return va == ka;
    return true;
  }
  if ((c.flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) || in_window(ka) || in_window(va)) return ka == va;
  // Where a search places a mapping outside the window depends on what
  // else the process has mapped (and on randomization).  But a hint the
  // kernel took is free in vmspace too (it has nothing else mapped), and
  // MAP_32BIT keeps both below 2 GiB.
  uint64_t hint = c.addr & kPageMask;  // round_hint_to_min
  if (hint != 0 && hint < host_facts().mmap_min_addr) hint = page_align(host_facts().mmap_min_addr);
  if (hint != 0 && ka == hint) return va == ka;
  if (c.flags & MAP_32BIT) return ka < (uint64_t{1} << 31) && va < (uint64_t{1} << 31);
  return true;
}

// Differences that need more than argument validation to remove: features
// vmspace does not model yet.  Each is narrow (the exact vmspace answer for
// the exact feature) so that anything else still fails.
const char* known_gap(const Case& c, long vm) {
  if (c.op == Op::madvise && vm == -EOPNOTSUPP && c.arg == kMadvCollapse)
    return "madvise COLLAPSE not modelled (vmspace: -EOPNOTSUPP)";
  if (c.op == Op::mmap && (c.flags & MAP_ANONYMOUS) && (c.flags & MAP_HUGETLB) && vm == -EINVAL)
    return "hugetlbfs not modelled (vmspace: MAP_HUGETLB -> -EINVAL)";
  return nullptr;
}

// VMSPACE_HOSTILE_VERBOSE=1 lists every known-gap and skipped case.
bool verbose() {
  const char* v = std::getenv("VMSPACE_HOSTILE_VERBOSE");
  return v != nullptr && *v != '\0' && *v != '0';
}

struct Tally {
  int cases = 0, skipped = 0, matched = 0, gaps = 0, mismatched = 0, partial = 0;
};

struct ModeRun {
  std::vector<long> ret;
  std::vector<std::vector<std::string>> maps;
  std::vector<std::string> vec;
  std::map<Op, Tally> tally;
  std::vector<std::string> mismatches;
  std::map<std::string, int> gaps;
  std::string setup_error;
};

ModeRun run_vmspace(LockMode mode, const std::vector<Case>& cases, const KernelRun& kr) {
  ModeRun run;
  run.ret.assign(cases.size(), 0);
  run.maps.resize(cases.size());
  run.vec.resize(cases.size());
  // The heap where the child's is: from its start to its break.
  AddressSpaceOptions opts = host_like_options(mode);
  opts.brk_start = kr.start_brk;
  AddressSpace as(opts);
  if (as.brk(kr.brk) != kr.brk) {
    run.setup_error = "cannot set the break to the child's (" + hex(kr.brk) + ")";
    return run;
  }
  const uint64_t heap_end = page_align(kr.brk);
  if (std::string e = reset_layout(as); !e.empty()) {
    run.setup_error = e;
    return run;
  }
  const std::vector<std::string> baseline = window_lines(as.maps());
  if (baseline != kr.baseline) {
    run.setup_error = "the layout's maps differ from the kernel's";
    return run;
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const Outcome& k = kr.outcomes[i];
    Tally& t = run.tally[c.op];
    ++t.cases;
    if (!k.ran) {
      ++t.skipped;
      continue;
    }
    // A seal is for good: an mseal that passes its argument checks runs
    // on a space of its own, set up the same way.  An mlockall is undone
    // by munlockall (MCL_FUTURE would lock the layout when it is mapped
    // again).
    std::unique_ptr<AddressSpace> own;
    if ((c.op == Op::mseal && reach(c)) || (c.op == Op::mremap && c.seal_len != 0)) {
      own = std::make_unique<AddressSpace>(opts);
      if (own->brk(kr.brk) != kr.brk || !reset_layout(*own).empty()) {
        run.setup_error = "cannot set up a space for " + case_text(c);
        return run;
      }
    }
    AddressSpace& on = own ? *own : as;
    std::string vec;
    const long v = api_call(on, c, kr.start_brk, &vec);
    std::vector<std::string> after = window_lines(on.maps());
    std::string why;
    const bool valid = on.validate(&why);
    std::string cleanup;
    if (c.op == Op::mlockall) on.munlockall();
    if (c.op == Op::mmap && v >= 0) {
      if (int u = as.munmap(static_cast<uint64_t>(v), page_align(c.len)); u != 0)
        cleanup = "munmap of the new mapping: " + errno_name(-u);
    }
    if (c.op == Op::mremap && !own) {  // as the kernel child does
      const uint64_t len = page_align(c.new_len);
      if (std::optional<Range> d = mremap_destination(c); d && leaves_window(d->start, len))
        if (int u = as.munmap(d->start, len); u != 0) cleanup = "munmap of the destination: " + errno_name(-u);
      if (v >= 0 && leaves_window(static_cast<uint64_t>(v), len))
        if (int u = as.munmap(static_cast<uint64_t>(v), len); u != 0)
          cleanup += "munmap of the moved mapping: " + errno_name(-u);
    }
    if (std::string e = reset_layout(as); !e.empty()) cleanup += e;
    for (const MapEntry& m : parse_proc_maps(as.maps()))
      if (!in_window(m.start) && !(m.start >= kr.start_brk && m.end <= heap_end))
        cleanup += " leftover mapping at " + hex(m.start);
    if (as.brk(0) != kr.brk) cleanup += " the break moved to " + hex(as.brk(0));
    run.ret[i] = v;
    run.maps[i] = after;
    run.vec[i] = vec;

    const bool same = same_result(c, k.ret, v) && after == k.maps && vec == k.vec;
    if (k.ret < 0 && k.maps != baseline) ++t.partial;
    if (same && valid && cleanup.empty()) {
      ++t.matched;
      continue;
    }
    if (valid && cleanup.empty()) {
      if (const char* gap = known_gap(c, v)) {
        ++t.gaps;
        ++run.gaps[gap];
        if (verbose())
          std::printf("  gap #%zu %s: kernel %s, vmspace %s\n", i, case_text(c).c_str(),
                      result_text(c, k.ret).c_str(), result_text(c, v).c_str());
        continue;
      }
    }
    ++t.mismatched;
    std::string m = "#" + std::to_string(i) + " " + case_text(c) + ": kernel " + result_text(c, k.ret) +
                    ", vmspace " + result_text(c, v);
    if (vec != k.vec) m += "; vector: kernel " + k.vec + ", vmspace " + vec;
    if (after != k.maps) {
      m += v < 0 && after != baseline && k.maps == baseline ? "; the failing call changed the maps"
                                                            : "; maps differ";
      m += "\n      kernel maps:";
      for (const auto& l : k.maps) m += "\n        " + l;
      m += "\n      vmspace maps:";
      for (const auto& l : after) m += "\n        " + l;
    }
    if (!valid) m += "; validate() failed: " + why;
    if (!cleanup.empty()) m += "; " + cleanup;
    run.mismatches.push_back(m);
  }
  return run;
}

bool host_uses_5_level_paging() {
  // A hint above 47 bits is honoured only with 5-level paging.
  void* p = ::mmap(reinterpret_cast<void*>(uint64_t{1} << 50), P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  ::munmap(p, P);
  return reinterpret_cast<uint64_t>(p) >= (uint64_t{1} << 47);
}

TEST(unit_api_hostile, EveryEntryPointMatchesTheHostKernel) {
  if (!kernel_runner_available()) GTEST_SKIP() << "kernel runner unavailable in this build (ThreadSanitizer)";
  if (host_uses_5_level_paging()) GTEST_SKIP() << "the host uses 5-level paging; vmspace models a 47-bit task size";
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<Case> cases = build_table();
  const KernelRun kr = run_kernel(cases);
  ASSERT_TRUE(kr.error.empty()) << kr.error;
  ASSERT_FALSE(kr.baseline.empty());
  const auto t1 = std::chrono::steady_clock::now();
  std::printf("%s\n", host_facts_line(host_facts()).c_str());
  std::printf("hostile-argument table: %zu cases; kernel child %.2f s\n", cases.size(),
              std::chrono::duration<double>(t1 - t0).count());

  std::vector<ModeRun> runs;
  for (LockMode mode : kAllLockModes) {
    const auto m0 = std::chrono::steady_clock::now();
    runs.push_back(run_vmspace(mode, cases, kr));
    const ModeRun& run = runs.back();
    ASSERT_TRUE(run.setup_error.empty()) << lock_mode_name(mode) << ": " << run.setup_error;
    std::printf("%s (%.2f s):\n", std::string(lock_mode_name(mode)).c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - m0).count());
    for (const auto& [op, t] : run.tally)
      std::printf("  %-9s %5d cases: %5d match, %4d skipped on the host, %4d known gaps, %3d mismatches"
                  " (%d failing calls Linux committed partially)\n",
                  kOpNames[static_cast<int>(op)], t.cases, t.matched, t.skipped, t.gaps, t.mismatched, t.partial);
    for (const auto& [gap, n] : run.gaps) std::printf("  known gap x%d: %s\n", n, gap.c_str());
    for (const std::string& m : run.mismatches) std::printf("  MISMATCH %s\n", m.c_str());
    EXPECT_TRUE(run.mismatches.empty()) << run.mismatches.size() << " cases differ from the host kernel in "
                                        << lock_mode_name(mode);
  }
  // Skipped cases, once: why the child did not run them.
  std::map<std::string, int> skip_reasons;
  for (size_t i = 0; i < cases.size(); ++i)
    if (!kr.outcomes[i].ran && verbose())
      std::printf("skipped #%zu %s: %s\n", i, case_text(cases[i]).c_str(), kr.outcomes[i].note.c_str());
  for (const Outcome& o : kr.outcomes)
    if (!o.ran) ++skip_reasons[o.note.substr(0, o.note.find(" 0x") == std::string::npos ? o.note.size()
                                                                                           : o.note.find(" 0x"))];
  for (const auto& [why, n] : skip_reasons) std::printf("skipped x%d: %s\n", n, why.c_str());
  // The lock modes must not differ from each other either.
  for (size_t m = 1; m < runs.size(); ++m)
    for (size_t i = 0; i < cases.size(); ++i) {
      if (!kr.outcomes[i].ran) continue;
      EXPECT_TRUE(runs[m].ret[i] == runs[0].ret[i] && runs[m].maps[i] == runs[0].maps[i] &&
                  runs[m].vec[i] == runs[0].vec[i])
            << "#" << i << " " << case_text(cases[i]) << ": " << lock_mode_name(kAllLockModes[m]) << " gives "
            << result_text(cases[i], runs[m].ret[i]) << ", " << lock_mode_name(kAllLockModes[0]) << " gives "
            << result_text(cases[i], runs[0].ret[i]);
    }
  std::printf("total %.2f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace
}  // namespace vmspace::opscript
