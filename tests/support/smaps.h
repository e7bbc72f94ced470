// SPDX-License-Identifier: MIT
// smaps.h - reading one figure out of AddressSpace::smaps() in tests.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "vmspace/address_space.h"

namespace vmspace::test {

// The line starting with `key` ("Rss:", "VmFlags:") in the smaps block of
// the VMA that starts at `start`; "<no VMA>" or "<no KEY>" if absent.
inline std::string smaps_line(const AddressSpace& as, std::uint64_t start, const std::string& key) {
  const std::string text = as.smaps();
  char head[40];
  std::snprintf(head, sizeof head, "%llx-", static_cast<unsigned long long>(start));
  const std::size_t at = text.find(head);
  if (at == std::string::npos || (at != 0 && text[at - 1] != '\n')) return "<no VMA>";
  std::size_t pos = text.find('\n', at) + 1;
  while (pos < text.size()) {
    const std::size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl - pos);
    if (line.compare(0, key.size(), key) == 0) return line;
    if (line.compare(0, 8, "VmFlags:") == 0) break;  // the block's last line
    pos = nl + 1;
  }
  return "<no " + key + ">";
}

// The kB figure of `key` ("Private_Dirty:") of the VMA at `start`, or -1.
inline long smaps_kb(const AddressSpace& as, std::uint64_t start, const std::string& key) {
  const std::string line = smaps_line(as, start, key);
  if (line.compare(0, key.size(), key) != 0) return -1;
  return std::stol(line.substr(key.size()));
}

}  // namespace vmspace::test
