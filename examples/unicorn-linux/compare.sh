#!/usr/bin/env bash
# compare.sh RUNNER MODE GUEST [ARGS...]
# Run GUEST natively and under `RUNNER --mode MODE $UNICORN_RUNNER_FLAGS`;
# fail unless both print the same stdout and end with the same exit status
# (a signal's death as the shell reports it: 128 + N).  The runner's stderr (its
# write-watch count) is shown, not compared.
set -u
runner=$1 mode=$2
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A subshell so that a guest killed by a signal is reported as 128 + N
# without the shell's own "Segmentation fault" line.
(exec "$@") >"$tmp/native.out" 2>"$tmp/native.err"
native=$?
# shellcheck disable=SC2086  # the flags are words
(exec "$runner" --mode "$mode" --stats ${UNICORN_RUNNER_FLAGS:-} "$@") >"$tmp/emu.out" 2>"$tmp/emu.err"
emu=$?

echo "native: exit $native; under vmspace-unicorn --mode $mode ${UNICORN_RUNNER_FLAGS:-}: exit $emu"
echo "--- runner stderr"
cat "$tmp/emu.err"
status=0
if [ "$native" != "$emu" ]; then
  echo "FAIL: exit status differs (native $native, emulated $emu)"
  status=1
fi
if ! diff -u --label native "$tmp/native.out" --label vmspace-unicorn "$tmp/emu.out"; then
  echo "FAIL: stdout differs"
  status=1
fi
[ $status -eq 0 ] && echo "--- stdout (identical)" && cat "$tmp/emu.out"
exit $status
