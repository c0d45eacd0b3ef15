#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the web page tests (tests/web.rs). Idempotent; needs
# root (apt-get) on a machine that does not have them yet.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
echo "browser.sh: installing chromium and chromium-driver from Debian" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
/usr/bin/chromium --version >&2
