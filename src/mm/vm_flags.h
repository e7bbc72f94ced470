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
// The VMA may hold guard markers (MADV_GUARD_INSTALL sets it on the whole
// VMA; nothing clears it).  Linux 6.18.37+ (backported from 6.19; smaps
// "gu"); vmspace models 6.18.44, which has it.  Sticky, see VM_STICKY.
inline constexpr vm_flags_t VM_MAYBE_GUARD = 0x00000800;
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
inline constexpr vm_flags_t VM_DROPPABLE = vm_flags_t{1} << 40;  // VM_DROPPABLE_BIT (64-bit)
inline constexpr vm_flags_t VM_SEALED = vm_flags_t{1} << 42;     // mseal (64-bit)
// x86 protection-key bits (VM_PKEY_BIT0..3 = VM_HIGH_ARCH_0..3).  vmspace
// uses one key: the execute-only key Linux gives PROT_EXEC-only memory on
// CPUs with protection keys (MmConfig::exec_only_pkey); Linux's first
// allocated key is 1, so it is bit 0 of the field.
inline constexpr vm_flags_t VM_PKEY_BIT0 = vm_flags_t{1} << 32;
inline constexpr vm_flags_t VM_PKEY_MASK = vm_flags_t{0xf} << 32;
inline constexpr vm_flags_t VM_PKEY_EXEC_ONLY = VM_PKEY_BIT0;

inline constexpr vm_flags_t VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC;
inline constexpr vm_flags_t VM_MAY_FLAGS = VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
// Never merged with anything (Linux VM_SPECIAL).
inline constexpr vm_flags_t VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP;
// Sticky flags (Linux 6.18.37+ VM_STICKY): ignored when deciding whether
// two VMAs may merge, and kept by the merged VMA if any VMA in the merge
// had them (vma.cpp commit_merge; vma_modify_flags reports them back).
inline constexpr vm_flags_t VM_STICKY = VM_SOFTDIRTY | VM_MAYBE_GUARD;
// Ignored when deciding whether two VMAs may merge (Linux VM_IGNORE_MERGE).
inline constexpr vm_flags_t VM_IGNORE_MERGE = VM_STICKY;
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
