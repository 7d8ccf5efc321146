#!/usr/bin/env bash
# Mutation testing of the pure crates (issue 17): `cargo mutants` changes one operator or
# return value at a time and runs the crate's own tests; a mutant that no test notices
# ("missed") is a behaviour nothing checks. Installs cargo-mutants from crates.io if missing.
# Not part of the test command (it rebuilds the crate once per mutant: tens of minutes per
# crate on 2 cores); the last run's scores are in the README's testing section.
#
#   scripts/mutants.sh                      # state-machines and audio
#   scripts/mutants.sh channels             # any workspace packages
#   scripts/mutants.sh voice -- --file 'voice/src/sip/**' --file 'voice/src/sdp/**' -- --lib
#
# Everything after the first `--` goes to cargo-mutants as it is (`--file`, `--exclude`,
# `--shard k/n`; a second `--` passes arguments to the tests). JOBS=n runs n mutants at
# once, each in a build folder of its own. Builds use the `mutants` profile (dev without
# debug info) and link with mold when it is installed (`apt-get install mold`): on 2 cores
# linking the test binary is a large share of each mutant's time.
#
# Reports land in ~/.cache/dartwing/mutants/PACKAGE/mutants.out (missed.txt lists survivors).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
PACKAGES=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do PACKAGES+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#PACKAGES[@]} -gt 0 ] || PACKAGES=(state-machines audio)
LINK_FLAGS=
command -v mold >/dev/null && LINK_FLAGS="-Clink-arg=-fuse-ld=mold"
OUT=${DARTWING_MUTANTS_OUT:-$HOME/.cache/dartwing/mutants}
for p in "${PACKAGES[@]}"; do
    mkdir -p "$OUT/$p"
    # The copy cargo-mutants builds in gets a target folder of its own.
    env -u CARGO_TARGET_DIR ${LINK_FLAGS:+RUSTFLAGS="$LINK_FLAGS"} \
        cargo mutants -p "$p" --test-tool nextest --profile mutants --timeout 120 \
        --jobs "${JOBS:-1}" -o "$OUT/$p" "$@" || true
    count() { if [ -f "$1" ]; then grep -c . "$1" || true; else echo 0; fi; }
    echo "== $p: $(count "$OUT/$p/mutants.out/caught.txt") caught," \
         "$(count "$OUT/$p/mutants.out/missed.txt") missed," \
         "$(count "$OUT/$p/mutants.out/unviable.txt") unviable"
done
