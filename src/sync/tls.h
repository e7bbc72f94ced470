// SPDX-License-Identifier: MIT
// tls.h - VMSPACE_TLS_FAST: the initial-exec TLS model for the small
// thread_locals on hot paths.
//
// The layers are compiled position-independent (libvmspace.so is made from
// the same objects), where a thread_local gets the general-dynamic model:
// an access calls __tls_get_addr, or, once the linker has relaxed it inside
// an executable, takes two or three instructions instead of one.  PIC cost
// the fault path 19-49 instructions per fault (callgrind-fault.sh), mostly
// in such accesses.  initial-exec reads the variable at a fixed offset
// from the thread pointer, as in a non-PIC build.  The price: libvmspace.so
// is marked STATIC_TLS, so a process that loads it with dlopen must find
// room for the library's whole TLS block in glibc's static TLS reserve
// (shared by every module loaded so; tunable rtld.optional_static_tls).
// The block is 132 bytes in a release build (1.3 KiB in debug builds, with
// the lock-order checker's per-thread state): keep thread_locals small.
// tests/consumer/dlopen.c checks that the library loads.
#pragma once

#define VMSPACE_TLS_FAST [[gnu::tls_model("initial-exec")]]
