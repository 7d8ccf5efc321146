#!/usr/bin/env bash
# Makes a PostgreSQL server reachable for the test suites and prints its admin URL on the
# last line. Idempotent; run as root on a fresh Debian machine it installs PostgreSQL.
#
#   export DARTWING_TEST_PG_URL=$(scripts/ensure-postgres.sh | tail -1)
#
# 1. DARTWING_TEST_PG_URL already answers: use it.
# 2. A server on 127.0.0.1:5432 accepts `postgres` without a password: use it.
# 3. Otherwise: apt-get install postgresql if missing, and run a private cluster (trust auth,
#    loopback only) in ${DARTWING_PG_DIR:-/var/lib/dartwing/pg} on port ${DARTWING_PG_PORT:-55432}.
set -euo pipefail

answers() { command -v psql >/dev/null && psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1; }

if [ -n "${DARTWING_TEST_PG_URL:-}" ] && answers "$DARTWING_TEST_PG_URL"; then
    echo "$DARTWING_TEST_PG_URL"; exit 0
fi
DEFAULT=postgres://postgres@127.0.0.1:5432/postgres
if answers "$DEFAULT"; then echo "$DEFAULT"; exit 0; fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "ensure-postgres: installing PostgreSQL" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq postgresql >&2
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
DIR=${DARTWING_PG_DIR:-/var/lib/dartwing/pg}
PORT=${DARTWING_PG_PORT:-55432}
URL=postgres://postgres@127.0.0.1:$PORT/postgres
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$DIR"
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$DIR"
if [ ! -f "$DIR/data/PG_VERSION" ]; then
    as_pg "$BIN/initdb" -D "$DIR/data" -A trust -U postgres >&2
fi
if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
        -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=300" start >&2
fi
for _ in $(seq 1 50); do answers "$URL" && break; sleep 0.2; done
answers "$URL" || { echo "ensure-postgres: server on $PORT does not answer" >&2; exit 1; }
echo "$URL"
