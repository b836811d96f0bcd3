"""`kaleido doctor` as a real process against the test stack (which runs the repo's
redis.conf): clean on the shipped set-up, exit 1 naming the problem otherwise."""

from __future__ import annotations

import json
import re

import pytest
import trio

from kaleido.gateways import Backends
from kaleido.messages import CONSUMER_GROUP, INBOUND_STREAMS
from kaleido.migrate import available_migrations
from kaleido.ops.doctor import (
    BacklogFacts,
    Level,
    Measure,
    check_backlog,
    check_growth,
    check_outbox,
    check_scripts,
    check_streams,
)
from kaleido.ops.streams import ConsumerStatus, GroupStatus, StreamStatus
from kaleido.outbox import Backlog
from kaleido.settings import Settings

from .cli_helpers import assert_no_traceback, kaleido, output
from .conftest import with_settings
from .views_helpers import all_keys, store_of
from .waiting import wait_until

FAST = ("--dlq-interval", "0.2")


async def shipped_state(backends: Backends) -> None:
    """A healthy deployment's keys: dedup buckets, counters pending sync, consumer groups."""
    store = store_of(backends)
    await store.record([(1, 10), (2, 10), (3, 11)])
    for stream in INBOUND_STREAMS:
        key = backends.keys.stream(stream)
        await backends.redis.execute("XGROUP", "CREATE", key, CONSUMER_GROUP, "0", "MKSTREAM")


async def test_the_shipped_set_up_is_healthy(settings: Settings, backends: Backends) -> None:
    await shipped_state(backends)
    result = await kaleido(settings, "doctor", *FAST)
    text = output(result)
    assert result.returncode == 0, text + result.stderr.decode()
    assert "PROBLEM" not in text
    assert "volatile-lru" in text and "200.0 MB" in text
    # The shipped redis.conf has no persistence: reported, as a warning.
    assert "WARNING  persistence: no persistence seen (appendonly no, no RDB snapshot" in text
    # Kaleido's Redis user reads no CONFIG: what that leaves unchecked is said.
    assert "OK       not checked: Kaleido's Redis user may not read CONFIG, so the RDB" in text
    assert "OK       scripts: function library version" in text
    assert "doctor: no problems" in text
    assert "OK       schema: version" in text
    buckets = await bucket_count(backends)
    assert f"OK       dedup memory: {buckets} sampled dedup buckets, all in listpack" in text
    assert "view counters" not in text  # drained (or fresh) counters are not reported
    assert_no_traceback(result)


