#!/usr/bin/env bash
# What `make run` needs on a fresh Debian machine, and nothing more: redis-server and
# PostgreSQL binaries (only the binaries are used: Kaleido starts private instances itself),
# then a virtualenv with the project. The test toolchain is scripts/bootstrap-test.sh's.
# Safe to run again; one line per step.
set -euo pipefail
python=${1:-python3.11}
venv=${2:-.venv}

step() { echo "bootstrap: $*"; }

have_postgres() {
    command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
have_postgres || need+=(postgresql)
"$python" -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    step "apt-get install ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
    step "creating the virtualenv $venv"
    "$python" -m venv "$venv"
fi
step "pip install -e . (into $venv)"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e .
step "done; the command line is $venv/bin/kaleido (docs/cli.md: putting it on PATH)"
