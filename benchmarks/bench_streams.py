"""Inbound stream throughput: entries/s applied by the StreamConsumer, beside a naive listener.

- consumer: kaleido.streams (a batch per read, one transaction and one XACK round trip per batch);
- naive: what a per-message listener does (the original backend's shape): the same decoding and
  the same SQL, but one transaction and one XACK per entry.

Workloads (written with the messages.py encoders, as the real ML service writes them):
- mix: per media item, the five insight services (incl. a 1408-float image embedding), one face
  detection with 1-3 faces (512-float embeddings) and a recognition for most faces;
- small: moderation results only.

Both listeners run one task per inbound stream, against the same pre-filled streams; the final
tables of both runs are compared, so the speed-up is not bought with a different result.
Run: `python -m benchmarks.bench_streams [--media N] [--small N]`.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

import trio

from kaleido.gateways import Backends, open_backends
from kaleido.messages import (
    CONSUMER_GROUP,
    FACE_DETECTION_STREAM,
    FACE_RECOGNITION_STREAM,
    INSIGHTS_STREAM,
    DetectedFace,
    FaceDetectionResult,
    FaceRecognitionResult,
    IgnoredEntry,
    ImageCaptioning,
    ImageEmbedding,
    InsightPayload,
    InsightResult,
    Moderation,
    SceneRecognition,
    Tagging,
    encode_face_detection,
    encode_face_recognition,
    encode_insight,
)
from kaleido.migrate import migrate
from kaleido.streams import (
    FaceDetectionHandler,
    FaceRecognitionHandler,
    Handler,
    InsightsHandler,
    StreamConsumer,
    consumer_name,
    ensure_group,
)

from .common import print_table, private_stack, save

STREAMS = (INSIGHTS_STREAM, FACE_DETECTION_STREAM, FACE_RECOGNITION_STREAM)
HANDLERS: dict[str, Handler[Any]] = {
    INSIGHTS_STREAM: InsightsHandler(),
    FACE_DETECTION_STREAM: FaceDetectionHandler(),
    FACE_RECOGNITION_STREAM: FaceRecognitionHandler(),
}
TABLES = "media_ai_insights, media_detected_faces, processed_messages, posts"
# XADDs per pipeline while pre-filling.
FILL_CHUNK = 500


def _floats(rng: random.Random, n: int) -> tuple[float, ...]:
    return tuple(round(rng.uniform(-1, 1), 6) for _ in range(n))


def mix_workload(media: int, seed: int = 11) -> dict[str, list[dict[str, str]]]:
    """Entries per stream for `media` media items (see the module docstring)."""
    rng = random.Random(seed)
    out: dict[str, list[dict[str, str]]] = {s: [] for s in STREAMS}
    for m in range(1, media + 1):
        post = (m + 1) // 2
        payloads: list[InsightPayload] = [
            Moderation(rng.random() > 0.05, round(rng.random(), 4)),
            Tagging(tuple(rng.sample(["beach", "sea", "dog", "city", "food", "sky"], 3))),
            SceneRecognition(("outdoor", "coast")),
            ImageCaptioning(f"A photo number {m} of something nice"),
            ImageEmbedding(_floats(rng, 1408)),
        ]
        for payload in payloads:
            out[INSIGHTS_STREAM].append(
                encode_insight(InsightResult(m, post, payload, correlation_id=f"c-{m}"))
            )
        faces = tuple(
            DetectedFace(
                str(uuid.UUID(int=rng.getrandbits(128))),
                (10, 20, 110, 140),
                _floats(rng, 512),
                round(rng.random(), 4),
            )
            for _ in range(rng.randint(1, 3))
        )
        detection = FaceDetectionResult(m, post, len(faces), faces, correlation_id=f"c-{m}")
        out[FACE_DETECTION_STREAM].append(encode_face_detection(detection))
        for face in faces:
            if rng.random() < 0.7:
                recognition = FaceRecognitionResult(
                    m, post, face.face_id, rng.randint(1, 1000), 0.8, "alice", f"c-{m}"
                )
                out[FACE_RECOGNITION_STREAM].append(encode_face_recognition(recognition))
    return out


def small_workload(n: int) -> dict[str, list[dict[str, str]]]:
    entries = [
        encode_insight(InsightResult(m, m, Moderation(True, 0.01), correlation_id=f"c-{m}"))
        for m in range(1, n + 1)
    ]
    return {INSIGHTS_STREAM: entries}


async def reset_and_fill(backends: Backends, workload: dict[str, list[dict[str, str]]]) -> int:
    await backends.redis.execute("FLUSHALL")
    await backends.postgres.execute(f"TRUNCATE {TABLES} CASCADE")
    for stream, entries in workload.items():
        key = backends.keys.stream(stream)
        await ensure_group(backends.redis, key)
        for start in range(0, len(entries), FILL_CHUNK):
            commands = []
            for fields in entries[start : start + FILL_CHUNK]:
                flat = [item for pair in fields.items() for item in pair]
                commands.append(["XADD", key, "*", *flat])
            await backends.redis.pipeline(commands)
    return sum(len(e) for e in workload.values())


async def run_consumers(backends: Backends, streams: Sequence[str], total: int) -> float:
    """Seconds for kaleido's consumers to apply `total` pre-filled entries."""
    stopping = trio.Event()
    consumers = [
        StreamConsumer(
            backends.redis,
            backends.postgres,
            backends.keys,
            HANDLERS[s],
            consumer_name(s),
            stopping,
            block_ms=100,
        )
        for s in streams
    ]
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for consumer in consumers:
            await nursery.start(consumer.run)
        # Polling the consumers' own counters (no I/O): cheaper than a completion hook.
        while sum(c.stats.applied + c.stats.ignored for c in consumers) < total:  # noqa: ASYNC110
            await trio.sleep(0.005)
        elapsed = time.perf_counter() - started
        stopping.set()
    return elapsed