async def test_allkeys_lru_is_a_problem(settings: Settings, backends: Backends) -> None:
    await shipped_state(backends)
    redis = backends.redis
    try:
        await redis.execute("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        result = await kaleido(settings, "doctor", *FAST)
    finally:
        await redis.execute("CONFIG", "SET", "maxmemory-policy", "volatile-lru")
    text = output(result)
    assert result.returncode == 1, text
    assert "PROBLEM  eviction policy: maxmemory-policy is allkeys-lru" in text
    assert "volatile-lru" in text  # the hint says what to set
    assert "unsynced view counters (view:{q}:counts)" in text
    assert "doctor: problems found (1 problem," in text


async def test_a_growing_dlq_is_a_problem(settings: Settings, backends: Backends) -> None:
    await shipped_state(backends)
    stream = INBOUND_STREAMS[1]
    dlq_key = backends.keys.dlq(stream)
    done = trio.Event()

    async def failing_entries() -> None:
        # Dead letters keep arriving while doctor runs (as when the ML service sends bad data).
        while not done.is_set():
            await backends.redis.execute("XADD", dlq_key, "*", "error", "bad", "originalId", "1-1")
            with trio.move_on_after(0.02):
                await done.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(failing_entries)
        result = await kaleido(settings, "doctor", "--dlq-interval", "1")
        done.set()
    text = output(result)
    assert result.returncode == 1, text
    assert f"PROBLEM  dlq {stream}: dead-letter queue is growing" in text
    assert f"kaleido dlq list {stream}" in text


async def test_an_old_dlq_is_a_warning(settings: Settings, backends: Backends) -> None:
    await shipped_state(backends)
    dlq_key = backends.keys.dlq(INBOUND_STREAMS[0])
    await backends.redis.execute("XADD", dlq_key, "*", "error", "bad", "originalId", "1-1")
    result = await kaleido(settings, "doctor", *FAST, "--json")
    assert result.returncode == 0, output(result)
    findings = json.loads(output(result))["findings"]
    (dlq,) = [f for f in findings if f["check"] == f"dlq {INBOUND_STREAMS[0]}"]
    assert dlq["level"] == "warning" and dlq["message"] == "1 dead letters (not growing)"


async def bucket_count(backends: Backends) -> int:
    return len(await all_keys(backends, backends.keys.seen_pattern()))


async def test_lost_ttls_are_problems_and_converted_buckets_a_warning(
    settings: Settings, backends: Backends
) -> None:
    await shipped_state(backends)
    redis, keys = backends.redis, backends.keys
    # A dedup bucket without a TTL (of a long gone window).
    await redis.execute("HSET", keys.seen_bucket(3, 1, 0), b"\x01\x00", 7)
    # A bucket grown past hash-max-listpack-entries (512): Redis made it a hashtable.
    converted = keys.seen_bucket(3, 2, 0)
    fields = [x for i in range(600) for x in (i.to_bytes(2, "little"), 1)]
    await redis.execute("HSET", converted, *fields)
    await redis.execute("EXPIRE", converted, 3600)
    assert await redis.execute("OBJECT", "ENCODING", converted) == b"hashtable"
    # Unsynced counters that volatile-lru could evict.
    counts = keys.counts(keys.partition_of(11))
    await redis.execute("EXPIRE", counts, 3600)
    buckets = await bucket_count(backends)
    result = await kaleido(settings, "doctor", *FAST)
    text = output(result)
    assert result.returncode == 1, text
    assert (
        f"PROBLEM  key TTLs: 1 of {buckets} sampled dedup buckets (view:{{q}}:seen:*) have no TTL"
        in text
    )
    assert f"PROBLEM  key TTLs: 1 sampled keys that must never expire have a TTL ({counts})" in text
    assert (
        f"WARNING  dedup memory: 1 of {buckets} sampled dedup buckets left listpack encoding "
        "(up to 600 fields): memory per view multiplies" in text
    )
    assert "keep hash-max-listpack-entries above 600 (512 in the shipped redis.conf" in text
    assert "doctor: problems found (2 problems," in text


async def test_a_lowered_listpack_limit_is_named(settings: Settings, backends: Backends) -> None:
    await shipped_state(backends)
    redis = backends.redis
    try:
        # Buckets that grow while the limit is low leave listpack encoding for good.
        await redis.execute("CONFIG", "SET", "hash-max-listpack-entries", "1")
        await store_of(backends).record([(1, 20), (17, 20)])  # two users, one bucket
    finally:
        await redis.execute("CONFIG", "SET", "hash-max-listpack-entries", "512")
    buckets = await bucket_count(backends)
    result = await kaleido(settings, "doctor", *FAST)
    text = output(result)
    assert result.returncode == 0, text
    assert (
        f"WARNING  dedup memory: 1 of {buckets} sampled dedup buckets left listpack encoding "
        "(up to 2 fields)" in text
    )
    assert "it was lower when they grew" in text


async def test_counters_no_sync_drains_are_a_warning(
    settings: Settings, backends: Backends
) -> None:
    await shipped_state(backends)  # counters in partitions 10 and 11
    redis, keys = backends.redis, backends.keys

    async def idle() -> bool:  # OBJECT IDLETIME counts whole seconds and touches nothing
        replies = [await redis.execute("OBJECT", "IDLETIME", keys.counts(q)) for q in (10, 11)]
        return all(r is not None and r >= 1 for r in replies)

    await wait_until(idle, timeout=5)
    # Syncs every 0.2 s: a counts hash untouched for over 0.6 s is not being drained.
    result = await kaleido(settings, "doctor", *FAST, "--sync-interval", "0.2")
    text = output(result)
    assert result.returncode == 0, text
    assert (
        "WARNING  view counters: the counts hashes (view:{q}:counts) of 2 partitions "
        "(q = 10, 11) untouched for over 0.6 s: syncs are not draining them" in text
    )
    assert "kaleido sync" in text


def test_idle_consumers_holding_entries_are_a_problem() -> None:
    # Redis cannot be told that a consumer has been idle for an hour: the rule, on facts.
    def status(*consumers: ConsumerStatus, inbound: bool = True) -> StreamStatus:
        group = GroupStatus(CONSUMER_GROUP, 0, sum(c.pending for c in consumers), 5.0, consumers)
        return StreamStatus(INBOUND_STREAMS[0], inbound, 3, 0, (group,))

    busy = ConsumerStatus("media-ai-consumer", 2, 0.5)
    gone = ConsumerStatus("media-ai-consumer-old", 1, 3600.0)
    stale = ConsumerStatus("media-ai-consumer-w9", 0, 3600.0)
    assert [f.level for f in check_streams([status(busy)])] == [Level.OK]
    (problem,) = check_streams([status(busy, gone)])
    assert problem.level is Level.PROBLEM and "media-ai-consumer-old (1 pending)" in problem.message
    (warning,) = check_streams([status(busy, stale)])
    assert warning.level is Level.WARNING and "XGROUP DELCONSUMER" in warning.hint
    # Outbound groups belong to the ML service: worth a warning, not a failing doctor.
    assert [f.level for f in check_streams([status(gone, inbound=False)])] == [Level.WARNING]


async def test_an_unmigrated_schema_is_a_problem(settings: Settings, backends: Backends) -> None:
    await shipped_state(backends)
    latest = available_migrations()[-1]
    postgres = backends.postgres
    await postgres.execute("DELETE FROM schema_migrations WHERE version = $1", latest.version)
    try:
        result = await kaleido(settings, "doctor", *FAST)
    finally:
        await postgres.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            latest.version,
            latest.name,
        )
    text = output(result)
    assert result.returncode == 1, text
    assert f"this Kaleido needs {latest.version}" in text


