// SPDX-License-Identifier: MIT
// vm_flags.h - VMA flag bits, with Linux's VM_* values so that dumps read
// the same.  The syscall ABI constants (PROT_*, MAP_*, MADV_*) come from
// <sys/mman.h>: the library's entry points take Linux's own values.
#pragma once

#include <sys/mman.h>

#include <cstdint>

namespace vmspace::mm {

using vm_flags_t = std::uint64_t;

inline constexpr vm_flags_t VM_NONE = 0;
inline constexpr vm_flags_t VM_READ = 0x00000001;
inline constexpr vm_flags_t VM_WRITE = 0x00000002;
inline constexpr vm_flags_t VM_EXEC = 0x00000004;
inline constexpr vm_flags_t VM_SHARED = 0x00000008;
inline constexpr vm_flags_t VM_MAYREAD = 0x00000010;
inline constexpr vm_flags_t VM_MAYWRITE = 0x00000020;
inline constexpr vm_flags_t VM_MAYEXEC = 0x00000040;
inline constexpr vm_flags_t VM_MAYSHARE = 0x00000080;
inline constexpr vm_flags_t VM_GROWSDOWN = 0x00000100;
inline constexpr vm_flags_t VM_PFNMAP = 0x00000400;
inline constexpr vm_flags_t VM_LOCKED = 0x00002000;
inline constexpr vm_flags_t VM_IO = 0x00004000;
inline constexpr vm_flags_t VM_SEQ_READ = 0x00008000;
inline constexpr vm_flags_t VM_RAND_READ = 0x00010000;
inline constexpr vm_flags_t VM_DONTCOPY = 0x00020000;
inline constexpr vm_flags_t VM_DONTEXPAND = 0x00040000;
inline constexpr vm_flags_t VM_LOCKONFAULT = 0x00080000;
inline constexpr vm_flags_t VM_ACCOUNT = 0x00100000;
inline constexpr vm_flags_t VM_NORESERVE = 0x00200000;
inline constexpr vm_flags_t VM_HUGETLB = 0x00400000;
inline constexpr vm_flags_t VM_SYNC = 0x00800000;
inline constexpr vm_flags_t VM_WIPEONFORK = 0x02000000;
inline constexpr vm_flags_t VM_DONTDUMP = 0x04000000;
inline constexpr vm_flags_t VM_SOFTDIRTY = 0x08000000;
inline constexpr vm_flags_t VM_MIXEDMAP = 0x10000000;
inline constexpr vm_flags_t VM_HUGEPAGE = 0x20000000;
inline constexpr vm_flags_t VM_NOHUGEPAGE = 0x40000000;
inline constexpr vm_flags_t VM_MERGEABLE = 0x80000000;
inline constexpr vm_flags_t VM_DROPPABLE = vm_flags_t{1} << 36;  // VM_HIGH_ARCH_4 (64-bit)
inline constexpr vm_flags_t VM_SEALED = vm_flags_t{1} << 42;     // mseal (64-bit)

inline constexpr vm_flags_t VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC;
inline constexpr vm_flags_t VM_MAY_FLAGS = VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
// Never merged with anything (Linux VM_SPECIAL).
inline constexpr vm_flags_t VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP;
// Ignored when deciding whether two VMAs may merge (Linux VM_IGNORE_MERGE).
inline constexpr vm_flags_t VM_IGNORE_MERGE = VM_SOFTDIRTY;
// Flags mlock manages (Linux VM_LOCKED_MASK).
inline constexpr vm_flags_t VM_LOCKED_MASK = VM_LOCKED | VM_LOCKONFAULT;

// PROT_* bits to VM_READ/WRITE/EXEC (Linux calc_vm_prot_bits): mmap and
// mprotect both translate with it.
inline vm_flags_t calc_vm_prot_bits(int prot) {
  vm_flags_t f = 0;
  if (prot & PROT_READ) f |= VM_READ;
  if (prot & PROT_WRITE) f |= VM_WRITE;
  if (prot & PROT_EXEC) f |= VM_EXEC;
  return f;
}

}  // namespace vmspace::mm
