/* SPDX-License-Identifier: MIT */
/* c_api_test.c - include/vmspace/vmspace.h from C99: every call once or
 * more, in each lock mode, with the results Linux gives.  A plain C
 * program (no test framework): exits 0 when every check held, else prints
 * the failed check and exits 1. */
#define _GNU_SOURCE /* MAP_ANONYMOUS, mkstemp under -std=c99 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmspace/vmspace.h"

#include "check.h"

/* A space with a small pool that is not touched up front. */
static vmspace_t* make_space(int mode, uint64_t brk_start) {
  vmspace_options_t o;
  vmspace_t* vs = NULL;
  vmspace_options_init(&o);
  o.lock_mode = mode;
  o.phys_bytes = 16u << 20;
  o.phys_pretouch = 0;
  o.brk_start = brk_start;
  CHECK_EQ(vmspace_create(&o, &vs), 0);
  CHECK(vs != NULL);
  CHECK_EQ(vmspace_lock_mode(vs), mode);
  return vs;
}

static void test_options(void) {
  vmspace_options_t o;
  vmspace_t* vs = NULL;
  struct {
    vmspace_options_t o;
    uint64_t newer_field;
  } big;

  vmspace_options_init(&o);
  CHECK_EQ(o.struct_size, sizeof(vmspace_options_t));
  CHECK_EQ(o.lock_mode, VMSPACE_LOCK_PER_VMA_REFCOUNT);
  CHECK_EQ(o.zero_page, 1);
  CHECK_EQ(o.max_map_count, 65530);
  CHECK_EQ(vmspace_create(&o, NULL), -EFAULT);

  o.struct_size = 0;
  CHECK_EQ(vmspace_create(&o, &vs), -EINVAL);
  vmspace_options_init(&o);
  o.lock_mode = 7;
  CHECK_EQ(vmspace_create(&o, &vs), -EINVAL);
  vmspace_options_init(&o);
  o.thp = -1;
  CHECK_EQ(vmspace_create(&o, &vs), -EINVAL);
  CHECK(vs == NULL);

  /* A caller compiled with a newer, larger struct: its extra fields must
   * be zero (what this library would take as their defaults). */
  memset(&big, 0, sizeof big);
  vmspace_options_init(&big.o);
  big.o.struct_size = sizeof big;
  big.o.phys_bytes = 4u << 20;
  big.o.phys_pretouch = 0;
  big.newer_field = 1;
  CHECK_EQ(vmspace_create(&big.o, &vs), -E2BIG);
  big.newer_field = 0;
  CHECK_EQ(vmspace_create(&big.o, &vs), 0);
  vmspace_destroy(vs);
  vmspace_destroy(NULL);
}

/* A pool shared by two spaces: both take frames from it, it outlives the
 * caller's reference, and a caller of the first struct version (no pool
 * field) still gets a space of its own. */
