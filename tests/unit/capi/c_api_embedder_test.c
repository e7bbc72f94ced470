/* SPDX-License-Identifier: MIT */
/* c_api_embedder_test.c - the calls of include/vmspace/vmspace.h an
 * emulator builds on, from C99: guest atomics and futex keys, layout
 * queries and anonymous names, invalidation notifiers, write-watch, event
 * counters, files passed between spaces and files with a backing of C
 * functions.  Each call: the happy path, its argument errors, and that
 * its callbacks fire.  Every lock mode.  Exits 0 when every check held. */
#define _GNU_SOURCE /* MAP_ANONYMOUS under -std=c99 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

#include "vmspace/vmspace.h"

#include "check.h"

static vmspace_t* make_space(int mode) {
  vmspace_options_t o;
  vmspace_t* vs = NULL;
  vmspace_options_init(&o);
  o.lock_mode = mode;
  o.phys_bytes = 16u << 20;
  CHECK_EQ(vmspace_create(&o, &vs), 0);
  return vs;
}

static uint64_t map_anon(vmspace_t* vs, uint64_t len, int prot, int flags) {
  int64_t a = vmspace_mmap(vs, 0, len, prot, flags | MAP_ANONYMOUS, -1, 0);
  CHECK(a > 0);
  return (uint64_t)a;
}

/* ---- Atomics and futex keys ---- */

