// linux_abi.h: the script's portable flag bits as Linux's syscall values,
// shared by every executor that calls a Linux-shaped API (the host kernel,
// the vmspace AddressSpace).
#pragma once

#include <cstdint>
#include <functional>

#include "opscript/result.h"
#include "opscript/script.h"

namespace vmspace::opscript {

int mmap_flags_to_linux(unsigned flags);    // mmap_flag::* -> MAP_*
int mremap_flags_to_linux(unsigned flags);  // mremap_flag::* -> MREMAP_*
int advice_to_linux(Advice a);              // Advice -> MADV_*
int mlockall_flags_to_linux(unsigned flags);  // mlockall_flag::* -> MCL_*

// mincore of [addr, addr + len) as op scripts report it, made with `call`
// (a Linux-shaped mincore: 0 or -errno, one byte a page into `vec`) over
// pieces of at most kMincorePiecePages pages, so the vector buffer stays
// small however long the range is. Equivalent to one call because the op
// reports only the errno on failure: the first piece that fails gives the
// errno the whole call would (the kernel itself walks 4096 pages at a time
// and stops at the first hole). The result has bit 0 of every byte, as
// '0'/'1'; len 0 makes one call with len 0 (alignment is still checked).
inline constexpr uint64_t kMincorePiecePages = 65536;
OpResult mincore_in_pieces(uint64_t addr, uint64_t len,
                           const std::function<int(uint64_t addr, uint64_t len, unsigned char* vec)>& call);

}  // namespace vmspace::opscript
