"""The whole service in-process for a test: `serving` it on emptied backends, and clients of
its two listeners. The `running` fixture (tests/conftest.py) is `serving` of the test's
settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import trio

from kaleido.app import Running, serve, service_of
from kaleido.gateways import Backends
from kaleido.settings import Settings

# The admin token of the `settings` fixture (tests/conftest.py).
ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JSON = {"Content-Type": "application/json"}

TABLES = (
    "posts, post_media, media_ai_insights, media_detected_faces, processed_messages, "
    "view_sync_batches, post_view_backlog, view_journal, outbox, profile_picture_requests, "
    "user_face_embeddings, read_model_known_faces, read_model_face_search, "
    "read_model_recommendations_knn, read_model_feed_personalized, post_aggregations, "
    "post_insights"
)


async def reset(backends: Backends) -> None:
    """Empty Redis and every table, so that a test starts from nothing."""
    await backends.redis.execute("FLUSHALL")
    await backends.postgres.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Running]:
    """The service on `settings`, ready, on emptied backends; stopped when the block ends."""
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(
            lambda task_status: serve(settings, task_status=task_status)
        )
        await reset(service_of(running).backends)
        yield running
        running.stop()


def client(running: Running) -> httpx.AsyncClient:
    """A client of the public listener (the /v1 user routes)."""
    base = "http://" + running.http_addresses[0].split("://")[-1]
    return httpx.AsyncClient(base_url=base, timeout=10)


def ops_client(running: Running) -> httpx.AsyncClient:
    """A client of the ops listener (/metrics, the admin routes)."""
    base = "http://" + running.ops_addresses[0].split("://")[-1]
    return httpx.AsyncClient(base_url=base, timeout=10)
