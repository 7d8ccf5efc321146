#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with Rust: installs and starts what the
# tests need (PostgreSQL; the speech packages and models; the tansu Kafka-protocol broker,
# built once into ~/.cache/dartwing — each Kafka test starts its own broker through
# scripts/ensure-kafka.sh; headless Chromium and playwright-core for the inbox page; Dovecot
# and the aiosmtpd receiver for the email suite, which starts its own per test; libfaketime
# for the clock-jump fault test), builds
# once, runs everything.
#
#   scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dartwing/target}
DARTWING_TEST_PG_URL=$(scripts/ensure-postgres.sh | tail -1)
export DARTWING_TEST_PG_URL
echo "tests use PostgreSQL at $DARTWING_TEST_PG_URL"
scripts/speech-test-deps.sh
scripts/ensure-kafka.sh install
DARTWING_TANSU_ROOT=${DARTWING_TANSU_ROOT:-$HOME/.cache/dartwing/tansu-0.6.0-libsql}
export DARTWING_TANSU_ROOT
scripts/ensure-voice-peers.sh
DARTWING_AIOSMTPD_PYTHON=$(scripts/ensure-mail-peers.sh | tail -1)
export DARTWING_AIOSMTPD_PYTHON
scripts/ensure-browser.sh
DARTWING_LIBFAKETIME=$(scripts/ensure-faketime.sh | tail -1)
export DARTWING_LIBFAKETIME
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
# The crash suites run the real binary: build it with the same profile first.
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
