// SPDX-License-Identifier: MIT
// build_kind.h - which build this binary is (for `info` and bench reports).
#pragma once

namespace vmspace::cli {

constexpr const char* build_kind() {
#if defined(__SANITIZE_ADDRESS__)
  return "asan";
#elif defined(__SANITIZE_THREAD__)
  return "tsan";
#elif defined(NDEBUG)
  return "release";
#else
  return "debug";
#endif
}

}  // namespace vmspace::cli
