// result.h: result values of operations and their exact text
// (docs/op-scripts.md, "Operations" and "Maps lines").
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "opscript/script.h"

namespace vmspace::opscript {

enum class FaultKind {
  kSegvMaperr,  // SEGV_MAPERR
  kSegvAccerr,  // SEGV_ACCERR (and any other SIGSEGV code)
  kSigbus,      // any SIGBUS
};

// The outcome of one operation, as an executor reports it. Addresses are
// absolute; formatting makes them window-relative.
struct OpResult {
  enum class Kind {
    kOk,           // "= 0"
    kAddress,      // "= @+0x..." or "= outside"         (value: address)
    kError,        // "= -EXXX"                          (value: errno)
    kFault,        // "= SEGV_MAPERR @+0x..." etc.       (value: page address)
    kHash,         // "= fnv1a64 0x<16 hex digits>"      (value: hash)
    kUnsupported,  // "= unsupported"
    kVector,       // "= 0 1101", "= 0" when empty       (bits: one '0' or '1' a page)
  };
  Kind kind = Kind::kOk;
  uint64_t value = 0;
  FaultKind fault = FaultKind::kSegvMaperr;
  std::string bits;  // kVector: mincore's residency, one '0' or '1' a page

  static OpResult ok() { return {}; }
  static OpResult address(uint64_t a) { return {Kind::kAddress, a, {}, {}}; }
  static OpResult error(int err) { return {Kind::kError, static_cast<uint64_t>(err), {}, {}}; }
  static OpResult fault_at(FaultKind f, uint64_t page) { return {Kind::kFault, page, f, {}}; }
  static OpResult hash(uint64_t h) { return {Kind::kHash, h, {}, {}}; }
  static OpResult unsupported() { return {Kind::kUnsupported, 0, {}, {}}; }
  static OpResult vector(std::string bits) { return {Kind::kVector, 0, {}, std::move(bits)}; }

  friend bool operator==(const OpResult&, const OpResult&) = default;
};

// One mapping as an executor reports it (absolute addresses).
struct MapEntry {
  uint64_t start = 0;
  uint64_t end = 0;
  std::string perms;    // four characters, as /proc/self/maps: "rw-p", "r--s"
  uint64_t offset = 0;  // file offset for file mappings, 0 for anonymous ones
  std::string name;     // declared file name, or "[anon]"
};

// FNV-1a 64-bit, as `read` reports it.
inline constexpr uint64_t kFnvOffsetBasis = 0xcbf29ce484222325ULL;
inline constexpr uint64_t kFnvPrime = 0x100000001b3ULL;
inline uint64_t fnv1a64_update(uint64_t h, const unsigned char* p, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= kFnvPrime;
  }
  return h;
}

// Lower-case hex without leading zeros, with "0x": 0 -> "0x0".
std::string hex(uint64_t v);
// "@+0x..." when inside the window, "outside" otherwise.
std::string window_addr(uint64_t absolute, const Window& w);
// Symbolic errno name as glibc's strerrorname_np gives it ("EINVAL"); for an
// errno glibc does not know, "E<number>".
std::string errno_name(int err);
// The text after "N: ": "= 0", "= @+0x3000", "= -ENOMEM", "= 0 1101", ...
std::string format_result(const OpResult& r, const Window& w);
// "N: = ..." for the op with 1-based index `index`.
std::string format_op_line(size_t index, const OpResult& r, const Window& w);
// "@+0x<start>-@+0x<end> <perms> 0x<offset> <name>"; the entry must already
// be clipped to the window (see window_maps).
std::string format_map_line(const MapEntry& e, const Window& w);
// The mappings that lie inside the window, clipped to it, in address order.
std::vector<MapEntry> window_maps(std::vector<MapEntry> all, const Window& w);

inline constexpr const char* kFinalMapsHeader = "final maps:";
// "final maps NAME:", the header of another space's final maps (op scripts 1.1).
std::string final_maps_header(const std::string& space);

}  // namespace vmspace::opscript
