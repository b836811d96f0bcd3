"""Post and profile picture routes: stored in PostgreSQL and announced together (the outbox),
published with exactly the contract's fields, trimmed with MAXLEN ~, never lost when Redis
fails, strict on input."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from kaleido.app import Running, serve, service_of
from kaleido.devstack import DevStack
from kaleido.errors import ConfigError
from kaleido.gateways import Backends
from kaleido.messages import decode_post_media, decode_profile_picture
from kaleido.posts import check_media_url
from kaleido.settings import Settings, settings_from_argv

from .conftest import with_settings
from .service_helpers import serving
from .waiting import wait_until

JSON = {"Content-Type": "application/json"}

pytestmark = pytest.mark.redis_kinds("single", "cluster")

MAXLEN = 10
POST_FIELDS = {
    "postId",
    "mediaId",
    "mediaUrl",
    "imageUrl",
    "uploaderId",
    "timestamp",
    "correlationId",
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[Running]:
    async with serving(with_settings(settings, stream_maxlen=MAXLEN)) as service:
        yield service


@pytest.fixture
async def http(running: Running) -> AsyncIterator[httpx.AsyncClient]:
    base = "http://" + running.http_addresses[0].split("://")[-1]
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        yield client


def backends_of(running: Running) -> Backends:
    return service_of(running).backends


async def entries(backends: Backends, stream: str) -> list[dict[str, str]]:
    """The stream's entries once everything committed is published (the outbox is empty)."""

    async def relayed() -> bool:
        return not await backends.postgres.fetchval("SELECT count(*) FROM outbox")

    await wait_until(relayed)
    reply = await backends.redis.execute("XRANGE", stream, "-", "+")
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in reply]


def media(*ids: int) -> list[dict[str, Any]]:
    return [{"mediaId": i, "mediaUrl": f"https://img.example.com/{i}.jpg"} for i in ids]


async def test_create_post_stores_then_publishes_the_contract_fields(
    running: Running, http: httpx.AsyncClient
) -> None:
    body = {
        "postId": 17,
        "userId": "42",
        "media": [
            *media(101),
            {"mediaId": "102", "mediaUrl": "https://cdn.example.com/a/b.png?x=1"},
        ],
    }
    r = await http.post("/v1/posts", json=body, headers={"X-Correlation-ID": "req-abc.1"})
    assert r.status_code == 201, r.text
    assert r.json() == {"postId": 17, "media": 2, "announced": 2}

    published = await entries(backends_of(running), "post-image-processing")
    assert [set(e) for e in published] == [POST_FIELDS, POST_FIELDS]
    first, second = published
    assert first["postId"] == "17" and first["mediaId"] == "101" and first["uploaderId"] == "42"
    assert first["mediaUrl"] == first["imageUrl"] == "https://img.example.com/101.jpg"
    assert second["mediaId"] == "102"
    assert second["imageUrl"] == second["mediaUrl"] == "https://cdn.example.com/a/b.png?x=1"
    for entry in published:
        assert entry["correlationId"] == "req-abc.1"
        assert TIMESTAMP.match(entry["timestamp"]), entry["timestamp"]
        decode_post_media(entry)  # what the stand-in ML service reads

    rows = await backends_of(running).postgres.fetch(
        "SELECT media_id, post_id, media_url, position FROM post_media ORDER BY position"
    )
    assert [(r["media_id"], r["post_id"], r["position"]) for r in rows] == [
        (101, 17, 0),
        (102, 17, 1),
    ]
    post = await backends_of(running).postgres.fetchrow("SELECT * FROM posts WHERE post_id = 17")
    assert post["user_id"] == 42 and post["status"] == "PUBLISHED" and post["view_count"] == 0


async def test_a_new_correlation_id_when_the_caller_gives_none(
    running: Running, http: httpx.AsyncClient
) -> None:
    r = await http.post("/v1/posts", json={"postId": 1, "userId": 2, "media": media(3)})
    assert r.status_code == 201
    (entry,) = await entries(backends_of(running), "post-image-processing")
    assert entry["correlationId"] == r.headers["x-correlation-id"]
    assert len(entry["correlationId"]) == 36


