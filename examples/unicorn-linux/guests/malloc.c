// SPDX-License-Identifier: MIT
// malloc.c - the memory pattern of a malloc: small blocks from the program
// break (brk growth, then shrink), large blocks from mmap, a large block
// grown with mremap(MREMAP_MAYMOVE) keeping its contents, part of it
// discarded with madvise(MADV_DONTNEED) (it must read back as zeros), and
// munmap.  Prints sizes and checksums only: the output is the same
// wherever the kernel (or vmspace) put things.
#include "guest.h"

enum { kSmallBlocks = 300, kLarge = 256 * 1024 };

static void fill_pattern(u8* p, u64 n, u32 seed) {
  u32 x = seed;
  for (u64 i = 0; i < n; i++) {
    x = x * 1103515245u + 12345u;
    p[i] = (u8)(x >> 16);
  }
}

// A bump allocator on the program break, growing it 16 KiB at a time.
static u64 heap_start, heap_cur, heap_end;
static void* small_alloc(u64 n) {
  n = (n + 15) & ~15ul;
  while (heap_cur + n > heap_end) {
    u64 want = heap_end + 16384;
    if (sys_brk(want) != want) die("brk failed");
    heap_end = want;
  }
  void* p = (void*)heap_cur;
  heap_cur += n;
  return p;
}

// Deep recursion: the stack grows well past its first pages (a
// MAP_GROWSDOWN stack grows on the faults below it).
__attribute__((noinline)) static u64 deep(int n) {
  volatile u8 frame[512];
  for (int i = 0; i < 512; i += 64) frame[i] = (u8)(n + i);
  if (n == 0) return frame[0];
  return deep(n - 1) * 31 + frame[64];
}

int main(int argc, char** argv) {
  (void)argv;
  say_dec("argc", argc);

  // Small blocks on the heap.
  heap_start = heap_cur = heap_end = sys_brk(0);
  u8* blocks[kSmallBlocks];
  u64 sizes[kSmallBlocks];
  for (int i = 0; i < kSmallBlocks; i++) {
    sizes[i] = 16 + (u64)(i * 37) % 1000;
    blocks[i] = (u8*)small_alloc(sizes[i]);
    fill_pattern(blocks[i], sizes[i], (u32)i);
  }
  u64 sum = 0;
  for (int i = 0; i < kSmallBlocks; i++) sum ^= checksum(blocks[i], sizes[i]) + (u64)i;
  say_dec("heap grown by", (long)(heap_end - heap_start));
  say_dec("heap used", (long)(heap_cur - heap_start));
  say_hex("small checksum", sum);

  // A large block from mmap.
  u8* big = (u8*)sys_mmap(0, kLarge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  if (is_err(big)) die("mmap failed");
  fill_pattern(big, kLarge, 77);
  u64 before = checksum(big, kLarge);
  say_hex("large checksum", before);

  // Grow it 4x, then 16x, moving if need be: the old contents come along.
  u8* grown = (u8*)sys_mremap(big, kLarge, 4 * kLarge, MREMAP_MAYMOVE);
  if (is_err(grown)) die("mremap failed");
  say_dec("after mremap x4, old part intact", checksum(grown, kLarge) == before);
  say_hex("new part (zero-filled) checksum", checksum(grown + kLarge, 3 * kLarge));
  fill_pattern(grown + kLarge, 3 * kLarge, 78);
  u64 whole = checksum(grown, 4 * kLarge);
  say_hex("grown checksum", whole);
  // Keep something below it mapped so that growing again must move it
  // (or extend in place: either way the contents are what counts).
  u8* grown2 = (u8*)sys_mremap(grown, 4 * kLarge, 16 * kLarge, MREMAP_MAYMOVE);
  if (is_err(grown2)) die("mremap failed");
  say_dec("after mremap x16, contents intact", checksum(grown2, 4 * kLarge) == whole);

  // Discard the second quarter: it reads back as zeros, the rest is kept.
  if (sys_madvise(grown2 + kLarge, kLarge, MADV_DONTNEED) != 0) die("madvise failed");
  u8 zeros[4096];
  memset(zeros, 0, sizeof zeros);
  int all_zero = 1;
  for (u64 off = kLarge; off < 2 * kLarge; off += 4096)
    if (checksum(grown2 + off, 4096) != checksum(zeros, 4096)) all_zero = 0;
  say_dec("discarded part reads zeros", all_zero);
  say_dec("first quarter intact", checksum(grown2, kLarge) == before);

  // Shrink in place, then unmap.
  u8* shrunk = (u8*)sys_mremap(grown2, 16 * kLarge, kLarge, 0);
  say_dec("shrunk in place", shrunk == grown2);
  say_dec("munmap", sys_munmap(shrunk, kLarge));
  say_dec("munmap of nothing", sys_munmap(shrunk, kLarge));
  say_dec("unaligned munmap", sys_munmap(shrunk + 1, kLarge));

  // The heap blocks are untouched by all that; then give the heap back.
  u64 sum2 = 0;
  for (int i = 0; i < kSmallBlocks; i++) sum2 ^= checksum(blocks[i], sizes[i]) + (u64)i;
  say_dec("small blocks intact", sum2 == sum);
  say_dec("brk shrink", sys_brk(heap_start) == heap_start);
  say_dec("brk below start refused", sys_brk(heap_start - 4096 * 1024) == heap_start);

  // 1 MiB of stack.
  say_hex("deep recursion", deep(1800));

  // A thread pointer (arch_prctl ARCH_SET_FS), read through %fs.
  u64* tls = (u64*)sys_mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  if (is_err(tls)) die("mmap failed");
  tls[1] = 0x1234abcd;
  say_dec("arch_prctl(ARCH_SET_FS)", syscall3(SYS_arch_prctl, 0x1002, tls, 0));
  u64 via_fs;
  __asm__ volatile("mov %%fs:8, %0" : "=r"(via_fs));
  say_hex("read through fs", via_fs);
  return 0;
}
