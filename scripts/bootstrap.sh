#!/usr/bin/env bash
# Set up a fresh Debian machine for Kaleido: redis-server and PostgreSQL binaries (only the
# binaries are used: Kaleido starts private instances itself), headless Chromium and its driver
# (the ops console's browser test), then a virtualenv with the project and its test extra.
# Safe to run again.
set -euo pipefail
python=${1:-python3.11}
venv=${2:-.venv}

have_postgres() {
    command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
have_postgres || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
"$python" -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    echo "bootstrap: installing ${need[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e '.[test]'
