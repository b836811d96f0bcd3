"""A stand-in for the ML service, for `run.py --demo` and tests: the real service's workers, with
their model calls replaced by deterministic answers (kaleido.demo.answers, faces, aggregator).

It reads what the real service reads, each in the group the real worker uses:
- `post-image-processing`: the five insight services and a face detection per media item (the
  real service reads nothing else of a post: `post-update-processing` goes unread);
- `profile-picture-processing`: the enrolment worker's answer, the user's profile face;
- `face-detection-results`: the face matcher, which searches the known faces its search sync
  indexed and answers `face-recognition-results` for a match;
- `post-aggregation-trigger`: the aggregator's `post-insights-enriched`;
- `es-sync-queue`: the search sync, which reads each announced document from Kaleido's read
  models (`SELECT * FROM <table> WHERE <key> = <documentId>`) into its in-memory indexes.

One reader per stream, so each read names one key (one slot on a Redis Cluster). On a single
Redis a batch's answers and its XACK are one MULTI/EXEC, so a crash never answers an entry twice;
on a cluster they live in other slots, so the answers are written first and the XACK follows: a
crash between them answers again, which Kaleido's consumers absorb.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import trio

from kaleido.demo.aggregator import aggregate
from kaleido.demo.answers import MALFORMED_RATE, answers
from kaleido.demo.faces import KnownFace, KnownFaces, user_face
from kaleido.errors import NoGroup, TransientError
from kaleido.gateways import PostgresGateway, RedisGateway
from kaleido.keys import KeyLayout
from kaleido.logs import get_logger
from kaleido.messages import (
    AGGREGATION_TRIGGER_STREAM,
    FACE_DETECTION_STREAM,
    FACE_EMBEDDING_DIM,
    FACE_RECOGNITION_STREAM,
    IMAGE_EMBEDDING_DIM,
    INDEXES,
    POST_IMAGE_STREAM,
    POST_INSIGHTS_STREAM,
    PROFILE_FACE_STREAM,
    PROFILE_PICTURE_STREAM,
    SEARCH_SYNC_STREAM,
    DecodeError,
    FaceRecognitionResult,
    Fields,
    ProfileFaceResult,
    decode_aggregation_trigger,
    decode_face_detection,
    decode_post_media,
    decode_profile_picture,
    decode_search_sync,
    encode_face_recognition,
    encode_post_insights,
    encode_profile_face,
)
from kaleido.messages.search_sync import KNOWN_FACES_INDEX, peer_document_id
from kaleido.streams.inbound import Entry, RedisInboundStream

log = get_logger("kaleido.demo.ml_standin")

# The groups of the real service's workers.
GROUP = "ml-standin"
AGGREGATOR_GROUP = "post-aggregator-group"
SEARCH_SYNC_GROUP = "es-sync-group"
MATCHER_GROUP = "face-matcher-group"
CONSUMER = "ml-standin-1"
# Entries per read, and how long a read blocks: short, so that shutdown is noticed quickly.
READ_COUNT = 50
BLOCK_MS = 500
READ_RETRY = 0.2  # seconds before reading again after a failed read

Answers = list[tuple[str, dict[str, str]]]


@attrs.define
class StandinStats:
    media_answered: int = 0
    entries_written: int = 0
    profile_pictures: int = 0
    aggregations: int = 0
    matches: int = 0
    documents_indexed: int = 0
    documents_deleted: int = 0
    documents_missing: int = 0  # announced, but no row to read: Kaleido promises none
    undecodable: int = 0


@attrs.define
class MlStandin:
    """Answers like the ML service (see the module docstring); stops when `stopping` is set.
    Without `postgres` there is no search sync (and so no known face to match)."""

    redis: RedisGateway
    keys: KeyLayout
    stopping: trio.Event
    postgres: PostgresGateway | None = None
    image_dim: int = IMAGE_EMBEDDING_DIM
    face_dim: int = FACE_EMBEDDING_DIM
    malformed_rate: float = MALFORMED_RATE
    consumer: str = CONSUMER
    stats: StandinStats = attrs.Factory(StandinStats)
    known: KnownFaces = attrs.Factory(KnownFaces)
    # The search sync's indexes: index type → document id (as text) → the row it read.
    indexes: dict[str, dict[str, dict[str, Any]]] = attrs.Factory(dict)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Create the groups, then read and answer until stopping. A read that fails for now
        (a dropped connection) is retried, a vanished group recreated; other Redis errors
        propagate (the supervisor restarts the actor)."""
        workers: list[tuple[str, str, Callable[[Fields], Awaitable[Answers]]]] = [
            (POST_IMAGE_STREAM, GROUP, self._media),
            (PROFILE_PICTURE_STREAM, GROUP, self._enrolment),
            (FACE_DETECTION_STREAM, MATCHER_GROUP, self._matches),
            (AGGREGATION_TRIGGER_STREAM, AGGREGATOR_GROUP, self._aggregation),
        ]
        if self.postgres is not None:
            workers.append((SEARCH_SYNC_STREAM, SEARCH_SYNC_GROUP, self._search_sync))
        readers = [(self._reader(s, g), work) for s, g, work in workers]
        for reader, _ in readers:
            await reader.create_group()
        async with trio.open_nursery() as nursery:
            for reader, work in readers:
                nursery.start_soon(self._serve, reader, work)
            task_status.started()

    def enrolled(self) -> list[int]:
        """The users whose faces the matcher can find (sorted)."""
        return sorted({f.user_id for f in self.known.faces.values() if f.active})

    def _reader(self, stream: str, group: str) -> RedisInboundStream:
        key = self.keys.stream(stream)
        return RedisInboundStream(self.redis, key, self.keys.dlq(stream), self.consumer, group)

    async def _serve(
        self, reader: RedisInboundStream, work: Callable[[Fields], Awaitable[Answers]]
    ) -> None:
        pending = True  # after a restart, first our own unacknowledged entries
        while not self.stopping.is_set():
            try:
                if pending:
                    entries = await reader.read_pending("0", READ_COUNT)
                else:
                    entries = await reader.read_new(READ_COUNT, BLOCK_MS)
            except NoGroup as exc:  # a flushed Redis: the group went with its stream
                log.warning("ml_standin.group_recreated", stream=reader.stream_key, error=str(exc))
                await reader.create_group()
                continue
            except TransientError as exc:  # a dropped connection, Redis restarting: read again
                log.warning("ml_standin.read_failed", stream=reader.stream_key, error=str(exc))
                with trio.move_on_after(READ_RETRY):
                    await self.stopping.wait()
                pending = True  # what we took before may be ours still
                continue
            if pending and not entries:
                pending = False
                continue
            if entries:
                await self._answer(reader, entries, work)

    async def _answer(
        self,
        reader: RedisInboundStream,
        entries: list[Entry],
        work: Callable[[Fields], Awaitable[Answers]],
    ) -> None:
        commands: list[list[Any]] = []
        for entry in entries:
            try:
                written = await work(entry.fields)
            except DecodeError as exc:
                self.stats.undecodable += 1
                log.warning("ml_standin.undecodable", stream=reader.stream_key, error=str(exc))
                continue
            for stream, fields in written:
                command: list[Any] = ["XADD", self.keys.stream(stream), "*"]
                for name, value in fields.items():
                    command += [name, value]
                commands.append(command)
        self.stats.entries_written += len(commands)
        ack = ["XACK", reader.stream_key, reader.group, *(entry.id for entry in entries)]
        if self.redis.is_cluster:
            if commands:
                await self.redis.pipeline(commands, transaction=False)
            await self.redis.execute(*ack)
        else:
            await self.redis.pipeline([*commands, ack], transaction=True)

    # ------------------------------------------------------------------------- the workers

    async def _media(self, fields: Fields) -> Answers:
        event = decode_post_media(fields)
        self.stats.media_answered += 1
        return answers(
            event,
            image_dim=self.image_dim,
            face_dim=self.face_dim,
            enrolled=self.enrolled(),
            malformed_rate=self.malformed_rate,
        )

    async def _enrolment(self, fields: Fields) -> Answers:
        request = decode_profile_picture(fields)
        self.stats.profile_pictures += 1
        face = user_face(request.user_id, self.face_dim)
        answer = ProfileFaceResult(request.user_id, face, request.correlation_id)
        return [(PROFILE_FACE_STREAM, encode_profile_face(answer))]

    async def _matches(self, fields: Fields) -> Answers:
        try:
            detection = decode_face_detection(fields, embedding_dim=self.face_dim)
        except DecodeError:
            return []  # Kaleido dead-letters it; the matcher just skips it
        out: Answers = []
        for face in detection.faces:
            match = self.known.best_match(face.embedding) if face.embedding else None
            if match is None:
                continue
            recognition = FaceRecognitionResult(
                media_id=detection.media_id,
                post_id=detection.post_id,
                face_id=face.face_id,
                suggested_user_id=match.user_id,
                confidence=match.score,
                matched_username=match.username,
                correlation_id=detection.correlation_id,
                timestamp=datetime.now(UTC),
                version="1",
            )
            out.append((FACE_RECOGNITION_STREAM, encode_face_recognition(recognition)))
        self.stats.matches += len(out)
        return out

    async def _aggregation(self, fields: Fields) -> Answers:
        trigger = decode_aggregation_trigger(fields)
        result = attrs.evolve(aggregate(trigger), timestamp=datetime.now(UTC))
        self.stats.aggregations += 1
        return [(POST_INSIGHTS_STREAM, encode_post_insights(result))]

    async def _search_sync(self, fields: Fields) -> Answers:
        assert self.postgres is not None
        event = decode_search_sync(fields)
        index = self.indexes.setdefault(event.index_type, {})
        if event.operation == "delete":
            index.pop(event.document_id, None)
            self.known.faces.pop(event.document_id, None)
            self.stats.documents_deleted += 1
            return []
        table, key = INDEXES[event.index_type]
        row = await self.postgres.fetchrow(
            f"SELECT * FROM {table} WHERE {key} = $1", peer_document_id(event)
        )
        if row is None:
            self.stats.documents_missing += 1
            log.warning("ml_standin.document_missing", index=event.index_type, id=event.document_id)
            return []
        document = dict(row)
        index[event.document_id] = document
        self.stats.documents_indexed += 1
        if event.index_type == KNOWN_FACES_INDEX:
            self.known.faces[event.document_id] = KnownFace(
                document["user_id"],
                document["username"],
                tuple(document["face_embedding"] or ()),
                document["is_active"],
            )
        return []
