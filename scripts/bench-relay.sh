#!/usr/bin/env bash
# Relay benchmark: the outbox relay publishing to a real Kafka-protocol broker (tansu, started
# here on a fresh data folder) against a bare rdkafka producer sending the same records with
# the same settings to the same broker, in the same run; then commit→broker-ack latency at a
# steady commit rate. Prints JSON lines (see tests/src/bin/relaybench.rs).
#
#   scripts/bench-relay.sh [EVENTS] [RATE] [SECONDS] [sqlite|postgres]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50000}
RATE=${2:-5000}
SECS=${3:-10}
BACKEND=${4:-sqlite}
T=${CARGO_TARGET_DIR_RELEASE:-$HOME/.cache/dartwing/target-release}
CARGO_TARGET_DIR=$T cargo build -q --release -p integration-tests --bin dartwing-relaybench
W=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
read -r BPID _ < <(scripts/ensure-kafka.sh start "$PORT" "$W/broker" | tail -1)
trap 'scripts/ensure-kafka.sh stop "$BPID"; rm -rf "$W"' EXIT
if [ "$BACKEND" = postgres ]; then
    PG=$(scripts/ensure-postgres.sh | tail -1)
    DB="relaybench_$$"
    psql "$PG" -qc "CREATE DATABASE $DB" >/dev/null
    URL="${PG%/*}/$DB"
else
    URL="sqlite://$W/relay.db"
fi
echo "{\"backend\":\"$BACKEND\",\"broker\":\"tansu 0.6.0 (sqlite storage)\",\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
"$T/release/dartwing-relaybench" --brokers "127.0.0.1:$PORT" --database-url "$URL" \
    --events "$N" --rate "$RATE" --seconds "$SECS"
