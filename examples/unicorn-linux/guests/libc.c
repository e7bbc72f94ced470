// SPDX-License-Identifier: MIT
// libc.c - an ordinary C program on the host's static glibc: its start-up
// (TLS through arch_prctl, AT_RANDOM, IRELATIVE relocations, RELRO by
// mprotect), stdio, and glibc's malloc (brk arenas; mmap, mremap and
// munmap for large blocks).  Built with -static -no-pie, run with
// --eager-write (runner.h: glibc takes locks with atomic instructions).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void* a, const void* b) {
  const unsigned x = *(const unsigned*)a, y = *(const unsigned*)b;
  return x < y ? -1 : x > y;
}

static unsigned long sum(const unsigned char* p, size_t n) {
  unsigned long s = 0;
  for (size_t i = 0; i < n; i++) s = s * 131 + p[i];
  return s;
}

int main(int argc, char** argv) {
  (void)argv;
  printf("hello from glibc, argc=%d\n", argc);

  // Small blocks: the brk heap.
  char* small[200];
  for (int i = 0; i < 200; i++) {
    small[i] = malloc(24 + i * 8);
    snprintf(small[i], 24 + i * 8, "block %d of %d", i, 200);
  }
  printf("%s / %s\n", small[7], small[199]);
  for (int i = 0; i < 200; i += 2) free(small[i]);

  // A large block (mmap), grown by realloc (mremap), then freed (munmap).
  size_t n = 256 << 10;  // above glibc's mmap threshold (128 KiB)
  unsigned char* big = malloc(n);
  for (size_t i = 0; i < n; i++) big[i] = (unsigned char)(i * 7 + (i >> 12));
  unsigned long before = sum(big, n);
  big = realloc(big, 4 * n);
  printf("realloc kept the contents: %d\n", sum(big, n) == before);
  memset(big + n, 0x5a, 3 * n);
  printf("checksum %lx\n", sum(big, 4 * n));
  free(big);

  // qsort of a pseudo-random array.
  unsigned* v = malloc(20000 * sizeof *v);
  unsigned x = 12345;
  for (int i = 0; i < 20000; i++) v[i] = x = x * 1103515245u + 12345u;
  qsort(v, 20000, sizeof *v, cmp);
  int sorted = 1;
  for (int i = 1; i < 20000; i++) sorted &= v[i - 1] <= v[i];
  printf("sorted %d, min %u, max %u\n", sorted, v[0], v[19999]);
  free(v);
  for (int i = 1; i < 200; i += 2) free(small[i]);
  return 3;
}
