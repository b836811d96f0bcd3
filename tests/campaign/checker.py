"""The checker: after the last fault and a recovery period, what Kaleido holds against what its
clients were told.

- views: per post, the views answered 202 (or `ok`) count, and at most also those answered
  otherwise: `acknowledged <= PostgreSQL <= acknowledged + unknown` after a sync; then every
  view of unknown outcome is sent again until acknowledged (Redis' dedup makes that harmless)
  and, after another sync, PostgreSQL must equal the acknowledged views exactly;
- `GET /v1/posts/{id}/views` equals PostgreSQL for every post; nothing left in Redis (counters,
  in-flight batches) and no `view_journal` row;
- entries: every entry whose XADD was confirmed is in `processed_messages` and has its effect
  (its service's value, its face rows, its suggestion); nothing pending, nothing dead-lettered,
  no face row nobody sent.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import attrs
import httpx
import trio

from kaleido.gateways import Backends
from kaleido.messages import (
    CONSUMER_GROUP,
    FACE_DETECTION_STREAM,
    FACE_RECOGNITION_STREAM,
    INBOUND_STREAMS,
    INSIGHTS_STREAM,
    ImageCaptioning,
    Moderation,
    SceneRecognition,
    Tagging,
)
from kaleido.replies import as_text
from kaleido.streams import dlq_list
from kaleido.streams.consumer import MIN_IDLE
from kaleido.streams.housekeeping import RECLAIM_INTERVAL

from ..views_helpers import synced_views
from .service import Service
from .traffic import EPOCH_POSTS, POSTS, ViewModel, Written, post_views, record

SETTLE_WITHIN = 120.0  # seconds to get every view of unknown outcome acknowledged
ENTRIES_WITHIN = 90.0  # seconds for every written entry to be processed after the faults
# Entries a consumer read and did not acknowledge (the read's reply was lost, its process was
# killed) are taken over once idle MIN_IDLE (60 s), at the next reclaim (every 30 s).
PENDING_WITHIN = MIN_IDLE + RECLAIM_INTERVAL + 30


@attrs.define
class Verdict:
    """What the checker found (figures for the report, failures for the verdict)."""

    acknowledged: int = 0
    unknown: int = 0
    lost: int = 0  # acknowledged views missing (before or after settling)
    doubled: int = 0  # views counted more than once
    window_lost: int = 0  # views of epochs a documented window ended (counted apart)
    window_doubled: int = 0
    api_mismatch: int = 0
    redis_left: int = 0
    journal_left: int = 0
    entries: int = 0
    entries_missing: int = 0
    entries_wrong: int = 0
    entries_reordered: int = 0  # applied once each, but an older one last (see report_reordered)
    notes: list[str] = attrs.Factory(list)
    pending: int = 0
    pending_seen: int = 0  # entries pending when the checks began
    pending_drained: float | None = None  # seconds until none was
    dead_lettered: int = 0
    failures: list[str] = attrs.Factory(list)

    def fail(self, message: str) -> None:
        self.failures.append(message)

    @property
    def ok(self) -> bool:
        return not self.failures


async def synced_counts(backends: Backends) -> tuple[Counter[int], int, int]:
    """Views per post in PostgreSQL, and what is left in Redis and in the journal."""
    counts, left = await synced_views(backends)
    journal = await backends.postgres.fetchval("SELECT count(*) FROM view_journal")
    return counts, left, int(journal)


async def full_sync(service: Service, http: httpx.AsyncClient, timeout: float = 120) -> None:
    """Syncs until one finds nothing to move (a sync may be refused while another runs)."""
    with trio.fail_after(timeout):
        while True:
            report = await service.sync(http)
            if report is not None and not report.get("views") and not report.get("journal_views"):
                return
            await trio.sleep(0.2 if report is None else 0)


async def check_views(
    verdict: Verdict, model: ViewModel, service: Service, backends: Backends
) -> None:
    strict, exposed = model.posts(exposed=False), model.posts(exposed=True)
    async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as http:
        await full_sync(service, http)
        counts, left, journal = await synced_counts(backends)
        low, high = model.expected()
        verdict.acknowledged, verdict.unknown = len(model.acked), len(model.unknown - model.acked)
        lost = sum(max(0, low[p] - counts[p]) for p in strict)
        doubled = sum(max(0, counts[p] - high[p]) for p in strict)
        if lost or doubled:
            verdict.fail(
                f"before settling: {lost} acknowledged views missing, {doubled} views "
                "counted more than once (or never sent)"
            )
        check_windows(verdict, model, counts, low, high)
        await check_api(verdict, http, counts, model.posts())

        # Every view of unknown outcome, again, until acknowledged: now each must count once.
        # Not those of an exposed epoch: a repeat of a view whose dedup data a window lost
        # counts again, as documented.
        with trio.fail_after(SETTLE_WITHIN):
            pending = sorted(v for v in model.unknown - model.acked if v[1] in set(strict))
            while pending:
                batch, pending = pending[:200], pending[200:]
                while (status := await post_views(http, batch)) != "202":  # noqa: ASYNC110
                    await trio.sleep(0.2)  # the service answers again shortly
                record(model, batch, status)
        await full_sync(service, http)
        counts, left, journal = await synced_counts(backends)
        exact = Counter(post for _, post in model.acked)
        lost_after = sum(max(0, exact[p] - counts[p]) for p in strict)
        doubled_after = sum(max(0, counts[p] - exact[p]) for p in strict)
        verdict.lost, verdict.doubled = max(lost, lost_after), max(doubled, doubled_after)
        if lost_after or doubled_after:
            verdict.fail(f"after settling: {lost_after} views missing, {doubled_after} doubled")
        verdict.redis_left, verdict.journal_left = left, journal
        if left:
            verdict.fail(f"{left} counters or batches left in Redis after a full sync")
        if journal:
            verdict.fail(f"{journal} view_journal rows left after a full sync")
        await check_api(verdict, http, counts, model.posts())
        if exposed:
            verdict.notes.append(
                f"documented windows: {verdict.window_lost} views of the epochs before "
                f"{', '.join(sorted(set(model.exposed.values())))} lost, "
                f"{verdict.window_doubled} counted again"
            )


def check_windows(
    verdict: Verdict,
    model: ViewModel,
    counts: Counter[int],
    low: Counter[int],
    high: Counter[int],
) -> None:
    """The posts of an epoch a documented window ended: what it cost is counted apart. Views
    may be lost (Redis held them alone); none may count twice, except after an eviction (a
    repeat of a pair whose dedup data was evicted counts again)."""
    for epoch, window in model.exposed.items():
        posts = [epoch * EPOCH_POSTS + p for p in range(1, POSTS + 1)]
        verdict.window_lost += sum(max(0, low[p] - counts[p]) for p in posts)
        doubled = sum(max(0, counts[p] - high[p]) for p in posts)
        verdict.window_doubled += doubled
        if doubled and window != "maxmemory":
            verdict.fail(f"epoch {epoch} (ended by {window}): {doubled} views counted twice")


async def check_api(
    verdict: Verdict, http: httpx.AsyncClient, counts: Counter[int], posts: list[int]
) -> None:
    wrong = []
    for post in posts:
        r = await http.get(f"/v1/posts/{post}/views")
        views = r.json().get("views") if r.status_code == 200 else None
        if views != counts[post]:
            wrong.append(f"post {post}: API {views}, PostgreSQL {counts[post]}")
    verdict.api_mismatch += len(wrong)
    if wrong:
        verdict.fail("API totals differ from PostgreSQL: " + "; ".join(wrong[:5]))


def _expected_entries(
    written: list[Written],
) -> tuple[dict[int, dict[str, list[Written]]], dict[int, dict[str, int | None]]]:
    """Per media and service, the entries written, in stream order; per media, face → the
    suggested user (None if only detected)."""
    services: dict[int, dict[str, list[Written]]] = defaultdict(lambda: defaultdict(list))
    faces: dict[int, dict[str, int | None]] = defaultdict(dict)
    for w in written:  # each stream's entries in stream order
        if w.what == "detection":
            assert isinstance(w.value, tuple)
            for face_id, _ in w.value:
                faces[w.media].setdefault(face_id, None)
        elif w.what == "recognition":
            assert isinstance(w.value, tuple)
            faces[w.media][w.value[0]] = w.value[1]
        else:
            services[w.media][w.what].append(w)
    return services, faces


def _stored(payload: object, row: Any) -> bool:
    """Whether the insights row holds this payload's value."""
    match payload:
        case Tagging(tags=tags):
            return tuple(row["tags"] or ()) == tags
        case SceneRecognition(scenes=scenes):
            return tuple(row["scenes"] or ()) == scenes
        case ImageCaptioning(caption=caption):
            return bool(row["caption"] == caption)
    raise AssertionError(payload)


