#!/usr/bin/env bash
# What `make test` needs beyond scripts/bootstrap.sh: headless Chromium and its driver (the ops
# console's browser test), systemd-analyze (deploy/systemd/), npm (a TypeScript client of the
# OpenAPI documents), promtool (deploy/prometheus/), and the project's test and dev extras. Nothing but packages changes on the machine: promtool
# is unpacked from Debian's prometheus package into the virtualenv, so no Prometheus server is
# installed, started or enabled. Safe to run again; one line per step.
set -euo pipefail
venv=${1:-.venv}

step() { echo "bootstrap-test: $*"; }

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
updated=""
apt_update() {
    [ -n "$updated" ] || $sudo apt-get update -qq
    updated=1
}

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# npm (and node) build a TypeScript client from the OpenAPI documents
# (tests/test_openapi_typescript.py; its packages go to .state/npm).
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
    step "apt-get install ${need[*]} (the browser test, the unit's check, the OpenAPI client)"
    apt_update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# promtool alone: the package's binary, not the package (whose server would listen on :9090,
# the ops listener's default port).
if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$venv/bin/promtool" ]; then
    step "promtool from Debian's prometheus package, unpacked into $venv/bin"
    apt_update
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # As root apt warns that its _apt user cannot write the folder; the download still works.
    if ! (cd "$work" && apt-get download -qq prometheus >"$work/log" 2>&1); then
        cat "$work/log" >&2
        echo "bootstrap-test: could not download Debian's prometheus package for promtool" >&2
        exit 1
    fi
    dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
    install -m 755 "$work/root/usr/bin/promtool" "$venv/bin/promtool"
fi

step "pip install -e '.[test,dev]' (pytest, hypothesis, selenium, ruff, mypy, ...)"
"$venv/bin/python" -m pip install -q -e '.[test,dev]'
step "done"
