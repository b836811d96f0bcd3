"""The fuzz suite: generated HTTP requests against the running service and generated entries on
the inbound streams. Requests never get a 5xx (a 503 only while a backend is down, which it is
not here) and the service keeps serving; entries never crash a consumer, and each one that
cannot apply is in the DLQ with a reason. The outcome counts go to .state/reports/tests/FUZZ.md
(with KALEIDO_REFRESH_REPORTS=1 to tests/FUZZ.md, the tracked copy: tests/reports.py)."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaleido.devstack import DevStack
from kaleido.gateways import Backends
from kaleido.messages import (
    FACE_DETECTION_STREAM,
    FACE_EMBEDDING_DIM,
    IMAGE_EMBEDDING_DIM,
    INSIGHTS_STREAM,
    MAX_ENTRY_BYTES,
    MAX_FACES,
    MAX_FIELD_BYTES,
)

from .processes import free_port, kaleido_env, rss_sampler, start_kaleido, wait_ready
from .reports import report_path
from .streams_helpers import create_post, dlq_len, pending_count, running, xadd
from .waiting import wait_until

REPORT = report_path(Path(__file__).with_name("FUZZ.md"))
HTTP_EXAMPLES = 400
ENTRY_EXAMPLES = 300
# Resident memory growth allowed while two consumers take maximum-size entries (a read holds
# about READ_BUDGET, 32 MiB, of entries).
RSS_BOUND_MB = 300

http_outcomes: Counter[str] = Counter()
entry_outcomes: Counter[str] = Counter()

# --------------------------------------------------------------------------- HTTP

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=20,
)  # fmt: skip
view_items = st.fixed_dictionaries(
    {}, optional={"userId": json_values | st.integers(), "postId": json_values | st.integers()}
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(view_items, max_size=20).map(lambda v: json.dumps(v).encode()),
    st.builds(lambda depth: b"[" * depth, st.integers(0, 5000)),
    st.builds(lambda n: b'{"userId": ' + b"9" * n + b', "postId": 1}', st.integers(1, 6000)),
)
# Percent-encoded as a client sends them (any character, slashes too, reaches the router).
segments = st.text(max_size=12).map(lambda text: quote(text, safe=""))
paths = st.one_of(
    st.sampled_from(["/v1/views", "/v1/posts", "/healthz", "/readyz", "/metrics", "/"]),
    st.builds(lambda s: f"/v1/posts/{s}", segments),
    st.builds(lambda s: f"/v1/posts/{s}/views", segments),
    st.builds(lambda s: f"/v1/posts/{s}/media", segments),
    st.builds(lambda s: f"/v1/users/{s}/profile-picture", segments),
    st.builds(lambda s: f"/v1/admin/dlq/{s}/replay", segments),
)
content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "", "x/" + "y" * 300]
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200)


@pytest.fixture(scope="module")
def service(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`run.py` as a real process on the session's servers: (public URL, ops URL)."""
    port, ops_port = free_port(), free_port()
    env = kaleido_env(
        KALEIDO_REDIS_URL=stack.redis_url,
        KALEIDO_DATABASE_URL=stack.database_url,
        KALEIDO_HTTP_BIND=f"127.0.0.1:{port}",
        KALEIDO_OPS_BIND=f"127.0.0.1:{ops_port}",
        KALEIDO_ADMIN_TOKEN="fuzz-admin-token-0123456789",
        KALEIDO_KEY_PREFIX="fuzz:",  # apart from the stream tests below, on the same Redis
    )
    log = tmp_path_factory.mktemp("fuzz") / "kaleido.log"
    with log.open("wb") as out:
        proc = start_kaleido([], env, out)
    try:
        trio.run(wait_ready, port, proc, 30.0)
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ops_port}"
        assert proc.poll() is None, "the service died during the fuzzing"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@settings(
    max_examples=HTTP_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    method=methods,
    path=paths,
    body=bodies,
    content_type=content_types,
    correlation=header_values,
    authorization=header_values,
    ops=st.booleans(),
)
def test_generated_requests_never_get_a_5xx(
    service: tuple[str, str],
    method: str,
    path: str,
    body: bytes,
    content_type: str,
    correlation: str,
    authorization: str,
    ops: bool,
) -> None:
    # What a client can send: no surrounding spaces in a header value.
    headers = {"X-Correlation-ID": correlation.strip(), "Authorization": authorization.strip()}
    if content_type:
        headers["Content-Type"] = content_type
    with httpx.Client(base_url=service[1] if ops else service[0], timeout=30) as http:
        r = http.request(method, path, content=body, headers=headers)
    http_outcomes[f"{r.status_code // 100}xx"] += 1
    assert r.status_code < 500, (method, path, body[:200], r.status_code, r.text[:300])
    if r.status_code >= 400 and r.headers.get("content-type", "").startswith("application/json"):
        assert "error" in r.json()


