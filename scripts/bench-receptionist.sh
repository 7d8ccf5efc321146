#!/usr/bin/env bash
# Receptionist reply latency on the RTP wire (issue 10): end of the caller's speech → first
# reply packet with sound, tiny.en, the local responder, release build, over ≥ 50 turns at
# one call at a time and then at rising concurrency (see tests/src/bin/receptionistbench.rs).
#
#   scripts/bench-receptionist.sh [LEVELS]        # default "1 2 3 4"
#   NO_PROMPT=1 scripts/bench-receptionist.sh 1   # whisper without the vocabulary prompt
#   NO_EARLY_END=1 scripts/bench-receptionist.sh 1  # every turn waits out the 500 ms hangover
#
# Needs espeak-ng and sox (scripts/speech-test-deps.sh) and the whisper model
# (scripts/install-models.sh). Builds into $CARGO_TARGET_DIR_RELEASE (default
# ~/.cache/dartwing/target-release) so the shared dev target is left alone; not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
LEVELS="${1:-1 2 3 4}"
TURNS="${TURNS:-5}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_RELEASE:-$HOME/.cache/dartwing/target-release}"
cargo build -q --release -p integration-tests --bin dartwing-receptionistbench
BIN="$CARGO_TARGET_DIR/release/dartwing-receptionistbench"
export DARTWING_LOG="${DARTWING_LOG:-warn}"
for c in $LEVELS; do
    # At least 50 turns at one call at a time; at least 2 rounds per level above it.
    calls=$(( c == 1 ? (50 + TURNS - 1) / TURNS : c * 2 ))
    echo "# concurrency $c: $calls calls × $TURNS turns" >&2
    "$BIN" --calls "$calls" --turns "$TURNS" --concurrency "$c" ${NO_PROMPT:+--no-prompt} ${NO_EARLY_END:+--no-early-end} | grep '^{'
done
