#!/usr/bin/env bash
# Runs benchmarks in a loopback-only namespace, after installing what the tests
# need. Usage: scripts/bench.sh [bench/file.py ...] [--option value ...]
# With no file, every benchmark runs; options go to each file named.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
if [ "$(id -u)" = 0 ]; then netns=(unshare -n); else netns=(unshare -rn); fi
files=(); options=()
for arg in "$@"; do
  case "$arg" in *.py) files+=("$arg") ;; *) options+=("$arg") ;; esac
done
if [ ${#files[@]} -eq 0 ]; then
  for file in bench/*.py; do
    # stock_server.py is the baseline server that live_fanout.py starts, not a benchmark
    [ "$file" = bench/stock_server.py ] || files+=("$file")
  done
fi
exec "${netns[@]}" -- sh -c 'ip link set lo up && n=$1 && shift &&
  while [ "$n" -gt 0 ]; do files="$files $1"; shift; n=$((n - 1)); done &&
  for b in $files; do .venv/bin/python "$b" "$@" || exit 1; done' \
  bench "${#files[@]}" "${files[@]}" "${options[@]+"${options[@]}"}"
