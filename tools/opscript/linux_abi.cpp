// linux_abi.cpp
#include "opscript/linux_abi.h"
#include "vmspace/mman.h"

#include <sys/mman.h>

#include <algorithm>

#include <vector>

namespace vmspace::opscript {

int mmap_flags_to_linux(unsigned f) {
  int r = 0;
  if (f & mmap_flag::kPrivate) r |= MAP_PRIVATE;
  if (f & mmap_flag::kShared) r |= MAP_SHARED;
  if (f & mmap_flag::kAnon) r |= MAP_ANONYMOUS;
  if (f & mmap_flag::kFixed) r |= MAP_FIXED;
  if (f & mmap_flag::kNoreplace) r |= MAP_FIXED_NOREPLACE;
  if (f & mmap_flag::kPopulate) r |= MAP_POPULATE;
  if (f & mmap_flag::kGrowsdown) r |= MAP_GROWSDOWN;
  if (f & mmap_flag::kNoreserve) r |= MAP_NORESERVE;
  if (f & mmap_flag::kLocked) r |= MAP_LOCKED;
  return r;
}

int mremap_flags_to_linux(unsigned f) {
  int r = 0;
  if (f & mremap_flag::kMaymove) r |= MREMAP_MAYMOVE;
  if (f & mremap_flag::kFixed) r |= MREMAP_FIXED;
  if (f & mremap_flag::kDontunmap) r |= MREMAP_DONTUNMAP;
  return r;
}

int advice_to_linux(Advice a) {
  switch (a) {
    case Advice::kNormal: return MADV_NORMAL;
    case Advice::kRandom: return MADV_RANDOM;
    case Advice::kSequential: return MADV_SEQUENTIAL;
    case Advice::kWillneed: return MADV_WILLNEED;
    case Advice::kDontneed: return MADV_DONTNEED;
    case Advice::kFree: return MADV_FREE;
    case Advice::kDontfork: return MADV_DONTFORK;
    case Advice::kDofork: return MADV_DOFORK;
    case Advice::kDontdump: return MADV_DONTDUMP;
    case Advice::kDodump: return MADV_DODUMP;
    case Advice::kRemove: return MADV_REMOVE;
    case Advice::kCold: return 20;            // MADV_COLD
    case Advice::kPageout: return 21;         // MADV_PAGEOUT
    case Advice::kWipeonfork: return MADV_WIPEONFORK;
    case Advice::kKeeponfork: return MADV_KEEPONFORK;
    case Advice::kHugepage: return MADV_HUGEPAGE;
    case Advice::kNohugepage: return MADV_NOHUGEPAGE;
    case Advice::kPopulateRead: return 22;    // MADV_POPULATE_READ
    case Advice::kPopulateWrite: return 23;   // MADV_POPULATE_WRITE
    case Advice::kGuardInstall: return 102;   // MADV_GUARD_INSTALL
    case Advice::kGuardRemove: return 103;    // MADV_GUARD_REMOVE
    case Advice::kDontneedLocked: return 24;  // MADV_DONTNEED_LOCKED
  }
  return -1;
}

int mlockall_flags_to_linux(unsigned f) {
  int r = 0;
  if (f & mlockall_flag::kCurrent) r |= MCL_CURRENT;
  if (f & mlockall_flag::kFuture) r |= MCL_FUTURE;
  if (f & mlockall_flag::kOnfault) r |= MCL_ONFAULT;
  return r;
}

OpResult mincore_in_pieces(uint64_t addr, uint64_t len,
                           const std::function<int(uint64_t addr, uint64_t len, unsigned char* vec)>& call) {
  constexpr uint64_t kPieceBytes = kMincorePiecePages * kPageSize;
  const uint64_t pages = len / kPageSize + (len % kPageSize != 0);
  std::vector<unsigned char> vec(static_cast<size_t>(std::min(pages, kMincorePiecePages)) + 1);
  std::string bits;
  bits.reserve(static_cast<size_t>(std::min<uint64_t>(pages, 1u << 20)));
  uint64_t done = 0;
  do {
    const uint64_t piece = std::min(len - done, kPieceBytes);
    const uint64_t piece_pages = piece / kPageSize + (piece % kPageSize != 0);
    int r = call(addr + done, piece, vec.data());
    if (r < 0) return OpResult::error(-r);
    for (uint64_t i = 0; i < piece_pages; ++i) bits += (vec[i] & 1) ? '1' : '0';
    done += piece;
  } while (done < len);
  return OpResult::vector(std::move(bits));
}

}  // namespace vmspace::opscript
