#!/usr/bin/env bash
# Mutation testing of the pure crates (issue 17): `cargo mutants` changes one operator or
# return value at a time and runs the crate's own tests; a mutant that no test notices
# ("missed") is a behaviour nothing checks. Installs cargo-mutants from crates.io if missing.
# Not part of the test command (it rebuilds the crate once per mutant: tens of minutes per
# crate on 2 cores); the last run's scores are in the README's testing section.
#
#   scripts/mutants.sh                      # state-machines and audio
#   scripts/mutants.sh channels             # any workspace packages
#   scripts/mutants.sh voice -- --lib       # voice's own unit tests only (sip, sdp, …)
#
# Reports land in ~/.cache/dartwing/mutants/PACKAGE/mutants.out (missed.txt lists survivors).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
PACKAGES=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do PACKAGES+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#PACKAGES[@]} -gt 0 ] || PACKAGES=(state-machines audio)
OUT=${DARTWING_MUTANTS_OUT:-$HOME/.cache/dartwing/mutants}
for p in "${PACKAGES[@]}"; do
    mkdir -p "$OUT/$p"
    # The copy cargo-mutants builds in gets a target folder of its own.
    env -u CARGO_TARGET_DIR cargo mutants -p "$p" --test-tool nextest --timeout 120 \
        -o "$OUT/$p" -- "$@" || true
    echo "== $p: $(grep -c . "$OUT/$p/mutants.out/caught.txt" 2>/dev/null || echo 0) caught," \
         "$(grep -c . "$OUT/$p/mutants.out/missed.txt" 2>/dev/null || echo 0) missed," \
         "$(grep -c . "$OUT/$p/mutants.out/unviable.txt" 2>/dev/null || echo 0) unviable"
done
