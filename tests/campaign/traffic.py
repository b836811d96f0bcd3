"""The campaign's clients and what they know: views sent over HTTP and through the embedding
program, and result entries written on the inbound streams exactly as the ML service writes
them. Each keeps the truth the checker compares with: a view answered 202 (or `ok`) must count
exactly once, one answered otherwise at most once; an entry whose XADD was confirmed must have
its effect once.

Entries carry explicit ids (increasing, one writer per stream): an XADD whose reply was lost is
sent again with the same id, and Redis refusing it as not greater than the stream's last id
means the first one was written. So the feeder knows exactly which entries exist.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import attrs
import httpx
import redis as sync_redis
import trio

from kaleido.messages import (
    FACE_DETECTION_STREAM,
    FACE_RECOGNITION_STREAM,
    INSIGHTS_STREAM,
    DetectedFace,
    FaceDetectionResult,
    FaceRecognitionResult,
    ImageCaptioning,
    InsightPayload,
    InsightResult,
    Moderation,
    SceneRecognition,
    Tagging,
    encode_face_detection,
    encode_face_recognition,
    encode_insight,
)

from .service import Embedded

POSTS = 40
EPOCH_POSTS = 100  # post ids of epoch e: 100 e + 1-40 (see ViewModel)
EPOCHS = 12  # epochs whose posts 1-30 get rows
POSTS_WITH_ROWS = 30  # views of posts 31-40 wait in post_view_backlog
USERS = 5000
REPEATS = 0.15  # share of views that repeat an acknowledged pair
REQUEST_TIMEOUT = 10.0
IN_FLIGHT = 64  # requests at once; past it a tick sends nothing (counted)
EMBEDDING_DIM = 16  # both embedding sizes of the campaign: small entries, same code paths
MEDIA_BASE = 1_000_000
MEDIA_PER_POST = 20  # media rows created per post with a row; others have none
CONFIRM_WITHIN = 60.0  # seconds an XADD may keep failing once the faults are over


Pair = tuple[int, int]


@attrs.define
class ViewModel:
    """Every view sent and what its sender was told.

    Views go to the posts of the current epoch (`EPOCH_POSTS * epoch` + 1-40). A documented
    window (FLUSHALL, Redis without persistence dying, eviction) starts a new epoch: the views
    it may cost are those of the epochs before, whose posts the checker counts apart; repeats
    stay within an epoch."""

    seed: int
    acked: set[Pair] = attrs.Factory(set)
    unknown: set[Pair] = attrs.Factory(set)
    statuses: Counter[str] = attrs.Factory(Counter)
    skipped: int = 0  # ticks with IN_FLIGHT requests already out
    epoch: int = 0
    exposed: dict[int, str] = attrs.Factory(dict)  # epoch → the window that ended it
    _pool: list[Pair] = attrs.Factory(list)
    _rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(f"views-{self.seed}")

    def post(self, index: int) -> int:
        """The `index`-th post (1-40) of the current epoch."""
        return self.epoch * EPOCH_POSTS + index

    def posts(self, exposed: bool | None = None) -> list[int]:
        """Every post of every epoch so far (only those of exposed epochs, or of the others)."""
        return [
            e * EPOCH_POSTS + p
            for e in range(self.epoch + 1)
            if exposed is None or (e in self.exposed) == exposed
            for p in range(1, POSTS + 1)
        ]

    def new_epoch(self, window: str) -> int:
        """Count the current epoch's posts apart (`window` may cost their views); return it."""
        self.exposed[self.epoch] = window
        self.epoch += 1
        self._pool = []
        return self.epoch - 1

    def draw(self, size: int) -> list[Pair]:
        views = []
        for _ in range(size):
            if self._pool and self._rng.random() < REPEATS:
                views.append(self._rng.choice(self._pool))
            else:
                views.append((self._rng.randint(1, USERS), self.post(self._rng.randint(1, POSTS))))
        return views

    def ack(self, views: list[Pair]) -> None:
        fresh = set(views) - self.acked
        self.acked |= fresh
        first = self.post(1)
        self._pool.extend(v for v in fresh if first <= v[1] < first + POSTS)

    def expected(self) -> tuple[Counter[int], Counter[int]]:
        """Per post: the views that must count (acknowledged) and the most that may (also
        those of unknown outcome)."""
        low = Counter(post for _, post in self.acked)
        high = Counter(post for _, post in self.acked | self.unknown)
        return low, high


