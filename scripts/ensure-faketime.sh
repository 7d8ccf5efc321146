#!/usr/bin/env bash
# libfaketime for the clock-jump fault tests (tests/tests/faults.rs): they start the gateway
# binary with it preloaded and move its wall clock back and forth. Idempotent; prints the
# library's path on its last line.
set -euo pipefail
lib=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
if [ ! -e "$lib" ]; then
    echo "installing libfaketime" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y -q faketime >/dev/null 2>&1 || { apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null && apt-get -o DPkg::Lock::Timeout=600 install -y -q faketime >/dev/null; }
fi
echo "$lib"
