#!/usr/bin/env bash
# Ingest benchmark: signed webhooks at the running gateway over loopback, committed before
# each 2xx, on SQLite and on PostgreSQL — Twilio forms, WhatsApp deliveries of 3 messages each,
# Telnyx events, one after the other against the same gateway; beside it, in the same run, the
# raw commit rate of the same database (a batched insert loop for SQLite, pgbench for
# PostgreSQL) and the gateway's idle RSS. Prints a JSON line per measurement.
#
#   scripts/bench-ingest.sh [REQUESTS] [CONCURRENCY]
#   PROFILE=dev scripts/bench-ingest.sh …     # the dev build (figures not comparable to release)
#   GW_BIN=/path/to/dartwing-gateway …        # another build of the gateway (an A/B against a
#                                             # commit built apart), same loader and references
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
C=${2:-64}
if [ "${PROFILE:-release}" = dev ]; then
    T=${CARGO_TARGET_DIR:-$HOME/.cache/dartwing/target}; FLAG=""; DIR=debug
else
    T=${CARGO_TARGET_DIR_RELEASE:-$HOME/.cache/dartwing/target-release}; FLAG=--release; DIR=release
fi
CARGO_TARGET_DIR=$T cargo build -q $FLAG -p gateway -p integration-tests --bin dartwing-gateway --bin dartwing-loadgen
GW=${GW_BIN:-$T/$DIR/dartwing-gateway}
LG=$T/$DIR/dartwing-loadgen
PG=$(scripts/ensure-postgres.sh | tail -1)
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
PORT=18080
SID=AC$(printf 'b%.0s' $(seq 32))

# This machine's PostgreSQL runs with autovacuum off (as provisioned), so nothing would ever
# ANALYZE the growing tables and the planner would keep the plans it made for empty ones; a
# production server's autovacuum analyzes as tables grow. Stand in for it: ANALYZE after the
# warm-up and between providers (a no-op for SQLite).
analyze() { case $1 in postgres) psql "$2" -qc ANALYZE ;; esac; }
run_backend() {
    local name=$1 url=$2
    export DARTWING_DATABASE_URL=$url DARTWING_HTTP_ADDR=127.0.0.1:$PORT DARTWING_LOG=warn
    $GW org create bench >/dev/null
    $GW channel add twilio-sms --org bench --account-sid "$SID" --auth-token benchtoken \
        --from +15550001111 --api-base http://127.0.0.1:9 >/dev/null
    $GW channel add whatsapp --org bench --phone-number-id 106540352242922 --access-token t \
        --app-secret benchsecret --verify-token v --api-base http://127.0.0.1:9 >/dev/null
    $GW channel add telnyx-sms --org bench --api-key k --public-key "$($LG --base x --org x --print-public-key)" \
        --from +15550001111 --api-base http://127.0.0.1:9 >/dev/null
    $GW serve >"$W/$name.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
    sleep 1
    echo "{\"backend\":\"$name\",\"idle_rss_kb\":$(ps -o rss= -p $pid | tr -d ' ')}"
    # Warm-up, then the measured run.
    $LG --base "http://127.0.0.1:$PORT" --org bench --account-sid "$SID" --auth-token benchtoken \
        --requests 2000 --concurrency "$C" >/dev/null
    analyze "$name" "$url"
    local out
    out=$($LG --base "http://127.0.0.1:$PORT" --org bench --account-sid "$SID" --auth-token benchtoken \
        --requests "$N" --concurrency "$C")
    echo "{\"backend\":\"$name\",\"gateway\":$out}"
    analyze "$name" "$url"
    out=$($LG --base "http://127.0.0.1:$PORT" --org bench --provider whatsapp --auth-token benchsecret \
        --per-delivery 3 --requests $((N / 3)) --concurrency "$C")
    echo "{\"backend\":\"$name\",\"whatsapp_3_per_delivery\":$out}"
    analyze "$name" "$url"
    out=$($LG --base "http://127.0.0.1:$PORT" --org bench --provider telnyx \
        --requests "$N" --concurrency "$C")
    echo "{\"backend\":\"$name\",\"telnyx\":$out}"
    kill $pid; wait $pid 2>/dev/null || true
}

# SQLite: the gateway, then a plain batched insert loop of the same row count into a WAL file
# with synchronous=FULL (one transaction per 500 rows, like a full group-commit batch).
run_backend sqlite "sqlite://$W/bench.db"
python3 - "$W/raw.db" "$N" <<'PY'
import sqlite3, sys, time, json
db = sqlite3.connect(sys.argv[1]); n = int(sys.argv[2])
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE m (id TEXT PRIMARY KEY, org TEXT, body TEXT, at INTEGER)")
t = time.time(); i = 0
while i < n:
    db.execute("BEGIN")
    for j in range(i, min(i + 500, n)):
        db.execute("INSERT INTO m VALUES (?,?,?,?)", (f"SM{j:032}", "bench", "load message", j))
    db.execute("COMMIT"); i += 500
dt = time.time() - t
print(json.dumps({"backend": "sqlite", "raw_batched_insert_per_second": round(n / dt)}))
PY

# PostgreSQL: a fresh database for the gateway, then pgbench's simple-update TPC-B-like
# transactions at the same concurrency, as the raw single-row commit rate of the server.
DB=dw_bench_$$
psql "$PG" -qc "CREATE DATABASE $DB"
run_backend postgres "${PG%/*}/$DB"
PGB=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -1)
$PGB -i -q "${PG%/*}/$DB" >/dev/null 2>&1
TPS=$($PGB -n -N -c 32 -j 2 -T 10 "${PG%/*}/$DB" 2>/dev/null | awk '/^tps/ {print int($3)}')
echo "{\"backend\":\"postgres\",\"pgbench_simple_update_tps_32_clients\":$TPS}"
psql "$PG" -qc "DROP DATABASE $DB WITH (FORCE)"
