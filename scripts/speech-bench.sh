#!/usr/bin/env bash
# Speech benchmark (see BENCHMARKS.md, section "Speech").
#
#   scripts/speech-bench.sh [--quick] [--margin FRAMES]     THREADS=2 by default
#
# Builds the stt-tts benchmark in release, compiles a small C program that runs the same
# decode straight through whisper.cpp's C API (linked to the very static libraries
# whisper-rs built), installs the models if needed, and runs everything on this machine.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dartwing/target-speech}
THREADS=${THREADS:-2}

DARTWING_WITH_PIPER=1 bash "$ROOT/scripts/install-models.sh" "${DARTWING_MODELS_DIR:-$HOME/.cache/dartwing/models}"
cd "$ROOT"
cargo build --release -p stt-tts --features piper --example speech_bench

# whisper.cpp headers from the whisper-rs-sys source cargo used, libraries from its build.
SYS=$(cargo metadata --format-version 1 | python3 -c '
import json, sys, os
m = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"] == "whisper-rs-sys"))')
LIB=$(ls -td "$CARGO_TARGET_DIR"/release/build/whisper-rs-sys-*/out/lib | head -1)
REF=$(mktemp -d)
trap 'rm -rf "$REF"' EXIT
cc -O2 -I"$SYS/whisper.cpp/include" -I"$SYS/whisper.cpp/ggml/include" \
    "$ROOT/scripts/speech-bench-ref.c" -o "$REF/speech-bench-ref" \
    -L"$LIB" -lwhisper -lggml -lggml-cpu -lggml-base -lstdc++ -lm -fopenmp -lpthread

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$CARGO_TARGET_DIR/release/examples/speech_bench" --threads "$THREADS" --ref-dir "$REF" "$@"
