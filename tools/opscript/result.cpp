#include "opscript/result.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace vmspace::opscript {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string window_addr(uint64_t absolute, const Window& w) {
  if (!w.contains(absolute)) return "outside";
  return "@+" + hex(absolute - w.base);
}

std::string errno_name(int err) {
  if (const char* n = strerrorname_np(err)) return n;
  return "E" + std::to_string(err);
}

std::string format_result(const OpResult& r, const Window& w) {
  switch (r.kind) {
    case OpResult::Kind::kOk:
      return "= 0";
    case OpResult::Kind::kAddress:
      return "= " + window_addr(r.value, w);
    case OpResult::Kind::kError:
      return "= -" + errno_name(static_cast<int>(r.value));
    case OpResult::Kind::kFault: {
      const char* name = r.fault == FaultKind::kSegvMaperr   ? "SEGV_MAPERR"
                         : r.fault == FaultKind::kSegvAccerr ? "SEGV_ACCERR"
                                                             : "SIGBUS";
      return std::string("= ") + name + " " + window_addr(r.value, w);
    }
    case OpResult::Kind::kHash: {
      char buf[40];
      std::snprintf(buf, sizeof buf, "= fnv1a64 0x%016llx", static_cast<unsigned long long>(r.value));
      return buf;
    }
    case OpResult::Kind::kUnsupported:
      return "= unsupported";
    case OpResult::Kind::kVector:
      return r.bits.empty() ? "= 0" : "= 0 " + r.bits;
  }
  return "= unsupported";
}

std::string final_maps_header(const std::string& space) { return "final maps " + space + ":"; }

std::string format_op_line(size_t index, const OpResult& r, const Window& w) {
  return std::to_string(index) + ": " + format_result(r, w);
}

std::string format_map_line(const MapEntry& e, const Window& w) {
  std::string s = "@+" + hex(e.start - w.base) + "-@+" + hex(e.end - w.base) + " ";
  s += e.perms;
  s += " ";
  s += hex(e.offset);
  s += " ";
  s += e.name;
  return s;
}

std::vector<MapEntry> window_maps(std::vector<MapEntry> all, const Window& w) {
  std::vector<MapEntry> out;
  for (auto& e : all) {
    if (e.end <= w.base || e.start >= w.end() || e.end <= e.start) continue;
    if (e.start < w.base) {
      // Clip the part below the window; a file offset moves with the start.
      if (e.name != "[anon]") e.offset += w.base - e.start;
      e.start = w.base;
    }
    if (e.end > w.end()) e.end = w.end();
    out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(), [](const MapEntry& a, const MapEntry& b) { return a.start < b.start; });
  return out;
}

}  // namespace vmspace::opscript
