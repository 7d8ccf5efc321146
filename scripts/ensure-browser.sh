#!/usr/bin/env bash
# Makes the inbox browser test's peers ready: Debian's `chromium` (headless, driven at
# /usr/bin/chromium) and npm `playwright-core` in tests/browser (no browser download: never
# `npx playwright install`). Idempotent.
#
#   scripts/ensure-browser.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
    echo "ensure-browser: installing chromium" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium >&2
fi
if ! command -v node >/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq nodejs npm >&2
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund >&2)
fi
echo "chromium $(chromium --version 2>/dev/null | awk '{print $2}'), playwright-core $(node -p "require('./tests/browser/node_modules/playwright-core/package.json').version")"
