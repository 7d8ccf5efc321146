#!/usr/bin/env bash
# A Kafka-protocol broker for tests and local runs: tansu 0.6.0 with its SQLite storage
# engine (Apache-Kafka compatible; no Docker or JVM needed). Idempotent.
#
#   scripts/ensure-kafka.sh install            # build and cache the binary (~13 min cold)
#   scripts/ensure-kafka.sh start PORT [DIR]   # start a broker on 127.0.0.1:PORT in DIR (default:
#                                              # a fresh temp dir), create the gateway's topics,
#                                              # print "PID DIR" on the last line
#   scripts/ensure-kafka.sh topics PORT NAME...  # create more topics (3 partitions each)
#   scripts/ensure-kafka.sh stop PID           # stop a broker started by `start`
#   scripts/ensure-kafka.sh bin                # print the broker binary's path (installs first)
#
# The binary is cached outside the repository in ${DARTWING_TANSU_ROOT:-~/.cache/dartwing/
# tansu-0.6.0-libsql}. tansu does not auto-create topics, so `start` creates the gateway's
# default ones (prefix ${DARTWING_KAFKA_TOPIC_PREFIX:-dartwing.}). Its gaps, which the gateway
# never relies on: no transactions, no CreatePartitions, no KIP-848 consumer protocol.
set -euo pipefail

ROOT=${DARTWING_TANSU_ROOT:-$HOME/.cache/dartwing/tansu-0.6.0-libsql}
BIN=$ROOT/bin/tansu
PREFIX=${DARTWING_KAFKA_TOPIC_PREFIX:-dartwing.}
FAMILIES=(messages conversations contacts calls)

install() {
    if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "0.6.0"; then
        return 0
    fi
    echo "ensure-kafka: building tansu 0.6.0 into $ROOT (about 13 minutes on 2 cores)" >&2
    cargo install tansu@0.6.0 --locked --no-default-features --features libsql --root "$ROOT" >&2
}

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

create_topics() {
    local port=$1; shift
    for t in "$@"; do
        local out
        if ! out=$("$BIN" topic create --broker "tcp://127.0.0.1:$port" --partitions 3 "$t" 2>&1); then
            # An existing topic is fine (idempotent); anything else is not.
            echo "$out" | grep -qi -E "exist|already" || { echo "ensure-kafka: topic $t: $out" >&2; return 1; }
        fi
    done
}

start() {
    local port=${1:?usage: start PORT [DIR]} dir=${2:-}
    install
    [ -n "$dir" ] || dir=$(mktemp -d /tmp/dartwing-kafka.XXXXXX)
    mkdir -p "$dir"
    if answers "$port"; then
        echo "ensure-kafka: port $port is taken" >&2
        return 1
    fi
    (cd "$dir" && exec "$BIN" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "sqlite://tansu.db" >"$dir/broker.log" 2>&1) &
    local pid=$!
    for _ in $(seq 1 100); do answers "$port" && break; sleep 0.1; done
    if ! answers "$port"; then
        echo "ensure-kafka: broker did not listen on $port; log:" >&2
        tail -20 "$dir/broker.log" >&2 || true
        kill "$pid" 2>/dev/null || true
        return 1
    fi
    local topics=()
    for f in "${FAMILIES[@]}"; do topics+=("$PREFIX$f"); done
    create_topics "$port" "${topics[@]}"
    echo "$pid $dir"
}

stop() {
    local pid=${1:?usage: stop PID}
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

cmd=${1:-install}; shift || true
case "$cmd" in
    install) install ;;
    bin) install; echo "$BIN" ;;
    start) start "$@" ;;
    topics) install; create_topics "$@" ;;
    stop) stop "$@" ;;
    *) echo "usage: $0 install|bin|start PORT [DIR]|topics PORT NAME...|stop PID" >&2; exit 2 ;;
esac
