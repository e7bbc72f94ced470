// script.h: the parsed form of an op script (docs/op-scripts.md, version 1
// and the version 1.1 additions).
//
// Addresses are window-relative: the runner chooses the window base and the
// same base is used by every side (host kernel, vmspace AddressSpace).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vmspace::opscript {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kDefaultWindowBase = 0x200000000000ULL;
inline constexpr uint64_t kWindowSize = 1ULL << 40;  // 1 TiB

// The window: [base, base + kWindowSize).
struct Window {
  uint64_t base = kDefaultWindowBase;

  uint64_t end() const { return base + kWindowSize; }
  bool contains(uint64_t a) const { return a >= base && a - base < kWindowSize; }
  // True when [a, a + len) lies inside the window (len 0: a itself, or the
  // window end, which is still "inside" as an empty range's end).
  bool contains_range(uint64_t a, uint64_t len) const {
    return a >= base && a - base <= kWindowSize && len <= kWindowSize - (a - base);
  }
};

// `@`, `@+N`, or `-` (NULL).
struct Addr {
  bool is_null = true;
  uint64_t offset = 0;  // relative to the window base; meaningless when null

  static Addr null() { return {}; }
  static Addr at(uint64_t off) { return Addr{false, off}; }
  // Absolute address for a given window (NULL -> 0). Wraps modulo 2^64.
  uint64_t absolute(const Window& w) const { return is_null ? 0 : w.base + offset; }
  friend bool operator==(const Addr&, const Addr&) = default;
};

// PROT bits (same values as PROT_READ/PROT_WRITE/PROT_EXEC).
namespace prot {
inline constexpr unsigned kRead = 1;
inline constexpr unsigned kWrite = 2;
inline constexpr unsigned kExec = 4;
}  // namespace prot

// mmap FLAGS (portable bits; executors translate them).
namespace mmap_flag {
inline constexpr unsigned kPrivate = 1u << 0;
inline constexpr unsigned kShared = 1u << 1;
inline constexpr unsigned kAnon = 1u << 2;
inline constexpr unsigned kFixed = 1u << 3;
inline constexpr unsigned kNoreplace = 1u << 4;  // MAP_FIXED_NOREPLACE
inline constexpr unsigned kPopulate = 1u << 5;
inline constexpr unsigned kGrowsdown = 1u << 6;
inline constexpr unsigned kNoreserve = 1u << 7;
inline constexpr unsigned kLocked = 1u << 8;
}  // namespace mmap_flag

// mremap FLAGS.
namespace mremap_flag {
inline constexpr unsigned kMaymove = 1u << 0;
inline constexpr unsigned kFixed = 1u << 1;
inline constexpr unsigned kDontunmap = 1u << 2;
}  // namespace mremap_flag

// mlockall FLAGS (same values as MCL_CURRENT/MCL_FUTURE/MCL_ONFAULT).
namespace mlockall_flag {
inline constexpr unsigned kCurrent = 1u << 0;
inline constexpr unsigned kFuture = 1u << 1;
inline constexpr unsigned kOnfault = 1u << 2;
}  // namespace mlockall_flag

// The address space every script starts in (op scripts 1.1).
inline constexpr const char* kMainSpace = "main";

enum class Advice {
  kNormal,
  kRandom,
  kSequential,
  kWillneed,
  kDontneed,
  kFree,
  kDontfork,
  kDofork,
  kDontdump,
  kDodump,
  // op scripts 1.1
  kRemove,
  kCold,
  kPageout,
  kWipeonfork,
  kKeeponfork,
  kHugepage,
  kNohugepage,
  kPopulateRead,
  kPopulateWrite,
  kGuardInstall,
  kGuardRemove,
  kDontneedLocked,
};

// Every Advice, in declaration order (the version 1 values first).
inline constexpr Advice kAllAdvice[] = {
    Advice::kNormal,       Advice::kRandom,        Advice::kSequential,   Advice::kWillneed,
    Advice::kDontneed,     Advice::kFree,          Advice::kDontfork,     Advice::kDofork,
    Advice::kDontdump,     Advice::kDodump,        Advice::kRemove,       Advice::kCold,
    Advice::kPageout,      Advice::kWipeonfork,    Advice::kKeeponfork,   Advice::kHugepage,
    Advice::kNohugepage,   Advice::kPopulateRead,  Advice::kPopulateWrite, Advice::kGuardInstall,
    Advice::kGuardRemove,  Advice::kDontneedLocked,
};

enum class OpKind {
  kMmap,
  kMunmap,
  kMprotect,
  kMadvise,
  kMremap,
  kMlock,
  kMunlock,
  kMlock2,
  kFile,
  kFtruncate,
  kWrite,
  kRead,
  kMaps,
  // op scripts 1.1
  kFork,
  kUse,
  kMlockall,
  kMunlockall,
  kMseal,
  kMincore,
};

// Every OpKind, in declaration order.
inline constexpr OpKind kAllOpKinds[] = {
    OpKind::kMmap,  OpKind::kMunmap,   OpKind::kMprotect, OpKind::kMadvise,  OpKind::kMremap,
    OpKind::kMlock, OpKind::kMunlock,  OpKind::kMlock2,   OpKind::kFile,     OpKind::kFtruncate,
    OpKind::kWrite, OpKind::kRead,     OpKind::kMaps,     OpKind::kFork,     OpKind::kUse,
    OpKind::kMlockall, OpKind::kMunlockall, OpKind::kMseal, OpKind::kMincore,
};

// One operation. Which fields are meaningful depends on `kind`:
//   mmap      addr len prot flags [file offset]   (has_file)
//   munmap    addr len
//   mprotect  addr len prot
//   madvise   addr len advice
//   mremap    addr(OLD) len(OLDLEN) new_len flags [new_addr]
//   mlock, munlock  addr len
//   mlock2    addr len onfault
//   file, ftruncate  file len(SIZE)
//   write     addr len byte
//   read      addr len
//   maps      -
//   fork, use  space(NAME)
//   mlockall  flags (mlockall_flag::*)
//   munlockall -
//   mseal, mincore  addr len
struct Op {
  OpKind kind = OpKind::kMaps;
  int line = 0;  // 1-based line in the script text
  Addr addr;
  uint64_t len = 0;
  uint64_t new_len = 0;
  Addr new_addr;
  unsigned prot = 0;
  unsigned flags = 0;  // mmap_flag::*, mremap_flag::* or mlockall_flag::*
  Advice advice = Advice::kNormal;
  bool has_file = false;
  std::string file;
  uint64_t offset = 0;
  uint8_t byte = 0;
  bool onfault = false;
  std::string space;  // fork, use: the address space's NAME

  friend bool operator==(const Op&, const Op&) = default;
};

struct Script {
  std::vector<Op> ops;
};

// Names used in the script text (also used by tests and diagnostics).
const char* op_name(OpKind k);
const char* advice_name(Advice a);

}  // namespace vmspace::opscript
