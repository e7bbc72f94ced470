#!/usr/bin/env bash
# run_model.sh - check one variant of a lock model (default vma_lock.pml,
# the per-VMA lock protocol; range_writers.pml, the planned per_vma_range
# mode) exhaustively with spin: generate the verifier, compile it, run it,
# and judge the result.
#
# Usage: run_model.sh [--model FILE] [--expect pass|REGEX] [--workdir DIR]
#                     [-- -DNAME[=V]...]
#   --model FILE     the model, a file name in this directory (default
#                    vma_lock.pml)
#   --expect pass    (default) the full state space is searched and no
#                    assertion fails and no process can block for good
#   --expect REGEX   a negative control: the verifier must find a
#                    counterexample whose error line (pan's "pan:1: ...")
#                    matches REGEX (grep -E); its trail is replayed into
#                    DIR/trail.txt
#   --workdir DIR    where pan.c, pan and the logs go (default: a new
#                    temporary directory, removed unless the check fails)
#   -D...            the model's switches, passed to spin (see the model)
# Environment: SPIN (default spin), CC (default cc), PAN_MEMLIM in MB
# (default 2048).  Prints one summary line (and the counterexample's
# assertion); exits 0 when the result is the expected one.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
name=vma_lock.pml
expect=pass
workdir=""
defs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model) name="$2"; shift 2 ;;
    --expect) expect="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --) shift; defs+=("$@"); break ;;
    -D*) defs+=("$1"); shift ;;
    *) echo "run_model.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

model="$here/$name"
[ -f "$model" ] || { echo "run_model.sh: no model '$model'" >&2; exit 2; }
spin="${SPIN:-spin}"
cc="${CC:-cc}"
memlim="${PAN_MEMLIM:-2048}"
command -v "$spin" >/dev/null || { echo "run_model.sh: '$spin' not found (apt-get install spin)" >&2; exit 2; }
command -v "$cc" >/dev/null || { echo "run_model.sh: C compiler '$cc' not found" >&2; exit 2; }

if [ -z "$workdir" ]; then
  workdir="$(mktemp -d "${TMPDIR:-/tmp}/${name%.pml}_model.XXXXXX")"
  # Kept when the result is not the expected one, for its logs and trail.
  trap 'rc=$?; [ $rc -ne 0 ] || rm -rf "$workdir"; exit $rc' EXIT
fi
mkdir -p "$workdir"
cd "$workdir"
rm -f pan pan.* ./*.trail pan.log trail.txt
# A local copy: pan names the trail after the model file, in this directory.
cp "$model" "$name"

dflt="(defaults)"
[ "$name" != vma_lock.pml ] || dflt="(default: per_vma_rwsem)"
label="$name ${defs[*]:-$dflt}"

# 1. The verifier.  -DSAFETY: assertions and invalid end states (deadlock),
#    no cycle search; -DCOLLAPSE: exact state storage, compressed.  A
#    negative control stops after a few thousand states: compiling pan.c
#    without optimisation is then the faster way.
"$spin" "${defs[@]}" -a "$name" >spin.log 2>&1 || { cat spin.log; echo "FAIL $label: spin -a"; exit 1; }
opt=-O2
[ "$expect" = pass ] || opt=-O0
"$cc" "$opt" -w -DSAFETY -DCOLLAPSE -DMEMLIM="$memlim" -o pan pan.c >cc.log 2>&1 \
  || { cat cc.log; echo "FAIL $label: compiling pan.c"; exit 1; }

# 2. The search (stops at the first error).  -m: DFS depth limit, far above
#    the model's depth (< 300) so the search is never truncated.
start=$(date +%s.%N)
set +e
./pan -m200000 >pan.log 2>&1
set -e
secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' pan.log | tail -1)
states=$(awk '/states, stored/ { print $1; exit }' pan.log)
if [ -z "$errors" ]; then
  cat pan.log
  echo "FAIL $label: no verdict from pan"
  exit 1
fi
summary="$label: errors $errors, $states states, ${secs}s"

if grep -qE 'max search depth too small|out of memory|reached -DMEMLIM|resize hashtable' pan.log \
   && [ "$errors" = 0 ]; then
  cat pan.log
  echo "FAIL $summary: the search was truncated"
  exit 1
fi

if [ "$expect" = pass ]; then
  if [ "$errors" = 0 ] && grep -q 'Full statespace search' pan.log; then
    echo "ok   $summary"
    exit 0
  fi
  grep -E '^pan:' pan.log || true
  # Replay the counterexample for whoever has to read it.
  "$spin" "${defs[@]}" -t -p -g -l "$name" >trail.txt 2>&1 || true
  tail -n 60 trail.txt
  echo "FAIL $summary (expected no error; trail in $workdir/trail.txt)"
  exit 1
fi

# A negative control: a counterexample of the expected kind.
what=$(grep -E '^pan:1: ' pan.log | head -1 || true)
if [ "$errors" != 0 ] && grep -qE "$expect" <<<"$what"; then
  "$spin" "${defs[@]}" -t -p -g -l "$name" >trail.txt 2>&1 || true
  echo "ok   $summary; counterexample as expected: ${what#pan:1: }"
  exit 0
fi
[ -n "$what" ] && echo "$what"
echo "FAIL $summary (expected a counterexample matching '$expect')"
exit 1