async def report_reordered(
    verdict: Verdict, reordered: list[tuple[Written, Written]], backends: Backends
) -> None:
    """Results for one media and service whose final value is an older entry's: the older
    entry was applied after the newer one (a redelivery). Each entry's effect was applied once;
    the last one applied wins. Counted apart, with when each was applied."""
    verdict.entries_reordered = len(reordered)
    old, new = reordered[0]
    rows = await backends.postgres.fetch(
        "SELECT entry_id, processed_at FROM processed_messages WHERE entry_id = ANY($1::text[])",
        [old.entry_id, new.entry_id],
    )
    at = {r["entry_id"]: r["processed_at"] for r in rows}
    verdict.notes.append(
        f"{len(reordered)} results applied out of stream order, e.g. media {old.media} "
        f"{old.what}: entry {old.entry_id} applied at {at.get(old.entry_id)}, after the later "
        f"entry {new.entry_id} at {at.get(new.entry_id)}"
    )


async def wait_processed(backends: Backends, written: list[Written]) -> set[tuple[str, str]]:
    """Wait until every written entry is in processed_messages; return those that are not."""
    wanted = {(backends.keys.stream(w.stream), w.entry_id) for w in written}
    missing = wanted
    with trio.move_on_after(ENTRIES_WITHIN):
        while missing:
            rows = await backends.postgres.fetch("SELECT stream, entry_id FROM processed_messages")
            missing = wanted - {(r["stream"], r["entry_id"]) for r in rows}
            if missing:
                await trio.sleep(0.5)
    return missing


