"""The OpenAPI documents (kaleido/http/openapi/, docs/openapi.md): valid OpenAPI 3.1, the
committed YAML files current and equal to what each listener serves as `/openapi.json`, and
every route the applications mount documented, and nothing more."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate
from starlette.routing import Route

from kaleido.app import Running, service_of
from kaleido.http.app import create_app, create_ops_app
from kaleido.http.openapi import documents, ops_document, public_document
from kaleido.http.openapi.__main__ import render
from kaleido.messages import INSIGHTS_STREAM
from kaleido.streams.dlq import REPLAY_LIMIT

from .conftest import REPO
from .service_helpers import client, ops_client

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def committed(name: str) -> Any:
    return yaml.safe_load((REPO / "docs" / name).read_text())


@pytest.mark.parametrize("name", ["openapi.yaml", "openapi-ops.yaml"])
def test_the_committed_documents_are_valid_openapi_3_1(name: str) -> None:
    document = committed(name)
    assert document["openapi"].startswith("3.1")
    validate(document)


@pytest.mark.parametrize("name", ["openapi.yaml", "openapi-ops.yaml"])
def test_the_committed_documents_are_current(name: str) -> None:
    text = (REPO / "docs" / name).read_text()
    assert text == render(documents()[name]), f"docs/{name} is out of date: run `make openapi`"


async def test_each_listener_serves_the_committed_document(running: Running) -> None:
    async with client(running) as public, ops_client(running) as ops:
        served_public = await public.get("/openapi.json")
        served_ops = await ops.get("/openapi.json")
    assert served_public.status_code == served_ops.status_code == 200
    assert served_public.headers["content-type"] == "application/json"
    assert served_public.json() == committed("openapi.yaml")
    assert served_ops.json() == committed("openapi-ops.yaml")


def mounted(routes: list[Any]) -> set[tuple[str, str]]:
    """(path, method) of every route; HEAD is Starlette's own companion of GET."""
    found = set()
    for route in routes:
        assert isinstance(route, Route), route
        for method in route.methods or ():
            if method != "HEAD":
                found.add((route.path, method.lower()))
    return found


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


async def test_every_mounted_route_is_documented_and_nothing_else(running: Running) -> None:
    public = mounted(create_app(service_of(running)).routes)
    ops = mounted(create_ops_app(service_of(running)).routes)
    assert public == documented(public_document())
    assert ops == documented(ops_document())
    assert ("/openapi.json", "get") in public & ops


def test_every_operation_has_an_id_responses_and_a_security_rule() -> None:
    for document in (public_document(), ops_document()):
        ids = []
        for path, item in document["paths"].items():
            for method, operation in item.items():
                ids.append(operation["operationId"])
                assert "security" in operation, (path, method)
                assert operation["responses"], (path, method)
                for scheme in [k for rule in operation["security"] for k in rule]:
                    assert scheme in document["components"]["securitySchemes"]
        assert len(ids) == len(set(ids))


async def test_a_405_names_the_methods_in_allow(running: Running) -> None:
    """Found by the contract test: 405s came without `Allow`, and a page with a form named
    only one of its two methods."""
    async with client(running) as public, ops_client(running) as ops:
        r = await public.delete("/v1/views")
        assert r.status_code == 405 and r.headers["allow"] == "POST"
        assert r.json()["error"]
        r = await ops.put("/ops/login")
        assert r.status_code == 405
        assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


async def test_a_non_ascii_digit_limit_is_a_400(running: Running) -> None:
    """Found by the contract test: `?limit=²` passed str.isdigit and int() raised (a 500)."""
    headers = {"Authorization": "Bearer test-admin-token-0123456789"}
    async with ops_client(running) as ops:
        r = await ops.post(f"/v1/admin/dlq/{INSIGHTS_STREAM}/replay?limit=²", headers=headers)
    assert r.status_code == 400, r.text
    assert "limit" in r.json()["error"]


async def test_entry_ids_past_64_bits_and_too_many_ids_are_400s(running: Running) -> None:
    """Found by the contract test: an entry id part past 2^64-1 matched the pattern and Redis's
    error reply became a 500; 10,000 ids took longer than a client waits; a bad `limit` was
    ignored when ids were given."""
    headers = {"Authorization": "Bearer test-admin-token-0123456789"}
    replay = f"/v1/admin/dlq/{INSIGHTS_STREAM}/replay"
    huge = "99999999999999999999-0"
    async with ops_client(running) as ops:
        r = await ops.post(replay, json={"ids": [huge]}, headers=headers)
        assert r.status_code == 400 and "ids[0]" in r.json()["error"]
        ids = [f"1700000000000-{n}" for n in range(REPLAY_LIMIT + 1)]
        r = await ops.post(replay, json={"ids": ids}, headers=headers)
        assert r.status_code == 400 and "limit" in r.json()["error"]
        r = await ops.post(replay + "?limit=0", json={"ids": ids[:1]}, headers=headers)
        assert r.status_code == 400 and "limit" in r.json()["error"]
        r = await ops.post(replay, json={"ids": ids[:3] * 2}, headers=headers)
        assert r.status_code == 200 and r.json()["replayed"] == 0  # none in the DLQ
        page = await ops.get(f"/ops/dlq/{INSIGHTS_STREAM}?after={huge}", headers=headers)
        assert page.status_code == 400
        page = await ops.post(f"/ops/dlq/{INSIGHTS_STREAM}/replay/{huge}", headers=headers,
                              data={"type": ""})  # fmt: skip
        assert page.status_code == 400
