// linux_abi.h: the script's portable flag bits as Linux's syscall values,
// shared by every executor that calls a Linux-shaped API (the host kernel,
// the vmspace AddressSpace).
#pragma once

#include "opscript/script.h"

namespace vmspace::opscript {

int mmap_flags_to_linux(unsigned flags);    // mmap_flag::* -> MAP_*
int mremap_flags_to_linux(unsigned flags);  // mremap_flag::* -> MREMAP_*
int advice_to_linux(Advice a);              // Advice -> MADV_*

}  // namespace vmspace::opscript
