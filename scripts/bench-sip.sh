#!/usr/bin/env bash
# SIP call-rate benchmark: SIPp's built-in uac (INVITE → 200 → ACK → pause → BYE) first
# against the gateway's SIP user agent (voice's `sip_answer` example: answers every number
# with the `echo` application, so each call also starts and stops an RTP session, and keeps
# every call in an in-memory store), then against Kamailio as a stateful proxy
# (tm, sl, rr; 4 workers; -m 1024) in front of a SIPp uas without 180. Each server is pinned
# to core 0, SIPp to core 1. For each rate it prints successful and failed calls and the p99
# INVITE→200 time; a rate "holds" with 0 failed calls and p99 under 50 ms; and the server's
# RSS after each rate (memory after an overload burst, issue 16).
#
#   scripts/bench-sip.sh [RATES...]        (default: 250 500 1000 1500 2000)
#   SERVERS="gateway" scripts/bench-sip.sh 500 1000   (any of: ua gateway kamailio)
#   PROFILE=release scripts/bench-sip.sh …             (release builds)
#   SETTLE_SECS=12 …       (wait this long after each rate before reading the RSS)
#   IDLE_SECS=40 …         (and read it once more after this long idle at the end)
#   GW_BIN=/path/to/dartwing-gateway …  (another build of the gateway, e.g. an allocator trial)
#   DARTWING_SIP_MAX_STORE_LAG_MS=0 DARTWING_MEMORY_TRIM_SECS=0 …  (shedding / trimming off)
#
# `gateway` is the whole `dartwing-gateway serve` (SQLite, the number routed to `echo`), the
# goal's subject: it persists every call before it answers.
#
# Builds the example in the dev profile (as the rest of the repo's tooling does); a release
# build is faster. Stops everything it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-voice-peers.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dartwing/target}
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(250 500 1000 1500 2000)
SECONDS_PER_RATE=${SECONDS_PER_RATE:-10}
SERVERS=${SERVERS:-ua gateway kamailio}
# PROFILE=release builds into CARGO_TARGET_DIR_RELEASE (default ~/.cache/dartwing/target-release).
PROFILE=${PROFILE:-debug}
if [ "$PROFILE" = release ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR_RELEASE:-$HOME/.cache/dartwing/target-release}
    REL=(--release)
else
    REL=()
fi
cargo build -q "${REL[@]}" -p voice --example sip_answer
[[ " $SERVERS " != *" gateway "* ]] || cargo build -q "${REL[@]}" -p gateway --bin dartwing-gateway
UA_BIN="$CARGO_TARGET_DIR/$PROFILE/examples/sip_answer"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM

# run_rates LABEL TARGET: one SIPp run per rate against TARGET.
run_rates() {
    local label=$1 target=$2
    printf '%-10s %6s %9s %9s %7s %9s %s %s\n' server rate achieved completed failed p99_ms holds rss_mb
    for rate in "${RATES[@]}"; do
        local dir="$WORK/$label-$rate"
        mkdir -p "$dir"
        # SIPp's own -timeout did not end a run left waiting on a few calls the overloaded
        # server never finished (seen 2026-12-01): SIGINT after 90 s more (it still writes
        # its statistics).
        (cd "$dir" && timeout -s INT $((SECONDS_PER_RATE + 90)) taskset -c 1 sipp -sn uac "$target" \
            -i 127.0.0.1 -p 16000 -r "$rate" -m $((rate * SECONDS_PER_RATE)) -d 100 -nostdin \
            -trace_stat -stf stat.csv -trace_rtt -rtt_freq 1 >/dev/null 2>&1) || true
        python3 - "$dir" "$label" "$rate" <<'PY'
import csv, glob, sys
d, label, rate = sys.argv[1], sys.argv[2], sys.argv[3]
rows = list(csv.reader(open(f"{d}/stat.csv"), delimiter=";"))
last = dict(zip(rows[0], rows[-1]))
ok, failed = int(last["SuccessfulCall(C)"]), int(last["FailedCall(C)"])
h, m, sec = (float(x) for x in last["ElapsedTime(C)"].split(":")[-3:])
achieved = (ok + failed) / max(h * 3600 + m * 60 + sec, 1)
times = []
for f in glob.glob(f"{d}/*_rtt.csv"):
    for r in list(csv.reader(open(f), delimiter=";"))[1:]:
        if len(r) > 1 and r[1].strip():
            times.append(float(r[1]))
times.sort()
p99 = times[int(len(times) * 0.99) - 1] if times else float("nan")
holds = "yes" if failed == 0 and p99 < 50 else "no"
print(f"{label:<10} {rate:>6} {achieved:>9.0f} {ok:>9} {failed:>7} {p99:>9.1f} {holds}", end=" ")
PY
        # The server's resident memory once the rate's calls are over (the main process).
        sleep "${SETTLE_SECS:-0}"
        echo "$(( $(ps -o rss= -p "${PIDS[-1]}" 2>/dev/null || echo 0) / 1024 ))"
    done
    if [ "${IDLE_SECS:-0}" -gt 0 ]; then
        sleep "$IDLE_SECS"
        echo "$label idle ${IDLE_SECS} s after the last rate: rss_mb $(( $(ps -o rss= -p "${PIDS[-1]}" 2>/dev/null || echo 0) / 1024 ))"
    fi
}

