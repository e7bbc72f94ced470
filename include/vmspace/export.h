/* SPDX-License-Identifier: MIT */
/* export.h - VMSPACE_API marks what libvmspace.so exports.
 *
 * The library is compiled with hidden symbols (-fvisibility=hidden, inline
 * functions too): a class or function of the public headers is part of the
 * shared library's ABI only when declared VMSPACE_API.  The same mark is
 * harmless in the static library and in code that includes the headers.
 * Usable from C and C++. */
#ifndef VMSPACE_EXPORT_H
#define VMSPACE_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define VMSPACE_API __attribute__((visibility("default")))
#else
#define VMSPACE_API
#endif

#endif /* VMSPACE_EXPORT_H */
