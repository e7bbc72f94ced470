/* SPDX-License-Identifier: MIT */
/* check.h - the checks of the C API tests: plain C, no framework.  A
 * failed check prints itself and exits 1. */
#ifndef VMSPACE_TESTS_CAPI_CHECK_H
#define VMSPACE_TESTS_CAPI_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define PAGE 4096u

static int g_checks;

#define CHECK(cond)                                                       \
  do {                                                                    \
    ++g_checks;                                                           \
    if (!(cond)) {                                                        \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      exit(1);                                                            \
    }                                                                     \
  } while (0)

#define CHECK_EQ(a, b)                                                            \
  do {                                                                            \
    long long a_ = (long long)(a), b_ = (long long)(b);                           \
    ++g_checks;                                                                   \
    if (a_ != b_) {                                                               \
      fprintf(stderr, "%s:%d: %s == %lld, want %s == %lld\n", __FILE__, __LINE__, \
              #a, a_, #b, b_);                                                    \
      exit(1);                                                                    \
    }                                                                             \
  } while (0)

#endif /* VMSPACE_TESTS_CAPI_CHECK_H */
