"""Nothing grows without bound (docs/bounds.md): each structure that grows with traffic or time,
driven to ten times its bound's scale, stays under its bound. Where time is the bound, the
clock is passed in (`now`) or rows are dated in the past; real Redis and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import attrs
import pytest
import trio

from actors.metrics_reporter import MetricsReporter
from actors.view_ingester import IN_FLIGHT, ViewIngester
from kaleido.errors import RedisUnavailable
from kaleido.gateways import Backends
from kaleido.http.console.session import LIFETIME, Session
from kaleido.http.console.store import FAILURE_WINDOW, LOCK_SECONDS, ConsoleStore
from kaleido.keys import KeyLayout
from kaleido.messages import INSIGHTS_STREAM, POST_IMAGE_STREAM
from kaleido.messages.dlq import Rejection
from kaleido.metrics import Metrics
from kaleido.ops.history import SyncLog, SyncRun
from kaleido.ops.streams import GroupStatus, StreamStatus
from kaleido.outbox import Announcement, RedisAnnouncer
from kaleido.outbox.publish import MARK_RETENTION
from kaleido.streams.housekeeping import RETENTION
from kaleido.streams.inbound import RedisInboundStream
from kaleido.streams.ledger import PostgresLedger
from kaleido.views import ledger
from kaleido.views.dedup import NEARLY_FULL_HINTS, Directories, NearlyFull
from kaleido.views.journal import REPLAY_CHUNK, JournalReplayer, journal_views
from kaleido.views.store import ViewStore
from kaleido.views.sync import BACKLOG_MAX_AGE_DAYS, BATCH_RETENTION_DAYS
from kaleido.views.tracker import Item, ViewTracker
from kaleido.views.unknown_posts import KnownPosts, UnknownPostBudget

from .views_helpers import pg_view_counts, store_of, sync_of
from .waiting import wait_until

pytestmark = pytest.mark.redis_kinds("single")

DAY = 86400.0
TEN = 10  # the scale of every run: ten times the bound


async def _count(backends: Backends, table: str) -> int:
    return int(await backends.postgres.fetchval(f"SELECT count(*) FROM {table}"))


# --------------------------------------------------------------------------- PostgreSQL


async def test_applied_sync_batch_ids_are_kept_for_their_retention_only(
    backends: Backends,
) -> None:
    # Ten retention periods of batch ids, one every tenth of a day.
    days = BATCH_RETENTION_DAYS * TEN
    rows = int(days * 10)
    await backends.postgres.execute(
        "INSERT INTO view_sync_batches (batch_id, posts, views, applied_at) "
        "SELECT gen_random_uuid(), 1, 1, now() - (n / 10.0) * interval '1 day' "
        "FROM generate_series(1, $1) AS n",
        rows,
    )
    report = await sync_of(backends).run_once()
    kept = await _count(backends, "view_sync_batches")
    assert kept <= BATCH_RETENTION_DAYS * 10 + 1
    assert report.forgotten_batches == rows - kept
    oldest = await backends.postgres.fetchval(
        "SELECT extract(epoch FROM now() - min(applied_at)) / 86400 FROM view_sync_batches"
    )
    assert oldest <= BATCH_RETENTION_DAYS


async def test_a_batch_still_in_redis_keeps_its_id_however_old(backends: Backends) -> None:
    """A syncer that stalled between applying a batch and deleting it: the id must stay, or
    the next sync would apply the batch again."""
    store = store_of(backends)
    await store.record([(1, 5)])
    batch_id = str(uuid.uuid4())
    partition = backends.keys.partition_of(5)
    moved = await store.take_batch(partition, batch_id, 100)
    assert await ledger.apply_batch(backends.postgres, batch_id, moved.deltas)
    await backends.postgres.execute(
        "UPDATE view_sync_batches SET applied_at = now() - interval '100 days'"
    )
    in_flight = [b for _, b in await store.in_flight_batches()]
    assert await ledger.prune_batches(backends.postgres, BATCH_RETENTION_DAYS, in_flight) == 0
    report = await sync_of(backends).run_once()  # finishes the batch (skipped: applied)
    assert report.skipped_batches == 1 and report.views == 0
    assert await _count(backends, "view_sync_batches") == 0  # then its id can go
    total = await backends.postgres.fetchval(
        "SELECT views FROM post_view_backlog WHERE post_id = 5"
    )
    assert total == 1  # counted once


async def test_processed_messages_keep_the_retention_window_only(backends: Backends) -> None:
    stream = backends.keys.stream(INSIGHTS_STREAM)
    hours = int(RETENTION / 3600) * TEN
    await backends.postgres.execute(
        "INSERT INTO processed_messages (stream, entry_id, processed_at) "
        "SELECT $1, n || '-0', now() - n * interval '1 hour' FROM generate_series(1, $2) AS n",
        stream,
        hours,
    )
    pruned = await PostgresLedger(backends.postgres).prune(stream, RETENTION)
    kept = await _count(backends, "processed_messages")
    assert kept <= RETENTION / 3600 and pruned == hours - kept


async def test_the_unknown_post_backlog_keeps_its_age_and_count_bounds(
    backends: Backends,
) -> None:
    max_posts = 1000  # the bound, scaled down (BACKLOG_MAX_POSTS is 100 000)
    await backends.postgres.execute(
        "INSERT INTO post_view_backlog (post_id, views, updated_at) "
        "SELECT n, 1, now() - (n % $2) * interval '1 day' FROM generate_series(1, $1) AS n",
        max_posts * TEN,
        int(BACKLOG_MAX_AGE_DAYS * TEN),
    )
    pruned = await ledger.prune_backlog(backends.postgres, BACKLOG_MAX_AGE_DAYS, max_posts)
    assert pruned.left == await _count(backends, "post_view_backlog") <= max_posts
    oldest = await backends.postgres.fetchval(
        "SELECT extract(epoch FROM now() - min(updated_at)) / 86400 FROM post_view_backlog"
    )
    assert oldest < BACKLOG_MAX_AGE_DAYS


async def test_the_view_journal_empties_once_replayed(backends: Backends) -> None:
    views = [(u, 1 + u % 7) for u in range(1, REPLAY_CHUNK * TEN + 1)]
    await journal_views(backends.postgres, views)
    report = await JournalReplayer(store_of(backends), backends.postgres).replay()
    assert report.views == len(views) and report.batches == TEN
    assert await _count(backends, "view_journal") == 0


# --------------------------------------------------------------------------- Redis


async def test_a_dead_letter_queue_keeps_about_its_maxlen(backends: Backends) -> None:
    maxlen = 100  # the bound, scaled down (DLQ_MAXLEN is 100 000)
    keys = backends.keys
    inbound = RedisInboundStream(
        backends.redis,
        keys.stream(INSIGHTS_STREAM),
        keys.dlq(INSIGHTS_STREAM),
        "c",
        dlq_maxlen=maxlen,
    )
    stream = keys.stream(INSIGHTS_STREAM)
    await backends.redis.execute("XGROUP", "CREATE", stream, "backend-group", "0", "MKSTREAM")
    for _ in range(TEN):  # only entries delivered (pending) are dead-lettered
        await backends.redis.pipeline([("XADD", stream, "*", "f", "v")] * maxlen)
        reply = await backends.redis.execute(
            "XREADGROUP", "GROUP", "backend-group", "c", "COUNT", maxlen, "STREAMS", stream, ">"
        )
        ids = [i.decode() for i, _ in reply[0][1]]
        rejected = [Rejection(i, {b"f": b"v"}, "DecodeError", "bad", 1) for i in ids]
        await inbound.dead_letter_and_ack(rejected, [])
    size = int(await backends.redis.execute("XLEN", keys.dlq(INSIGHTS_STREAM)))
    assert maxlen <= size <= 2 * maxlen  # MAXLEN ~ trims whole nodes (100 entries each)


async def test_an_outbound_stream_and_its_marks_stay_bounded(backends: Backends) -> None:
    maxlen = 100
    keys = backends.keys
    announcer = RedisAnnouncer(backends.redis, keys, maxlen)
    rows = [Announcement(n, POST_IMAGE_STREAM, (("postId", str(n)),)) for n in range(maxlen * TEN)]
    await announcer.publish(rows)
    size = int(await backends.redis.execute("XLEN", keys.stream(POST_IMAGE_STREAM)))
    assert maxlen <= size <= 2 * maxlen
    marks = keys.outbox_marks(POST_IMAGE_STREAM)
    await announcer.forget(rows[: len(rows) // 2])  # deleted rows drop their marks
    assert int(await backends.redis.execute("ZCARD", marks)) == len(rows) // 2
    # Marks left by a relay that died before forgetting them: swept after MARK_RETENTION.
    now_ms = int(float(await backends.redis.execute("ZSCORE", marks, rows[-1].outbox_id)))
    retention_ms = int(MARK_RETENTION * 1000)
    old = {str(100_000 + n): now_ms - retention_ms * (1 + n % TEN) for n in range(1000)}
    await backends.redis.execute("ZADD", marks, *(x for k, v in old.items() for x in (v, k)))
    assert await announcer.sweep() == len(old)
    assert int(await backends.redis.execute("ZCARD", marks)) == len(rows) // 2


async def test_unknown_post_budget_keys_expire_within_two_hours(backends: Backends) -> None:
    budget = UnknownPostBudget(backends.postgres, backends.redis, backends.keys)
    start = 1_800_000_000.0
    for hour in range(2 * TEN):  # ten times the two hours a key lives
        await budget.admit(7, [(7, 10_000 + hour)], now=start + hour * 3600)
    keys = await backends.redis.execute("KEYS", backends.keys.unknown_post_views(0)[:-1] + "*")
    assert len(keys) == 2 * TEN
    ttls = [int(await backends.redis.execute("PTTL", k)) for k in keys]
    assert all(0 < ttl <= 2 * 3600 * 1000 for ttl in ttls)


async def test_console_sessions_keep_only_the_live_ones(backends: Backends) -> None:
    store = ConsoleStore(backends.redis, backends.keys)
    start = 1_800_000_000
    step = 600  # a sign-in every ten minutes, for ten lifetimes
    for n in range(TEN * LIFETIME // step):
        now = start + n * step
        await store.add(Session(f"s{n}", "admin", now + LIFETIME), now)
        size = int(await backends.redis.execute("HLEN", backends.keys.console_sessions))
        assert size <= LIFETIME // step + 1
    ttl = int(await backends.redis.execute("PTTL", backends.keys.console_sessions))
    assert 0 < ttl <= (LIFETIME + 60) * 1000


async def test_sign_in_failure_keys_expire(backends: Backends) -> None:
    store = ConsoleStore(backends.redis, backends.keys)
    for n in range(TEN * 20):  # ten times the failures that lock a client out
        await store.failed("192.0.2.1")
        await store.attempt("192.0.2.1", 1_800_000_000.0 + n * 60)
    for key in await backends.redis.execute("KEYS", "ops:signin*"):
        ttl = int(await backends.redis.execute("PTTL", key))
        assert 0 < ttl <= max(LOCK_SECONDS, FAILURE_WINDOW, 120) * 1000


# --------------------------------------------------------------------------- in the process


def test_the_known_posts_cache_holds_at_most_its_size() -> None:
    known = KnownPosts(size=1000)
    for n in range(TEN * 1000 // 100):
        known.add(range(n * 100, n * 100 + 100))
        assert len(known.ids) <= 1000 + 100


def test_directory_copies_are_forgotten_with_their_window() -> None:
    copies = Directories()
    for window in range(TEN * 2):
        for partition in range(64):
            copies.put(partition, window, b"x")
        copies.forget_before(window - 1)
        assert len(copies.copies) <= 2 * 64


def test_the_sync_log_keeps_its_size() -> None:
    log = SyncLog(size=20)
    for n in range(20 * TEN):
        log.record(SyncRun(at=float(n), result="success", seconds=0.1))
    assert len(log.runs()) == 20


def test_stream_metric_series_follow_the_groups_there_are() -> None:
    """A group created and deleted (names are the ML service's to choose) stops being a label
    set: /metrics holds the groups of now, not every group ever seen."""
    metrics = Metrics()
    # Only the per-stream recording runs: no Redis needed.
    reporter = MetricsReporter(None, KeyLayout(), metrics, trio.Event())  # type: ignore[arg-type]
    for n in range(TEN * 3):
        groups = tuple(
            GroupStatus(f"group-{n + k}", 1000, 1, None, ()) for k in range(3)
        )  # three at a time, a new one each round
        reporter._record_stream(StreamStatus(POST_IMAGE_STREAM, False, 10, 0, groups))
    series = [
        s for m in metrics.registry.collect() if m.name == "kaleido_stream_lag" for s in m.samples
    ]
    assert sorted(s.labels["group"] for s in series) == ["group-29", "group-30", "group-31"]
    assert len(reporter.alerts.active) <= 3


async def test_nearly_full_bucket_hints_stay_bounded(backends: Backends) -> None:
    """Hints of buckets about to split outlive their buckets; new users keep adding buckets."""
    hints = NearlyFull()
    reported = [(1, q, 4, a) for q in range(64) for a in range(NEARLY_FULL_HINTS * TEN // 64)]
    for start in range(0, len(reported), 1000):
        hints.add(reported[start : start + 1000])
        assert len(hints) <= NEARLY_FULL_HINTS + 1000
    # A store whose hints were forgotten still counts every view once and splits its buckets.
    store = store_of(backends)
    store._nearly_full = NearlyFull(size=1)
    flags, _ = await store.record([(u, 7) for u in range(1, 3001)])
    assert all(flags)
    flags, _ = await store.record([(u, 7) for u in range(1, 3001)])
    assert not any(flags)


@attrs.define
class _RedisDown:
    """The ingester's store while Redis refuses every call (`down`), then answers again."""

    store: ViewStore
    down: bool = True

    async def record(self, views: Sequence[tuple[int, int]]) -> tuple[list[bool], int]:
        if self.down:
            raise RedisUnavailable("redis: refused by the test")
        return await self.store.record(views)


async def test_the_view_journal_stops_at_its_bound_and_nothing_is_lost(
    backends: Backends,
) -> None:
    """A Redis outage longer than the journal absorbs: past `journal_max_rows` the views wait
    in the channel (backpressure) instead, and reach Redis once it answers."""
    bound, batch = 100, 20
    redis = _RedisDown(store_of(backends))
    send, receive = trio.open_memory_channel[Item](10_000)
    ingester = ViewIngester(
        redis,  # type: ignore[arg-type]  # only record() is called
        receive,
        Metrics(),
        journal=backends.postgres,
        max_batch=batch,
        journal_max_rows=bound,
        journal_size_every=0.0,
    )
    tracker = ViewTracker(send)
    views = [(u, 1 + u % 5) for u in range(1, bound * TEN + 1)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ingester.run)
        assert all(tracker.record(u, p) for u, p in views)

        async def journal_full() -> bool:
            return await _count(backends, "view_journal") >= bound

        await wait_until(journal_full)
        for _ in range(20):  # the ingester keeps retrying; the journal does not grow
            await trio.sleep(0.05)
            assert await _count(backends, "view_journal") <= bound + batch * IN_FLIGHT
        assert ingester.settled < len(views)
        redis.down = False
        tracker.close()
    report = await sync_of(backends).run_once()
    assert report.views == len(views) and report.journal_views > 0
    assert sum((await pg_view_counts(backends)).values()) == len(views)
