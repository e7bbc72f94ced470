#!/usr/bin/env bash
# Install every Debian package vmspace needs to build, test and benchmark.
# Idempotent: installs only what is missing, and runs `apt-get update` at
# most once (only when something must be installed).
set -euo pipefail

packages=(
  g++ cmake make pkg-config  # pkg-config: liburcu, and the consumer test (vmspace.pc)
  liburcu-dev
  libgtest-dev libgmock-dev
  libbenchmark-dev
  libcli11-dev
  nlohmann-json3-dev
  valgrind
  spin gcc            # the model tier: tests/model (spin, and cc for its verifiers)
  libunicorn-dev      # examples/unicorn-linux (vmspace-unicorn; gcc builds its guests)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "setup: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
