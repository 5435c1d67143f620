#!/usr/bin/env bash
# Installs everything the tests need (re-runnably) and runs the whole suite in a
# fresh network namespace that has only loopback, after ruff and mypy have checked
# wcs/. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
# the code's own checks first: lint, format and types (ruff.toml, mypy.ini)
.venv/bin/ruff check wcs twisted
.venv/bin/ruff format --check wcs twisted
.venv/bin/mypy
# pytest caches its rewritten test modules, and edited modules are compiled once
unset PYTHONDONTWRITEBYTECODE
if [ "$(id -u)" = 0 ]; then netns=(unshare -n); else netns=(unshare -rn); fi
exec "${netns[@]}" -- sh -c 'ip link set lo up && exec .venv/bin/python -m pytest "$@"' pytest "$@"
