#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Instructions per page fault in each lock mode, counted by callgrind
# (issue 7).  Unlike a timing, the count does not depend on what else the
# machine is doing: the same binary gives the same figure every run.
#
# For each mode it runs `vmspace touch --mode MODE --pages N --rounds 2`
# under callgrind twice, with N1 and N2 pages, and prints
#
#   (Ir(N2) - Ir(N1)) / ((N2 - N1) * rounds)
#
# The difference cancels every fixed cost (set-up, the first use of the
# per-thread frame cache, the per-round madvise call), so what is left is
# the cost that grows with the number of faults.  Only instructions inside
# vmspace::cli::touch_round() are counted (--toggle-collect): not the
# AddressSpace set-up, the teardown at exit, or liburcu's call_rcu thread,
# which returns freed frames to the pool after a grace period and whose
# polling depends on thread scheduling.
#
# Usage: scripts/callgrind-fault.sh [--build DIR] [--pages N1,N2]
# (KEEP=1 in the environment keeps the callgrind.out files in the temp dir.)
# Exit status: 0 printed the table, 1 a run failed or a figure was not
# positive, 2 a usage or setup error.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
default_build="$root/build/release"
build="$default_build"
pages1=1024
pages2=5120
rounds=2
modes=(mmap_lock per_vma_rwsem per_vma_refcount)

