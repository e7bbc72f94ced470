/* SPDX-License-Identifier: MIT */
/* consumer.c - a C program using an installed vmspace through vmspace.h
 * (tests/consumer/run.sh builds it with pkg-config and against the shared
 * library alone): map, write, read, mprotect, a fault result, maps. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <vmspace/vmspace.h>

static int fail(const char* what, long long got) {
  fprintf(stderr, "consumer.c: %s: %lld\n", what, got);
  return 1;
}

int main(void) {
  vmspace_options_t opts;
  vmspace_t* vs = NULL;
  vmspace_fault_t f;
  char buf[16] = {0};
  char* maps;
  int64_t a, n;
  int r;

  vmspace_options_init(&opts);
  opts.phys_bytes = 16u << 20;
  opts.phys_pretouch = 0;
  if ((r = vmspace_create(&opts, &vs)) != 0) return fail("vmspace_create", r);
  a = vmspace_mmap(vs, 0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (a < 0) return fail("vmspace_mmap", a);
  f = vmspace_write(vs, (uint64_t)a + 4096, "from C", 7);
  if (f.kind != VMSPACE_FAULT_NONE) return fail("vmspace_write", f.kind);
  f = vmspace_read(vs, (uint64_t)a + 4096, buf, 7);
  if (f.kind != VMSPACE_FAULT_NONE || strcmp(buf, "from C") != 0) return fail("vmspace_read", f.kind);
  if ((r = vmspace_mprotect(vs, (uint64_t)a + 4096, 4096, PROT_READ)) != 0) return fail("vmspace_mprotect", r);
  f = vmspace_write(vs, (uint64_t)a + 4096 + 8, "x", 1);
  if (f.kind != VMSPACE_FAULT_SEGV_ACCERR || f.addr != (uint64_t)a + 4096) return fail("write to read-only", f.kind);
  printf("vmspace %s (headers %s): write to read-only page 0x%llx: %s\n", vmspace_version(),
         VMSPACE_VERSION_STRING, (unsigned long long)f.addr, vmspace_fault_name(f.kind));

  n = vmspace_maps(vs, NULL, 0);
  if (n <= 0) return fail("vmspace_maps", n);
  maps = malloc((size_t)n + 1);
  if (maps == NULL || vmspace_maps(vs, maps, (size_t)n + 1) != n) return fail("vmspace_maps", n);
  fputs(maps, stdout);
  free(maps);
  vmspace_destroy(vs);
  return 0;
}
