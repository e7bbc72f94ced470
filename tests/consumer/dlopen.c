/* SPDX-License-Identifier: MIT */
/* dlopen.c - libvmspace.so loaded at run time, as a language binding (or a
 * plugin host) loads it: its thread-local state must fit what a dlopen'ed
 * library may take (src/sync/tls.h).  Creates a space, maps, writes and
 * reads through functions looked up by name. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <vmspace/vmspace.h>

#define LOOKUP(name) \
  name##_fn = (__typeof__(name)*)dlsym(lib, #name); \
  if (name##_fn == NULL) return fprintf(stderr, "dlsym %s: %s\n", #name, dlerror()), 1

int main(void) {
  void* lib = dlopen("libvmspace.so.0", RTLD_NOW | RTLD_LOCAL);
  __typeof__(vmspace_options_init)* vmspace_options_init_fn;
  __typeof__(vmspace_create)* vmspace_create_fn;
  __typeof__(vmspace_mmap)* vmspace_mmap_fn;
  __typeof__(vmspace_write)* vmspace_write_fn;
  __typeof__(vmspace_read)* vmspace_read_fn;
  __typeof__(vmspace_destroy)* vmspace_destroy_fn;
  __typeof__(vmspace_version)* vmspace_version_fn;
  vmspace_options_t opts;
  vmspace_t* vs;
  char buf[8] = {0};
  int64_t a;

  if (lib == NULL) return fprintf(stderr, "dlopen: %s\n", dlerror()), 1;
  LOOKUP(vmspace_options_init);
  LOOKUP(vmspace_create);
  LOOKUP(vmspace_mmap);
  LOOKUP(vmspace_write);
  LOOKUP(vmspace_read);
  LOOKUP(vmspace_destroy);
  LOOKUP(vmspace_version);
  vmspace_options_init_fn(&opts);
  opts.phys_bytes = 16u << 20;
  opts.phys_pretouch = 0;
  if (vmspace_create_fn(&opts, &vs) != 0) return fprintf(stderr, "vmspace_create failed\n"), 1;
  a = vmspace_mmap_fn(vs, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (a < 0 || vmspace_write_fn(vs, (uint64_t)a, "dlopen", 7).kind != VMSPACE_FAULT_NONE ||
      vmspace_read_fn(vs, (uint64_t)a, buf, 7).kind != VMSPACE_FAULT_NONE || strcmp(buf, "dlopen") != 0)
    return fprintf(stderr, "map/write/read through dlopen failed\n"), 1;
  vmspace_destroy_fn(vs);
  printf("dlopen(libvmspace.so.0): vmspace %s, wrote and read \"%s\" at 0x%llx\n", vmspace_version_fn(), buf,
         (unsigned long long)a);
  dlclose(lib);
  return 0;
}
