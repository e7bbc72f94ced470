// SPDX-License-Identifier: MIT
#pragma once

namespace vmspace {

inline constexpr const char* kVersion = "0.1.0";

}  // namespace vmspace