async def test_create_folds_the_view_backlog_in(running: Running, http: httpx.AsyncClient) -> None:
    pg = backends_of(running).postgres
    await pg.execute("INSERT INTO post_view_backlog (post_id, views) VALUES (17, 5)")
    assert (
        await http.post("/v1/posts", json={"postId": 17, "userId": 1, "media": []})
    ).status_code == 201
    assert await pg.fetchval("SELECT view_count FROM posts WHERE post_id = 17") == 5
    assert await pg.fetchval("SELECT count(*) FROM post_view_backlog") == 0
    assert (await http.get("/v1/posts/17/views")).json() == {"postId": 17, "views": 5}


async def test_duplicates_are_409_and_change_nothing(
    running: Running, http: httpx.AsyncClient
) -> None:
    assert (
        await http.post("/v1/posts", json={"postId": 1, "userId": 2, "media": media(3)})
    ).status_code == 201
    again = await http.post("/v1/posts", json={"postId": 1, "userId": 9, "media": media(4)})
    assert again.status_code == 409 and "postId: post 1 already exists" in again.json()["error"]
    taken = await http.post("/v1/posts", json={"postId": 2, "userId": 2, "media": media(5, 3)})
    assert taken.status_code == 409
    assert taken.json()["error"] == "media[1].mediaId: 3 already belongs to post 1"
    pg = backends_of(running).postgres
    assert await pg.fetchval("SELECT count(*) FROM posts") == 1
    assert await pg.fetchval("SELECT array_agg(media_id) FROM post_media") == [3]
    assert len(await entries(backends_of(running), "post-image-processing")) == 1


async def test_put_replaces_the_media_and_announces_new_media_for_analysis(
    running: Running, http: httpx.AsyncClient
) -> None:
    await http.post("/v1/posts", json={"postId": 7, "userId": 70, "media": media(1, 2)})
    new = [*media(3), {"mediaId": 2, "mediaUrl": "https://img.example.com/2-v2.jpg"}]
    r = await http.put(
        "/v1/posts/7/media", json={"media": new}, headers={"X-Correlation-ID": "put-1"}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"postId": 7, "media": 2, "announced": 3, "added": 1, "removed": 1}
    # The media new to the post goes where the ML service reads: post-image-processing.
    images = await entries(backends_of(running), "post-image-processing")
    assert [(e["mediaId"], e["correlationId"]) for e in images][2:] == [("3", "put-1")]
    assert set(images[2]) == POST_FIELDS and images[2]["uploaderId"] == "70"
    rows = await backends_of(running).postgres.fetch(
        "SELECT media_id, media_url, position FROM post_media WHERE post_id = 7 ORDER BY position"
    )
    assert [tuple(r) for r in rows] == [
        (3, "https://img.example.com/3.jpg", 0),
        (2, "https://img.example.com/2-v2.jpg", 1),
    ]
    updates = await entries(backends_of(running), "post-update-processing")
    assert [set(e) for e in updates] == [POST_FIELDS, POST_FIELDS]
    assert [(e["postId"], e["mediaId"], e["uploaderId"], e["correlationId"]) for e in updates] == [
        ("7", "3", "70", "put-1"),
        ("7", "2", "70", "put-1"),
    ]
    assert updates[1]["imageUrl"] == updates[1]["mediaUrl"] == "https://img.example.com/2-v2.jpg"

    r = await http.put("/v1/posts/8/media", json={"media": media(9)})
    assert r.status_code == 404 and "post 8 does not exist" in r.json()["error"]
    await http.post("/v1/posts", json={"postId": 8, "userId": 1, "media": []})
    r = await http.put("/v1/posts/8/media", json={"media": media(3)})
    assert (
        r.status_code == 409
        and r.json()["error"] == "media[0].mediaId: 3 already belongs to post 7"
    )
    r = await http.put("/v1/posts/7/media", json={"media": []})
    assert r.json() == {"postId": 7, "media": 0, "announced": 0, "added": 0, "removed": 2}


