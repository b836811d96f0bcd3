"""The ops console on the whole service (real Redis and PostgreSQL, the ops listener over HTTP):
the credential on every page, the login, CSRF and Origin checks, escaping, replay, purge,
the error-type filter and paging, and the history the overview draws."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import httpx
import pytest

from kaleido.app import Running, service_of
from kaleido.gateways import Backends
from kaleido.messages import INSIGHTS_STREAM
from kaleido.ops.streams import read_streams
from kaleido.settings import Settings

from .service_helpers import ADMIN, ADMIN_TOKEN, ops_client, serving
from .streams_helpers import dlq_len, insight
from .waiting import wait_until

DLQ = f"/ops/dlq/{INSIGHTS_STREAM}"
PAGES = ["/ops", "/ops/streams", "/ops/dlq", DLQ, f"{DLQ}/purge"]
POSTS = [f"{DLQ}/replay", f"{DLQ}/replay/1-0", f"{DLQ}/purge", "/ops/logout"]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def dead_letter(backends: Backends, media_id: int, error_type: str = "PostgresUnavailable",
                      **fields: str) -> str:  # fmt: skip
    entry_id = await backends.redis.execute(
        "XADD", backends.keys.dlq(INSIGHTS_STREAM), "*", "mediaId", str(media_id), "postId",
        "50", "service", "tagging", "tags", '["cat"]', *[p for kv in fields.items() for p in kv],
        "error", "database was down", "errorType", error_type, "originalId", "1-1",
        "deliveries", "6", "failedAt", "2024-01-01T00:00:00Z",
    )  # fmt: skip
    return str(entry_id.decode())


@asynccontextmanager
async def signed_in(running: Running) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """An ops client with a session cookie, and the session's CSRF token."""
    async with ops_client(running) as http:
        r = await http.post("/ops/login", data={"token": ADMIN_TOKEN, "next": "/ops/streams"})
        assert r.status_code == 303 and r.headers["location"] == "/ops/streams", r.text
        page = await http.get("/ops/streams")
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found is not None
        yield http, found.group(1)


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_needs_the_admin_credential(running: Running, path: str) -> None:
    async with ops_client(running) as http:
        bare = await http.get(path)
        assert bare.status_code == 303 and bare.headers["location"].startswith("/ops/login?next=")
        http.cookies.set("kaleido_ops", "v1.admin.9999999999.abc.def", path="/ops")
        forged = await http.get(path)
        assert forged.status_code == 303
        http.cookies.clear()
        wrong = await http.get(path, headers={"Authorization": "Bearer nope-nope"})
        assert wrong.status_code == 403 and "wrong token" in wrong.text
        assert wrong.headers["content-type"].startswith("text/html")
        right = await http.get(path, headers=ADMIN)
        assert right.status_code in (200, 303), right.text
        if right.status_code == 303:  # /ops/dlq picks a stream
            assert right.headers["location"].startswith("/ops/dlq/")


@pytest.mark.parametrize("path", POSTS)
async def test_every_action_needs_the_admin_credential(running: Running, path: str) -> None:
    async with ops_client(running) as http:
        r = await http.post(path, data={"ids": "1-0", "confirm": INSIGHTS_STREAM})
    assert r.status_code == 401 and "Sign in first" in r.text


async def test_login_sets_a_strict_session_cookie_and_logout_ends_it(running: Running) -> None:
    async with ops_client(running) as http:
        form = await http.get("/ops/login?next=/ops/dlq")
        assert form.status_code == 200 and 'name="token"' in form.text
        bad = await http.post("/ops/login", data={"token": "nope", "next": "/ops/dlq"})
        assert bad.status_code == 401 and "neither the admin token" in bad.text
        assert "kaleido_ops" not in bad.headers.get("set-cookie", "")
        evil = await http.post("/ops/login", data={"token": ADMIN_TOKEN, "next": "//evil.example/"})
        assert evil.status_code == 303 and evil.headers["location"] == "/ops"
        cookie = evil.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ops" in cookie
        assert "secure" not in cookie.replace("kaleido_ops", "")  # plain http here
        assert "max-age=43200" in cookie
        overview = await http.get("/ops")
        assert overview.status_code == 200 and "Overview" in overview.text
        for header, value in (
            ("content-security-policy", "default-src 'self'; script-src 'none'"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "same-origin"),
        ):
            assert overview.headers[header].startswith(value)
        csrf = re.search(r'name="csrf" value="([^"]+)"', overview.text)
        assert csrf is not None
        out = await http.post("/ops/logout", data={"csrf": csrf.group(1)})
        assert out.status_code == 303 and out.headers["location"] == "/ops/login"
        assert (await http.get("/ops")).status_code == 303