# stop_last: stops the server started last (its RTP ports must not collide with the next's).
stop_last() {
    local pid=${PIDS[-1]}
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# The voice crate's user agent alone (in-memory store).
if [[ " $SERVERS " == *" ua "* ]]; then
    taskset -c 0 "$UA_BIN" 127.0.0.1:15060 >"$WORK/ua.log" 2>&1 &
    PIDS+=($!)
    sleep 1
    run_rates dartwing-ua 127.0.0.1:15060
    stop_last
fi

# The whole gateway: `dartwing-gateway serve` on SQLite, SIPp's number routed to `echo`, every
# call's transitions committed (call machine, history, outbox event) before SIP answers.
if [[ " $SERVERS " == *" gateway "* ]]; then
    GW_BIN=${GW_BIN:-$CARGO_TARGET_DIR/$PROFILE/dartwing-gateway}
    export DARTWING_DATABASE_URL="sqlite://$WORK/gw.db" DARTWING_HTTP_ADDR=127.0.0.1:18090 \
        DARTWING_SIP_ADDR=127.0.0.1:15061 DARTWING_LOG=warn DARTWING_SIP_MAX_CALLS=20000
    "$GW_BIN" org create bench >/dev/null
    "$GW_BIN" voice route add --org bench --number service --app echo >/dev/null
    taskset -c 0 "$GW_BIN" serve >"$WORK/gateway.log" 2>&1 &
    PIDS+=($!)
    sleep 2
    run_rates gateway 127.0.0.1:15061
    stop_last
fi
[[ " $SERVERS " == *" kamailio "* ]] || exit 0

# Kamailio, stateful proxy to a SIPp uas (no 180: several workers can reorder 180 after 200).
cat >"$WORK/uas.xml" <<'XML'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas without 180">
  <recv request="INVITE"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]></send>
</scenario>
XML
taskset -c 1 sipp -sf "$WORK/uas.xml" -i 127.0.0.1 -p 45070 -nostdin >/dev/null 2>&1 &
PIDS+=($!)
cat >"$WORK/kamailio.cfg" <<'CFG'
#!KAMAILIO
debug=0
log_stderror=yes
children=4
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:45060
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK") && t_check_trans()) { t_relay(); exit; }
        # SIPp's built-in uac ignores Record-Route: its ACK and BYE come here without Route.
        $du = "sip:127.0.0.1:45070";
        t_relay();
        exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
    record_route();
    $du = "sip:127.0.0.1:45070";
    t_relay();
}
CFG
taskset -c 0 kamailio -DD -E -f "$WORK/kamailio.cfg" -m 1024 -M 16 -w "$WORK" -Y "$WORK" \
    >"$WORK/kamailio.log" 2>&1 &
PIDS+=($!)
sleep 2
run_rates kamailio 127.0.0.1:45060
