#!/usr/bin/env bash
# The Debian packages the build needs (whisper.cpp for speech-to-text: cmake, clang,
# libclang; the espeak-ng C library for text-to-speech). Idempotent: installs only what is
# missing (apt-get, as root or with sudo).
set -euo pipefail
PKGS=(cmake clang libclang-dev libespeak-ng-dev pkg-config)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "build deps: installing ${missing[*]}" >&2
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2