async def check_entries(verdict: Verdict, written: list[Written], backends: Backends) -> None:
    verdict.entries = len(written)
    missing = await wait_processed(backends, written)
    verdict.entries_missing = len(missing)
    if missing:
        verdict.fail(f"{len(missing)} written entries never processed, e.g. {sorted(missing)[:3]}")
    services, faces = _expected_entries(written)
    wrong: list[str] = []
    reordered: list[tuple[Written, Written]] = []  # (applied last, written last)
    rows = await backends.postgres.fetch(
        "SELECT media_id, services_completed, is_safe, tags, scenes, caption "
        "FROM media_ai_insights WHERE media_id = ANY($1::bigint[])",
        list(services),
    )
    found = {r["media_id"]: r for r in rows}
    for media, expected in services.items():
        row = found.get(media)
        if row is None:
            wrong.append(f"media {media}: no insights row")
            continue
        completed = list(row["services_completed"] or [])
        if sorted(completed) != sorted(expected) or len(set(completed)) != len(completed):
            wrong.append(f"media {media}: services {completed}, expected {sorted(expected)}")
        for what, history in expected.items():
            if what == "moderation":  # unsafe is sticky: the order does not matter
                safe = all(isinstance(w.value, Moderation) and w.value.is_safe for w in history)
                if row["is_safe"] != safe:
                    wrong.append(f"media {media}: is_safe {row['is_safe']}, expected {safe}")
            elif not _stored(history[-1].value, row):
                earlier = [w for w in history[:-1] if _stored(w.value, row)]
                if earlier:
                    reordered.append((earlier[-1], history[-1]))
                else:
                    wrong.append(f"media {media}: {what} is none of the values written")
    if reordered:
        await report_reordered(verdict, reordered, backends)
    face_rows = await backends.postgres.fetch(
        "SELECT media_id, face_uid, status, suggested_user_id FROM media_detected_faces"
    )
    have: dict[int, dict[str, tuple[str, int | None]]] = defaultdict(dict)
    for r in face_rows:
        have[r["media_id"]][r["face_uid"]] = (r["status"], r["suggested_user_id"])
    for media in set(faces) | set(have):
        if set(have[media]) != set(faces[media]):
            wrong.append(
                f"media {media}: faces {sorted(have[media])}, expected {sorted(faces[media])}"
            )
            continue
        for face, user in faces[media].items():
            want = ("UNIDENTIFIED", None) if user is None else ("SUGGESTED", user)
            if have[media][face] != want:
                wrong.append(f"media {media} face {face}: {have[media][face]}, expected {want}")
    verdict.entries_wrong = len(wrong)
    if wrong:
        verdict.fail(f"{len(wrong)} effects wrong: " + "; ".join(wrong[:5]))
    await check_streams_clear(verdict, backends)


