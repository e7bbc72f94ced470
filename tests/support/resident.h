// SPDX-License-Identifier: MIT
// resident.h - this process's resident memory, for tests that check what
// an object commits (a frame pool, an AddressSpace) before it is used.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>

namespace vmspace::test {

// Resident memory of this process in bytes (/proc/self/statm), 0 if
// unreadable.
inline std::uint64_t resident_bytes() {
  unsigned long size = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace vmspace::test
