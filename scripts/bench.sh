#!/usr/bin/env bash
# Runs one benchmark (default: all of bench/) in a loopback-only namespace,
# after installing what the tests need. Usage: scripts/bench.sh [bench/file.py ...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
if [ "$(id -u)" = 0 ]; then netns=(unshare -n); else netns=(unshare -rn); fi
[ $# -gt 0 ] || set -- bench/*.py
exec "${netns[@]}" -- sh -c 'ip link set lo up && for b in "$@"; do .venv/bin/python "$b" || exit 1; done' bench "$@"