async def test_unreachable_redis_is_a_problem_not_a_traceback(settings: Settings) -> None:
    down = with_settings(settings, redis_url="redis://127.0.0.1:1/0")
    result = await kaleido(down, "doctor", *FAST)
    text = output(result)
    assert result.returncode == 1, text
    assert "PROBLEM  Redis: cannot reach Redis" in text
    assert "OK       schema" in text  # PostgreSQL is still checked
    assert_no_traceback(result)


async def test_doctor_needs_the_deployment_urls() -> None:
    result = await kaleido(None, "doctor")
    assert result.returncode == 2
    assert b"kaleido doctor: set KALEIDO_REDIS_URL and KALEIDO_DATABASE_URL" in result.stderr
    assert_no_traceback(result)
    bad = await kaleido(None, "doctor", "--dlq-interval", "soon")
    assert bad.returncode == 2 and b"expected a number of seconds, got 'soon'" in bad.stderr


@pytest.mark.redis_kinds("cluster")
async def test_doctor_checks_every_master_of_a_cluster(
    settings: Settings, backends: Backends
) -> None:
    await shipped_state(backends)
    result = await kaleido(settings, "doctor", *FAST)
    text = output(result)
    assert result.returncode == 0, text + result.stderr.decode()
    masters = await backends.redis.master_names()
    assert len(masters) == 3
    for node in masters:  # memory, policy and persistence, each named by its node
        assert f"maxmemory: {node}: " in text and f"eviction policy: {node}: " in text, text
    buckets = await bucket_count(backends)
    assert f"OK       dedup memory: {buckets} sampled dedup buckets, all in listpack" in text
    assert_no_traceback(result)