usage() {
  cat <<EOF
Usage: $0 [--build DIR] [--pages N1,N2]

Prints the callgrind instruction count of one page fault in each lock mode:
the Ir difference of two \`vmspace touch --rounds $rounds\` runs with N1 and N2
pages, divided by the difference in faults.  Repeatable on noisy machines.

  --build DIR     build tree holding the vmspace binary (default: build/release;
                  built with the release preset if missing)
  --pages N1,N2   the two page counts, N1 < N2 (default: $pages1,$pages2)
  -h, --help      show this help
EOF
}

die() { echo "callgrind-fault: $*" >&2; exit 2; }
progress() { echo "[callgrind-fault] $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --build) [ $# -ge 2 ] || die "--build needs a directory"; build="$2"; shift 2 ;;
    --build=*) build="${1#--build=}"; shift ;;
    --pages) [ $# -ge 2 ] || die "--pages needs N1,N2"; pages_arg="$2"; shift 2 ;;
    --pages=*) pages_arg="${1#--pages=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "callgrind-fault: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
if [ -n "${pages_arg:-}" ]; then
  [[ "$pages_arg" =~ ^([0-9]+),([0-9]+)$ ]] || die "--pages wants N1,N2 (two page counts), not '$pages_arg'"
  pages1=$((10#${BASH_REMATCH[1]}))
  pages2=$((10#${BASH_REMATCH[2]}))
  if [ "$pages1" -lt 1 ] || [ "$pages2" -le "$pages1" ]; then
    die "--pages wants 1 <= N1 < N2, not $pages1,$pages2"
  fi
fi

for tool in valgrind callgrind_annotate; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "callgrind-fault: $tool not found; install valgrind:" >&2
    echo "  sudo apt-get install -y valgrind     (or ./scripts/setup.sh)" >&2
    exit 2
  fi
done

bin="$build/vmspace"
if [ ! -x "$bin" ]; then
  if [ "$(realpath -m "$build")" = "$default_build" ]; then
    progress "no $bin: building the release preset"
    (cd "$root" && cmake --preset release >&2 && cmake --build --preset release -j2 --target vmspace >&2)
  elif [ -f "$build/CMakeCache.txt" ]; then
    progress "no $bin: building target vmspace in $build"
    cmake --build "$build" -j2 --target vmspace >&2
  else
    die "no vmspace binary in $build (and no CMake build tree there to build it in)"
  fi
  [ -x "$bin" ] || die "building did not produce $bin"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/callgrind-fault.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT

# Ir of the functions whose name matches the extended regex $2 in
# callgrind_annotate's listing of $1.  Exclusive costs ($3 = no): inlined
# code is listed under the file it came from, so one function can have
# several lines, and they are added up.  Inclusive costs ($3 = yes): the
# largest line (a call's cost can be listed under two spellings of the
# caller's file, and adding them would count it twice).
annotate_ir() {
  callgrind_annotate --auto=no --threshold=100 --show-percs=no --inclusive="$3" "$1" |
    RE="$2" INCL="$3" awk '
      /^ *[0-9][0-9,]* +[^ ]/ {
        n = $1; gsub(",", "", n)
        line = $0; sub(/^ *[0-9,]+ +/, "", line)
        fn = substr(line, index(line, ":") + 1)
        if (fn ~ ENVIRON["RE"]) {
          if (ENVIRON["INCL"] == "yes") { if (n + 0 > s) s = n + 0 } else s += n
        }
      }
      END { printf "%d\n", s }'
}

# run MODE PAGES: prints "total zeroing dontneed" Ir.
run() {
  local mode=$1 pages=$2 out="$tmp/$1.$2"
  if ! valgrind --tool=callgrind --callgrind-out-file="$out.cg" --log-file="$out.log" \
      --toggle-collect='vmspace::cli::touch_round*' \
      "$bin" touch --mode "$mode" --pages "$pages" --rounds "$rounds" >"$out.stdout" 2>"$out.stderr"; then
    echo "callgrind-fault: vmspace touch --mode $mode --pages $pages --rounds $rounds failed:" >&2
    cat "$out.stderr" "$out.log" >&2
    exit 1
  fi
  local want="touched $pages pages x $rounds rounds in $mode mode (pgfault=$((pages * rounds)) "
  if ! grep -qF "$want" "$out.stdout"; then
    echo "callgrind-fault: unexpected output from vmspace touch (wanted '$want...'):" >&2
    cat "$out.stdout" "$out.stderr" >&2
    exit 1
  fi
  local total
  total=$(awk '/^totals:/ { t = $2 } /^summary:/ && t == "" { t = $2 } END { print t }' "$out.cg")
  [[ "$total" =~ ^[0-9]+$ ]] || { echo "callgrind-fault: no Ir total in $out.cg" >&2; exit 1; }
  echo "$total" \
    "$(annotate_ir "$out.cg" '^(vmspace::mem::PhysMem::alloc_zeroed\(|(__)?memset)' no)" \
    "$(annotate_ir "$out.cg" '^vmspace::AddressSpace::madvise\(' yes)"
}

# per_fault IR1 IR2: (IR2 - IR1) per fault in the difference, one decimal.
faults=$(((pages2 - pages1) * rounds))
per_fault() { awk -v a="$1" -v b="$2" -v f="$faults" 'BEGIN { printf "%.1f\n", (b - a) / f }'; }

start=$SECONDS
rows=()
status=0
for mode in "${modes[@]}"; do
  progress "$mode: $pages1 and $pages2 pages x $rounds rounds under callgrind"
  run "$mode" "$pages1" >"$tmp/$mode.ir1"
  run "$mode" "$pages2" >"$tmp/$mode.ir2"
  read -r t1 z1 d1 <"$tmp/$mode.ir1"
  read -r t2 z2 d2 <"$tmp/$mode.ir2"
  ir=$(per_fault "$t1" "$t2")
  if ! awk -v x="$ir" 'BEGIN { exit !(x > 0) }'; then
    echo "callgrind-fault: $mode: instructions/fault is $ir (Ir $t1 -> $t2), not positive" >&2
    status=1
  fi
  rows+=("$(printf '%-18s %18s  %17s  %17s' "$mode" "$ir" "$(per_fault "$z1" "$z2")" "$(per_fault "$d1" "$d2")")")
done
progress "done in $((SECONDS - start)) s"

printf '%-18s %18s  %17s  %17s\n' mode instructions/fault "of which zeroing" "of which DONTNEED"
printf '%s\n' "${rows[@]}"
cat <<EOF

$("$bin" info | head -n 1); pages $pages1 -> $pages2, --rounds $rounds ($faults faults in the difference)
instructions/fault: callgrind Ir inside touch_round() per write fault on a
  private anonymous page: the fault path (VMA lookup and lock in that mode,
  page-table walk, allocating and zeroing a 4 KiB frame, installing the PTE)
  plus, with --rounds $rounds, half a MADV_DONTNEED zap per fault (every page
  is faulted twice and discarded once); page tables are allocated once per
  512 pages and amortized.  Not counted: freed frames going back to the pool
  after the RCU grace period (liburcu's call_rcu thread).
of which zeroing: PhysMem::alloc_zeroed and memset, i.e. clearing the
  frame (callgrind counts each iteration of a rep stos as one instruction).
of which DONTNEED: AddressSpace::madvise (inclusive) per fault.
EOF
exit $status
