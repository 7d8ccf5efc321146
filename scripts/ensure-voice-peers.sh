#!/usr/bin/env bash
# Installs the real SIP peers the voice tests drive: SIPp (Debian `sip-tester`), baresip
# (`baresip-core`) and Kamailio. Idempotent: prints one line and installs nothing when all
# three are already present. Waits for another apt run instead of failing on its lock.
set -euo pipefail
missing=()
command -v sipp >/dev/null || missing+=(sip-tester)
command -v baresip >/dev/null || missing+=(baresip-core)
command -v kamailio >/dev/null || missing+=(kamailio)
if [ ${#missing[@]} -eq 0 ]; then
    echo "voice peers present: sipp, baresip, kamailio"
    exit 0
fi
echo "installing voice peers: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >/dev/null; then
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update >/dev/null
    $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >/dev/null
fi
# The kamailio package may start a system service; the tests start their own instances.
command -v systemctl >/dev/null && $SUDO systemctl disable --now kamailio >/dev/null 2>&1 || true
command -v sipp >/dev/null && command -v baresip >/dev/null && command -v kamailio >/dev/null
echo "voice peers installed: sipp, baresip, kamailio"
