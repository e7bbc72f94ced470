// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <thread>

namespace vmspace::test {

// Poll `pred` until it holds or `timeout` passes; returns its last value.
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return pred();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

// How long a test waits to be reasonably sure that a thread is blocked.
inline constexpr std::chrono::milliseconds kBlockedFor{50};

}  // namespace vmspace::test
