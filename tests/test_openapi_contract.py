"""The service against its own OpenAPI documents (docs/openapi.md): schemathesis generates
requests from each listener's `/openapi.json` and sends them to the running service (real
Redis and PostgreSQL, auth on: a JWT secret, a service token, an admin token). Every check
must pass: no 5xx, every answer's status, content type, headers and body as documented,
invalid input refused, methods not documented answered 405 with `Allow`, and a request
without its credential refused (401).

Bounded: a fixed seed and `MAX_EXAMPLES` cases per operation and phase."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from kaleido.app import Running, serve, service_of
from kaleido.http.console import store as console_store
from kaleido.http.openapi import ops_document, public_document
from kaleido.messages import INSIGHTS_STREAM
from kaleido.settings import Settings

from .service_helpers import reset
from .streams_helpers import dlq_len, xadd
from .views_helpers import create_posts
from .waiting import wait_until

SECRET = base64.b64encode(b"k" * 32).decode()
SERVICE = "contract-service-token-0123456789"
ADMIN = "contract-admin-token-0123456789"
MAX_EXAMPLES = 6
SEED = 24


def config(token_schemes: dict[str, str]) -> str:
    """schemathesis.toml: the tokens of `token_schemes` (security scheme → token); a console
    page without a credential sends the browser to the login form (303, by design: checked in
    test_no_credential_is_refused), so the ignored-auth check is off there."""
    lines = []
    for scheme, token in token_schemes.items():
        lines += [f"[auth.openapi.{scheme}]", f'bearer = "{token}"', ""]
    if "adminToken" in token_schemes:
        lines += [
            "[[operations]]",
            'include-tag = "console"',
            "checks.ignored_auth.enabled = false",
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture
async def running(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    # Sign-in attempts are limited per address (docs/security.md; tests/test_console.py): the
    # generated wrong tokens would soon lock this one client out of every console page.
    monkeypatch.setattr(console_store, "ATTEMPTS_PER_MINUTE", 1_000_000)
    monkeypatch.setattr(console_store, "LOCK_AFTER", 1_000_000)
    settings = attrs.evolve(settings, jwt_secret=SECRET, service_token=SERVICE, admin_token=ADMIN)
    async with trio.open_nursery() as nursery:
        service: Running = await nursery.start(
            lambda task_status: serve(settings, task_status=task_status)
        )
        await reset(service_of(service).backends)
        yield service
        service.stop()


def base_url(addresses: list[str]) -> str:
    return "http://" + addresses[0].split("://")[-1]


async def schemathesis(base: str, tokens: dict[str, str], where: Path) -> dict[str, Any]:
    """One schemathesis run against `base`'s own document: its exit code, output and report."""
    settings, report = where / "schemathesis.toml", where / "report.json"
    settings.write_text(config(tokens))
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(settings),
        "run", f"{base}/openapi.json",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
        "--phases", "examples,coverage,fuzzing", "--no-shrink",
        "--request-timeout", "15", "--max-redirects", "0",
        "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    env = {**os.environ, "NO_COLOR": "1"}
    # In `where`: schemathesis keeps a cache in its working directory.
    done = await trio.run_process(command, capture_stdout=True, stderr=subprocess.STDOUT,
                                  check=False, env=env, cwd=where)  # fmt: skip
    output = done.stdout.decode(errors="replace")
    print(output)
    assert report.exists(), output
    return {"exit": done.returncode, "output": output, "report": json.loads(report.read_text())}


def check(result: dict[str, Any]) -> None:
    report = result["report"]
    cases = report["test_cases"]
    print(
        f"contract: {report['operations']['tested']} operations, {cases['generated']} test "
        f"cases, {cases['unique_failures']} failures, {cases['errored']} errors, "
        f"{report['running_time']:.1f} s"
    )
    assert result["exit"] == 0, result["output"][-20000:]
    assert report["operations"]["tested"] == report["operations"]["total"]
    assert report["failures"] == [] and report["errors"] == []
    assert cases["unique_failures"] == cases["errored"] == 0


async def test_the_public_listener_keeps_its_contract(running: Running, tmp_path: Path) -> None:
    await create_posts(service_of(running).backends, 1, 2, 3)
    base = base_url(running.http_addresses)
    check(await schemathesis(base, {"serviceToken": SERVICE}, tmp_path))


async def test_the_ops_listener_keeps_its_contract(running: Running, tmp_path: Path) -> None:
    backends = service_of(running).backends
    await xadd(backends, INSIGHTS_STREAM, {"service": "tagging"})  # undecodable: a dead letter

    async def dead_lettered() -> bool:
        return await dlq_len(backends, INSIGHTS_STREAM) == 1

    await wait_until(dead_lettered)
    base = base_url(running.ops_addresses)
    check(await schemathesis(base, {"adminToken": ADMIN}, tmp_path))


def secured(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(method, path with example ids, tag) of every operation that needs a credential."""
    found = []
    for path, item in document["paths"].items():
        concrete = (
            path.replace("{postId}", "1").replace("{userId}", "1")
            .replace("{stream}", INSIGHTS_STREAM).replace("{entry_id}", "1700000000000-0")
        )  # fmt: skip
        for method, operation in item.items():
            if operation["security"]:
                found.append((method.upper(), concrete, operation["tags"][0]))
    return found


async def test_no_credential_is_refused(running: Running) -> None:
    """Every operation with a security rule refuses a request without a credential: a JSON
    route with a 401 and `WWW-Authenticate`, a console page by sending the browser to the login
    form (a GET) or with a 401 page (a form post)."""
    listeners = [
        (base_url(running.http_addresses), public_document()),
        (base_url(running.ops_addresses), ops_document()),
    ]
    checked = 0
    for base, document in listeners:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for method, path, tag in secured(document):
                r = await http.request(method, path)
                checked += 1
                if tag == "console" and method == "GET":
                    assert r.status_code == 303, (method, path, r.status_code)
                    assert r.headers["location"].startswith("/ops/login?next=")
                elif tag == "console":
                    assert r.status_code == 401, (method, path, r.status_code)
                else:
                    assert r.status_code == 401, (method, path, r.status_code, r.text)
                    assert r.headers["www-authenticate"].startswith("Bearer ")
                    assert r.json()["error"]
    assert checked == sum(len(secured(d)) for _, d in listeners) >= 15
