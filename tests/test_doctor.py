"""`kaleido doctor` as a real process against the test stack (which runs the repo's
redis.conf): clean on the shipped set-up, exit 1 naming the problem otherwise."""

from __future__ import annotations

import json

import trio

from kaleido.gateways import Backends
from kaleido.messages import CONSUMER_GROUP, INBOUND_STREAMS, dlq_stream
from kaleido.migrate import available_migrations
from kaleido.ops.doctor import Level, check_streams
from kaleido.ops.streams import ConsumerStatus, GroupStatus, StreamStatus
from kaleido.settings import Settings

from .cli_helpers import assert_no_traceback, kaleido, output
from .conftest import with_settings
from .views_helpers import store_of

FAST = ("--dlq-interval", "0.2")


async def shipped_state(backends: Backends) -> None:
    """A healthy deployment's keys: dedup flags, counters pending sync, consumer groups."""
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
    assert "WARNING  persistence: no persistence" in text
    assert "doctor: no problems" in text
    assert "OK       schema: version" in text
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
    assert "doctor: problems found (1 problem," in text


async def test_a_growing_dlq_is_a_problem(settings: Settings, backends: Backends) -> None:
    await shipped_state(backends)
    stream = INBOUND_STREAMS[1]
    dlq_key = backends.keys.stream(dlq_stream(stream))
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
    dlq_key = backends.keys.stream(dlq_stream(INBOUND_STREAMS[0]))
    await backends.redis.execute("XADD", dlq_key, "*", "error", "bad", "originalId", "1-1")
    result = await kaleido(settings, "doctor", *FAST, "--json")
    assert result.returncode == 0, output(result)
    findings = json.loads(output(result))["findings"]
    (dlq,) = [f for f in findings if f["check"] == f"dlq {INBOUND_STREAMS[0]}"]
    assert dlq["level"] == "warning" and dlq["message"] == "1 dead letters (not growing)"


async def test_lost_ttls_and_orphan_counters_are_problems(
    settings: Settings, backends: Backends
) -> None:
    await shipped_state(backends)
    redis, keys = backends.redis, backends.keys
    await redis.execute("SET", keys.user_view(7, 70), "1")  # a dedup flag with no TTL
    await redis.execute("SET", keys.post_views(71), "4")  # a counter no sync will find
    result = await kaleido(settings, "doctor", *FAST)
    text = output(result)
    assert result.returncode == 1, text
    assert "PROBLEM  key TTLs: 1 of 4 sampled user:view:* dedup flags have no TTL" in text
    assert "PROBLEM  view counters: 1 post:views:* counters are not in pending:views" in text
    assert "(posts 71)" in text


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
