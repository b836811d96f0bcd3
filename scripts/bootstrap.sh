#!/usr/bin/env bash
# Set up a fresh Debian machine for Kaleido: redis-server and PostgreSQL binaries (only the
# binaries are used: Kaleido starts private instances itself), headless Chromium and its driver
# (the ops console's browser test), npm (a TypeScript client of the OpenAPI documents), then a
# virtualenv with the project and its test extra.
# Safe to run again.
set -euo pipefail
python=${1:-python3.11}
venv=${2:-.venv}

have_postgres() {
    command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
updated=""
apt_install() {
    [ -n "$updated" ] || $sudo apt-get update -qq
    updated=1
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
have_postgres || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# systemd-analyze checks deploy/systemd/kaleido.service (tests/test_deploy_systemd.py).
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# npm (and node) build a TypeScript client from the OpenAPI documents
# (tests/test_openapi_typescript.py; its packages go to .state/npm).
command -v npm >/dev/null 2>&1 || need+=(npm)
"$python" -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    echo "bootstrap: installing ${need[*]}"
    apt_install "${need[@]}"
fi

# promtool (in Debian's prometheus package) checks and unit-tests deploy/prometheus/. The
# package's own server must not run: it listens on :9090, the ops listener's default port. A
# policy-rc.d that refuses every start keeps the install from starting it (Docker images ship
# one already); afterwards it is disabled at boot too. No recommends: no node exporter.
if ! command -v promtool >/dev/null 2>&1; then
    echo "bootstrap: installing prometheus (for promtool; its server stays off)"
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        trap '$sudo rm -f "$policy"' EXIT
    fi
    apt_install --no-install-recommends prometheus
    $sudo update-rc.d prometheus disable >/dev/null 2>&1 || true
    if [ -d /run/systemd/system ]; then
        $sudo systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
fi

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e '.[test]'
