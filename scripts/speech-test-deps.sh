#!/usr/bin/env bash
# Installs what the stt-tts tests need, idempotently: the build and runtime packages
# (cmake, clang and libclang for whisper-rs; libespeak-ng for the TTS FFI; espeak-ng and
# sox to make test speech) and the speech models (scripts/install-models.sh).
#
#   scripts/speech-test-deps.sh            # models into ${DARTWING_MODELS_DIR:-~/.cache/dartwing/models}
#
# Needs root (or sudo) for apt-get when a package is missing; does nothing that is
# already done.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PKGS=(cmake clang libclang-dev libespeak-ng-dev espeak-ng sox libsox-fmt-all python3-venv unzip)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "speech test deps: installing ${missing[*]}"
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "speech test deps: packages present"
fi

bash "$HERE/install-models.sh" "${DARTWING_MODELS_DIR:-$HOME/.cache/dartwing/models}"