async def pending_entries(backends: Backends) -> list[tuple[str, str, str, int, int]]:
    """(stream, entry id, consumer, idle ms, deliveries) of every pending inbound entry."""
    keys, redis = backends.keys, backends.redis
    found = []
    for stream in INBOUND_STREAMS:
        try:
            rows = await redis.execute(
                "XPENDING", keys.stream(stream), CONSUMER_GROUP, "-", "+", 1000
            )
        except Exception:  # no group: nothing was ever read from it
            continue
        for row in rows:
            entry, consumer, idle, deliveries = (
                (
                    row["message_id"],
                    row["consumer"],
                    row["time_since_delivered"],
                    row["times_delivered"],
                )
                if isinstance(row, dict)
                else row
            )
            found.append((stream, as_text(entry), as_text(consumer), int(idle), int(deliveries)))
    return found


async def check_streams_clear(verdict: Verdict, backends: Backends) -> None:
    """Nothing pending (entries a consumer took and did not acknowledge are taken over after
    the consumer's MIN_IDLE: waited for, up to PENDING_WITHIN), nothing dead-lettered."""
    started = trio.current_time()
    with trio.move_on_after(PENDING_WITHIN):
        while pending := await pending_entries(backends):
            if not verdict.pending_seen:
                verdict.pending_seen = len(pending)
                processed = await backends.postgres.fetch(
                    "SELECT stream, entry_id FROM processed_messages"
                )
                done = {(r["stream"], r["entry_id"]) for r in processed}
                print(
                    f"  {len(pending)} entries pending after the faults, e.g. "
                    + "; ".join(
                        f"{s} {e} by {c}, idle {i} ms, delivered {d}, "
                        f"{'processed' if (s, e) in done else 'not processed'}"
                        for s, e, c, i, d in pending[:5]
                    ),
                    flush=True,
                )
            await trio.sleep(1)
    if verdict.pending_seen:
        verdict.pending_drained = trio.current_time() - started
    verdict.pending = len(pending)
    for stream in INBOUND_STREAMS:
        dead = int(await backends.redis.execute("XLEN", backends.keys.dlq(stream)))
        verdict.dead_lettered += dead
        if dead:
            letters = await dlq_list(backends.redis, backends.keys, stream, 1000)
            reasons = Counter(
                f"{x.error_type}: {x.error} ({x.deliveries} deliveries)" for x in letters
            )
            verdict.fail(
                f"{stream}: {dead} entries dead-lettered: "
                + "; ".join(f"{n} × {reason}" for reason, n in reasons.most_common(3))
            )
    if pending:
        verdict.fail(
            f"{len(pending)} entries still pending {PENDING_WITHIN:.0f} s after the "
            f"faults, e.g. {pending[:3]}"
        )


STREAMS = (INSIGHTS_STREAM, FACE_DETECTION_STREAM, FACE_RECOGNITION_STREAM)