static void test_atomics(int mode) {
  static const unsigned sizes[] = {1, 2, 4, 8};
  vmspace_t* vs = make_space(mode);
  const uint64_t a = map_anon(vs, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
  vmspace_access_result_t r;
  uint64_t v, old;
  int ok;
  size_t i;

  for (i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
    const unsigned size = sizes[i];
    const uint64_t va = a + 64 + 8 * i;
    const uint64_t mask = size == 8 ? UINT64_MAX : (UINT64_C(1) << (8 * size)) - 1;

    /* Wider bits of the input are ignored; values come back zero-extended. */
    CHECK_EQ(vmspace_atomic_store(vs, va, size, UINT64_MAX, &r), 0);
    CHECK_EQ(r.kind, VMSPACE_FAULT_NONE);
    CHECK_EQ(r.done, size);
    v = 0;
    CHECK_EQ(vmspace_atomic_load(vs, va, size, &v, &r), 0);
    CHECK_EQ(r.kind, VMSPACE_FAULT_NONE);
    CHECK(v == mask);
    /* fetch_add wraps modulo 2^(8 * size). */
    CHECK_EQ(vmspace_atomic_fetch_add(vs, va, size, 2, &old, &r), 0);
    CHECK(old == mask);
    CHECK_EQ(vmspace_atomic_load(vs, va, size, &v, &r), 0);
    CHECK_EQ(v, 1);
    CHECK_EQ(vmspace_atomic_exchange(vs, va, size, 5, &old, &r), 0);
    CHECK_EQ(old, 1);
    CHECK_EQ(vmspace_atomic_exchange(vs, va, size, 6, NULL, &r), 0); /* old not wanted */
    /* compare-exchange: a mismatch reports the value found. */
    v = 5;
    ok = -1;
    CHECK_EQ(vmspace_atomic_compare_exchange(vs, va, size, &v, 9, &ok, &r), 0);
    CHECK_EQ(r.kind, VMSPACE_FAULT_NONE);
    CHECK_EQ(ok, 0);
    CHECK_EQ(v, 6);
    CHECK_EQ(vmspace_atomic_compare_exchange(vs, va, size, &v, 9, &ok, &r), 0);
    CHECK_EQ(ok, 1);
    CHECK_EQ(vmspace_atomic_load(vs, va, size, &v, &r), 0);
    CHECK_EQ(v, 9);
    /* Misaligned: SIGBUS at va, nothing done. */
    if (size > 1) {
      v = 77;
      CHECK_EQ(vmspace_atomic_load(vs, va + 1, size, &v, &r), 0);
      CHECK_EQ(r.kind, VMSPACE_FAULT_SIGBUS);
      CHECK_EQ(r.addr, va + 1);
      CHECK_EQ(r.done, 0);
      CHECK_EQ(v, 77); /* untouched */
    }
  }
  /* The guest sees the atomics' bytes, little-endian. */
  {
    unsigned char b[2];
    CHECK_EQ(vmspace_atomic_store(vs, a + PAGE, 2, 0x1234, &r), 0);
    CHECK_EQ(vmspace_read(vs, a + PAGE, b, 2).kind, VMSPACE_FAULT_NONE);
    CHECK_EQ(b[0], 0x34);
    CHECK_EQ(b[1], 0x12);
  }
  /* Faults: a hole (MAPERR), a read-only page (ACCERR for writes, even a
   * compare-exchange that would not store; loads work). */
  CHECK_EQ(vmspace_munmap(vs, a + 3 * PAGE, PAGE), 0);
  CHECK_EQ(vmspace_atomic_load(vs, a + 3 * PAGE, 4, &v, &r), 0);
  CHECK_EQ(r.kind, VMSPACE_FAULT_SEGV_MAPERR);
  CHECK_EQ(r.addr, a + 3 * PAGE);
  CHECK_EQ(vmspace_mprotect(vs, a + 2 * PAGE, PAGE, PROT_READ), 0);
  CHECK_EQ(vmspace_atomic_load(vs, a + 2 * PAGE, 4, &v, &r), 0);
  CHECK_EQ(r.kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(v, 0);
  v = 1; /* differs from the 0 there */
  ok = -1;
  CHECK_EQ(vmspace_atomic_compare_exchange(vs, a + 2 * PAGE, 4, &v, 2, &ok, &r), 0);
  CHECK_EQ(r.kind, VMSPACE_FAULT_SEGV_ACCERR);
  CHECK_EQ(ok, -1);
  CHECK_EQ(v, 1);
  CHECK_EQ(vmspace_atomic_store(vs, a + 2 * PAGE, 8, 1, &r), 0);
  CHECK_EQ(r.kind, VMSPACE_FAULT_SEGV_ACCERR);

  /* Bad arguments: sizes, NULL outputs the call needs. */
  CHECK_EQ(vmspace_atomic_load(vs, a, 3, &v, &r), -EINVAL);
  CHECK_EQ(vmspace_atomic_store(vs, a, 16, 0, &r), -EINVAL);
  CHECK_EQ(vmspace_atomic_exchange(vs, a, 0, 0, &old, &r), -EINVAL);
  CHECK_EQ(vmspace_atomic_compare_exchange(vs, a, 5, &v, 0, &ok, &r), -EINVAL);
  CHECK_EQ(vmspace_atomic_fetch_add(vs, a, 7, 1, &old, &r), -EINVAL);
  CHECK_EQ(vmspace_atomic_load(vs, a, 4, NULL, &r), -EFAULT);
  CHECK_EQ(vmspace_atomic_load(vs, a, 4, &v, NULL), -EFAULT);
  CHECK_EQ(vmspace_atomic_store(vs, a, 4, 0, NULL), -EFAULT);
  CHECK_EQ(vmspace_atomic_compare_exchange(vs, a, 4, NULL, 0, &ok, &r), -EFAULT);
  CHECK_EQ(vmspace_atomic_fetch_add(vs, a, 4, 1, NULL, NULL), -EFAULT);
  CHECK_EQ(vmspace_atomic_fetch_add(vs, a, 4, 1, NULL, &r), 0); /* old not wanted */
  vmspace_destroy(vs);
}

static void test_futex_key(int mode) {
  vmspace_t* p = make_space(mode);
  vmspace_t* c = NULL;
  const uint64_t priv = map_anon(p, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
  const uint64_t shared = map_anon(p, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED);
  vmspace_futex_key_t k1, k2;

  /* Private: the space and the address. */
  CHECK_EQ(vmspace_futex_key(p, priv + 8, 0, &k1), 0);
  CHECK_EQ(vmspace_futex_key(p, priv + 8, 1, &k2), 0); /* shared futex, private memory */
  CHECK(k1.object == k2.object && k1.offset == k2.offset);
  CHECK_EQ(vmspace_futex_key(p, priv + 12, 0, &k2), 0);
  CHECK(k1.offset != k2.offset);
  /* Shared memory, shared futex: the object and the offset, the same in a
   * forked child, while a private futex there is the child's own. */
  CHECK_EQ(vmspace_fork(p, &c), 0);
  CHECK_EQ(vmspace_futex_key(p, shared + PAGE + 4, 1, &k1), 0);
  CHECK_EQ(vmspace_futex_key(c, shared + PAGE + 4, 1, &k2), 0);
  CHECK(k1.object == k2.object);
  CHECK_EQ(k1.offset, PAGE + 4);
  CHECK_EQ(k2.offset, PAGE + 4);
  CHECK_EQ(vmspace_futex_key(p, shared + 4, 0, &k1), 0);
  CHECK_EQ(vmspace_futex_key(c, shared + 4, 0, &k2), 0);
  CHECK(k1.object != k2.object);
  /* Errors: unaligned, unmapped, no access, no output. */
  CHECK_EQ(vmspace_futex_key(p, priv + 2, 0, &k1), -EINVAL);
  CHECK_EQ(vmspace_munmap(p, priv, PAGE), 0);
  CHECK_EQ(vmspace_futex_key(p, priv, 0, &k1), -EFAULT);
  CHECK_EQ(vmspace_mprotect(p, shared, PAGE, PROT_NONE), 0);
  CHECK_EQ(vmspace_futex_key(p, shared, 1, &k1), -EFAULT);
  CHECK_EQ(vmspace_futex_key(p, shared + PAGE, 1, NULL), -EFAULT);
  vmspace_destroy(c);
  vmspace_destroy(p);
}

/* ---- Layout queries and names ---- */

struct walk {
  int calls;
  int stop_at; /* the call that returns 7 (1-based), or 0 */
  uint64_t starts[8];
  char names[8][32];
  vmspace_t* vs;
  int map_count_seen;
};

static int walk_fn(void* arg, const vmspace_vma_info_t* vma) {
  struct walk* w = arg;
  CHECK_EQ(vma->struct_size, sizeof(vmspace_vma_info_t));
  CHECK(vma->name != NULL);
  CHECK_EQ(strlen(vma->name), vma->name_len);
  if (w->calls < 8) {
    w->starts[w->calls] = vma->start;
    strncpy(w->names[w->calls], vma->name, sizeof w->names[0] - 1);
  }
  /* No lock is held: calling into the space is allowed. */
  w->map_count_seen = vmspace_map_count(w->vs);
  ++w->calls;
  return w->calls == w->stop_at ? 7 : 0;
}

static void test_layout(int mode) {
  vmspace_t* vs = make_space(mode);
  const uint64_t a = map_anon(vs, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
  vmspace_vma_info_t info;
  struct {
    vmspace_vma_info_t info;
    uint64_t newer_field;
  } big;
  struct walk w;
  char name[64];
  int fd;
  int64_t m;

  CHECK_EQ(vmspace_mprotect(vs, a + 2 * PAGE, PAGE, PROT_READ), 0);
  fd = vmspace_memfd_create(vs, "data");
  CHECK(fd >= 0);
  CHECK_EQ(vmspace_ftruncate(vs, fd, 4 * PAGE), 0);
  m = vmspace_mmap(vs, 0, 2 * PAGE, PROT_READ, MAP_SHARED, fd, 2 * PAGE);
  CHECK(m > 0);

  /* find_vma: the fields, the name snprintf-style. */
  memset(&info, 0xee, sizeof info);
  info.struct_size = sizeof info;
  CHECK_EQ(vmspace_find_vma(vs, a + 2 * PAGE + 5, &info, name, sizeof name), 0);
  CHECK_EQ(info.struct_size, sizeof info);
  CHECK_EQ(info.start, a + 2 * PAGE);
  CHECK_EQ(info.end, a + 3 * PAGE);
  CHECK_EQ(info.prot, PROT_READ);
  CHECK_EQ(info.flags, MAP_PRIVATE);
  CHECK_EQ(info.offset, 0);
  CHECK(info.name == name);
  CHECK_EQ(info.name_len, 0);
  CHECK_EQ(name[0], '\0');
  CHECK_EQ(vmspace_find_vma(vs, (uint64_t)m + PAGE, &info, name, sizeof name), 0);
  CHECK_EQ(info.start, (uint64_t)m);
  CHECK_EQ(info.flags, MAP_SHARED);
  CHECK_EQ(info.offset, 2 * PAGE);
  CHECK(strcmp(name, "/memfd:data (deleted)") == 0);
  CHECK_EQ(info.name_len, strlen("/memfd:data (deleted)"));
  CHECK_EQ(vmspace_find_vma(vs, (uint64_t)m, &info, name, 5), 0); /* truncated */
  CHECK(strcmp(name, "/mem") == 0);
  CHECK_EQ(info.name_len, strlen("/memfd:data (deleted)"));
  CHECK_EQ(vmspace_find_vma(vs, (uint64_t)m, &info, NULL, 0), 0);
  CHECK(info.name == NULL);
  CHECK_EQ(info.name_len, strlen("/memfd:data (deleted)"));
  CHECK_EQ(vmspace_find_vma(vs, a, NULL, NULL, 0), 0); /* only whether */
  /* A caller with a newer, larger struct: what this library knows is
   * filled, and struct_size says how much. */
  memset(&big, 0, sizeof big);
  big.info.struct_size = sizeof big;
  big.newer_field = 42;
  CHECK_EQ(vmspace_find_vma(vs, a, &big.info, NULL, 0), 0);
  CHECK_EQ(big.info.struct_size, sizeof(vmspace_vma_info_t));
  CHECK_EQ(big.info.start, a);
  CHECK_EQ(big.newer_field, 42);
  /* Errors. */
  CHECK_EQ(vmspace_find_vma(vs, a + 8 * PAGE, &info, name, sizeof name), -ENOENT);
  CHECK_EQ(vmspace_find_vma(vs, 0, NULL, NULL, 0), -ENOENT);
  info.struct_size = 0;
  CHECK_EQ(vmspace_find_vma(vs, a, &info, name, sizeof name), -EINVAL);
  info.struct_size = sizeof info;
  CHECK_EQ(vmspace_find_vma(vs, a, &info, NULL, 8), -EFAULT);

  /* vmas: every VMA in order; a stop; an empty range; no callback. */
  memset(&w, 0, sizeof w);
  w.vs = vs;
  CHECK_EQ(vmspace_vmas(vs, 0, UINT64_MAX, walk_fn, &w), 0);
  CHECK_EQ(w.calls, 4);
  CHECK_EQ(w.map_count_seen, 4);
  /* In address order: the file mapping went below the anonymous one. */
  CHECK(w.starts[0] == (uint64_t)m && (uint64_t)m < a);
  CHECK_EQ(w.starts[1], a);
  CHECK_EQ(w.starts[2], a + 2 * PAGE);
  CHECK_EQ(w.starts[3], a + 3 * PAGE);
  memset(&w, 0, sizeof w);
  w.vs = vs;
  CHECK_EQ(vmspace_vmas(vs, a + PAGE, a + 3 * PAGE + 1, walk_fn, &w), 0); /* intersecting */
  CHECK_EQ(w.calls, 3);
  memset(&w, 0, sizeof w);
  w.vs = vs;
  w.stop_at = 2;
  CHECK_EQ(vmspace_vmas(vs, 0, UINT64_MAX, walk_fn, &w), 7);
  CHECK_EQ(w.calls, 2);
  memset(&w, 0, sizeof w);
  w.vs = vs;
  CHECK_EQ(vmspace_vmas(vs, a + PAGE, a + PAGE, walk_fn, &w), 0);
  CHECK_EQ(vmspace_vmas(vs, a + 2 * PAGE, a, walk_fn, &w), 0);
  CHECK_EQ(w.calls, 0);
  CHECK_EQ(vmspace_vmas(vs, 0, UINT64_MAX, NULL, &w), -EINVAL);

  /* set_anon_name: named, split at the edges, seen by the queries;
   * removed with NULL (the pieces merge again). */
  CHECK_EQ(vmspace_set_anon_name(vs, a + 4 * PAGE, 2 * PAGE, "jit code"), 0);
  CHECK_EQ(vmspace_find_vma(vs, a + 5 * PAGE, &info, name, sizeof name), 0);
  CHECK_EQ(info.start, a + 4 * PAGE);
  CHECK_EQ(info.end, a + 6 * PAGE);
  CHECK(strcmp(name, "[anon:jit code]") == 0);
  memset(&w, 0, sizeof w);
  w.vs = vs;
  CHECK_EQ(vmspace_vmas(vs, a + 4 * PAGE, a + 6 * PAGE, walk_fn, &w), 0);
  CHECK_EQ(w.calls, 1);
  CHECK(strcmp(w.names[0], "[anon:jit code]") == 0);
  CHECK_EQ(vmspace_map_count(vs), 6);
  CHECK_EQ(vmspace_set_anon_name(vs, a + 4 * PAGE, 2 * PAGE, NULL), 0);
  CHECK_EQ(vmspace_map_count(vs), 4);
  CHECK_EQ(vmspace_set_anon_name(vs, a, PAGE, "bad$name"), -EINVAL);
  CHECK_EQ(vmspace_set_anon_name(vs, a + 1, PAGE, "x"), -EINVAL);
  CHECK_EQ(vmspace_set_anon_name(vs, (uint64_t)m, PAGE, "x"), -EBADF);
  CHECK_EQ(vmspace_set_anon_name(vs, a + 8 * PAGE, PAGE, "x"), -ENOMEM);
  CHECK_EQ(vmspace_validate(vs, NULL, 0), 1);
  CHECK_EQ(vmspace_close(vs, fd), 0);
  vmspace_destroy(vs);
}

/* ---- Invalidation notifiers ---- */

struct events {
  int starts, ends;
  uint64_t start, end;
  vmspace_invalidate_reason_t reason;
  vmspace_t* vs;
  uint64_t generation; /* seen by the last start */
};

static void on_start(void* arg, uint64_t start, uint64_t end, vmspace_invalidate_reason_t reason) {
  struct events* e = arg;
  ++e->starts;
  e->start = start;
  e->end = end;
  e->reason = reason;
  e->generation = vmspace_translation_generation(e->vs); /* allowed here */
}

static void on_end(void* arg, uint64_t start, uint64_t end, vmspace_invalidate_reason_t reason) {
  struct events* e = arg;
  ++e->ends;
  CHECK_EQ(start, e->start);
  CHECK_EQ(end, e->end);
  CHECK_EQ(reason, e->reason);
}

static void test_notifiers(int mode) {
  vmspace_t* vs = make_space(mode);
  vmspace_t* other = make_space(mode);
  const uint64_t a = map_anon(vs, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
  vmspace_notifier_ops_t ops;
  vmspace_notifier_t *n = NULL, *n2 = NULL, *kept = NULL;
  struct events e, e2;
  struct {
    vmspace_notifier_ops_t ops;
    void* newer_callback;
  } big;
  uint64_t g0;

  memset(&e, 0, sizeof e);
  memset(&e2, 0, sizeof e2);
  e.vs = e2.vs = vs;
  memset(&ops, 0, sizeof ops);
  ops.struct_size = sizeof ops;
  ops.invalidate_range_start = on_start;
  ops.invalidate_range_end = on_end;
  CHECK_EQ(vmspace_notifier_register(vs, &ops, &e, &n), 0);
  CHECK(n != NULL);

  /* munmap: start and end with the range and the reason; the generation
   * moved before the start and again after. */
  CHECK_EQ(vmspace_fill(vs, a, 1, 8 * PAGE).kind, VMSPACE_FAULT_NONE);
  g0 = vmspace_translation_generation(vs);
  CHECK_EQ(vmspace_munmap(vs, a + 6 * PAGE, 2 * PAGE), 0);
  CHECK_EQ(e.starts, 1);
  CHECK_EQ(e.ends, 1);
  CHECK_EQ(e.start, a + 6 * PAGE);
  CHECK_EQ(e.end, a + 8 * PAGE);
  CHECK_EQ(e.reason, VMSPACE_INVALIDATE_UNMAP);
  CHECK(e.generation > g0);
  CHECK(vmspace_translation_generation(vs) > e.generation);
  /* Other reasons. */
  CHECK_EQ(vmspace_mprotect(vs, a, PAGE, PROT_READ), 0);
  CHECK_EQ(e.reason, VMSPACE_INVALIDATE_PROTECTION);
  CHECK_EQ(vmspace_madvise(vs, a + PAGE, PAGE, MADV_DONTNEED), 0);
  CHECK_EQ(e.reason, VMSPACE_INVALIDATE_DISCARD);
  CHECK_EQ(e.start, a + PAGE);
  CHECK_EQ(e.starts, e.ends);
  /* Nothing changed, nothing called. */
  e.starts = 0;
  CHECK_EQ(vmspace_munmap(vs, a + 6 * PAGE, PAGE), 0);
  CHECK_EQ(e.starts, 0);

  /* A second notifier without an end callback; both are called. */
  memset(&ops, 0, sizeof ops);
  ops.struct_size = sizeof ops;
  ops.invalidate_range_start = on_start;
  CHECK_EQ(vmspace_notifier_register(vs, &ops, &e2, &n2), 0);
  CHECK_EQ(vmspace_munmap(vs, a + 5 * PAGE, PAGE), 0);
  CHECK_EQ(e.starts, 1);
  CHECK_EQ(e2.starts, 1);
  CHECK_EQ(e2.ends, 0);
  /* Unregistered: no more calls. */
  CHECK_EQ(vmspace_notifier_unregister(vs, n), 0);
  CHECK_EQ(vmspace_munmap(vs, a + 4 * PAGE, PAGE), 0);
  CHECK_EQ(e.starts, 1);
  CHECK_EQ(e2.starts, 2);
  /* A handle of another space is not this one's. */
  CHECK_EQ(vmspace_notifier_unregister(other, n2), -ENOENT);
  CHECK_EQ(vmspace_notifier_unregister(vs, n2), 0);

  /* Argument errors. */
  ops.struct_size = sizeof ops;
  CHECK_EQ(vmspace_notifier_register(vs, NULL, &e, &n), -EFAULT);
  CHECK_EQ(vmspace_notifier_register(vs, &ops, &e, NULL), -EFAULT);
  ops.invalidate_range_start = NULL;
  CHECK_EQ(vmspace_notifier_register(vs, &ops, &e, &n), -EINVAL);
  ops.invalidate_range_start = on_start;
  ops.struct_size = 0;
  CHECK_EQ(vmspace_notifier_register(vs, &ops, &e, &n), -EINVAL);
  memset(&big, 0, sizeof big);
  big.ops.struct_size = sizeof big;
  big.ops.invalidate_range_start = on_start;
  big.newer_callback = &big;
  CHECK_EQ(vmspace_notifier_register(vs, &big.ops, &e, &n), -E2BIG);
  big.newer_callback = NULL;
  CHECK_EQ(vmspace_notifier_register(vs, &big.ops, &e, &kept), 0);
  CHECK_EQ(vmspace_notifier_unregister(vs, NULL), -EINVAL);
  /* `kept` stays registered: destroying the space frees it, calling
   * nothing. */
  e.starts = 0;
  vmspace_destroy(vs);
  CHECK_EQ(e.starts, 0);
  vmspace_destroy(other);
}

/* ---- Write-watch ---- */

struct watch {
  int calls;
  vmspace_t* vs_seen;
  uint64_t page;
  unsigned char byte_before; /* what the page held when reported */
};

static void on_write(void* arg, vmspace_t* vs, uint64_t page) {
  struct watch* w = arg;
  ++w->calls;
  w->vs_seen = vs;
  w->page = page;
  /* The write has not landed yet. */
  CHECK_EQ(vmspace_read(vs, page, &w->byte_before, 1).kind, VMSPACE_FAULT_NONE);
}

static void test_write_watch(int mode) {
  vmspace_t* vs = make_space(mode);
  const uint64_t a = map_anon(vs, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
  struct watch w, w2;
  uint64_t pages[8], walk_end = 0;
  vmspace_access_result_t r;

  memset(&w, 0, sizeof w);
  memset(&w2, 0, sizeof w2);
  CHECK_EQ(vmspace_fill(vs, a, 0x11, 8 * PAGE).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(vmspace_set_write_watch(vs, on_write, &w), 0);
  CHECK_EQ(vmspace_write_watch_arm(vs, a, 8 * PAGE), 0);

  /* The first write to an armed page reports it, once, before it lands;
   * the handle given is the space's own. */
  CHECK_EQ(vmspace_write(vs, a + 3 * PAGE + 10, "x", 1).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(w.calls, 1);
  CHECK(w.vs_seen == vs);
  CHECK_EQ(w.page, a + 3 * PAGE);
  CHECK_EQ(w.byte_before, 0x11);
  CHECK_EQ(vmspace_write(vs, a + 3 * PAGE + 11, "y", 1).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(w.calls, 1);
  /* Atomics report too. */
  CHECK_EQ(vmspace_atomic_store(vs, a + 5 * PAGE, 4, 1, &r), 0);
  CHECK_EQ(w.calls, 2);
  CHECK_EQ(w.page, a + 5 * PAGE);
  /* Reads do not. */
  CHECK_EQ(vmspace_read(vs, a + 6 * PAGE, pages, 8).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(w.calls, 2);

  /* scan: the written pages, re-armed on request. */
  CHECK_EQ(vmspace_write_watch_scan(vs, a, 8 * PAGE, 1, pages, 8, &walk_end), 2);
  CHECK_EQ(pages[0], a + 3 * PAGE);
  CHECK_EQ(pages[1], a + 5 * PAGE);
  CHECK_EQ(walk_end, a + 8 * PAGE);
  CHECK_EQ(vmspace_write_watch_scan(vs, a, 8 * PAGE, 0, pages, 8, NULL), 0);
  CHECK_EQ(vmspace_write(vs, a + 3 * PAGE, "z", 1).kind, VMSPACE_FAULT_NONE); /* re-armed */
  CHECK_EQ(w.calls, 3);
  /* max_pages: one at a time, walk_end says where to go on. */
  CHECK_EQ(vmspace_write(vs, a + 6 * PAGE, "z", 1).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(w.calls, 4);
  CHECK_EQ(vmspace_write_watch_scan(vs, a, 8 * PAGE, 1, pages, 1, &walk_end), 1);
  CHECK_EQ(pages[0], a + 3 * PAGE);
  CHECK(walk_end > a + 3 * PAGE && walk_end <= a + 6 * PAGE);
  CHECK_EQ(vmspace_write_watch_scan(vs, walk_end, a + 8 * PAGE - walk_end, 1, pages, 1, &walk_end), 1);
  CHECK_EQ(pages[0], a + 6 * PAGE);
  CHECK_EQ(vmspace_write_watch_scan(vs, walk_end, a + 8 * PAGE - walk_end, 1, pages, 1, &walk_end), 0);
  CHECK_EQ(walk_end, a + 8 * PAGE);
  /* Both were re-armed by the partial scans, and report again. */
  CHECK_EQ(vmspace_fill(vs, a + 6 * PAGE, 0, 1).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(w.calls, 5);
  CHECK_EQ(vmspace_write_watch_scan(vs, a, 0, 1, pages, 1, &walk_end), 0);
  CHECK_EQ(walk_end, a);

  /* Another callback: the new one is called. */
  CHECK_EQ(vmspace_set_write_watch(vs, on_write, &w2), 0);
  CHECK_EQ(vmspace_write(vs, a + 3 * PAGE, "z", 1).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(w.calls, 5);
  CHECK_EQ(w2.calls, 1);
  /* Disarmed: no report. */
  CHECK_EQ(vmspace_write_watch_disarm(vs, a, 8 * PAGE), 0);
  CHECK_EQ(vmspace_write(vs, a + 7 * PAGE, "z", 1).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(w2.calls, 1);
  /* No callback: armed pages are written silently (and still scanned). */
  CHECK_EQ(vmspace_set_write_watch(vs, NULL, NULL), 0);
  CHECK_EQ(vmspace_write_watch_arm(vs, a, PAGE), 0);
  CHECK_EQ(vmspace_write(vs, a, "z", 1).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(vmspace_write_watch_scan(vs, a, PAGE, 0, pages, 8, NULL), 1);

  /* Errors. */
  CHECK_EQ(vmspace_write_watch_arm(vs, a + 1, PAGE), -EINVAL);
  CHECK_EQ(vmspace_write_watch_arm(vs, a, UINT64_MAX - PAGE), -EINVAL);
  CHECK_EQ(vmspace_write_watch_arm(vs, a + 7 * PAGE, 2 * PAGE), -ENOMEM); /* a hole after */
  CHECK_EQ(vmspace_write_watch_disarm(vs, a + 1, PAGE), -EINVAL);
  CHECK_EQ(vmspace_write_watch_scan(vs, a + 1, PAGE, 0, pages, 8, NULL), -EINVAL);
  CHECK_EQ(vmspace_write_watch_scan(vs, a, UINT64_MAX - PAGE, 0, pages, 8, NULL), -EINVAL);
  CHECK_EQ(vmspace_write_watch_scan(vs, a, PAGE, 0, pages, 0, NULL), -EINVAL);
  CHECK_EQ(vmspace_write_watch_scan(vs, a, PAGE, 0, NULL, 8, NULL), -EFAULT);
  /* Past TASK_SIZE: refused before anything is re-armed. */
  CHECK_EQ(vmspace_write_watch_scan(vs, a, VMSPACE_TASK_SIZE_47, 1, pages, 1, NULL), -EINVAL);
  vmspace_destroy(vs);
}

/* ---- Counters, files between spaces, backings ---- */

static void test_vm_stat(int mode) {
  vmspace_t* vs = make_space(mode);
  const uint64_t a = map_anon(vs, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
  uint64_t before = 0, after = 0, v;

  CHECK_EQ(vmspace_vm_stat(vs, VMSPACE_STAT_PGFAULT, &before), 0);
  CHECK_EQ(vmspace_fill(vs, a, 1, PAGE).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(vmspace_vm_stat(vs, VMSPACE_STAT_PGFAULT, &after), 0);
  CHECK(after > before);
  CHECK_EQ(vmspace_vm_stat(vs, VMSPACE_STAT_MADVISE_MMAP_LOCK, &v), 0);
  CHECK_EQ(vmspace_vm_stat(vs, VMSPACE_STAT_RANGE_LOCK_RETRY, &v), 0);
  CHECK_EQ(vmspace_vm_stat(vs, (vmspace_vm_stat_t)10, &v), -EINVAL);
  CHECK_EQ(vmspace_vm_stat(vs, (vmspace_vm_stat_t)-1, &v), -EINVAL);
  CHECK_EQ(vmspace_vm_stat(vs, VMSPACE_STAT_PGFAULT, NULL), -EFAULT);
  vmspace_destroy(vs);
}

static void test_send_file(int mode) {
  vmspace_pool_t* pool = NULL;
  vmspace_options_t o;
  vmspace_t *a = NULL, *b = NULL;
  vmspace_t* lone = make_space(mode);
  char buf[8];
  int fd, fd_b;
  int64_t m;

  CHECK_EQ(vmspace_pool_create(64 * PAGE, 0, &pool), 0);
  vmspace_options_init(&o);
  o.lock_mode = mode;
  o.pool = pool;
  CHECK_EQ(vmspace_create(&o, &a), 0);
  CHECK_EQ(vmspace_create(&o, &b), 0);
  vmspace_pool_destroy(pool);
  fd = vmspace_memfd_create(a, "shared");
  CHECK(fd >= 0);
  CHECK_EQ(vmspace_pwrite(a, fd, "sent", 4, 0), 4);
  fd_b = vmspace_send_file(a, fd, b);
  CHECK(fd_b >= 0);
  m = vmspace_mmap(b, 0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd_b, 0);
  CHECK(m > 0);
  CHECK_EQ(vmspace_read(b, (uint64_t)m, buf, 4).kind, VMSPACE_FAULT_NONE);
  CHECK(memcmp(buf, "sent", 4) == 0);
  CHECK_EQ(vmspace_write(b, (uint64_t)m, "back", 4).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(vmspace_pread(a, fd, buf, 4, 0), 4);
  CHECK(memcmp(buf, "back", 4) == 0);
  /* Errors: another pool, a closed descriptor, no target. */
  CHECK_EQ(vmspace_send_file(a, fd, lone), -EXDEV);
  CHECK_EQ(vmspace_send_file(a, 99, b), -EBADF);
  CHECK_EQ(vmspace_send_file(a, fd, NULL), -EINVAL);
  vmspace_destroy(a);
  vmspace_destroy(b);
  vmspace_destroy(lone);
}

/* A file of 2 pages in host memory, behind C functions. */
struct mem_file {
  unsigned char bytes[2 * PAGE];
  int64_t size;      /* what size() returns */
  int pages_written; /* write_page calls */
  int syncs;
  int released;
};

static int64_t mf_size(void* arg) { return ((struct mem_file*)arg)->size; }
static int mf_read_page(void* arg, uint64_t index, void* buf) {
  struct mem_file* f = arg;
  if (index >= 2) {
    memset(buf, 0, PAGE);
    return 0;
  }
  memcpy(buf, f->bytes + index * PAGE, PAGE);
  return 0;
}
static int mf_write_page(void* arg, uint64_t index, const void* buf, size_t len) {
  struct mem_file* f = arg;
  if (index >= 2) return -ENOSPC;
  memcpy(f->bytes + index * PAGE, buf, len);
  ++f->pages_written;
  return 0;
}
static int mf_truncate(void* arg, uint64_t bytes) {
  struct mem_file* f = arg;
  if (bytes > sizeof f->bytes) return -EFBIG;
  f->size = (int64_t)bytes;
  return 0;
}
static int mf_sync(void* arg) {
  ++((struct mem_file*)arg)->syncs;
  return 0;
}
static void mf_release(void* arg) { ++((struct mem_file*)arg)->released; }

static void test_backing(int mode) {
  vmspace_t* vs = make_space(mode);
  static struct mem_file f; /* static: 8 KiB */
  vmspace_backing_ops_t ops;
  vmspace_vma_info_t info;
  char buf[8], name[64];
  int fd;
  int64_t m;

  memset(&f, 0, sizeof f);
  memcpy(f.bytes + PAGE, "backed", 6);
  f.size = 2 * PAGE;
  memset(&ops, 0, sizeof ops);
  ops.struct_size = sizeof ops;
  ops.size = mf_size;
  ops.read_page = mf_read_page;
  ops.write_page = mf_write_page;
  ops.truncate = mf_truncate;
  ops.sync = mf_sync;
  ops.release = mf_release;
  ops.ino = 1234;

  fd = vmspace_open_backing(vs, &ops, &f, "/guest/file", O_RDWR);
  CHECK(fd >= 0);
  m = vmspace_mmap(vs, 0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  CHECK(m > 0);
  CHECK_EQ(vmspace_read(vs, (uint64_t)m + PAGE, buf, 6).kind, VMSPACE_FAULT_NONE);
  CHECK(memcmp(buf, "backed", 6) == 0);
  info.struct_size = sizeof info;
  CHECK_EQ(vmspace_find_vma(vs, (uint64_t)m, &info, name, sizeof name), 0);
  CHECK(strcmp(name, "/guest/file") == 0);
  /* Written back by msync, synced with MS_SYNC. */
  CHECK_EQ(vmspace_write(vs, (uint64_t)m, "dirty", 5).kind, VMSPACE_FAULT_NONE);
  CHECK_EQ(vmspace_msync(vs, (uint64_t)m, 2 * PAGE, MS_SYNC), 0);
  CHECK_EQ(f.pages_written, 1);
  CHECK(memcmp(f.bytes, "dirty", 5) == 0);
  CHECK(f.syncs >= 1);
  /* No punch_hole: MADV_REMOVE is refused as Linux refuses it for file
   * systems that cannot. */
  CHECK_EQ(vmspace_madvise(vs, (uint64_t)m, PAGE, MADV_REMOVE), -EOPNOTSUPP);
  CHECK_EQ(vmspace_ftruncate(vs, fd, PAGE), 0);
  CHECK_EQ(f.size, PAGE);
  CHECK_EQ(vmspace_close(vs, fd), 0);
  CHECK_EQ(f.released, 0); /* still mapped */

  /* Errors; a failed open never releases arg. */
  CHECK_EQ(vmspace_open_backing(vs, NULL, &f, "x", O_RDONLY), -EFAULT);
  CHECK_EQ(vmspace_open_backing(vs, &ops, &f, NULL, O_RDONLY), -EFAULT);
  CHECK_EQ(vmspace_open_backing(vs, &ops, &f, "x", O_CREAT), -EINVAL);
  ops.truncate = NULL;
  CHECK_EQ(vmspace_open_backing(vs, &ops, &f, "x", O_RDONLY), -EINVAL);
  ops.truncate = mf_truncate;
  ops.struct_size = 8;
  CHECK_EQ(vmspace_open_backing(vs, &ops, &f, "x", O_RDONLY), -EINVAL);
  ops.struct_size = sizeof ops;
  /* The same identity (dev, ino) while the file is mapped: that file is
   * opened again, the new backing is not used and released at once. */
  {
    static struct mem_file f2;
    int fd2;
    memset(&f2, 0, sizeof f2);
    f2.size = -EIO; /* not even asked */
    fd2 = vmspace_open_backing(vs, &ops, &f2, "/guest/again", O_RDONLY);
    CHECK(fd2 >= 0);
    CHECK_EQ(f2.released, 1);
    CHECK_EQ(vmspace_pread(vs, fd2, buf, 5, 0), 5);
    CHECK(memcmp(buf, "dirty", 5) == 0);
    CHECK_EQ(vmspace_close(vs, fd2), 0);
  }
  ops.ino = 0; /* a file of its own */
  f.size = -EIO;
  CHECK_EQ(vmspace_open_backing(vs, &ops, &f, "x", O_RDONLY), -EIO);
  CHECK_EQ(f.released, 0);

  /* The last mapping gone: the file is let go, release called once (by
   * the time the space with its own pool is destroyed). */
  CHECK_EQ(vmspace_munmap(vs, (uint64_t)m, 2 * PAGE), 0);
  vmspace_destroy(vs);
  CHECK_EQ(f.released, 1);
}

int main(void) {
  static const int modes[] = {VMSPACE_LOCK_MMAP_LOCK, VMSPACE_LOCK_PER_VMA_RWSEM,
                              VMSPACE_LOCK_PER_VMA_REFCOUNT, VMSPACE_LOCK_PER_VMA_RANGE};
  size_t i;

  for (i = 0; i < sizeof modes / sizeof modes[0]; ++i) {
    test_atomics(modes[i]);
    test_futex_key(modes[i]);
    test_layout(modes[i]);
    test_notifiers(modes[i]);
    test_write_watch(modes[i]);
    test_vm_stat(modes[i]);
    test_send_file(modes[i]);
    test_backing(modes[i]);
  }
  printf("c_api_embedder_test: %d checks passed\n", g_checks);
  return 0;
}
