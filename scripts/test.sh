#!/usr/bin/env bash
# Build and run the whole test suite:
#   debug preset  every tier (unit, stress, differential, model, consumer),
#                 lock-order checker on
#   asan preset   every tier under AddressSanitizer + UBSan (and LeakSanitizer),
#                 but consumer (the install test runs once, in debug) and
#                 model (spin checks the Promela models: no code of ours
#                 runs, so a sanitizer adds nothing; it runs in debug)
#   tsan preset   the stress tier under ThreadSanitizer (only the stress
#                 executables are built: target stress_tests).  A test must fail
#                 twice in a row to fail: GCC 12's tsan runtime has shown a
#                 rare spurious race report under heavy release/acquire
#                 churn (the RCU annotations); a real race reproduces.
# Usage: scripts/test.sh [preset...]     (default: debug asan tsan)
# Exits non-zero as soon as any build or test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

presets=("$@")
[ ${#presets[@]} -eq 0 ] && presets=(debug asan tsan)

for preset in "${presets[@]}"; do
  echo "=== $preset: configure and build"
  cmake --preset "$preset" >/dev/null
  case "$preset" in
    tsan)
      cmake --build --preset "$preset" --target stress_tests
      labels=(-L stress --repeat until-pass:2) ;;
    asan)
      cmake --build --preset "$preset"
      labels=(-LE model) ;;
    *)
      cmake --build --preset "$preset"
      labels=() ;;
  esac
  echo "=== $preset: test ${labels[*]:-(all tiers)}"
  ctest --preset "$preset" "${labels[@]}"
done
