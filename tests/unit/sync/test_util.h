// SPDX-License-Identifier: MIT
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
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

// How long a thread that must get somewhere may take before a test
// declares the interleaving impossible.
inline constexpr auto kDeadline = std::chrono::seconds(10);

// A thread that cannot arrive where the test needs it is stuck for good
// (a deadlock, or the interleaving cannot happen): fail, don't hang.
inline void wait_or_die(const std::shared_future<void>& f, const char* what) {
  if (f.wait_for(kDeadline) != std::future_status::ready) {
    ADD_FAILURE() << what << ": did not happen within the deadline";
    std::fflush(nullptr);
    std::_Exit(1);
  }
}

template <class T>
T get_or_die(std::future<T>& f, const char* what) {
  if (f.wait_for(kDeadline) != std::future_status::ready) {
    ADD_FAILURE() << what << ": did not finish within the deadline";
    std::fflush(nullptr);
    std::_Exit(1);
  }
  return f.get();
}

template <class T>
bool is_ready(std::future<T>& f) {
  return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}
// Still running after kBlockedFor: presumably blocked.
template <class T>
bool is_blocked(std::future<T>& f) {
  return f.wait_for(kBlockedFor) == std::future_status::timeout;
}

}  // namespace vmspace::test
