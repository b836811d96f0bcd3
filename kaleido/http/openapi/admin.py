"""The ops listener's JSON paths: `/metrics` and the admin routes (sync, streams, DLQ replay)."""

from __future__ import annotations

import attrs

from kaleido.http.bodies import MAX_REPLAY_IDS
from kaleido.http.openapi.components import (
    ADMIN_SECURITY,
    BUSY,
    ENTRY_ID,
    STREAM,
    Schema,
    errors,
    json_body,
    ref,
)
from kaleido.streams.dlq import REPLAY_LIMIT
from kaleido.views.model import SyncReport

_COUNT = {"type": "integer", "minimum": 0}

SCHEMAS: Schema = {
    "SyncDone": {
        "type": "object",
        "required": ["synced", *(a.name for a in attrs.fields(SyncReport))],
        "description": "What the sync run did (backlog_posts -1: unknown).",
        "properties": {
            "synced": {"const": True},
            **{a.name: {"type": "integer"} for a in attrs.fields(SyncReport)},
        },
    },
    "SyncFailed": {
        "type": "object",
        "required": ["synced", "error"],
        "properties": {"synced": {"const": False}, "error": {"type": ["string", "null"]}},
    },
    "Streams": {
        "type": "object",
        "required": ["streams"],
        "properties": {"streams": {"type": "array", "items": ref("StreamStatus")}},
    },
    "StreamStatus": {
        "type": "object",
        "required": ["stream", "direction", "length", "dlqSize", "groups"],
        "properties": {
            "stream": {"type": "string"},
            "direction": {"enum": ["inbound", "outbound"]},
            "length": _COUNT,
            "dlqSize": {**_COUNT, "description": "0 for outbound streams (no DLQ)."},
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "lag", "pending", "oldestPendingAgeSeconds", "consumers"],
                    "properties": {
                        "name": {"type": "string"},
                        "lag": {"type": ["integer", "null"]},
                        "pending": _COUNT,
                        "oldestPendingAgeSeconds": {"type": ["number", "null"]},
                        "consumers": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "pending", "idleSeconds"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "pending": _COUNT,
                                    "idleSeconds": {"type": "number"},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "ReplayIds": {
        "type": "object",
        "required": ["ids"],
        "properties": {"ids": {"type": "array", "items": ENTRY_ID, "maxItems": MAX_REPLAY_IDS}},
    },
    "Replayed": {
        "type": "object",
        "required": ["stream", "replayed", "newIds", "more"],
        "properties": {
            "stream": {"type": "string"},
            "replayed": _COUNT,
            "newIds": {"type": "array", "items": {"type": "string"}},
            "more": {"type": "boolean", "description": "Older dead letters remain."},
        },
    },
}

PATHS: Schema = {
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "The Prometheus text exposition",
            "tags": ["ops"],
            "security": [],
            "responses": {
                "200": {
                    "description": "Metrics (text format 0.0.4).",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "503": BUSY,
            },
        }
    },
    "/v1/admin/sync": {
        "post": {
            "operationId": "syncViews",
            "summary": "Run a view sync (Redis to PostgreSQL) now and wait for it",
            "tags": ["admin"],
            "security": ADMIN_SECURITY,
            "responses": {
                "200": json_body(ref("SyncDone"), "The sync ran."),
                **errors(),
                "503": {
                    "description": "The sync failed, or the listener is busy.",
                    "content": {
                        "application/json": {"schema": {"oneOf": [ref("SyncFailed"), ref("Error")]}}
                    },
                },
            },
        }
    },
    "/v1/admin/streams": {
        "get": {
            "operationId": "listStreams",
            "summary": "Every stream: length, DLQ size, groups, lag, pending, consumers",
            "tags": ["admin"],
            "security": ADMIN_SECURITY,
            "responses": {"200": json_body(ref("Streams"), "The streams."), **errors()},
        }
    },
    "/v1/admin/dlq/{stream}/replay": {
        "post": {
            "operationId": "replayDeadLetters",
            "summary": "Put dead letters back on their stream",
            "description": 'With `{"ids": [...]}`: those entries. With no body: at most '
            f"`limit` (default {REPLAY_LIMIT}) of the entries the DLQ held when the call "
            "began, oldest first; `more` says whether older ones remain.",
            "tags": ["admin"],
            "security": ADMIN_SECURITY,
            "parameters": [
                STREAM,
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "With no body: how many to replay at most.",
                    "schema": {"type": "integer", "minimum": 1, "maximum": REPLAY_LIMIT},
                },
            ],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": ref("ReplayIds")}},
            },
            "responses": {
                "200": json_body(ref("Replayed"), "Replayed."),
                **errors(body=True, path=True),
            },
        }
    },
}