async def test_profile_picture_is_recorded_and_announced(
    running: Running, http: httpx.AsyncClient
) -> None:
    r = await http.post(
        "/v1/users/42/profile-picture",
        json={"imageUrl": "https://img.example.com/me.png", "username": "alice",
              "department": "design"},
        headers={"X-Correlation-ID": "pp-9"},
    )  # fmt: skip
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["userId"] == 42 and body["announced"] == 1
    (entry,) = await entries(backends_of(running), "profile-picture-processing")
    assert set(entry) == {"userId", "imageUrl", "correlationId", "timestamp"}
    assert entry["userId"] == "42" and entry["imageUrl"] == "https://img.example.com/me.png"
    # Each request has an id of its own: the enrolment answer names the request by it.
    assert entry["correlationId"] == body["requestId"] != "pp-9"
    assert TIMESTAMP.match(entry["timestamp"])
    decode_profile_picture(entry)
    row = await backends_of(running).postgres.fetchrow(
        "SELECT * FROM profile_picture_requests WHERE user_id = 42"
    )
    assert (row["correlation_id"], row["username"], row["department"]) == (
        body["requestId"],
        "alice",
        "design",
    )
    bad = await http.post(
        "/v1/users/42/profile-picture",
        json={"imageUrl": "https://img.example.com/me.png", "username": "a\nb"},
    )
    assert bad.status_code == 400 and "username" in bad.json()["error"]


async def test_outbound_streams_are_trimmed_with_maxlen_approx(
    running: Running, http: httpx.AsyncClient
) -> None:
    for post in range(1, 7):  # 300 entries against MAXLEN ~ 10
        ids = range(post * 100, post * 100 + 50)
        r = await http.post("/v1/posts", json={"postId": post, "userId": 1, "media": media(*ids)})
        assert r.status_code == 201
    await entries(backends_of(running), "post-image-processing")  # all relayed
    length = await backends_of(running).redis.execute("XLEN", "post-image-processing")
    # `~` trims whole stream nodes (100 entries by default): at least MAXLEN stay, far from 300.
    assert MAXLEN <= length <= MAXLEN + 100
    for user in range(1, 251):
        await http.post(
            f"/v1/users/{user}/profile-picture", json={"imageUrl": "https://a.example/x"}
        )
    await entries(backends_of(running), "profile-picture-processing")
    assert (
        await backends_of(running).redis.execute("XLEN", "profile-picture-processing")
        <= MAXLEN + 100
    )


async def test_a_publish_that_fails_delays_the_announcement_and_loses_nothing(
    running: Running, http: httpx.AsyncClient
) -> None:
    redis = backends_of(running).redis
    # A plain string where the streams should be: every XADD to them fails with WRONGTYPE.
    for stream in ("post-image-processing", "post-update-processing", "profile-picture-processing"):
        await redis.execute("SET", stream, "not a stream")
    r = await http.post("/v1/posts", json={"postId": 5, "userId": 6, "media": media(50, 51)})
    assert r.status_code == 201, r.text  # stored and announced: the announcement waits
    r = await http.put("/v1/posts/5/media", json={"media": media(52)})
    assert r.status_code == 200
    r = await http.post("/v1/users/6/profile-picture", json={"imageUrl": "https://a.example/p"})
    assert r.status_code == 202
    pg = backends_of(running).postgres

    async def failing() -> bool:
        return service_of(running).relay.stats.failures >= 2

    await wait_until(failing)
    waiting = "SELECT count(*) FROM outbox WHERE stream <> 'es-sync-queue'"
    assert await pg.fetchval(waiting) == 5  # 2 + 1 new media + 1 update + 1 picture
    for stream in ("post-image-processing", "post-update-processing", "profile-picture-processing"):
        await redis.execute("DEL", stream)
    images = await entries(backends_of(running), "post-image-processing")
    assert [e["mediaId"] for e in images] == ["50", "51", "52"]
    assert [
        e["mediaId"] for e in await entries(backends_of(running), "post-update-processing")
    ] == ["52"]
    assert len(await entries(backends_of(running), "profile-picture-processing")) == 1


@pytest.mark.redis_kinds("single")  # stops the single Redis of the test session
async def test_redis_down_while_posts_are_created_delays_their_announcements(
    running: Running, http: httpx.AsyncClient, stack: DevStack
) -> None:
    stack.redis.stop()
    try:
        for post in range(1, 6):
            r = await http.post(
                "/v1/posts", json={"postId": post, "userId": 6, "media": media(post * 10)}
            )
            assert r.status_code == 201, r.text
        r = await http.post("/v1/users/6/profile-picture", json={"imageUrl": "https://a.example/p"})
        assert r.status_code == 202
    finally:
        stack.redis.start()
    images = await entries(backends_of(running), "post-image-processing")
    assert sorted(int(e["mediaId"]) for e in images) == [10, 20, 30, 40, 50]  # each once
    assert len(await entries(backends_of(running), "profile-picture-processing")) == 1


