#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (idempotent). Playwright drives it through
# executable_path=/usr/bin/chromium; `playwright install` (a browser download) is never used.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
VENV=${VENV:-.venv}

wait_for_apt() {
  # A background `apt-get install` (logging to /tmp/apt.log) may hold the dpkg lock: wait for it.
  for _ in $(seq 1 180); do
    pgrep -x apt-get >/dev/null || pgrep -x dpkg >/dev/null || return 0
    sleep 5
  done
  echo "install_browser: apt is still busy after 15 min" >&2
  return 1
}

if [ ! -x "$CHROMIUM" ]; then
  wait_for_apt
fi
if [ ! -x "$CHROMIUM" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
fi
"$VENV/bin/python" -c "import playwright" 2>/dev/null || "$VENV/bin/pip" install -q "playwright>=1.48"
"$CHROMIUM" --version
