// SPDX-License-Identifier: MIT
// kernel_behavior.h - the kinds of Linux behaviour that differ between
// hosts and that an AddressSpace can be told to follow
// (AddressSpaceOptions in address_space.h).
#pragma once

#include <string_view>

namespace vmspace {

// /sys/kernel/mm/transparent_hugepage/enabled.
enum class ThpMode { always, madvise, never };
// vm.overcommit_memory: 0 (heuristic), 1 (always), 2 (never).
enum class Overcommit { guess, always, never };

constexpr std::string_view thp_mode_name(ThpMode m) {
  switch (m) {
    case ThpMode::always: return "always";
    case ThpMode::madvise: return "madvise";
    case ThpMode::never: return "never";
  }
  return "?";
}

constexpr std::string_view overcommit_name(Overcommit o) {
  switch (o) {
    case Overcommit::guess: return "guess";
    case Overcommit::always: return "always";
    case Overcommit::never: return "never";
  }
  return "?";
}

}  // namespace vmspace
