#!/usr/bin/env bash
# Installs what wcsvod needs, re-runnably: `scripts/install.sh` for the server,
# `scripts/install.sh --test` for the test suite too (Chromium, ffmpeg, the Web SDK,
# whip-whep).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=false
[ "${1:-}" = "--test" ] && want_test=true

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# System packages: only what is missing, so a re-run costs nothing.
apt_packages=()
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_packages+=(python3-venv)
# the C helper's SRTP uses OpenSSL's AES-GCM
[ -e /usr/include/openssl/evp.h ] || apt_packages+=(libssl-dev)
if $want_test; then
  command -v chromium >/dev/null || apt_packages+=(chromium)
  command -v ffmpeg >/dev/null || apt_packages+=(ffmpeg)
  command -v ip >/dev/null || apt_packages+=(iproute2)
  command -v unshare >/dev/null || apt_packages+=(util-linux)
  command -v npm >/dev/null || apt_packages+=(npm)
  command -v redis-server >/dev/null || apt_packages+=(redis-server)
  command -v stunnel4 >/dev/null || apt_packages+=(stunnel4)  # TLS in front of ffmpeg: an RTMPS receiver
  command -v promtool >/dev/null || apt_packages+=(prometheus)  # promtool checks /metrics (the suite runs no Prometheus)
  command -v turnserver >/dev/null || apt_packages+=(coturn)  # the TURN server viewers relay through
  command -v nft >/dev/null || apt_packages+=(nftables)  # blocks UDP in a test's namespace (ICE-TCP)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "install.sh: apt-get install ${apt_packages[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

# The Python environment, rebuilt only when setup.py or the C helper changes.
[ -x .venv/bin/python ] || python3 -m venv .venv
extra=""; $want_test && extra="[test]"
stamp=".venv/.installed$extra"
digest=$(cat setup.py wcs/webrtc/*.c | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  # compat mode puts the repository itself on sys.path, where twistd finds
  # twisted/plugins/wcsvod_plugin.py.
  if ! .venv/bin/pip install -q --disable-pip-version-check -e ".$extra" \
       --config-settings editable_mode=compat > .venv/install.log 2>&1; then
    cat .venv/install.log >&2
    exit 1
  fi
  echo "$digest" > "$stamp"
fi

# The official Web SDK, and medooze's WHIP/WHEP clients (whip-whep), for the
# end-to-end tests.
if $want_test && { [ ! -f node_modules/@flashphoner/websdk/flashphoner.js ] ||
                   [ ! -f node_modules/whip-whep/whep.js ]; }; then
  npm install --silent --no-progress
fi

# The repository's own modules byte-compiled: an editable install leaves them as
# sources, and where PYTHONDONTWRITEBYTECODE is set every process (each worker,
# each test's server) compiled them again at start (~0.2 s of CPU; up to date, a no-op).
.venv/bin/python -m compileall -q -j 0 wcs twisted testkit tools bench > /dev/null
