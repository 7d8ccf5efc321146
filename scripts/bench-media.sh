#!/usr/bin/env bash
# Media benchmark: CALLS concurrent echo sessions (voice::media::MediaSession + the echo app)
# and a load generator sending a 20 ms G.711 packet to each, measuring end-to-end loss and
# the jitter the echo path adds. See voice/examples/media_bench.rs for what is measured.
#
#   scripts/bench-media.sh [CALLS] [SECONDS]
#
# Environment: THREADS (server runtime threads and media workers, default 2), MODE (workers:
# legs shared by THREADS media workers, the default; tasks: one worker task per leg), SOCKETS (generator sockets,
# default 4), SERVER_CPUS / LOAD_CPUS (taskset lists, default: unpinned, sharing the cores),
# VOICE_OPT_LEVEL (default unset: the plain dev profile, where `voice` is unoptimised and its
# dependencies are at opt-level 1; set 2 to optimise only the `voice` crate inside the dev
# profile, through `--config profile.dev.package.voice.opt-level`), CARGO_TARGET_DIR as usual.
# No release build.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS="${1:-2000}"
SECONDS_MEASURED="${2:-15}"
WARMUP=2
THREADS="${THREADS:-2}"
SOCKETS="${SOCKETS:-4}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

CONFIG=()
if [[ -n "${VOICE_OPT_LEVEL:-}" ]]; then
    CONFIG=(--config "profile.dev.package.voice.opt-level=${VOICE_OPT_LEVEL}")
fi
cargo build -q "${CONFIG[@]}" -p voice --example media_bench
BIN="${CARGO_TARGET_DIR:-target}/debug/examples/media_bench"
WORK="$(mktemp -d)"
PORTS="$WORK/ports"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then kill "$SERVER_PID"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

pin() { if [[ -n "$1" ]]; then echo "taskset -c $1"; fi; }

$(pin "${SERVER_CPUS:-}") "$BIN" server --calls "$CALLS" --threads "$THREADS" --mode "${MODE:-workers}" \
    --seconds $((SECONDS_MEASURED + WARMUP + 3)) --ports-file "$PORTS" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do
    grep -q READY "$WORK/server.log" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
    sleep 0.1
done
grep READY "$WORK/server.log"
udp_errors() { awk '/^Udp:/ { if (++n == 2) print "InErrors=" $4, "RcvbufErrors=" $6, "SndbufErrors=" $7 }' /proc/net/snmp; }
echo "kernel UDP counters before: $(udp_errors)"
$(pin "${LOAD_CPUS:-}") "$BIN" load --ports-file "$PORTS" --seconds "$SECONDS_MEASURED" \
    --warmup "$WARMUP" --sockets "$SOCKETS"
wait "$SERVER_PID"
SERVER_PID=""
grep -v READY "$WORK/server.log"
echo "kernel UDP counters after:  $(udp_errors) (machine-wide; drops in any socket buffer)"
echo "machine: $(nproc) cores, $(uptime | sed 's/.*load average/load average/')"