async def test_without_an_admin_secret_the_console_is_disabled(settings: Settings) -> None:
    async with serving(attrs.evolve(settings, admin_token=None)) as service:
        async with ops_client(service) as http:
            for path in ("/ops", "/ops/login", DLQ):
                r = await http.get(path, headers=ADMIN)
                assert r.status_code == 403 and "console is disabled" in r.text, path
            login = await http.post("/ops/login", data={"token": ADMIN_TOKEN})
            assert login.status_code == 403


async def test_posts_without_the_csrf_token_or_from_elsewhere_are_refused(
    running: Running,
) -> None:
    backends = service_of(running).backends
    entry = await dead_letter(backends, 601)
    async with signed_in(running) as (http, csrf):
        path = f"{DLQ}/replay/{entry}"
        missing = await http.post(path, data={"ids": entry})
        assert missing.status_code == 403 and "CSRF token is missing" in missing.text
        wrong = await http.post(path, data={"csrf": "x" + csrf[1:]})
        assert wrong.status_code == 403 and "CSRF" in wrong.text
        for origin in ("http://evil.example", "null"):
            foreign = await http.post(path, data={"csrf": csrf}, headers={"Origin": origin})
            assert foreign.status_code == 403 and "posted from" in foreign.text
        not_a_form = await http.post(path, json={"csrf": csrf})
        assert not_a_form.status_code == 415
        assert await dlq_len(backends, INSIGHTS_STREAM) == 1  # nothing was replayed
        own = "http://" + running.ops_addresses[0].split("://")[-1]
        ok = await http.post(path, data={"csrf": csrf}, headers={"Origin": own})
        assert ok.status_code == 303 and ok.headers["location"].endswith("replayed=1")
    assert await dlq_len(backends, INSIGHTS_STREAM) == 0


async def test_hostile_fields_are_shown_escaped(running: Running) -> None:
    backends = service_of(running).backends
    await dead_letter(
        backends, 602, error_type="<b>Bad</b>",
        caption="<script>alert(1)</script>", note='"><img src=x onerror=alert(2)>',
    )  # fmt: skip
    async with signed_in(running) as (http, _):
        page = await http.get(DLQ)
    assert page.status_code == 200
    html = page.text
    assert "<script>alert(1)</script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<b>Bad</b>" not in html and "&lt;b&gt;Bad&lt;/b&gt;" in html
    assert "<script" not in html  # the console has no script of its own either


async def test_replay_one_and_replay_selected(running: Running) -> None:
    backends = service_of(running).backends
    ids = [await dead_letter(backends, media_id) for media_id in (611, 612, 613)]
    async with signed_in(running) as (http, csrf):
        one = await http.post(f"{DLQ}/replay/{ids[0]}", data={"csrf": csrf})
        assert one.status_code == 303
        shown = await http.get(one.headers["location"])
        assert "Replayed 1 dead letter " in shown.text and f'value="{ids[0]}"' not in shown.text
        none = await http.post(f"{DLQ}/replay", data={"csrf": csrf})
        assert none.status_code == 400 and "nothing selected" in none.text
        bad = await http.post(f"{DLQ}/replay", data={"csrf": csrf, "ids": "x"})
        assert bad.status_code == 400 and "stream entry id" in bad.text
        both = await http.post(f"{DLQ}/replay", data={"csrf": csrf, "ids": [ids[1], ids[2]]})
        assert both.status_code == 303 and "replayed=2" in both.headers["location"]
    assert await dlq_len(backends, INSIGHTS_STREAM) == 0

    async def applied() -> bool:
        return all([await insight(backends, m) is not None for m in (611, 612, 613)])

    await wait_until(applied)


