#!/usr/bin/env bash
# Broadcast alerts on both backends (tests/src/bin/broadcastbench.rs): a RECIPIENTS-person
# broadcast through an in-process gateway to the Twilio stand-in (expansion, rungs queued,
# messages at the sink, per second), agent send latency idle vs while it drains (p99 ratio),
# acknowledgement webhook round trip, and pacing against a limited sender. JSON lines.
#
#   scripts/bench-broadcast.sh [RECIPIENTS]          # default 100000
#   PROFILE=dev scripts/bench-broadcast.sh 20000     # the dev build (no release build)
#
# PostgreSQL comes from DARTWING_TEST_PG_URL (scripts/ensure-postgres.sh starts one).
#
# Where the database time goes: every statement with its time, summed by statement, e.g.
#   DARTWING_LOG_SQL=1 DARTWING_LOG=sqlx::query=debug "$BIN" --backend postgres \
#       --recipients 3000 --pace-messages 200 --agent-sends 5 --acks 5 2> sql.log
# then group the `summary=` lines of sql.log by their text and add up `elapsed_secs`.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then
    T=${CARGO_TARGET_DIR_RELEASE:-$HOME/.cache/dartwing/target-release}
    CARGO_TARGET_DIR=$T cargo build -q --release -p integration-tests --bin dartwing-broadcastbench
    BIN=$T/release/dartwing-broadcastbench
else
    T=${CARGO_TARGET_DIR:-$HOME/.cache/dartwing/target}
    CARGO_TARGET_DIR=$T cargo build -q -p integration-tests --bin dartwing-broadcastbench
    BIN=$T/debug/dartwing-broadcastbench
fi
scripts/ensure-postgres.sh >&2
echo "{\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"profile\":\"$PROFILE\"}"
for backend in sqlite postgres; do
    "$BIN" --backend "$backend" --recipients "$N"
done