def test_the_service_still_serves_after_the_fuzzing(service: tuple[str, str]) -> None:
    with httpx.Client(base_url=service[0], timeout=10) as http:
        assert http.get("/readyz").status_code == 200


# --------------------------------------------------------------------------- stream entries

FIELD_NAMES = ["mediaId", "postId", "service", "isSafe", "moderationConfidence", "tags",
               "scenes", "caption", "imageEmbedding", "correlationId", "timestamp", "version",
               "other"]  # fmt: skip
SPECIAL_VALUES = [b"moderation", b"tagging", b"scene_recognition", b"image_captioning",
                  b"image_embedding", b"ocr", b"true", b"false", b"[]", b'["a"]', b"NaN",
                  b"1e400", b"-1", b"0", b"1", b"9223372036854775808", b"\xff\xfe",
                  b'{"a": [', b"[" * 3000]  # fmt: skip


def valid_entry(rng: random.Random) -> dict[bytes, bytes]:
    tags = json.dumps([f"tag{rng.randint(1, 9)}"])
    media = str(rng.randint(1, 10**6)).encode()
    return {b"mediaId": media, b"postId": b"1", b"service": b"tagging", b"tags": tags.encode()}


def generated_entry(rng: random.Random) -> dict[bytes, bytes]:
    """A random insights entry: the contract's field names with values from the edge cases, the
    right shapes and plain noise."""
    entry: dict[bytes, bytes] = {}
    for name in rng.sample(FIELD_NAMES, rng.randint(1, 8)):
        kind = rng.random()
        if kind < 0.4:
            value = rng.choice(SPECIAL_VALUES)
        elif kind < 0.6:
            value = str(rng.randint(-(2**70), 2**70)).encode()
        elif kind < 0.8:
            floats = [rng.random() for _ in range(rng.choice([1, 3, 1408, 1409]))]
            value = json.dumps(floats).encode()
        else:
            value = rng.randbytes(rng.randint(0, 300))
        entry[name.encode()] = value
    return entry