def _long_url() -> str:
    return "https://img.example.com/" + "a" * 2030


BAD_POSTS: list[tuple[bytes | dict[str, Any] | list[Any], int, str]] = [
    (b"", 400, "body: expected JSON"),
    (b"{nope", 400, "body: invalid JSON"),
    ([], 400, "body: expected an object with postId, userId and media"),
    ({"userId": 1, "media": []}, 400, "postId: expected a positive 64-bit integer, got None"),
    ({"postId": 0, "userId": 1, "media": []}, 400, "postId: expected a positive"),
    ({"postId": "1x", "userId": 1, "media": []}, 400, "postId: expected a positive"),
    ({"postId": 1, "userId": True, "media": []}, 400, "userId: expected a positive"),
    ({"postId": 1, "userId": 1.5, "media": []}, 400, "userId: expected a positive"),
    ({"postId": 1, "userId": 2**63, "media": []}, 400, "userId: expected a positive"),
    ({"postId": 1, "userId": 1}, 400, "media: expected a list"),
    ({"postId": 1, "userId": 1, "media": {"mediaId": 1}}, 400, "media: expected a list"),
    ({"postId": 1, "userId": 1, "media": [7]}, 400, "media[0]: expected an object"),
    ({"postId": 1, "userId": 1, "media": [{"mediaUrl": "https://a.b/c"}]}, 400, "media[0].mediaId"),
    (
        {
            "postId": 1,
            "userId": 1,
            "media": [*media(1), {"mediaId": -2, "mediaUrl": "https://a.b"}],
        },
        400,
        "media[1].mediaId: expected a positive",
    ),
    (
        {"postId": 1, "userId": 1, "media": [*media(1), {"mediaId": 2}]},
        400,
        "media[1].mediaUrl: expected an https URL, got None",
    ),
    (
        {"postId": 1, "userId": 1, "media": [{"mediaId": 1, "mediaUrl": "ftp://a.b/c"}]},
        400,
        "media[0].mediaUrl: expected an https URL",
    ),
    (
        {"postId": 1, "userId": 1, "media": [{"mediaId": 1, "mediaUrl": "https:///c"}]},
        400,
        "media[0].mediaUrl: the URL has no host",
    ),
    (
        {"postId": 1, "userId": 1, "media": [{"mediaId": 1, "mediaUrl": "/relative.jpg"}]},
        400,
        "media[0].mediaUrl: expected an https URL",
    ),
    (
        {"postId": 1, "userId": 1, "media": [{"mediaId": 1, "mediaUrl": "https://a b.c/x"}]},
        400,
        "media[0].mediaUrl: whitespace or control characters",
    ),
    (
        {"postId": 1, "userId": 1, "media": [{"mediaId": 1, "mediaUrl": "https://a.b:99999/"}]},
        400,
        "media[0].mediaUrl: not a valid URL",
    ),
    (
        {"postId": 1, "userId": 1, "media": [{"mediaId": 1, "mediaUrl": 5}]},
        400,
        "media[0].mediaUrl: expected an https URL",
    ),
    (
        {"postId": 1, "userId": 1, "media": [{"mediaId": 1, "mediaUrl": _long_url()}]},
        400,
        "media[0].mediaUrl: 2054 characters, limit 2048",
    ),
    (
        {"postId": 1, "userId": 1, "media": media(5, 6, 5)},
        400,
        "media[2].mediaId: 5 repeats media[0]",
    ),
    ({"postId": 1, "userId": 1, "media": media(*range(1, 52))}, 400, "media: 51 items, limit 50"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_POSTS)
async def test_bad_posts_get_a_4xx_naming_the_field(
    running: Running,
    http: httpx.AsyncClient,
    body: bytes | dict[str, Any] | list[Any],
    status: int,
    message: str,
) -> None:
    if isinstance(body, bytes):
        r = await http.post("/v1/posts", content=body, headers=JSON)
    else:
        r = await http.post("/v1/posts", json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert await backends_of(running).postgres.fetchval("SELECT count(*) FROM posts") == 0
    assert await backends_of(running).redis.execute("EXISTS", "post-image-processing") == 0


async def test_bad_put_profile_and_get_requests_are_4xx(
    running: Running, http: httpx.AsyncClient
) -> None:
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("PUT", "/v1/posts/abc/media", {"json": {"media": []}}, 400, "postId"),
        ("PUT", "/v1/posts/0/media", {"json": {"media": []}}, 400, "postId"),
        ("PUT", "/v1/posts/1/media", {"json": []}, 400, "body: expected an object with media"),
        ("PUT", "/v1/posts/1/media", {"json": {"media": "x"}}, 400, "media: expected a list"),
        (
            "PUT",
            "/v1/posts/1/media",
            {"json": {"media": [{"mediaId": 1, "mediaUrl": "x"}]}},
            400,
            "media[0].mediaUrl",
        ),
        (
            "POST",
            "/v1/users/0/profile-picture",
            {"json": {"imageUrl": "https://a.b/c"}},
            400,
            "userId",
        ),
        ("POST", "/v1/users/1/profile-picture", {"json": {}}, 400, "imageUrl: expected an https"),
        (
            "POST",
            "/v1/users/1/profile-picture",
            {"json": {"imageUrl": "javascript:alert(1)"}},
            400,
            "imageUrl: expected an https URL",
        ),
        (
            "POST",
            "/v1/users/1/profile-picture",
            {"content": b"[1", "headers": JSON},
            400,
            "body: invalid JSON",
        ),
        ("GET", "/v1/posts/x", {}, 400, "postId"),
        ("GET", "/v1/posts/99", {}, 404, "post 99 does not exist"),
        ("DELETE", "/v1/posts/99", {}, 405, ""),
    ]
    for method, url, kwargs, status, message in cases:
        r = await http.request(method, url, **kwargs)
        assert r.status_code == status, (method, url, r.text)
        assert message in r.json()["error"]
    for stream in ("post-update-processing", "profile-picture-processing"):
        assert await backends_of(running).redis.execute("EXISTS", stream) == 0


async def test_get_post_shows_status_exact_views_insights_and_faces(
    running: Running, http: httpx.AsyncClient
) -> None:
    pg = backends_of(running).postgres
    # Results that arrived before the post: recorded, and an unsafe one flags the post.
    await pg.execute(
        "INSERT INTO media_ai_insights (media_id, post_id, status, is_safe, moderation_confidence,"
        " caption, tags, scenes, image_embedding, services_completed, correlation_id) VALUES"
        " (11, 10, 'UNSAFE', false, 0.97, 'a cat', '{cat,pet}', '{indoor}', $1,"
        " '{moderation,tagging,scene_recognition,image_captioning,image_embedding}', 'c-1')",
        [0.5] * 1408,
    )
    await pg.execute(
        "INSERT INTO media_detected_faces (media_id, face_uid, post_id, bbox, confidence_score,"
        " embedding, status, suggested_user_id, suggestion_confidence) VALUES"
        " (11, '8d0f1c2e-0000-4000-8000-000000000001', 10, '{1,2,3,4}', 0.93, '{0.1,0.2}',"
        " 'SUGGESTED', 7, 0.87)"
    )
    r = await http.post("/v1/posts", json={"postId": 10, "userId": 3, "media": media(11, 12)})
    assert r.status_code == 201
    views = [{"userId": u, "postId": 10} for u in (1, 2, 3, 3)]
    assert (await http.post("/v1/views", json=views)).json()["counted"] == 3

    r = await http.get("/v1/posts/10")
    assert r.status_code == 200, r.text
    post = r.json()
    assert {k: post[k] for k in ("postId", "userId", "status", "views")} == {
        "postId": 10,
        "userId": 3,
        "status": "FLAGGED",
        "views": 3,
    }
    first, second = post["media"]
    assert (first["mediaId"], first["position"], second["mediaId"], second["position"]) == (
        11,
        0,
        12,
        1,
    )
    assert second["insights"] is None and second["faces"] == []
    insights = first["insights"]
    assert insights["status"] == "UNSAFE" and insights["isSafe"] is False
    assert insights["tags"] == ["cat", "pet"] and insights["scenes"] == ["indoor"]
    assert insights["caption"] == "a cat" and insights["imageEmbeddingLength"] == 1408
    assert "imageEmbedding" not in insights and len(insights["servicesCompleted"]) == 5
    (face,) = first["faces"]
    assert face["faceId"] == "8d0f1c2e-0000-4000-8000-000000000001"
    assert face["bbox"] == [1, 2, 3, 4] and face["status"] == "SUGGESTED"
    assert face["suggestedUserId"] == 7 and "embedding" not in face


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://cdn.example.com/a.jpg", "expected an https URL"),
        ("https://169.254.169.254/latest/meta-data/", "an IP address as host"),
        ("https://127.0.0.1:6379/", "an IP address as host"),
        ("https://[::1]/x.jpg", "an IP address as host"),
        ("https://2130706433/x.jpg", "an IP address as host"),
        ("https://0x7f.1/x.jpg", "an IP address as host"),
        ("https://user:pw@internal.example.com/x.jpg", "user:password@"),
        ("https://localhost/x.jpg", "not a public host name"),
        ("https://api.localhost/x.jpg", "not a public host name"),
        ("https://redis/x.jpg", "not a public host name"),
        ("https://cdn.example.com/\ud800.jpg", "whitespace or control characters"),
        # Unicode forms resolvers map to internal addresses (IDNA with UTS 46 mapping)
        ("https://１２７.０.０.１/x.jpg", r"an IP address as host is not accepted \(127.0.0.1\)"),
        ("https://１６９.２５４.１６９.２５４/latest/", r"IP address as host .*169.254.169.254"),
        ("https://127。0。0.1/x.jpg", "an IP address as host"),
        ("https://127．0．0.1/x.jpg", "an IP address as host"),
        ("https://①②⑦.0.0.1/x.jpg", "an IP address as host"),
        ("https://sub.ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/x.jpg", "'sub.localhost' is not a public host name"),
        ("https://%31%32%37.0.0.1/x.jpg", "a '%' in the host"),
        ("https://exa\u200dmple.com/x.jpg", "not a valid international domain name"),
        ("https://xn--zz.example/x.jpg", "not a valid host name"),
        ("https://a..b.example/x.jpg", "not a valid host name"),
    ],
)
def test_media_urls_cannot_point_inside_the_network(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_media_url(url, "mediaUrl")


def test_media_url_prefixes_narrow_what_is_accepted() -> None:
    prefixes = ("https://cdn.example.com/media/",)
    assert check_media_url("https://cdn.example.com/media/1.jpg", "u", prefixes)
    with pytest.raises(
        ValueError, match=re.escape("must start with one of https://cdn.example.com/media/")
    ):
        check_media_url("https://cdn.example.com.evil.org/media/1.jpg", "u", prefixes)
    settings = settings_from_argv(
        [], {"KALEIDO_MEDIA_URL_PREFIXES": "https://cdn.example.com/media/, https://b.example/"}
    )
    assert settings.media_url_prefixes == ("https://cdn.example.com/media/", "https://b.example/")
    for bad in ("https://cdn.example.com", "http://cdn.example.com/", "https://10.0.0.1/"):
        with pytest.raises(ConfigError, match="KALEIDO_MEDIA_URL_PREFIXES"):
            settings_from_argv([], {"KALEIDO_MEDIA_URL_PREFIXES": bad})


async def test_a_post_with_a_url_outside_the_prefixes_is_refused(
    running_with_prefixes: Running,
) -> None:
    base = "http://" + running_with_prefixes.http_addresses[0].split("://")[-1]
    post = {"postId": 1, "userId": 1, "media": [
        {"mediaId": 1, "mediaUrl": "https://elsewhere.example.com/1.jpg"}]}  # fmt: skip
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        r = await http.post("/v1/posts", json=post)
        assert r.status_code == 400 and "must start with one of" in r.json()["error"]
        post["media"][0]["mediaUrl"] = "https://cdn.example.com/media/1.jpg"  # type: ignore[index]
        assert (await http.post("/v1/posts", json=post)).status_code == 201


@pytest.fixture
async def running_with_prefixes(settings: Settings, backends: Backends) -> AsyncIterator[Running]:
    settings = with_settings(settings, media_url_prefixes=("https://cdn.example.com/media/",))
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(
            lambda task_status: serve(settings, task_status=task_status)
        )
        yield running
        running.stop()