def test_views_waiting_for_posts_are_reported_and_warned_before_they_go() -> None:
    [none] = check_backlog(BacklogFacts(0, 0, None))
    assert none.level is Level.OK
    [some] = check_backlog(BacklogFacts(12, 40, 0.5))
    assert some.level is Level.OK and "12 posts without a row hold 40 synced views" in some.message
    [old] = check_backlog(BacklogFacts(12, 40, 6.5))  # dropped at 7 days
    [many] = check_backlog(BacklogFacts(90_000, 400_000, 0.1))  # beyond 100 000 posts
    assert old.level is Level.WARNING and many.level is Level.WARNING
    assert "post ids" in old.hint


def test_how_scripts_run_is_judged() -> None:
    (ok,) = check_scripts("functions", None, "v1")
    assert ok.level is Level.OK and "version v1 on every master" in ok.message
    (missing,) = check_scripts("functions", "Redis has no function library 'kaleido'", "v1")
    assert missing.level is Level.PROBLEM and missing.message.startswith("Redis has no function")
    (weaker,) = check_scripts("eval", None, "v1")
    assert weaker.level is Level.WARNING and "the weaker mode" in weaker.message
    assert "may load and run any Lua" in weaker.message


def test_announcements_waiting_too_long_are_a_problem() -> None:
    [empty] = check_outbox(Backlog(0, None, 0.0))
    assert empty.level is Level.OK and empty.message == "nothing waiting"
    [fresh] = check_outbox(Backlog(3, 10, 0.4))
    assert fresh.level is Level.OK and "3 announcements waiting" in fresh.message
    [old] = check_outbox(Backlog(3, 10, 600.0))
    assert old.level is Level.PROBLEM and "Redis" in old.hint


async def test_the_doctor_reports_the_outbox(settings: Settings, backends: Backends) -> None:
    await shipped_state(backends)
    await backends.postgres.execute(
        "INSERT INTO outbox (stream, fields, created_at)"
        " VALUES ('es-sync-queue', '{a,b}', now() - interval '10 minutes')"
    )
    result = await kaleido(settings, "doctor", *FAST)
    text = output(result)
    assert result.returncode == 1
    assert re.search(r"PROBLEM  outbox: 1 announcements waiting, oldest 6\d\d s", text), text


def test_growth_past_a_bound_is_a_warning_naming_what_enforces_it() -> None:
    within, past, capped = check_growth(
        [
            Measure("view_sync_batches", 2.5, 8, "days old", "is a syncer running?", "12 rows"),
            Measure("view_journal", 2_000_000, 1_000_000, "rows", "replayed at the next sync"),
            Measure("processed_messages", 1_000_000, 2_000_000, "rows", capped=True),
        ]
    )
    assert within.level is Level.OK and within.check == "growth view_sync_batches"
    assert within.message == "2.5 days old of 8 days old at most (12 rows)" and not within.hint
    assert past.level is Level.WARNING and past.hint == "replayed at the next sync"
    assert past.message == "2,000,000 rows of 1,000,000 rows at most"
    assert capped.message.startswith("over 1,000,000 rows")


async def test_the_doctor_reports_sizes_against_their_bounds(
    settings: Settings, backends: Backends
) -> None:
    await shipped_state(backends)
    # Sync batch ids a month old: the syncs that prune them have not run.
    await backends.postgres.execute(
        "INSERT INTO view_sync_batches (batch_id, posts, views, applied_at) "
        "SELECT gen_random_uuid(), 1, 1, now() - interval '30 days' FROM generate_series(1, 3)"
    )
    result = await kaleido(settings, "doctor", *FAST)
    text = output(result)
    assert (
        "WARNING  growth view_sync_batches: 30 days old of 8 days old at most (3 rows)" in text
    ), text
    assert "is a syncer running?" in text
    assert "OK       growth view_journal: 0 rows of 1,000,000 rows at most" in text
    assert "OK       growth processed_messages: 0 days old" in text
    assert re.search(r"OK       growth ml-insights-results:dlq: 0 dead letters of 100,100", text)
    assert re.search(r"OK       growth post-image-processing: 0 entries of 10,100 entries", text)
    assert "OK       growth console sessions: 0 hours to live" in text
    assert "OK       growth journal replay markers: 0 markers" in text
    assert result.returncode == 0  # a warning: nothing is lost yet
