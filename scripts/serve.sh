#!/usr/bin/env bash
# Installs wcsvod (re-runnably) and runs it in the foreground with the default
# config and the bundled media/sample.mp4. Extra arguments go to `wcsvod`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/twistd -n --pidfile= wcsvod "$@"
