#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with Rust: installs and starts what the
# tests need (PostgreSQL; the speech packages and models), builds once, runs everything.
#
#   scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dartwing/target}
DARTWING_TEST_PG_URL=$(scripts/ensure-postgres.sh | tail -1)
export DARTWING_TEST_PG_URL
echo "tests use PostgreSQL at $DARTWING_TEST_PG_URL"
scripts/speech-test-deps.sh
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
# The crash suites run the real binary: build it with the same profile first.
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
