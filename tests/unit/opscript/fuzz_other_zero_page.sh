#!/bin/sh
# fuzz-kernel with vmspace forced to the other zero-page behaviour than this
# host's: every run that differs must agree again once vmspace is this host
# (0 divergences), and with this seed some runs do differ (the forcing and
# the re-check both work).  Usage: fuzz_other_zero_page.sh VMSPACE OUTDIR
set -eu
vmspace=$1 out=$2
host=$("$vmspace" fuzz-kernel --seed 1 --runs 1 --ops 1 --out "$out" | head -n 1)
case "$host" in
  *zero_page=yes*) other=no ;;
  *zero_page=no*) other=yes ;;
  *) echo "no zero_page fact in: $host" >&2; exit 1 ;;
esac
echo "$host; vmspace runs as zero_page=$other"
exec "$vmspace" fuzz-kernel --seed 5 --runs 60 --ops 150 --out "$out" --host "zero_page=$other"
