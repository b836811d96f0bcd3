"""The admin routes on the whole service: the bearer-token guard, the streams overview, DLQ
replay (end to end: a replayed dead letter is applied by the running consumer) and sync."""

from __future__ import annotations

import attrs
import pytest

from kaleido.app import Running, service_of
from kaleido.messages import INSIGHTS_STREAM, POST_IMAGE_STREAM
from kaleido.settings import Settings

from .service_helpers import ADMIN, JSON, client, ops_client, serving
from .streams_helpers import dlq_len, insight, xadd
from .waiting import wait_until

pytestmark = pytest.mark.redis_kinds("single", "cluster")

ROUTES = [
    ("GET", "/v1/admin/streams"),
    ("POST", f"/v1/admin/dlq/{INSIGHTS_STREAM}/replay"),
    ("POST", "/v1/admin/sync"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_the_token_guards_every_admin_route(running: Running, method: str, path: str) -> None:
    async with ops_client(running) as http:
        missing = await http.request(method, path)
        assert missing.status_code == 401, missing.text
        assert "Authorization: Bearer" in missing.json()["error"]
        basic = await http.request(method, path, headers={"Authorization": "Basic dXNlcjpwdw=="})
        assert basic.status_code == 401
        wrong = await http.request(method, path, headers={"Authorization": "Bearer nope-nope"})
        assert wrong.status_code == 403 and wrong.json() == {"error": "admin route: wrong token"}
        right = await http.request(method, path, headers=ADMIN)
        assert right.status_code == 200, right.text


async def test_no_configured_token_disables_the_admin_routes(settings: Settings) -> None:
    async with (
        serving(attrs.evolve(settings, admin_token=None)) as service,
        ops_client(service) as http,
    ):
        for method, path in ROUTES:
            for headers in ({}, ADMIN):
                r = await http.request(method, path, headers=headers)
                assert r.status_code == 403, (path, r.text)
                assert "KALEIDO_ADMIN_TOKEN is not set" in r.json()["error"]


async def test_streams_overview(running: Running) -> None:
    backends = service_of(running).backends
    await xadd(backends, INSIGHTS_STREAM, {"service": "tagging"})  # undecodable: dead-lettered

    async def dead_lettered() -> bool:
        return await dlq_len(backends, INSIGHTS_STREAM) == 1

    await wait_until(dead_lettered)
    await xadd(backends, POST_IMAGE_STREAM, {"postId": "1", "mediaId": "2"})
    async with ops_client(running) as http:
        r = await http.get("/v1/admin/streams", headers=ADMIN)
    assert r.status_code == 200
    streams = {s["stream"]: s for s in r.json()["streams"]}
    assert len(streams) == 10
    insights = streams[INSIGHTS_STREAM]
    assert insights["direction"] == "inbound" and insights["dlqSize"] == 1
    (group,) = insights["groups"]
    assert group["name"] == "backend-group" and group["lag"] == 0 and group["pending"] == 0
    assert [c["name"] for c in group["consumers"]] == ["media-ai-consumer"]
    outbound = streams[POST_IMAGE_STREAM]
    assert outbound["direction"] == "outbound" and outbound["length"] == 1
    assert outbound["groups"] == []  # the ML service's group does not exist here


async def test_replay_puts_dead_letters_back_and_the_consumer_applies_them(
    running: Running,
) -> None:
    backends = service_of(running).backends
    dlq_key = backends.keys.dlq(INSIGHTS_STREAM)
    # Dead letters as the consumer writes them: the original fields plus the failure.
    ids = []
    for media_id in (501, 502, 503):
        entry_id = await backends.redis.execute(
            "XADD", dlq_key, "*", "mediaId", str(media_id), "postId", "50", "service", "tagging",
            "tags", '["cat"]', "error", "database was down", "errorType", "PostgresUnavailable",
            "originalId", "1-1", "deliveries", "6", "failedAt", "2024-01-01T00:00:00Z",
        )  # fmt: skip
        ids.append(entry_id.decode())
    async with ops_client(running) as http:
        one = await http.post(
            f"/v1/admin/dlq/{INSIGHTS_STREAM}/replay", json={"ids": [ids[0]]}, headers=ADMIN
        )
        assert one.status_code == 200, one.text
        assert one.json()["replayed"] == 1 and one.json()["stream"] == INSIGHTS_STREAM
        assert await dlq_len(backends, INSIGHTS_STREAM) == 2
        again = await http.post(
            f"/v1/admin/dlq/{INSIGHTS_STREAM}/replay", json={"ids": [ids[0]]}, headers=ADMIN
        )
        assert again.json()["replayed"] == 0  # already replayed: not twice
        rest = await http.post(f"/v1/admin/dlq/{INSIGHTS_STREAM}/replay", headers=ADMIN)
        assert rest.json()["replayed"] == 2
    assert await dlq_len(backends, INSIGHTS_STREAM) == 0

    async def applied() -> bool:
        return all([await insight(backends, m) is not None for m in (501, 502, 503)])

    await wait_until(applied)
    row = await insight(backends, 501)
    assert row is not None and row["tags"] == ["cat"]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/admin/dlq/nope/replay", None, 404, "valid streams: ml-insights-results"),
        (f"/v1/admin/dlq/{POST_IMAGE_STREAM}/replay", None, 404, "no dead-letter queue"),
        (f"/v1/admin/dlq/{INSIGHTS_STREAM}/replay", b"{bad", 400, "invalid JSON"),
        (f"/v1/admin/dlq/{INSIGHTS_STREAM}/replay", b"[1]", 400, '{"ids"'),
        (f"/v1/admin/dlq/{INSIGHTS_STREAM}/replay", b'{"ids": ["x"]}', 400, "ids[0]"),
        (f"/v1/admin/dlq/{INSIGHTS_STREAM}/replay", b'{"ids": [7]}', 400, "ids[0]"),
    ],
)
async def test_bad_replay_requests_get_a_clear_4xx(
    running: Running, path: str, body: bytes | None, status: int, message: str
) -> None:
    async with ops_client(running) as http:
        r = await http.post(path, content=body, headers={**ADMIN, **JSON})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


async def test_admin_sync_syncs(running: Running) -> None:
    backends = service_of(running).backends
    await backends.postgres.execute("INSERT INTO posts (post_id, user_id) VALUES (90, 1)")
    async with client(running) as public, ops_client(running) as http:
        view = await public.post("/v1/views", json={"userId": 1, "postId": 90})
        assert view.status_code == 202
        r = await http.post("/v1/admin/sync", headers=ADMIN)
    assert r.status_code == 200 and r.json()["synced"] is True and r.json()["views"] == 1
    count = await backends.postgres.fetchval("SELECT view_count FROM posts WHERE post_id = 90")
    assert count == 1
