"""The example service's tests, written as a user of Kaleido would: only `kaleido` and the
`kaleido.testing` fixtures (`kaleido_app`)."""

from __future__ import annotations

import httpx
import trio

from kaleido.testing import KaleidoDriver

from .app import create_app


def client(app: KaleidoDriver) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(app.kaleido))
    return httpx.AsyncClient(transport=transport, base_url="http://trending.test")


async def test_a_post_seen_twice_by_one_user_counts_once(kaleido_app: KaleidoDriver) -> None:
    async with client(kaleido_app) as http:
        first = await http.post("/users/7/seen", json={"postIds": [1, 2]})
        again = await http.post("/users/7/seen", json={"postIds": [2]})
        assert (first.json(), again.json()) == ({"new": 2}, {"new": 0})
        await http.post("/users/8/seen", json={"postIds": [2]})
        ranked = await http.get("/trending", params={"posts": "1,2,3"})
    assert ranked.json() == [
        {"postId": 2, "views": 2},
        {"postId": 1, "views": 1},
        {"postId": 3, "views": 0},
    ]


async def test_totals_stay_exact_across_a_sync(kaleido_app: KaleidoDriver) -> None:
    for user in range(1, 51):
        assert kaleido_app.views.record_nowait(user, 5)  # fire and forget, as a feed would
    await kaleido_app.drained()
    assert await kaleido_app.views.total(5) == 50
    report = await kaleido_app.sync()
    assert report.views == 50
    async with client(kaleido_app) as http:
        assert (await http.get("/trending", params={"posts": "5"})).json() == [
            {"postId": 5, "views": 50}
        ]


async def test_ml_results_are_dealt_with_before_feed_returns(kaleido_app: KaleidoDriver) -> None:
    caption = {
        "mediaId": "11", "postId": "5", "service": "image_captioning", "caption": "a cat",
        "correlationId": "example-1", "timestamp": "2026-05-04T10:15:30Z", "version": "1",
    }  # fmt: skip
    with trio.fail_after(10):
        fed = await kaleido_app.feed("ml-insights-results", caption)
    assert fed.outcome == "applied"
    unknown = {**caption, "service": "sentiment"}  # a service this version does not know
    with trio.fail_after(10):
        assert (await kaleido_app.feed("ml-insights-results", unknown)).outcome == "ignored"
    # An entry that can never apply is dead-lettered with its reason.
    with trio.fail_after(10):
        broken = await kaleido_app.feed(
            "ml-insights-results", {"postId": "5", "service": "tagging", "tags": "[]"}
        )
    assert broken.outcome == "dead_lettered" and "mediaId" in str(broken.dead_letter_error)
