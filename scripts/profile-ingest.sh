#!/usr/bin/env bash
# Where ingest's CPU goes (issue 16): the release gateway under signed Twilio webhooks from
# dartwing-loadgen, sampled with `perf record` (every thread of the gateway, and with
# BACKEND=postgres every PostgreSQL process too), then `perf report` by shared object and by
# symbol. The release profile has no debug info and no frame pointers, so this is a flat
# profile (self time per function), not call stacks: enough to say which layer costs what.
#
#   scripts/profile-ingest.sh [REQUESTS] [CONCURRENCY]     (default 20000 64; SQLite)
#   BACKEND=postgres scripts/profile-ingest.sh …
#
# With call stacks (inclusive time per function: which paths cost what), from a build with
# frame pointers in a target directory of its own (a full release build, ~12 minutes cold):
#   CARGO_TARGET_DIR=~/.cache/dartwing/target-fp RUSTFLAGS="-C force-frame-pointers=yes" \
#       cargo build --release -p gateway --bin dartwing-gateway
#   STACKS=1 GW_BIN=~/.cache/dartwing/target-fp/release/dartwing-gateway scripts/profile-ingest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
C=${2:-64}
BACKEND=${BACKEND:-sqlite}
T=${CARGO_TARGET_DIR_RELEASE:-$HOME/.cache/dartwing/target-release}
CARGO_TARGET_DIR=$T cargo build -q --release -p gateway -p integration-tests \
    --bin dartwing-gateway --bin dartwing-loadgen
GW=${GW_BIN:-$T/release/dartwing-gateway}
LG=$T/release/dartwing-loadgen
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 1; }
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
PORT=18070
SID=AC$(printf 'd%.0s' $(seq 32))
if [ "$BACKEND" = postgres ]; then
    PG=$(scripts/ensure-postgres.sh | tail -1)
    DB=dw_profile_$$
    psql "$PG" -qc "CREATE DATABASE $DB"
    URL="${PG%/*}/$DB"
else
    URL="sqlite://$W/profile.db"
fi
export DARTWING_DATABASE_URL=$URL DARTWING_HTTP_ADDR=127.0.0.1:$PORT DARTWING_LOG=warn \
    DARTWING_SIP_ADDR=
$GW org create bench >/dev/null
$GW channel add twilio-sms --org bench --account-sid "$SID" --auth-token benchtoken \
    --from +15550001111 --api-base http://127.0.0.1:9 >/dev/null
$GW serve >"$W/gw.log" 2>&1 &
GWPID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
$LG --base "http://127.0.0.1:$PORT" --org bench --account-sid "$SID" --auth-token benchtoken \
    --requests 2000 --concurrency "$C" >/dev/null
[ "$BACKEND" = postgres ] && psql "$URL" -qc ANALYZE
TARGETS=$GWPID
[ "$BACKEND" = postgres ] && TARGETS="$GWPID,$(pgrep -d, -x postgres)"
STACK_ARGS=()
[ -n "${STACKS:-}" ] && STACK_ARGS=(--call-graph fp)
perf record -q -F 1999 "${STACK_ARGS[@]}" -p "$TARGETS" -o "$W/perf.data" 2>/dev/null &
PERF=$!
sleep 0.5
$LG --base "http://127.0.0.1:$PORT" --org bench --account-sid "$SID" --auth-token benchtoken \
    --requests "$N" --concurrency "$C"
kill -INT $PERF; wait $PERF 2>/dev/null || true
if [ -n "${STACKS:-}" ]; then
    echo "--- inclusive time per function (self plus everything it called)"
    perf report -i "$W/perf.data" --children --sort comm,sym --stdio -g none 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -70
fi
echo "--- by process and shared object (self time)"
perf report -i "$W/perf.data" --no-children --sort comm,dso --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -25
echo "--- top symbols (self time)"
perf report -i "$W/perf.data" --no-children --sort comm,sym --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -60
kill $GWPID; wait $GWPID 2>/dev/null || true
[ "$BACKEND" = postgres ] && psql "$PG" -qc "DROP DATABASE $DB WITH (FORCE)"
true
