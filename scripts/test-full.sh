#!/usr/bin/env bash
# The Kafka suites at their full documented sizes, which the test command (scripts/test.sh)
# runs smaller to stay inside CI's budget:
#
#   broker outage      5,000 webhooks (test command: 2,000)
#   two nodes         10,000 webhooks (test command: 3,000)
#
# Installs and starts what the suites need exactly as scripts/test.sh does, then runs only
# tests/tests/kafka.rs. Takes about 15 minutes warm on a 2-core machine; the last run's
# result is in BENCHMARKS.md ("Kafka suites at full size").
#
#   scripts/test-full.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dartwing/target}
DARTWING_TEST_PG_URL=$(scripts/ensure-postgres.sh | tail -1)
export DARTWING_TEST_PG_URL
scripts/ensure-kafka.sh install
export DARTWING_TANSU_ROOT=${DARTWING_TANSU_ROOT:-$HOME/.cache/dartwing/tansu-0.6.0-libsql}
export DARTWING_KAFKA_OUTAGE_WEBHOOKS=5000
export DARTWING_KAFKA_TWO_NODE_MESSAGES=10000
cargo build --workspace --bins
cargo nextest run -p integration-tests --test kafka --no-fail-fast --success-output final "$@"
