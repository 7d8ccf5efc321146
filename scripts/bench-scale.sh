#!/usr/bin/env bash
# Scale-out benchmark (issue 16): one, two and three gateway nodes on this machine against one
# PostgreSQL database, each node driven by its own load generator (signed Twilio webhooks,
# committed before each 2xx, the same 500 senders on every node, so nodes write to the same
# contacts and conversations). For each node count, on a fresh database: the aggregate rate,
# the worst node's p99, and where the CPU went (gateways, PostgreSQL's processes, the load
# generators, idle; as shares of the run's wall time × cores), then pgbench in the same run for the
# server's own rate. Prints a JSON line per measurement.
#
#   scripts/bench-scale.sh [REQUESTS_PER_NODE] [CONCURRENCY_PER_NODE] [NODE_COUNTS...]
#   (defaults: 10000 32 1 2 3; release build in ~/.cache/dartwing/target-release)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
C=${2:-32}
shift $(($# < 2 ? $# : 2))
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(1 2 3)
T=${CARGO_TARGET_DIR_RELEASE:-$HOME/.cache/dartwing/target-release}
CARGO_TARGET_DIR=$T cargo build -q --release -p gateway -p integration-tests \
    --bin dartwing-gateway --bin dartwing-loadgen
GW=$T/release/dartwing-gateway
LG=$T/release/dartwing-loadgen
PG=$(scripts/ensure-postgres.sh | tail -1)
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
SID=AC$(printf 'c%.0s' $(seq 32))

# CPU seconds (user + system) used so far by processes whose command name is $1 (all of
# them, children included: PostgreSQL's backends are processes); `all` for the whole machine
# (from /proc/stat; the load generators exit before the end, so "other" is all but these).
cpu_of() {
    if [ "$1" = all ]; then
        awk -v hz="$(getconf CLK_TCK)" '/^cpu / {print ($2 + $3 + $4 + $7 + $8) / hz}' /proc/stat
        return
    fi
    python3 - "$1" <<'PY'
import os, sys
name, hz, total = sys.argv[1], os.sysconf("SC_CLK_TCK"), 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    if comm.startswith(name):
        total += int(fields[11]) + int(fields[12])
print(total / hz)
PY
}

for nodes in "${COUNTS[@]}"; do
    DB=dw_scale_$$_$nodes
    psql "$PG" -qc "CREATE DATABASE $DB"
    URL="${PG%/*}/$DB"
    export DARTWING_DATABASE_URL=$URL DARTWING_LOG=warn DARTWING_SIP_ADDR=
    $GW org create bench >/dev/null
    $GW channel add twilio-sms --org bench --account-sid "$SID" --auth-token benchtoken \
        --from +15550001111 --api-base http://127.0.0.1:9 >/dev/null
    PIDS=()
    for k in $(seq "$nodes"); do
        DARTWING_HTTP_ADDR=127.0.0.1:$((18100 + k)) DARTWING_SIP_NODE_ID=node-$k \
            $GW serve >"$W/node-$nodes-$k.log" 2>&1 &
        PIDS+=($!)
    done
    for k in $(seq "$nodes"); do
        for _ in $(seq 100); do
            curl -sf "http://127.0.0.1:$((18100 + k))/health" >/dev/null && break
            sleep 0.1
        done
    done
    # Warm-up through every node, then ANALYZE (this server runs without autovacuum).
    for k in $(seq "$nodes"); do
        $LG --base "http://127.0.0.1:$((18100 + k))" --org bench --account-sid "$SID" \
            --auth-token benchtoken --requests 1000 --concurrency "$C" >/dev/null
    done
    psql "$URL" -qc ANALYZE
    gw0=$(cpu_of dartwing-gatewa); pg0=$(cpu_of postgres); all0=$(cpu_of all)
    t0=$(date +%s.%N)
    LPIDS=()
    for k in $(seq "$nodes"); do
        $LG --base "http://127.0.0.1:$((18100 + k))" --org bench --account-sid "$SID" \
            --auth-token benchtoken --requests "$N" --concurrency "$C" >"$W/out-$nodes-$k.json" &
        LPIDS+=($!)
    done
    wait "${LPIDS[@]}"
    t1=$(date +%s.%N)
    gw1=$(cpu_of dartwing-gatewa); pg1=$(cpu_of postgres); all1=$(cpu_of all)
    python3 - "$nodes" "$t0" "$t1" "$gw0" "$gw1" "$pg0" "$pg1" "$all0" "$all1" "$W"/out-"$nodes"-*.json <<'PY'
import json, os, sys
nodes, t0, t1, gw0, gw1, pg0, pg1, all0, all1 = sys.argv[1:10]
outs = [json.load(open(f)) for f in sys.argv[10:]]
wall = float(t1) - float(t0)
cores = os.cpu_count()
share = lambda a, b: round((float(b) - float(a)) / (wall * cores), 3)
print(json.dumps({
    "nodes": int(nodes),
    "ok": sum(o["ok"] for o in outs),
    "errors": sum(o["errors"] for o in outs),
    "per_second": round(sum(o["ok"] for o in outs) / wall),
    "per_node": [round(o["per_second"]) for o in outs],
    "worst_p99_ms": max(o["p99_ms"] for o in outs),
    "worst_p50_ms": max(o["p50_ms"] for o in outs),
    "cpu_share": {"gateways": share(gw0, gw1), "postgres": share(pg0, pg1),
                  "other (load generators)": round(share(all0, all1) - share(gw0, gw1)
                                                   - share(pg0, pg1), 3),
                  "idle": round(1 - share(all0, all1), 3)},
}))
PY
    kill "${PIDS[@]}"; wait "${PIDS[@]}" 2>/dev/null || true
    grep -h -i "error\|panic" "$W"/node-"$nodes"-*.log | head -5 || true
    psql "$PG" -qc "DROP DATABASE $DB WITH (FORCE)"
done

DB=dw_scale_$$_pgbench
psql "$PG" -qc "CREATE DATABASE $DB"
PGB=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -1)
$PGB -i -q "${PG%/*}/$DB" >/dev/null 2>&1
TPS=$($PGB -n -N -c 32 -j 2 -T 10 "${PG%/*}/$DB" 2>/dev/null | awk '/^tps/ {print int($3)}')
echo "{\"pgbench_simple_update_tps_32_clients\":$TPS}"
psql "$PG" -qc "DROP DATABASE $DB WITH (FORCE)"
