"""The OpenAPI 3.1 documents of the two listeners, built from this package's code (the one
source of truth): each listener serves its own as `GET /openapi.json`, and `make openapi`
writes them to docs/openapi.yaml and docs/openapi-ops.yaml (tests/test_openapi.py checks the
committed files are what the service serves)."""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kaleido import __version__
from kaleido.http.openapi import admin, components, console, public
from kaleido.http.openapi.components import Schema, json_body, ref

_SERVERS = {
    "public": [{"url": "http://127.0.0.1:8080", "description": "KALEIDO_HTTP_BIND's default"}],
    "ops": [{"url": "http://127.0.0.1:9090", "description": "KALEIDO_OPS_BIND's default"}],
}

_PROBES: Schema = {
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "The process answers",
            "tags": ["probes"],
            "security": [],
            "responses": {
                "200": json_body(
                    {
                        "type": "object",
                        "required": ["status"],
                        "properties": {"status": {"const": "ok"}},
                    },
                    "Alive.",
                ),
                "405": components.METHOD,
            },
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readyz",
            "summary": "Redis, PostgreSQL and every actor are up",
            "tags": ["probes"],
            "security": [],
            "responses": {
                "200": json_body(ref("Readiness"), "Ready."),
                "503": json_body(ref("Readiness"), "Not ready: `checks` and `actors` say why."),
                "405": components.METHOD,
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "tags": ["probes"],
            "security": [],
            "responses": {
                "200": json_body({"type": "object"}, "The listener's OpenAPI document."),
                "405": components.METHOD,
                "503": components.BUSY,
            },
        }
    },
}

_READINESS: Schema = {
    "type": "object",
    "required": ["ready", "checks", "actors"],
    "properties": {
        "ready": {"type": "boolean"},
        "checks": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "redis, postgres: `ok` or what went wrong.",
        },
        "actors": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Each actor: `running` or `down: <why>`.",
        },
    },
}

_DESCRIPTIONS = {
    "public": (
        "Kaleido's public listener: the `/v1` user routes (views, posts, profile pictures) "
        'and the probes. Every JSON error is `{"error": "..."}`; every answer carries '
        "`X-Correlation-ID`. Bodies are `application/json`, at most 2 MB, whole within 10 s."
    ),
    "ops": (
        "Kaleido's ops listener: Prometheus metrics, the JSON admin routes and the `/ops` "
        "console (HTML pages, server-rendered), and the probes. Keep it off the public network."
    ),
}


def _document(listener: str, paths: Schema, schemas: Schema, schemes: list[str]) -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"Kaleido {listener} API",
            "version": __version__,
            "description": _DESCRIPTIONS[listener],
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": _SERVERS[listener],
        "paths": {**_PROBES, **paths},
        "components": {
            "schemas": {**components.SCHEMAS, "Readiness": _READINESS, **schemas},
            "securitySchemes": {k: components.SECURITY_SCHEMES[k] for k in schemes},
        },
    }


@cache
def public_document() -> Schema:
    return _document("public", public.PATHS, public.SCHEMAS, ["bearerJwt", "serviceToken"])


@cache
def ops_document() -> Schema:
    paths = {**admin.PATHS, **console.PATHS}
    return _document("ops", paths, admin.SCHEMAS, ["adminToken", "bearerJwt", "consoleSession"])


def route(document: Schema) -> Route:
    """`GET /openapi.json` serving `document` (encoded once)."""
    body = orjson.dumps(document)

    async def openapi(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Route("/openapi.json", openapi, methods=["GET"])


def documents() -> dict[str, Any]:
    """File name under docs/ → document."""
    return {"openapi.yaml": public_document(), "openapi-ops.yaml": ops_document()}