async def naive_listener(
    backends: Backends, stream: str, handler: Handler[Any], done: list[int], quota: int
) -> None:
    """Per message: one transaction (dedup row + effect), then one XACK."""
    key = backends.keys.stream(stream)
    while done[0] < quota:
        reply = await backends.redis.execute(
            "XREADGROUP", "GROUP", CONSUMER_GROUP, "naive", "COUNT", 10,
            "BLOCK", 100, "STREAMS", key, ">",
        )  # fmt: skip
        for entry_id, fields in reply[0][1] if reply else []:
            entry = entry_id.decode()
            message = handler.decode(fields)
            if not isinstance(message, IgnoredEntry):
                async with backends.postgres.transaction() as tx:
                    fresh = await tx.fetchval(
                        "INSERT INTO processed_messages (stream, entry_id) VALUES ($1, $2)"
                        " ON CONFLICT DO NOTHING RETURNING entry_id",
                        key,
                        entry,
                    )
                    if fresh is not None:
                        await handler.apply(tx, [(entry, message)])
            await backends.redis.execute("XACK", key, CONSUMER_GROUP, entry)
            done[0] += 1


async def run_naive(backends: Backends, workload: dict[str, list[dict[str, str]]]) -> float:
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for stream, entries in workload.items():
            nursery.start_soon(
                naive_listener, backends, stream, HANDLERS[stream], [0], len(entries)
            )
    return time.perf_counter() - started


async def table_digest(backends: Backends) -> str:
    """A digest of the result tables' contents (ids and timestamps left out)."""
    value = await backends.postgres.fetchval(
        """
        SELECT md5(coalesce((SELECT string_agg(format('%s|%s|%s|%s|%s|%s|%s|%s', media_id, post_id,
                   status, is_safe, services_completed, tags, caption,
                   md5(image_embedding::text)), ',' ORDER BY media_id)
                FROM media_ai_insights), '') ||
               coalesce((SELECT string_agg(format('%s|%s|%s|%s|%s|%s', media_id, face_uid, status,
                   suggested_user_id, bbox, md5(embedding::text)), ',' ORDER BY media_id, face_uid)
                FROM media_detected_faces), ''))
        """
    )
    return str(value)


async def compare(
    backends: Backends, name: str, workload: dict[str, list[dict[str, str]]]
) -> dict[str, Any]:
    total = await reset_and_fill(backends, workload)
    ours = await run_consumers(backends, list(workload), total)
    ours_digest = await table_digest(backends)
    await reset_and_fill(backends, workload)
    naive = await run_naive(backends, workload)
    naive_digest = await table_digest(backends)
    if ours_digest != naive_digest:
        raise SystemExit(f"{name}: the two listeners ended with different tables")
    return {
        "entries": total,
        "consumer_seconds": round(ours, 3),
        "consumer_entries_per_s": round(total / ours, 1),
        "naive_seconds": round(naive, 3),
        "naive_entries_per_s": round(total / naive, 1),
        "speedup": round(naive / ours, 2),
    }


async def main(media: int, small: int) -> dict[str, Any]:
    with private_stack() as (_, settings):
        async with open_backends(settings) as backends:
            await migrate(backends.postgres)
            return {
                "mix": await compare(backends, "mix", mix_workload(media)),
                "small": await compare(backends, "small", small_workload(small)),
                "params": {"media": media, "small": small},
            }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=int, default=1000, help="media items in the mix (1000)")
    parser.add_argument("--small", type=int, default=10_000, help="moderation-only entries")
    args = parser.parse_args()
    figures = trio.run(main, args.media, args.small)
    rows = []
    for name in ("mix", "small"):
        f = figures[name]
        rows.append(
            (
                f"{name}: entries/s ({f['entries']} entries)",
                f"{f['consumer_entries_per_s']:.0f}",
                f"naive {f['naive_entries_per_s']:.0f} / x{f['speedup']:.1f}",
            )
        )
    print_table("Inbound streams: StreamConsumer vs naive per-message listener", rows)
    print(f"\nwritten to {save('streams', figures)}")


if __name__ == "__main__":
    cli()
