// SPDX-License-Identifier: MIT
// consumer.cpp - a C++ program using an installed vmspace through
// vmspace/address_space.h (tests/consumer/run.sh builds it with
// find_package(vmspace), static and shared): map, write, read, mprotect,
// a fault result, maps.
#include <sys/mman.h>

#include <cstdio>
#include <cstring>

#include <vmspace/address_space.h>
#include <vmspace/version.h>

int main() {
  vmspace::AddressSpace as({.mode = vmspace::LockMode::per_vma_refcount, .phys_bytes = 16ull << 20,
                            .phys_pretouch = false});
  long a = as.mmap(0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  if (a < 0) return std::fprintf(stderr, "mmap: %ld\n", a), 1;
  char buf[16] = {};
  if (!as.write(a + 4096, "from C++", 9).ok() || !as.read(a + 4096, buf, 9).ok() || std::strcmp(buf, "from C++") != 0)
    return std::fprintf(stderr, "write/read failed\n"), 1;
  if (int r = as.mprotect(a + 4096, 4096, PROT_READ); r != 0) return std::fprintf(stderr, "mprotect: %d\n", r), 1;
  vmspace::AccessResult f = as.write(a + 4096 + 8, "x", 1);
  if (f.fault != vmspace::Fault::segv_accerr || f.addr != static_cast<std::uint64_t>(a) + 4096 + 8 || f.done != 0)
    return std::fprintf(stderr, "write to read-only: %s\n", vmspace::fault_name(f.fault)), 1;
  std::printf("vmspace %s: write to read-only page 0x%llx: %s\n", vmspace::kVersion,
              static_cast<unsigned long long>(f.addr), vmspace::fault_name(f.fault));
  std::fputs(as.maps().c_str(), stdout);
  return 0;
}