async def test_purge_needs_the_typed_confirmation_and_keeps_later_letters(
    running: Running,
) -> None:
    backends = service_of(running).backends
    for media_id in (621, 622):
        await dead_letter(backends, media_id)
    async with signed_in(running) as (http, csrf):
        confirm = await http.get(f"{DLQ}/purge")
        assert confirm.status_code == 200 and "<strong>2</strong> dead letters" in confirm.text
        through = re.search(r'name="through" value="([^"]+)"', confirm.text)
        assert through is not None
        later = await dead_letter(backends, 623)  # fails after the page was shown
        form = {"csrf": csrf, "through": through.group(1)}
        for typed in (None, "yes", "face-detection-results"):
            data = form if typed is None else {**form, "confirm": typed}
            refused = await http.post(f"{DLQ}/purge", data=data)
            assert refused.status_code == 400 and "Nothing was purged" in refused.text
        assert await dlq_len(backends, INSIGHTS_STREAM) == 3
        done = await http.post(f"{DLQ}/purge", data={**form, "confirm": INSIGHTS_STREAM})
        assert done.status_code == 303 and "purged=2" in done.headers["location"]
    left = await backends.redis.execute("XRANGE", backends.keys.dlq(INSIGHTS_STREAM), "-", "+")
    assert [entry_id.decode() for entry_id, _ in left] == [later]


async def test_filter_by_error_type_and_paging(running: Running) -> None:
    backends = service_of(running).backends
    for i in range(60):
        await dead_letter(backends, 1000 + i, error_type="PostgresUnavailable")
    rare = [await dead_letter(backends, 2000 + i, error_type="DecodeError") for i in range(5)]
    async with signed_in(running) as (http, _):
        first = await http.get(DLQ)
        assert first.text.count('name="ids"') == 50
        after = re.search(r'href="/ops/dlq/[^"?]+\?after=([0-9-]+)"', first.text)
        assert after is not None
        second = await http.get(DLQ, params={"after": after.group(1)})
        assert second.text.count('name="ids"') == 15 and "next page" not in second.text
        only = await http.get(DLQ, params={"type": "DecodeError"})
        assert only.text.count('name="ids"') == 5
        assert all(entry in only.text for entry in rare)
        assert "PostgresUnavailable" not in only.text
        bad = await http.get(DLQ, params={"after": "yesterday"})
        assert bad.status_code == 400 and "after" in bad.text
        unknown = await http.get("/ops/dlq/nope")
        assert unknown.status_code == 404 and "no dead-letter queue" in unknown.text


async def test_the_overview_draws_the_reporters_history(running: Running) -> None:
    backends = service_of(running).backends

    async def grouped() -> bool:
        statuses = await read_streams(backends.redis, backends.keys, (INSIGHTS_STREAM,))
        return bool(statuses[0].groups)

    await wait_until(grouped)  # the consumer makes its group again after the reset
    reporter = service_of(running).reporter
    assert reporter is not None and reporter.history is not None
    before = len(reporter.history)
    assert await reporter.sample_once()
    assert await reporter.sample_once()
    assert len(reporter.history) == before + 2
    latest = reporter.history.latest()
    assert latest is not None and latest.memory_used and latest.lag == 0
    async with signed_in(running) as (http, _):
        page = await http.get("/ops")
        assert "Redis memory" in page.text and "<svg" in page.text
        assert "Breaker · redis" in page.text

        async def consumer_shown() -> bool:
            # The consumer shows in the group once its first XREADGROUP after the reset ran.
            streams = await http.get("/ops/streams")
            return "backend-group" in streams.text and "media-ai-consumer" in streams.text

        await wait_until(consumer_shown)
