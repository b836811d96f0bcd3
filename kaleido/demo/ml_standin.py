"""A stand-in for the ML service, for `run.py --demo` and tests.

It consumes the three outbound streams with its own consumer group (`ml-standin`) and answers
each post media item on the inbound streams in the real service's wire format (the
`kaleido.messages` encoders): the five insight services, one face detection, and a recognition
for some faces. Answers are a pure function of the ids (seeded by mediaId), so the same media
always gets the same answers; the correlationId is echoed. A small share of answers is
deliberately malformed so that the dead-letter path has something to show.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import attrs
import trio

from kaleido.errors import NoGroup
from kaleido.gateways import RedisGateway
from kaleido.keys import KeyLayout
from kaleido.logs import get_logger
from kaleido.messages import (
    FACE_DETECTION_STREAM,
    FACE_RECOGNITION_STREAM,
    INSIGHTS_STREAM,
    OUTBOUND_STREAMS,
    PROFILE_PICTURE_STREAM,
    DecodeError,
    DetectedFace,
    FaceDetectionResult,
    FaceRecognitionResult,
    ImageCaptioning,
    ImageEmbedding,
    InsightPayload,
    InsightResult,
    Moderation,
    PostMediaEvent,
    SceneRecognition,
    Tagging,
    decode_post_media,
    decode_profile_picture,
    encode_face_detection,
    encode_face_recognition,
    encode_insight,
)
from kaleido.streams.inbound import Entry, RedisInboundStream

log = get_logger("kaleido.demo.ml_standin")

GROUP = "ml-standin"
CONSUMER = "ml-standin-1"
# Entries per read, and how long a read blocks: short, so that shutdown is noticed quickly.
READ_COUNT = 50
BLOCK_MS = 500
# Share of media whose answers include one malformed entry (the DLQ path stays visible).
MALFORMED_RATE = 0.02
# Share of media the moderation calls unsafe (flags the post).
UNSAFE_RATE = 0.08
# The real service's image embedding has 1408 floats; face embeddings are smaller.
IMAGE_EMBEDDING_SIZE = 1408
FACE_EMBEDDING_SIZE = 128
# Face ids are UUIDs derived from (mediaId, face index), so a re-run gives the same ids.
FACE_NAMESPACE = uuid.UUID("5b0c3f0e-6a53-4f4e-9a57-6b616c656964")

_TAGS = (
    "cat", "dog", "beach", "food", "friends", "sunset", "city", "mountain", "car", "flower",
    "coffee", "book", "party", "snow", "bike", "art", "music", "sport", "baby", "selfie",
)  # fmt: skip
_SCENES = (
    "indoor", "outdoor", "beach", "street", "forest", "kitchen", "office", "stadium", "park",
    "restaurant",
)  # fmt: skip
_ADJECTIVES = ("bright", "quiet", "busy", "colourful", "blurry", "warm", "cold", "cheerful")
_USERNAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")


# --------------------------------------------------------------------------- answers (pure)


def face_id(media_id: int, index: int) -> str:
    return str(uuid.uuid5(FACE_NAMESPACE, f"{media_id}:{index}"))


def _insight_payloads(rng: random.Random) -> list[InsightPayload]:
    tags = tuple(rng.sample(_TAGS, rng.randint(2, 5)))
    scenes = tuple(rng.sample(_SCENES, rng.randint(1, 2)))
    caption = f"a {rng.choice(_ADJECTIVES)} photo of {tags[0]} in a {scenes[0]} scene"
    return [
        Moderation(is_safe=rng.random() >= UNSAFE_RATE, confidence=round(rng.uniform(0.7, 1), 4)),
        Tagging(tags),
        SceneRecognition(scenes),
        ImageCaptioning(caption),
        ImageEmbedding(tuple(round(rng.gauss(0, 0.05), 6) for _ in range(IMAGE_EMBEDDING_SIZE))),
    ]


def _faces(rng: random.Random, media_id: int) -> tuple[DetectedFace, ...]:
    count = rng.choices((0, 1, 2, 3), weights=(4, 3, 2, 1))[0]
    faces = []
    for index in range(count):
        x0, y0, size = rng.randint(0, 800), rng.randint(0, 600), rng.randint(40, 240)
        faces.append(
            DetectedFace(
                face_id=face_id(media_id, index),
                bbox=(x0, y0, x0 + size, y0 + size),
                embedding=tuple(round(rng.gauss(0, 0.1), 5) for _ in range(FACE_EMBEDDING_SIZE)),
                confidence=round(rng.uniform(0.8, 1), 4),
            )
        )
    return tuple(faces)


def _malform(rng: random.Random, answers: list[tuple[str, dict[str, str]]]) -> None:
    """Spoil one answer in place, the way a buggy ML release might."""
    if rng.random() < 0.5:
        for stream, fields in answers:
            if stream == FACE_DETECTION_STREAM:
                fields["faces"] = '[{"faceId": "not json'
                return
    del answers[0][1]["mediaId"]


def answers(
    event: PostMediaEvent, *, malformed_rate: float = MALFORMED_RATE, now: datetime | None = None
) -> list[tuple[str, dict[str, str]]]:
    """The inbound entries (stream name, fields) the ML service would write for `event`.

    Everything but the timestamps depends only on the ids, seeded by mediaId.
    """
    now = now or datetime.now(UTC)
    rng = random.Random(event.media_id)
    common: dict[str, Any] = {
        "media_id": event.media_id,
        "post_id": event.post_id,
        "correlation_id": event.correlation_id,
        "timestamp": now,
        "version": "1",
    }
    out = [
        (INSIGHTS_STREAM, encode_insight(InsightResult(payload=payload, **common)))
        for payload in _insight_payloads(rng)
    ]
    faces = _faces(rng, event.media_id)
    detection = FaceDetectionResult(faces_detected=len(faces), faces=faces, **common)
    out.append((FACE_DETECTION_STREAM, encode_face_detection(detection)))
    for face in faces:
        if rng.random() < 0.5:
            user = rng.randint(1, 500)
            recognition = FaceRecognitionResult(
                face_id=face.face_id,
                suggested_user_id=user,
                confidence=round(rng.uniform(0.6, 0.99), 4),
                matched_username=f"{_USERNAMES[user % len(_USERNAMES)]}{user}",
                **common,
            )
            out.append((FACE_RECOGNITION_STREAM, encode_face_recognition(recognition)))
    if spoils(event.media_id, malformed_rate):
        _malform(random.Random(f"malform-kind:{event.media_id}"), out)
    return out


def spoils(media_id: int, malformed_rate: float = MALFORMED_RATE) -> bool:
    """Whether the answers for `media_id` include a malformed entry. A generator of its own:
    the malformed share can change without changing the answers."""
    return random.Random(f"malformed:{media_id}").random() < malformed_rate


# --------------------------------------------------------------------------- the actor


@attrs.define
class StandinStats:
    media_answered: int = 0
    entries_written: int = 0
    profile_pictures: int = 0
    undecodable: int = 0


@attrs.define
class MlStandin:
    """Answers outbound events like the ML service; stops when `stopping` is set.

    One reader per outbound stream, so that each read names one key (one slot on a Redis
    Cluster). On a single Redis the answers and the XACK are one MULTI/EXEC, so a crash never
    answers an entry twice; on a cluster they live in other slots, so the answers are written
    first and the XACK follows: a crash between them answers again, which the consumers absorb
    (every effect is an upsert keyed by media and face).
    """

    redis: RedisGateway
    keys: KeyLayout
    stopping: trio.Event
    malformed_rate: float = MALFORMED_RATE
    consumer: str = CONSUMER
    stats: StandinStats = attrs.Factory(StandinStats)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Create the groups, then read and answer until stopping. Redis errors propagate
        (the supervisor restarts the actor); a vanished group is recreated."""
        readers = {s: self._reader(s) for s in OUTBOUND_STREAMS}
        for reader in readers.values():
            await reader.create_group()
        async with trio.open_nursery() as nursery:
            for stream, reader in readers.items():
                nursery.start_soon(self._serve, stream, reader)
            task_status.started()

    def _reader(self, stream: str) -> RedisInboundStream:
        key = self.keys.stream(stream)
        return RedisInboundStream(self.redis, key, self.keys.dlq(stream), self.consumer, GROUP)

    async def _serve(self, stream: str, reader: RedisInboundStream) -> None:
        pending = True  # after a restart, first our own unacknowledged entries
        while not self.stopping.is_set():
            try:
                if pending:
                    entries = await reader.read_pending("0", READ_COUNT)
                else:
                    entries = await reader.read_new(READ_COUNT, BLOCK_MS)
            except NoGroup as exc:  # a flushed Redis: the group went with its stream
                log.warning("ml_standin.group_recreated", stream=stream, error=str(exc))
                await reader.create_group()
                continue
            if pending and not entries:
                pending = False
                continue
            if entries:
                await self._answer(stream, entries)

    async def _answer(self, stream: str, entries: list[Entry]) -> None:
        commands: list[list[Any]] = []
        for entry in entries:
            commands += self._answers_to(stream, entry.fields)
        ack = ["XACK", self.keys.stream(stream), GROUP, *(entry.id for entry in entries)]
        if self.redis.is_cluster:
            if commands:
                await self.redis.pipeline(commands, transaction=False)
            await self.redis.execute(*ack)
        else:
            await self.redis.pipeline([*commands, ack], transaction=True)

    def _answers_to(self, stream: str, fields: Any) -> list[list[Any]]:
        try:
            if stream == PROFILE_PICTURE_STREAM:
                decode_profile_picture(fields)  # the real service enrols the face; no answer
                self.stats.profile_pictures += 1
                return []
            event = decode_post_media(fields)
        except DecodeError as exc:
            self.stats.undecodable += 1
            log.warning("ml_standin.undecodable", stream=stream, error=str(exc))
            return []
        commands = []
        for inbound, answer in answers(event, malformed_rate=self.malformed_rate):
            command: list[Any] = ["XADD", self.keys.stream(inbound), "*"]
            for name, value in answer.items():
                command += [name, value]
            commands.append(command)
        self.stats.media_answered += 1
        self.stats.entries_written += len(commands)
        return commands
