#!/usr/bin/env bash
# Agent-socket fan-out benchmark: SOCKETS logged-in agent WebSockets on an in-process gateway
# (SQLite) get EVENTS inbound-SMS events at RATE per second; then the same fan-out through a
# bare tokio-tungstenite broadcast server in the same process. Prints JSON lines (see
# tests/src/bin/wsbench.rs): p50/p95/p99 webhook→frame latency, RSS per idle socket (client
# and server ends together), and the ratio of the bare p95 to the gateway p95.
#
#   scripts/bench-ws.sh [SOCKETS] [EVENTS] [RATE]
#
# Clients and servers share one process, so each socket costs two descriptors: SOCKETS is
# limited to about half of `ulimit -n`.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:-20000}
E=${2:-20}
R=${3:-10}
T=${CARGO_TARGET_DIR_RELEASE:-$HOME/.cache/dartwing/target-release}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
need=$((2 * S + 1000))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    echo "bench-ws: $S sockets need $need descriptors; ulimit -n is $(ulimit -n)" >&2
    exit 2
fi
CARGO_TARGET_DIR=$T cargo build -q --release -p integration-tests --bin dartwing-wsbench
echo "{\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
"$T/release/dartwing-wsbench" --sockets "$S" --events "$E" --rate "$R"
