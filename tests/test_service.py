"""The whole service in-process (real Redis and PostgreSQL, HTTP on a free port)."""

from __future__ import annotations

import pytest
import trio
from structlog.testing import capture_logs

from kaleido.app import Running, service_of
from kaleido.service import Service

from .service_helpers import JSON, client, ops_client
from .views_helpers import create_posts, pg_view_counts

pytestmark = pytest.mark.redis_kinds("single", "cluster")


async def test_health_and_readiness(running: Running) -> None:
    async with client(running) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["checks"] == {"redis": "ok", "postgres": "ok"}
        assert set(body["actors"]) >= {"view-ingester", "view-syncer"}


async def test_views_api_round_trip(running: Running) -> None:
    await create_posts(service_of(running).backends, 17)
    async with client(running) as http:
        r = await http.post("/v1/views", json={"userId": 42, "postId": 17})
        assert r.status_code == 202 and r.json()["accepted"] == 1 and r.json()["counted"] == 1
        r = await http.post(
            "/v1/views",
            json=[{"userId": 42, "postId": 17}, {"userId": "43", "postId": "17"}],
        )
        assert r.json() == {"accepted": 2, "counted": 1, "duplicates": 1}
        assert (await http.get("/v1/posts/17/views")).json() == {"postId": 17, "views": 2}
    async with ops_client(running) as ops:
        sync = await ops.post(
            "/v1/admin/sync", headers={"Authorization": "Bearer test-admin-token-0123456789"}
        )
        assert sync.status_code == 200 and sync.json()["views"] == 2
    async with client(running) as http:
        assert (await http.get("/v1/posts/17/views")).json() == {"postId": 17, "views": 2}
    assert await pg_view_counts(service_of(running).backends) == {17: 2}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, "body: expected JSON"),
        (b"{not json", 400, "body: invalid JSON"),
        (b"[]", 400, "non-empty list"),
        (b'{"userId": 1}', 400, "body.postId: expected a positive 64-bit integer, got None"),
        (b'{"userId": 0, "postId": 1}', 400, "body.userId: expected a positive"),
        (b'{"userId": -3, "postId": 1}', 400, "body.userId"),
        (b'{"userId": 1.5, "postId": 1}', 400, "body.userId"),
        (b'{"userId": true, "postId": 1}', 400, "body.userId"),
        (b'{"userId": 9223372036854775808, "postId": 1}', 400, "body.userId"),
        (b'[{"userId": 1, "postId": 2}, 7]', 400, "body[1]: expected an object"),
        (b'[{"userId": 1, "postId": 2}, {"userId": "x", "postId": 2}]', 400, "body[1].userId"),
        (b'"hello"', 400, "expected an object"),
    ],
)
async def test_bad_views_get_a_clear_4xx(
    running: Running, body: bytes, status: int, message: str
) -> None:
    async with client(running) as http:
        r = await http.post("/v1/views", content=body, headers=JSON)
    assert r.status_code == status
    assert message in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"[" * 100_000, JSON, 400, "invalid JSON (depth limit exceeded"),
        (b'{"userId": ' + b"9" * 5000 + b', "postId": 1}', JSON, 400, "invalid JSON (number"),
        (b'{"userId": "' + b"9" * 5000 + b'", "postId": 1}', JSON, 400, "body.userId"),
        (b'{"userId": "\\ud800", "postId": 1}', JSON, 400, "invalid JSON"),
        (b'{"userId": 1, "postId": 1}', {"Content-Type": "text/plain"}, 415, "application/json"),
        (b'{"userId": 1, "postId": 1}', {}, 415, "got none"),
        (b"\xff\xfe", JSON, 400, "invalid JSON"),
    ],
)
async def test_hostile_bodies_get_a_clear_4xx_not_a_500(
    running: Running, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    async with client(running) as http:
        r = await http.post("/v1/views", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert message in r.json()["error"] and len(r.text) < 1000  # nothing echoed whole


async def test_a_bug_is_a_json_500_with_the_correlation_id(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Service, post_id: int) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Service, "view_total", broken)
    with capture_logs() as logs:
        async with client(running) as http:
            r = await http.get("/v1/posts/1/views", headers={"X-Correlation-ID": "bug-42"})
    assert r.status_code == 500
    assert r.json() == {
        "error": "internal error; the logs have its traceback",
        "correlationId": "bug-42",
    }
    [line] = [e for e in logs if e["event"] == "http.unhandled"]
    assert line["exc_info"].args == ("a bug",)  # the correlation id joins it in the real logs


async def _open(running: Running) -> trio.SocketStream:
    host, port = running.http_addresses[0].split("://")[-1].rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def _response(stream: trio.SocketStream) -> bytes:
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        reply += chunk
    return reply


TRICKLE = (
    b"POST /v1/views HTTP/1.1\r\nHost: k\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n{"
)


async def test_a_trickled_body_gets_a_408_at_the_deadline(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kaleido.http.middleware.BODY_DEADLINE", 0.3)
    stream = await _open(running)
    async with stream:
        await stream.send_all(TRICKLE)  # and never the other 99 bytes
        with trio.fail_after(10):
            reply = await _response(stream)
    assert reply.startswith(b"HTTP/1.1 408"), reply


async def test_more_views_than_a_request_may_carry_is_a_400(running: Running) -> None:
    views = [{"userId": u, "postId": 1} for u in range(1, 10_002)]
    async with client(running) as http:
        r = await http.post("/v1/views", json=views)
    assert r.status_code == 400
    assert r.json()["error"] == "body: 10001 views, limit 10000 per request"


async def test_bad_paths_and_methods_are_4xx(running: Running) -> None:
    async with client(running) as http:
        assert (await http.get("/v1/posts/abc/views")).status_code == 400
        assert (await http.get("/v1/posts/0/views")).status_code == 400
        r = await http.get("/nope")
        assert r.status_code == 404 and "error" in r.json()
        assert (await http.get("/v1/views")).status_code == 405


async def test_the_two_listeners_serve_their_own_routes(running: Running) -> None:
    token = {"Authorization": "Bearer test-admin-token-0123456789"}
    async with client(running) as public, ops_client(running) as ops:
        for http in (public, ops):  # load balancers probe the public port
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 200
        assert (await public.get("/metrics")).status_code == 404
        assert (await public.post("/v1/admin/sync", headers=token)).status_code == 404
        assert (await public.get("/v1/admin/streams", headers=token)).status_code == 404
        assert (await ops.get("/metrics")).status_code == 200
        assert (await ops.post("/v1/views", json={"userId": 1, "postId": 1})).status_code == 404


async def test_admin_sync_needs_the_token(running: Running) -> None:
    async with ops_client(running) as http:
        assert (await http.post("/v1/admin/sync")).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token-at-all"}
        assert (await http.post("/v1/admin/sync", headers=wrong)).status_code == 403


async def test_correlation_id_is_echoed(running: Running) -> None:
    async with client(running) as http:
        r = await http.get("/healthz", headers={"X-Correlation-ID": "req-123"})
        assert r.headers["x-correlation-id"] == "req-123"
        fresh = await http.get("/healthz")
        assert len(fresh.headers["x-correlation-id"]) == 36
