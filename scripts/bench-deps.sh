#!/usr/bin/env bash
# What `make bench` needs beyond `make test`: wrk (the HTTP load generator, from apt-get when
# missing) and the project's bench extra (py-spy) in the virtualenv. Safe to run again.
set -euo pipefail
venv=${1:-.venv}

if ! command -v wrk >/dev/null 2>&1; then
    echo "bench-deps: installing wrk"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi

"$venv/bin/python" -m pip install -q -e '.[test,bench]'
