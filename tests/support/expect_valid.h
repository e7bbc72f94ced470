// SPDX-License-Identifier: MIT
// expect_valid.h - EXPECT_VALID(space, where): AddressSpace::validate()
// holds, or the test fails with `where` and validate's reason.
#pragma once

#include <gtest/gtest.h>

#include <string>

#define EXPECT_VALID(as, where)                                   \
  do {                                                            \
    std::string why_;                                             \
    EXPECT_TRUE((as).validate(&why_)) << (where) << ": " << why_; \
  } while (0)
