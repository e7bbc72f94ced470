// SPDX-License-Identifier: MIT
// loader.h - loading a static x86-64 Linux executable into an AddressSpace
// as Linux's binfmt_elf does for an ET_EXEC without an interpreter: its
// PT_LOAD segments, the program break after them, and a stack holding
// argc, argv, an empty envp and the auxiliary vector.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "vmspace/address_space.h"

namespace unicorn_linux {

// A file that cannot be run (no such file, not an ELF, not a static
// x86-64 executable): the message says which, for the user.
struct LoadError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Segment {
  std::uint64_t vaddr = 0, memsz = 0;  // where it goes, its size in memory
  std::uint64_t offset = 0, filesz = 0;  // its bytes in the file
  int prot = 0;                          // PROT_* from p_flags
};

struct ElfImage {
  std::uint64_t entry = 0;
  // The program headers in guest memory (AT_PHDR; 0 when no segment loads
  // them), their count and size (AT_PHNUM, AT_PHENT).
  std::uint64_t phdr = 0, phnum = 0, phent = 0;
  std::vector<Segment> segments;
  std::vector<unsigned char> file;  // the whole file
  // Linux's start_brk without randomization: the page after the highest
  // segment end.
  std::uint64_t brk_start() const;
};

// Read and check `path`.  Throws LoadError.
ElfImage read_elf(const std::string& path);

// Map the segments into `as` (MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
// read-write, the file bytes written, then each segment's protection).
// Throws LoadError when vmspace refuses (the message has the -errno).
void map_segments(vmspace::AddressSpace& as, const ElfImage& image);

// The initial stack as Linux's create_elf_tables() lays it out: a
// MAP_GROWSDOWN mapping ending at the top of user space, with the argument
// strings, the platform string and AT_RANDOM's 16 bytes at the top, then
// (16-byte aligned, from the returned stack pointer up) argc, argv[],
// NULL, envp NULL (an empty environment), and the auxiliary vector
// (AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_ENTRY, the host's ids,
// AT_SECURE, AT_RANDOM, AT_EXECFN, AT_PLATFORM, AT_CLKTCK, AT_NULL), which
// is what a static glibc program needs to start.  Returns the initial RSP.
std::uint64_t build_stack(vmspace::AddressSpace& as, const ElfImage& image,
                          const std::vector<std::string>& argv);

}  // namespace unicorn_linux
