#!/usr/bin/env bash
# Installs the real mail peers the email tests drive: Dovecot's IMAP server (Debian
# `dovecot-imapd`; the tests start their own instance per test in the foreground, the
# package's system service is stopped and disabled) and the aiosmtpd SMTP receiver
# (PyPI aiosmtpd==1.4.6 in a venv under ~/.cache/dartwing, with dkimpy==1.1.8 beside it to
# verify our DKIM signatures). Idempotent: prints one line and
# installs nothing when both are present. Prints the venv's python as its last line.
set -euo pipefail
VENV=${DARTWING_AIOSMTPD_VENV:-$HOME/.cache/dartwing/aiosmtpd-1.4.6}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v dovecot >/dev/null && [ ! -x /usr/sbin/dovecot ]; then
    echo "installing dovecot-imapd"
    export DEBIAN_FRONTEND=noninteractive
    if ! $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends dovecot-imapd >/dev/null; then
        $SUDO apt-get -o DPkg::Lock::Timeout=600 update >/dev/null
        $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends dovecot-imapd >/dev/null
    fi
    # The package may start a system service on 143; the tests run their own.
    command -v systemctl >/dev/null && $SUDO systemctl disable --now dovecot >/dev/null 2>&1 || true
fi
if ! "$VENV/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1; then
    echo "installing aiosmtpd 1.4.6 into $VENV"
    mkdir -p "$(dirname "$VENV")"
    PY=$(command -v python3)
    "$PY" -m venv "$VENV" || /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check aiosmtpd==1.4.6
fi
# dkimpy verifies the DKIM signatures of what the gateway sends (an implementation of
# RFC 6376 that is not ours); openssl makes the test keys.
if ! "$VENV/bin/python" -c 'import dkim' >/dev/null 2>&1; then
    echo "installing dkimpy 1.1.8 into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check dkimpy==1.1.8
fi
if ! command -v openssl >/dev/null; then
    echo "installing openssl"
    $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends openssl >/dev/null
fi
echo "mail peers present: $(/usr/sbin/dovecot --version 2>/dev/null || dovecot --version), aiosmtpd 1.4.6, dkimpy 1.1.8"
echo "$VENV/bin/python"