async def test_generated_entries_never_crash_a_consumer(backends: Backends) -> None:
    rng = random.Random(13)
    batch = [generated_entry(rng) for _ in range(ENTRY_EXAMPLES)]
    valid = [rng.randrange(len(batch) + 1) for _ in range(ENTRY_EXAMPLES // 10)]
    for position in sorted(valid, reverse=True):  # good entries among the bad ones
        batch.insert(position, valid_entry(rng))
    async with running(backends, INSIGHTS_STREAM) as consumers:
        for fields in batch:
            await xadd(backends, INSIGHTS_STREAM, fields)
        stats = consumers[INSIGHTS_STREAM].stats

        async def settled() -> bool:
            done = stats.applied + stats.duplicates + stats.ignored + stats.dead_lettered
            return done >= len(batch) and not await pending_count(backends, INSIGHTS_STREAM)

        await wait_until(settled, timeout=60)
    dead = await dlq_len(backends, INSIGHTS_STREAM)
    assert dead == stats.dead_lettered
    assert stats.applied >= len(valid)  # the bad entries around them held none back
    entry_outcomes.update(
        {"tried": len(batch), "applied": stats.applied, "ignored": stats.ignored,
         "dead-lettered": dead}
    )  # fmt: skip
    letters = await backends.redis.execute("XRANGE", backends.keys.dlq(INSIGHTS_STREAM), "-", "+")
    assert all(fields.get(b"error") for _, fields in letters)  # each with its reason


def _float_list(rng: random.Random, count: int) -> list[float]:
    return [rng.uniform(-1, 1) for _ in range(count)]  # 17 digits each: the longest JSON floats


def _padded(fields: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """`fields` plus unknown fields that bring the entry just under MAX_ENTRY_BYTES."""
    room = MAX_ENTRY_BYTES - sum(len(k) + len(v) for k, v in fields.items()) - 64
    first = min(room, MAX_FIELD_BYTES)
    return {**fields, b"padA": b"x" * first, b"padB": b"y" * (room - first)}


def maximum_size_entries(rng: random.Random, media: int, post: int) -> list[tuple[str, Any]]:
    """Entries at the caps for `media` of `post`: an image embedding of the exact dimension, a
    detection of MAX_FACES faces whose embeddings have that many floats (both applied, each
    padded to just under the entry cap with unknown fields), and a 1 MiB embedding of the wrong
    dimension (refused)."""
    ids = {b"mediaId": str(media).encode(), b"postId": str(post).encode()}
    embedding = json.dumps(_float_list(rng, IMAGE_EMBEDDING_DIM)).encode()
    faces = [
        {"faceId": str(uuid.UUID(int=rng.getrandbits(128))), "bbox": [1, 2, 30, 40],
         "embedding": _float_list(rng, FACE_EMBEDDING_DIM), "confidence": 0.9}
        for _ in range(MAX_FACES)
    ]  # fmt: skip
    faces_field = json.dumps(faces, separators=(",", ":")).encode()
    assert len(faces_field) <= MAX_FIELD_BYTES
    wrong = b"[" + b"0.5," * (MAX_FIELD_BYTES // 4 - 2) + b"0.5]"
    return [
        (INSIGHTS_STREAM, _padded({**ids, b"service": b"image_embedding",
                                   b"imageEmbedding": embedding})),
        (FACE_DETECTION_STREAM, _padded({**ids, b"facesDetected": str(MAX_FACES).encode(),
                                         b"faces": faces_field})),
        (INSIGHTS_STREAM, {**ids, b"service": b"image_embedding", b"imageEmbedding": wrong}),
    ]  # fmt: skip


async def test_maximum_size_entries_keep_memory_bounded(backends: Backends) -> None:
    """Entries at the caps, all waiting when the consumers start (so that the first reads take
    as many as a read may): the valid ones are applied, the wrong one refused, and the process's
    resident memory, sampled every few milliseconds, grows by less than RSS_BOUND_MB. Padding a
    batch to its largest entry (the bug this guards against) took 800 MB for one 1 MB entry."""
    rng = random.Random(5)
    count = 16
    expected = {INSIGHTS_STREAM: 0, FACE_DETECTION_STREAM: 0}
    for index in range(count):
        media, post = 1000 + index, 500 + index
        await create_post(backends, post, media=(media,))
        for stream, fields in maximum_size_entries(rng, media, post):
            await xadd(backends, stream, fields)
            expected[stream] += 1
    streams = tuple(expected)
    with rss_sampler() as peak:
        async with running(backends, *streams) as consumers:

            async def settled() -> bool:
                for stream in streams:
                    stats = consumers[stream].stats
                    done = stats.applied + stats.ignored + stats.dead_lettered
                    if done < expected[stream] or await pending_count(backends, stream):
                        return False
                return True

            await wait_until(settled, timeout=120)
    grown_mb = peak.growth / 2**20
    entry_outcomes["max-size tried"] += sum(expected.values())
    entry_outcomes["max-size applied"] += sum(consumers[s].stats.applied for s in streams)
    entry_outcomes["max-size dead-lettered"] += await dlq_len(backends, INSIGHTS_STREAM)
    entry_outcomes["max-size RSS growth MB"] = round(grown_mb)
    assert consumers[INSIGHTS_STREAM].stats.applied == count
    assert consumers[FACE_DETECTION_STREAM].stats.applied == count
    assert await dlq_len(backends, INSIGHTS_STREAM) == count  # the wrong dimension, each
    assert await dlq_len(backends, FACE_DETECTION_STREAM) == 0
    faces = await backends.postgres.fetchval("SELECT count(*) FROM media_detected_faces")
    assert faces == count * MAX_FACES
    assert grown_mb < RSS_BOUND_MB


@pytest.fixture(scope="module", autouse=True)
def fuzz_report() -> Any:
    yield
    lines = ["| what | count |", "|---|---|"]
    lines += [f"| HTTP requests answered {k} | {v} |" for k, v in sorted(http_outcomes.items())]
    lines += [f"| stream entries {k} | {v} |" for k, v in entry_outcomes.items()]
    if http_outcomes or entry_outcomes:
        REPORT.write_text("\n".join(lines) + "\n")