@attrs.define
class HttpViews:
    """`rate` requests a second (open loop) of `sizes` views each, to `POST /v1/views`."""

    base_url: str
    model: ViewModel
    rate: float
    sizes: tuple[int, ...]
    in_flight: int = 0
    in_flight_by_epoch: Counter[int] = attrs.Factory(Counter)
    _rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(f"http-{self.model.seed}")

    async def run(self, stop: trio.Event) -> None:
        limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=16)
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=REQUEST_TIMEOUT, limits=limits
        ) as http:
            async with trio.open_nursery() as nursery:
                tick = trio.current_time()
                while not stop.is_set():
                    if self.in_flight < IN_FLIGHT:
                        views = self.model.draw(self._rng.choice(self.sizes))
                        nursery.start_soon(self._send, http, views, self.model.epoch)
                    else:
                        self.model.skipped += 1
                    tick += 1 / self.rate
                    await trio.sleep_until(tick)

    async def _send(self, http: httpx.AsyncClient, views: list[Pair], epoch: int) -> None:
        self.in_flight += 1
        self.in_flight_by_epoch[epoch] += 1
        try:
            status = await post_views(http, views)
        finally:
            self.in_flight -= 1
            self.in_flight_by_epoch[epoch] -= 1
        record(self.model, views, status)

    async def answered(self, epoch: int, timeout: float = REQUEST_TIMEOUT + 5) -> None:
        """Until every request of `epoch` has its answer."""
        with trio.move_on_after(timeout):
            while self.in_flight_by_epoch[epoch] > 0:  # noqa: ASYNC110 - answers arrive
                await trio.sleep(0.01)


async def post_views(http: httpx.AsyncClient, views: list[Pair]) -> str:
    body = [{"userId": u, "postId": p} for u, p in views]
    try:
        response = await http.post("/v1/views", json=body)
    except httpx.TransportError as exc:
        return type(exc).__name__
    return str(response.status_code)


def record(model: ViewModel, views: list[Pair], status: str) -> None:
    model.statuses[status] += 1
    if status == "202":
        model.ack(views)
    else:
        model.unknown.update(views)


@attrs.define
class EmbeddedViews:
    """`rate` batches a second of `size` views to the embedding program."""

    embedded: Embedded
    model: ViewModel
    rate: float
    size: int = 5

    async def run(self, stop: trio.Event) -> None:
        tick = trio.current_time()
        while not stop.is_set():
            if not await self.embedded.send(self.model.draw(self.size)):
                self.model.skipped += 1
            tick += 1 / self.rate
            await trio.sleep_until(tick)

    def collect(self) -> None:
        """Move the program's answers into the model."""
        for views in self.embedded.acked:
            self.model.statuses["embedded ok"] += 1
            self.model.ack(views)
        for views in self.embedded.unknown:
            self.model.statuses["embedded unknown"] += 1
            self.model.unknown.update(views)
        self.embedded.acked.clear()
        self.embedded.unknown.clear()


# ------------------------------------------------------------------------------ streams


def media_rows() -> list[tuple[int, int]]:
    """(media, post) rows the campaign creates: MEDIA_PER_POST per post with a row."""
    return [
        (MEDIA_BASE + post * MEDIA_PER_POST + k, post)
        for post in range(1, POSTS_WITH_ROWS + 1)
        for k in range(MEDIA_PER_POST)
    ]


@attrs.frozen
class Written:
    stream: str
    entry_id: str
    media: int
    post: int
    what: str  # the service, "detection" or "recognition"
    value: object  # what the checker expects to find


