#!/usr/bin/env bash
# Email in and out (issue 13): 10,000 mails ingested from a real Dovecot (committed, end to
# end), our parse step against mail-parser alone, and SMTP sends through the gateway against
# lettre alone, both to a local aiosmtpd (see tests/src/bin/emailbench.rs). Release build.
#
#   scripts/bench-email.sh [sqlite|postgres]      # default: both
#   MESSAGES=10000 SENDS=2000 scripts/bench-email.sh sqlite
#
# Needs Dovecot and aiosmtpd (scripts/ensure-mail-peers.sh) and, for postgres,
# scripts/ensure-postgres.sh. Builds into $CARGO_TARGET_DIR_RELEASE (default
# ~/.cache/dartwing/target-release) so the shared dev target is left alone; not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKENDS="${1:-sqlite postgres}"
DARTWING_AIOSMTPD_PYTHON=$(scripts/ensure-mail-peers.sh | tail -1)
export DARTWING_AIOSMTPD_PYTHON
case "$BACKENDS" in
*postgres*)
    DARTWING_TEST_PG_URL=$(scripts/ensure-postgres.sh | tail -1)
    export DARTWING_TEST_PG_URL
    ;;
esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_RELEASE:-$HOME/.cache/dartwing/target-release}"
cargo build -q --release -p integration-tests --bin dartwing-emailbench
BIN="$CARGO_TARGET_DIR/release/dartwing-emailbench"
export DARTWING_LOG="${DARTWING_LOG:-warn}"
for b in $BACKENDS; do
    echo "# $b: ${MESSAGES:-10000} mails in, ${SENDS:-2000} out" >&2
    "$BIN" --backend "$b" --messages "${MESSAGES:-10000}" --sends "${SENDS:-2000}" | grep '^{'
done
