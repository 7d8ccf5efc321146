#!/usr/bin/env bash
# Word error rate per voice family and whisper model on telephone audio (BENCHMARKS.md,
# "Receptionist: WER per voice family"): 30 held-out caller utterances, three espeak-ng voices
# and Piper's neural joe-medium, tiny.en and base, with and without the receptionist's
# vocabulary prompt. Release build in its own target folder; not run by CI.
#
#   scripts/wer-bench.sh            THREADS=1 by default
#   DECODING=1 scripts/wer-bench.sh tiny.en: greedy decoding against a 5-wide beam
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dartwing/target-speech}
DARTWING_WITH_PIPER=1 bash "$ROOT/scripts/install-models.sh" "${DARTWING_MODELS_DIR:-$HOME/.cache/dartwing/models}"
cd "$ROOT"
cargo build -q --release -p stt-tts --features piper --example wer_bench
"$CARGO_TARGET_DIR/release/examples/wer_bench" --threads "${THREADS:-1}" ${DECODING:+--decoding}