@attrs.define
class StreamFeeder:
    """Writes results for media one after the other (`rate` media a second): the four
    insight services, a detection of one or two faces, a recognition of each face."""

    client: Callable[[], sync_redis.Redis | sync_redis.RedisCluster]
    seed: int
    rate: float
    written: list[Written] = attrs.Factory(list)
    attempts: int = 0
    unconfirmed: int = 0  # entries still not confirmed CONFIRM_WITHIN after the traffic stopped
    _queues: dict[str, list[tuple[Written, dict[str, str]]]] = attrs.Factory(dict)
    _last_ms: dict[str, int] = attrs.Factory(dict)
    _rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(f"streams-{self.seed}")

    async def run(self, stop: trio.Event) -> None:
        streams = (INSIGHTS_STREAM, FACE_DETECTION_STREAM, FACE_RECOGNITION_STREAM)
        wake = {s: trio.Event() for s in streams}
        async with trio.open_nursery() as nursery:
            for stream in streams:
                self._queues[stream] = []
                nursery.start_soon(self._writer, stream, stop, wake)
            rows = media_rows()
            media = MEDIA_BASE + 900_000  # media with no row are for posts 31-40
            tick = trio.current_time()
            while not stop.is_set():
                if self._rng.random() < 0.75:
                    mid, post = self._rng.choice(rows)
                else:
                    media += 1
                    mid, post = media, self._rng.randint(POSTS_WITH_ROWS + 1, POSTS)
                self._plan(mid, post)
                for event in wake.values():
                    event.set()
                tick += 1 / self.rate
                await trio.sleep_until(tick)
            for event in wake.values():
                event.set()

    def _plan(self, media: int, post: int) -> None:
        rng = self._rng
        stamp = datetime.now(UTC)
        corr = f"campaign-{media}-{rng.randrange(10**9)}"
        payloads: list[InsightPayload] = [
            Moderation(is_safe=rng.random() > 0.1, confidence=round(rng.random(), 3)),
            Tagging(tags=tuple(rng.sample(["a", "b", "c", "d", "e", "f"], 3))),
            SceneRecognition(scenes=(rng.choice(["beach", "city", "forest"]),)),
            ImageCaptioning(caption=f"caption {rng.randrange(10**6)}"),
        ]
        for payload in payloads:
            result = InsightResult(media, post, payload, corr, stamp, "1")
            value: object = payload
            self._queue(
                INSIGHTS_STREAM, media, post, payload.SERVICE, value, encode_insight(result)
            )
        faces = tuple(
            DetectedFace(
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                (rng.randrange(100), rng.randrange(100), 100 + rng.randrange(100), 200),
                tuple(round(rng.random(), 4) for _ in range(EMBEDDING_DIM)),
                round(rng.random(), 4),
            )
            for _ in range(rng.randint(1, 2))
        )
        detection = FaceDetectionResult(media, post, len(faces), faces, corr, stamp, "1")
        self._queue(
            FACE_DETECTION_STREAM,
            media,
            post,
            "detection",
            tuple((f.face_id, f.bbox) for f in faces),
            encode_face_detection(detection),
        )
        for face in faces:
            user = rng.randint(1, 10_000)
            recognition = FaceRecognitionResult(
                media, post, face.face_id, user, round(rng.random(), 4), f"user{user}", corr, stamp
            )
            self._queue(
                FACE_RECOGNITION_STREAM,
                media,
                post,
                "recognition",
                (face.face_id, user),
                encode_face_recognition(recognition),
            )

    def _queue(
        self, stream: str, media: int, post: int, what: str, value: object, fields: dict[str, str]
    ) -> None:
        self._queues[stream].append((Written(stream, "", media, post, what, value), fields))

    def _next_id(self, stream: str) -> str:
        ms = max(int(time.time() * 1000), self._last_ms.get(stream, 0) + 1)
        self._last_ms[stream] = ms
        return f"{ms}-0"

    async def _writer(self, stream: str, stop: trio.Event, wake: dict[str, trio.Event]) -> None:
        queue = self._queues[stream]
        holder: list[sync_redis.Redis | sync_redis.RedisCluster] = []
        try:
            while True:
                if not queue:
                    if stop.is_set():
                        return
                    wake[stream] = trio.Event()
                    await wake[stream].wait()
                    continue
                if stop.is_set():
                    queue.clear()  # never sent: not written
                    return
                planned, fields = queue.pop(0)
                entry_id = self._next_id(stream)
                if await self._write(holder, stream, entry_id, fields, stop):
                    self.written.append(attrs.evolve(planned, entry_id=entry_id))
        finally:
            for client in holder:
                client.close()

    async def _write(
        self,
        holder: list[sync_redis.Redis | sync_redis.RedisCluster],
        stream: str,
        entry_id: str,
        fields: dict[str, str],
        stop: trio.Event,
    ) -> bool:
        """XADD with this id until Redis has it (it may have it from an attempt whose reply
        was lost: then it refuses the id as not greater than the last one). False if it still
        fails CONFIRM_WITHIN after the traffic stopped."""
        confirm_by: float | None = None
        while True:
            if stop.is_set():
                confirm_by = confirm_by or trio.current_time() + CONFIRM_WITHIN
                if trio.current_time() > confirm_by:
                    self.unconfirmed += 1
                    return False
            self.attempts += 1
            try:
                if not holder:  # a cluster client connects when it is made
                    holder.append(await trio.to_thread.run_sync(self.client))
                await trio.to_thread.run_sync(
                    lambda: holder[0].xadd(stream, fields, id=entry_id)  # type: ignore[arg-type]
                )
                return True
            except sync_redis.ResponseError as exc:
                if "equal or smaller" in str(exc):
                    return True
                await trio.sleep(0.1)
            except sync_redis.RedisError:
                await trio.sleep(0.1)  # down, stalled or a connection dropped: as the ML
                # service would, try again
