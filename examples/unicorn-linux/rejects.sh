#!/usr/bin/env bash
# rejects.sh RUNNER TEXT_FILE STATIC_GUEST
# The runner refuses what it cannot run with a message and exit status 2:
# no such file, not an ELF file, a truncated one, a dynamically linked
# executable, bad usage.
set -u
runner=$1 text=$2 guest=$3
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 64 "$guest" >"$tmp/truncated"   # the ELF header alone
expect2() {
  local what=$1
  shift
  local err
  err=$("$runner" "$@" 2>&1 >/dev/null)
  local rc=$?
  if [ $rc -ne 2 ] || [ -z "$err" ]; then
    echo "FAIL: $what: exit $rc, message '$err' (want exit 2 and a message)"
    fail=1
  else
    echo "ok: $what: $err"
  fi
}
expect2 "no such file" /nonexistent/guest
expect2 "not an ELF file" "$text"
expect2 "a directory" /
expect2 "a truncated ELF file" "$tmp/truncated"
expect2 "a PIE, dynamically linked executable" /bin/sh
expect2 "no guest" --stats
expect2 "unknown lock mode" --mode fastest /bin/true
expect2 "unknown option" --frobnicate /bin/true
if ! "$runner" --help | grep -q '^usage: vmspace-unicorn'; then
  echo "FAIL: --help"
  fail=1
fi
exit $fail
