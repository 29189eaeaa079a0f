#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (idempotent). Playwright drives it through
# executable_path=/usr/bin/chromium; `playwright install` (a browser download) is never used.
set -euo pipefail

VENV=${VENV:-.venv}

source "$(dirname "$0")/apt_install.sh"
apt_install chromium chromium fonts-dejavu-core
"$VENV/bin/python" -c "import playwright" 2>/dev/null || "$VENV/bin/pip" install -q "playwright>=1.48"
chromium --version