static void test_pool(int mode) {
  vmspace_pool_t* pool = NULL;
  vmspace_options_t o;
  vmspace_t *a = NULL, *b = NULL, *c = NULL;
  const uint64_t limit = 64 * PAGE;
  int64_t ma, mb;
  vmspace_fault_t f;

  CHECK_EQ(vmspace_pool_create(limit, 0, NULL), -EFAULT);
  CHECK_EQ(vmspace_pool_create(limit, 0, &pool), 0);
  CHECK_EQ(vmspace_pool_free_bytes(pool), limit);
  vmspace_options_init(&o);
  o.lock_mode = mode;
  o.pool = pool;
  CHECK_EQ(vmspace_create(&o, &a), 0);
  CHECK_EQ(vmspace_create(&o, &b), 0);
  vmspace_pool_destroy(pool); /* the spaces hold it */
  ma = vmspace_mmap(a, 0, 40 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  mb = vmspace_mmap(b, 0, 40 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(ma > 0 && mb > 0);
  CHECK_EQ(vmspace_fill(a, (uint64_t)ma, 1, 32 * PAGE).kind, VMSPACE_FAULT_NONE);
  /* 32 of the 64 frames are a's: b runs out at its 33rd page. */
  f = vmspace_fill(b, (uint64_t)mb, 2, 40 * PAGE);
  CHECK_EQ(f.kind, VMSPACE_FAULT_OOM);
  CHECK_EQ(f.addr, (uint64_t)mb + 32 * PAGE);
  vmspace_destroy(a);
  CHECK_EQ(vmspace_fill(b, (uint64_t)mb + 32 * PAGE, 2, 8 * PAGE).kind, VMSPACE_FAULT_NONE);
  vmspace_destroy(b);

  vmspace_options_init(&o);
  o.struct_size = offsetof(vmspace_options_t, phys_pretouch) + sizeof(int);
  o.pool = (vmspace_pool_t*)1; /* not read: past the caller's struct */
  CHECK_EQ(vmspace_create(&o, &c), 0);
  vmspace_destroy(c);
  vmspace_pool_destroy(NULL);
}

/* Anonymous memory: map, access, protect, fault, text, advice, remap,
 * locks, seals, residency. */
static void test_anon(int mode) {
  vmspace_t* vs = make_space(mode, 0);
  char buf[64];
  char* text;
  unsigned char vec[4];
  int64_t a, b, c, n;
  vmspace_fault_t f;
  vmspace_scope_t* scope;
  unsigned char* p;

  CHECK_EQ(vmspace_map_count(vs), 0);
  CHECK_EQ(vmspace_mmap(vs, 0, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), -EINVAL);
  a = vmspace_mmap(vs, 0, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(a > 0);
  CHECK_EQ(a % PAGE, 0);
  CHECK_EQ(vmspace_map_count(vs), 1);

  /* Write, read back, fill. */
  f = vmspace_write(vs, (uint64_t)a + 100, "hello", 6);
  CHECK_EQ(f.kind, VMSPACE_FAULT_NONE);
  memset(buf, 0, sizeof buf);
  f = vmspace_read(vs, (uint64_t)a + 100, buf, 6);
  CHECK_EQ(f.kind, VMSPACE_FAULT_NONE);
  CHECK(strcmp(buf, "hello") == 0);
  CHECK_EQ(vmspace_fill(vs, (uint64_t)a + PAGE, 0xab, PAGE).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(vmspace_read(vs, (uint64_t)a + 2 * PAGE - 1, buf, 1).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ((unsigned char)buf[0], 0xab);
  CHECK_EQ(vmspace_rss_pages(vs), 2);

  /* mprotect splits the VMA in three; a write there faults SEGV_ACCERR at
   * that page, a read does not. */
  CHECK_EQ(vmspace_mprotect(vs, (uint64_t)a + 8 * PAGE, PAGE, PROT_READ), 0);
  CHECK_EQ(vmspace_map_count(vs), 3);
  f = vmspace_write(vs, (uint64_t)a + 8 * PAGE + 10, "x", 1);
  CHECK_EQ(f.kind, VMSPACE_FAULT_SEGV_ACCERR);
  CHECK_EQ(f.addr, (uint64_t)a + 8 * PAGE);
  CHECK(strcmp(vmspace_fault_name(f.kind), "SEGV_ACCERR") == 0);
  CHECK_EQ(vmspace_read(vs, (uint64_t)a + 8 * PAGE + 10, buf, 1).kind, VMSPACE_FAULT_NONE);
  /* A write across into the read-only page stops there. */
  f = vmspace_write(vs, (uint64_t)a + 8 * PAGE - 2, "abcd", 4);
  CHECK_EQ(f.kind, VMSPACE_FAULT_SEGV_ACCERR);
  CHECK_EQ(f.addr, (uint64_t)a + 8 * PAGE);

  /* A hole faults SEGV_MAPERR; the bytes before it are read. */
  CHECK_EQ(vmspace_munmap(vs, (uint64_t)a + 12 * PAGE, PAGE), 0);
  f = vmspace_read(vs, (uint64_t)a + 12 * PAGE - 6, buf, 12);
  CHECK_EQ(f.kind, VMSPACE_FAULT_SEGV_MAPERR);
  CHECK_EQ(f.addr, (uint64_t)a + 12 * PAGE);
  f = vmspace_fault_in(vs, (uint64_t)a + 12 * PAGE + 5, 0);
  CHECK_EQ(f.kind, VMSPACE_FAULT_SEGV_MAPERR);
  CHECK_EQ(f.addr, (uint64_t)a + 12 * PAGE);
  CHECK_EQ(vmspace_fault_in(vs, (uint64_t)a + 5 * PAGE, 1).kind, VMSPACE_FAULT_NONE);
  /* The exact results: the faulting byte itself and the bytes done (the
   * vmspace_fault_t ones above keep the page address). */
  {
    vmspace_access_result_t x = vmspace_access_read(vs, (uint64_t)a + 12 * PAGE - 6, buf, 12);
    CHECK_EQ(x.kind, VMSPACE_FAULT_SEGV_MAPERR);
    CHECK_EQ(x.addr, (uint64_t)a + 12 * PAGE);
    CHECK_EQ(x.done, 6);
    x = vmspace_access_write(vs, (uint64_t)a + 8 * PAGE + 10, "x", 1);
    CHECK_EQ(x.kind, VMSPACE_FAULT_SEGV_ACCERR);
    CHECK_EQ(x.addr, (uint64_t)a + 8 * PAGE + 10);
    CHECK_EQ(x.done, 0);
    x = vmspace_access_fill(vs, (uint64_t)a + 8 * PAGE - 3, 0xcd, 8);
    CHECK_EQ(x.kind, VMSPACE_FAULT_SEGV_ACCERR);
    CHECK_EQ(x.addr, (uint64_t)a + 8 * PAGE);
    CHECK_EQ(x.done, 3);
    x = vmspace_access_read(vs, (uint64_t)a + 8 * PAGE - 3, buf, 3);
    CHECK_EQ(x.kind, VMSPACE_FAULT_NONE);
    CHECK_EQ(x.addr, 0);
    CHECK_EQ(x.done, 3);
    CHECK_EQ((unsigned char)buf[0], 0xcd);
    /* rw- memory is not executable: a fetch faults SEGV_ACCERR at its byte. */
    x = vmspace_access_fetch(vs, (uint64_t)a + 5 * PAGE + 1, buf, 2);
    CHECK_EQ(x.kind, VMSPACE_FAULT_SEGV_ACCERR);
    CHECK_EQ(x.addr, (uint64_t)a + 5 * PAGE + 1);
    x = vmspace_access_fault_in(vs, (uint64_t)a + 5 * PAGE + 1, VMSPACE_ACCESS_EXEC);
    CHECK_EQ(x.kind, VMSPACE_FAULT_SEGV_ACCERR);
    CHECK_EQ(x.addr, (uint64_t)a + 5 * PAGE + 1);
    CHECK_EQ(vmspace_access_fault_in(vs, (uint64_t)a + 5 * PAGE, VMSPACE_ACCESS_WRITE).kind, VMSPACE_FAULT_NONE);
    CHECK_EQ(vmspace_mprotect(vs, (uint64_t)a + 5 * PAGE, PAGE, PROT_READ | PROT_EXEC), 0);
    x = vmspace_access_fetch(vs, (uint64_t)a + 5 * PAGE + 1, buf, 2);
    CHECK_EQ(x.kind, VMSPACE_FAULT_NONE);
    CHECK_EQ(x.done, 2);
    scope = vmspace_scope_begin(vs);
    CHECK(scope != NULL);
    CHECK(vmspace_scope_translate_kind(scope, (uint64_t)a + 5 * PAGE, VMSPACE_ACCESS_EXEC) != NULL);
    CHECK(vmspace_scope_translate_kind(scope, (uint64_t)a + 5 * PAGE, VMSPACE_ACCESS_WRITE) == NULL);
    CHECK(vmspace_scope_translate_kind(scope, (uint64_t)a + 6 * PAGE, VMSPACE_ACCESS_EXEC) == NULL);
    vmspace_scope_end(scope);
    CHECK_EQ(vmspace_mprotect(vs, (uint64_t)a + 5 * PAGE, PAGE, PROT_READ | PROT_WRITE), 0);
  }

  /* maps, snprintf-style. */
  n = vmspace_maps(vs, NULL, 0);
  CHECK(n > 0);
  CHECK_EQ(vmspace_maps(vs, buf, 16), n);
  CHECK_EQ(strlen(buf), 15);
  text = malloc((size_t)n + 1);
  CHECK(text != NULL);
  CHECK_EQ(vmspace_maps(vs, text, (size_t)n + 1), n);
  CHECK_EQ(strlen(text), n);
  CHECK(strncmp(text, buf, 15) == 0);
  CHECK(strstr(text, " rw-p ") != NULL);
  CHECK(strstr(text, " r--p ") != NULL);
  free(text);
  n = vmspace_smaps(vs, NULL, 0);
  CHECK(n > 0);
  text = malloc((size_t)n + 1);
  CHECK(text != NULL);
  CHECK_EQ(vmspace_smaps(vs, text, (size_t)n + 1), n);
  CHECK(strstr(text, "Rss:") != NULL);
  CHECK(strstr(text, "VmFlags:") != NULL);
  free(text);

  /* MADV_DONTNEED: private memory reads back zero. */
  CHECK_EQ(vmspace_madvise(vs, (uint64_t)a, PAGE, MADV_DONTNEED), 0);
  CHECK_EQ(vmspace_read(vs, (uint64_t)a + 100, buf, 6).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(buf[0], 0);
  CHECK_EQ(vmspace_madvise(vs, (uint64_t)a + 1, PAGE, MADV_DONTNEED), -EINVAL);

  /* A translation inside a scope. */
  scope = vmspace_scope_begin(vs);
  CHECK(scope != NULL);
  p = vmspace_scope_translate(scope, (uint64_t)a + PAGE + 7, 0);
  CHECK(p != NULL);
  CHECK_EQ(*p, 0xab);
  CHECK(vmspace_scope_translate(scope, (uint64_t)a + 12 * PAGE, 0) == NULL);
  vmspace_scope_end(scope);

  /* mremap moves the pages with their contents. */
  b = vmspace_mmap(vs, 0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(b > 0);
  CHECK_EQ(vmspace_write(vs, (uint64_t)b, "moved", 6).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(vmspace_mremap(vs, (uint64_t)b, 2 * PAGE, 4 * PAGE, 0, 0), -ENOMEM); /* no room, may not move */
  c = vmspace_mremap(vs, (uint64_t)b, 2 * PAGE, 4 * PAGE, MREMAP_MAYMOVE, 0);
  CHECK(c > 0);
  memset(buf, 0, sizeof buf);
  CHECK_EQ(vmspace_read(vs, (uint64_t)c, buf, 6).kind, VMSPACE_FAULT_NONE);
  CHECK(strcmp(buf, "moved") == 0);

  /* mincore: the page written is resident, the grown part is not. */
  CHECK_EQ(vmspace_mincore(vs, (uint64_t)c, 4 * PAGE, vec), 0);
  CHECK_EQ(vec[0], 1);
  CHECK_EQ(vec[3], 0);
  CHECK_EQ(vmspace_mincore(vs, (uint64_t)c + 1, PAGE, vec), -EINVAL);

  /* Locks. */
  CHECK_EQ(vmspace_mlock(vs, (uint64_t)c, 4 * PAGE), 0);
  CHECK_EQ(vmspace_madvise(vs, (uint64_t)c, PAGE, MADV_DONTNEED), -EINVAL);
  CHECK_EQ(vmspace_munlock(vs, (uint64_t)c, 4 * PAGE), 0);
  CHECK_EQ(vmspace_mlock2(vs, (uint64_t)c, PAGE, MLOCK_ONFAULT), 0);
  CHECK_EQ(vmspace_mlock2(vs, (uint64_t)c, PAGE, 0x80), -EINVAL);
  CHECK_EQ(vmspace_mlockall(vs, 0), -EINVAL);
  CHECK_EQ(vmspace_mlockall(vs, MCL_CURRENT), 0);
  CHECK_EQ(vmspace_munlockall(vs), 0);

  /* Seals. */
  CHECK_EQ(vmspace_mseal(vs, (uint64_t)c, 4 * PAGE, 1), -EINVAL);
  CHECK_EQ(vmspace_mseal(vs, (uint64_t)c, 4 * PAGE, 0), 0);
  CHECK_EQ(vmspace_munmap(vs, (uint64_t)c, PAGE), -EPERM);
  CHECK_EQ(vmspace_mprotect(vs, (uint64_t)c, PAGE, PROT_READ), -EPERM);

  CHECK_EQ(vmspace_validate(vs, buf, sizeof buf), 1);
  CHECK_EQ(buf[0], '\0');
  vmspace_destroy(vs);
}

/* The program break. */
static void test_brk(int mode) {
  const uint64_t start = 0x10000000;
  vmspace_t* vs = make_space(mode, start);
  char* text;
  int64_t n;

  CHECK_EQ(vmspace_brk(vs, 0), start);
  CHECK_EQ(vmspace_brk(vs, start + 2 * PAGE), start + 2 * PAGE);
  CHECK_EQ(vmspace_fill(vs, start, 1, 2 * PAGE).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(vmspace_brk(vs, start - PAGE), start + 2 * PAGE); /* below the start: fails */
  n = vmspace_maps(vs, NULL, 0);
  text = malloc((size_t)n + 1);
  CHECK(text != NULL);
  vmspace_maps(vs, text, (size_t)n + 1);
  CHECK(strstr(text, "[heap]") != NULL);
  free(text);
  vmspace_destroy(vs);
}

/* memfds and host files. */
static void test_files(int mode) {
  vmspace_t* vs = make_space(mode, 0);
  char buf[16];
  char path[] = "/tmp/vmspace-capi-XXXXXX";
  int fd, hfd, host;
  int64_t m;
  vmspace_fault_t f;

  CHECK_EQ(vmspace_memfd_create(vs, NULL), -EFAULT);
  fd = vmspace_memfd_create(vs, "c-test");
  CHECK(fd >= 0);
  CHECK_EQ(vmspace_ftruncate(vs, fd, -1), -EINVAL);
  CHECK_EQ(vmspace_ftruncate(vs, fd, PAGE), 0);
  CHECK_EQ(vmspace_pwrite(vs, fd, "file", 4, 0), 4);
  memset(buf, 0, sizeof buf);
  CHECK_EQ(vmspace_pread(vs, fd, buf, sizeof buf, 0), sizeof buf);
  CHECK(strcmp(buf, "file") == 0);

  /* A shared mapping sees the file and writes to it; past the end: SIGBUS. */
  m = vmspace_mmap(vs, 0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  CHECK(m > 0);
  memset(buf, 0, sizeof buf);
  CHECK_EQ(vmspace_read(vs, (uint64_t)m, buf, 4).kind, VMSPACE_FAULT_NONE);
  CHECK(strcmp(buf, "file") == 0);
  f = vmspace_read(vs, (uint64_t)m + PAGE, buf, 1);
  CHECK_EQ(f.kind, VMSPACE_FAULT_SIGBUS);
  CHECK_EQ(f.addr, (uint64_t)m + PAGE);
  CHECK_EQ(vmspace_write(vs, (uint64_t)m, "FILE", 4).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(vmspace_pread(vs, fd, buf, 4, 0), 4);
  CHECK(memcmp(buf, "FILE", 4) == 0);
  CHECK_EQ(vmspace_msync(vs, (uint64_t)m, PAGE, MS_SYNC), 0);
  CHECK_EQ(vmspace_msync(vs, (uint64_t)m, PAGE, MS_SYNC | MS_ASYNC), -EINVAL);
  CHECK_EQ(vmspace_fsync(vs, fd), 0);
  CHECK_EQ(vmspace_close(vs, fd), 0);
  CHECK_EQ(vmspace_close(vs, fd), -EBADF);
  CHECK_EQ(vmspace_pread(vs, fd, buf, 4, 0), -EBADF);
  /* The mapping keeps the file alive. */
  CHECK_EQ(vmspace_read(vs, (uint64_t)m, buf, 4).kind, VMSPACE_FAULT_NONE);
  CHECK(memcmp(buf, "FILE", 4) == 0);

  /* A host file: read through the space, written back by msync. */
  CHECK_EQ(vmspace_open(vs, "/nonexistent/vmspace", O_RDONLY, 0), -ENOENT);
  CHECK_EQ(vmspace_open(vs, NULL, O_RDONLY, 0), -EFAULT);
  host = mkstemp(path);
  CHECK(host >= 0);
  CHECK_EQ(write(host, "host", 4), 4);
  hfd = vmspace_open(vs, path, O_RDWR, 0);
  CHECK(hfd >= 0);
  memset(buf, 0, sizeof buf);
  CHECK_EQ(vmspace_pread(vs, hfd, buf, sizeof buf, 0), 4);
  CHECK(strcmp(buf, "host") == 0);
  m = vmspace_mmap(vs, 0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, hfd, 0);
  CHECK(m > 0);
  CHECK_EQ(vmspace_write(vs, (uint64_t)m, "HOST", 4).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(vmspace_msync(vs, (uint64_t)m, PAGE, MS_SYNC), 0);
  CHECK_EQ(pread(host, buf, 4, 0), 4);
  CHECK(memcmp(buf, "HOST", 4) == 0);
  CHECK_EQ(vmspace_close(vs, hfd), 0);
  close(host);
  unlink(path);

  CHECK_EQ(vmspace_validate(vs, NULL, 0), 1);
  vmspace_destroy(vs);
}

/* fork: the child sees the parent's data, writes stay on their side
 * (copy-on-write), shared memory stays shared, the file table is copied,
 * and either may go first. */
static void test_fork(int mode) {
  vmspace_options_t o;
  vmspace_t *p = NULL, *c = NULL;
  int64_t priv, shared;
  char buf[8];
  int fd;

  vmspace_options_init(&o);
  o.lock_mode = mode;
  o.phys_bytes = 4u << 20;
  CHECK_EQ(vmspace_create(&o, &p), 0);
  priv = vmspace_mmap(p, 0, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  shared = vmspace_mmap(p, 0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(priv > 0 && shared > 0);
  fd = vmspace_memfd_create(p, "f");
  CHECK(fd >= 0);
  CHECK_EQ(vmspace_write(p, (uint64_t)priv, "parent", 6).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(vmspace_fork(p, NULL), -EFAULT);
  CHECK_EQ(vmspace_fork(p, &c), 0);
  CHECK_EQ(vmspace_read(c, (uint64_t)priv, buf, 6).kind, VMSPACE_FAULT_NONE);
  CHECK(memcmp(buf, "parent", 6) == 0);
  CHECK_EQ(vmspace_write(c, (uint64_t)priv, "child!", 6).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(vmspace_read(p, (uint64_t)priv, buf, 6).kind, VMSPACE_FAULT_NONE);
  CHECK(memcmp(buf, "parent", 6) == 0);
  CHECK_EQ(vmspace_write(c, (uint64_t)shared, "both", 4).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(vmspace_read(p, (uint64_t)shared, buf, 4).kind, VMSPACE_FAULT_NONE);
  CHECK(memcmp(buf, "both", 4) == 0);
  CHECK_EQ(vmspace_close(c, fd), 0); /* the child's copy of the descriptor */
  CHECK_EQ(vmspace_close(p, fd), 0);
  CHECK_EQ(vmspace_validate(c, NULL, 0), 1);
  vmspace_destroy(p); /* the parent first: the child keeps the pool */
  CHECK_EQ(vmspace_read(c, (uint64_t)priv, buf, 6).kind, VMSPACE_FAULT_NONE);
  CHECK(memcmp(buf, "child!", 6) == 0);
  CHECK_EQ(vmspace_validate(c, NULL, 0), 1);
  vmspace_destroy(c);
}

int main(void) {
  static const int modes[] = {VMSPACE_LOCK_MMAP_LOCK, VMSPACE_LOCK_PER_VMA_RWSEM,
                              VMSPACE_LOCK_PER_VMA_REFCOUNT, VMSPACE_LOCK_PER_VMA_RANGE};
  size_t i;

  CHECK(strcmp(vmspace_version(), VMSPACE_VERSION_STRING) == 0);
  CHECK(strcmp(vmspace_fault_name(VMSPACE_FAULT_SIGBUS), "SIGBUS") == 0);
  CHECK(strcmp(vmspace_fault_name((vmspace_fault_kind_t)42), "?") == 0);
  test_options();
  for (i = 0; i < sizeof modes / sizeof modes[0]; ++i) {
    test_anon(modes[i]);
    test_brk(modes[i]);
    test_files(modes[i]);
    test_pool(modes[i]);
    test_fork(modes[i]);
  }
  printf("c_api_test: %d checks passed\n", g_checks);
  return 0;
}
