"""The metrics reporter against a real Redis: one sample fills the gauges, and threshold
alerts are logged once when a condition starts and once when it clears."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from structlog.testing import capture_logs

from actors.metrics_reporter import MetricsReporter
from kaleido.gateways import Backends, open_backends
from kaleido.messages import CONSUMER_GROUP, INSIGHTS_STREAM
from kaleido.metrics import Metrics
from kaleido.settings import Settings
from kaleido.views.legacy import LegacyKeys
from kaleido.views.store import mark_synced

from .conftest import with_settings
from .waiting import wait_until

pytestmark = pytest.mark.redis_kinds("single", "cluster")


def reporter_of(backends: Backends, **options: Any) -> MetricsReporter:
    breakers = [b for b in (backends.redis.breaker, backends.postgres.breaker) if b]
    return MetricsReporter(
        backends.redis, backends.keys, Metrics(), trio.Event(), breakers=breakers, **options
    )


def gauge(reporter: MetricsReporter, name: str, **labels: str) -> float | None:
    return reporter.metrics.registry.get_sample_value(name, labels)


def alert_events(
    logs: Sequence[MutableMapping[str, Any]], event: str, alert: str
) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == event and e.get("alert") == alert]


async def test_one_sample_fills_the_gauges(backends: Backends) -> None:
    redis, keys = backends.redis, backends.keys
    stream = keys.stream(INSIGHTS_STREAM)
    # Posts with unsynced views in two partitions, and one left by a v1 layout being taken over.
    await redis.execute("HSET", keys.counts(0), "64", "1", "128", "2")
    await redis.execute("HSET", keys.counts(5), "5", "4")
    await redis.execute("SADD", LegacyKeys(keys.prefix).pending, "9")
    seconds, _ = await redis.execute("TIME")
    old_ms = (int(seconds) - 60) * 1000  # an entry added a minute ago (ids carry their time)
    await redis.execute("XADD", stream, f"{old_ms}-0", "f", "1")
    await redis.execute("XADD", stream, "*", "f", "2")
    await redis.execute("XADD", stream, "*", "f", "3")
    await redis.execute("XGROUP", "CREATE", stream, CONSUMER_GROUP, "0")
    await redis.execute(
        "XREADGROUP", "GROUP", CONSUMER_GROUP, "c1", "COUNT", 2, "STREAMS", stream, ">"
    )
    for _ in range(2):
        await redis.execute("XADD", keys.dlq(INSIGHTS_STREAM), "*", "f", "x")
    rejected = [5]
    reporter = reporter_of(backends, idle_limit=0.05, rejected_views=lambda: rejected[0])

    assert await reporter.sample_once()
    labels = {"stream": INSIGHTS_STREAM, "group": CONSUMER_GROUP}
    assert gauge(reporter, "kaleido_pending_views") == 4
    assert gauge(reporter, "kaleido_stream_length", stream=INSIGHTS_STREAM) == 3
    assert gauge(reporter, "kaleido_stream_lag", **labels) == 1
    assert gauge(reporter, "kaleido_stream_pending", **labels) == 2
    age = gauge(reporter, "kaleido_stream_oldest_pending_age_seconds", **labels)
    assert age is not None and 59 <= age < 120
    assert gauge(reporter, "kaleido_dlq_size", stream=INSIGHTS_STREAM) == 2
    masters = len(await redis.master_names())  # each with redis.conf's 200 MB
    limit = masters * 200 * 1024 * 1024
    assert gauge(reporter, "kaleido_redis_memory_max_bytes") == limit
    used = gauge(reporter, "kaleido_redis_memory_used_bytes")
    ratio = gauge(reporter, "kaleido_redis_memory_ratio")  # of the fullest master
    assert used and ratio
    assert used / limit - 1e-9 <= ratio <= used / (limit / masters) + 1e-9
    nodes = await redis.master_names()  # one series per master ("redis" for a single one)
    per_node = [gauge(reporter, "kaleido_redis_node_memory_used_bytes", node=n or "redis")
                for n in nodes]  # fmt: skip
    assert all(per_node) and sum(v for v in per_node if v) == pytest.approx(used, rel=0.05)
    for n in nodes:
        node_max = gauge(reporter, "kaleido_redis_node_memory_max_bytes", node=n or "redis")
        assert node_max == 200 * 1024 * 1024
    assert gauge(reporter, "kaleido_breaker_state", breaker="redis", state="closed") == 1
    assert gauge(reporter, "kaleido_breaker_state", breaker="redis", state="open") == 0
    assert gauge(reporter, "kaleido_views_total", outcome="rejected") == 5
    assert gauge(reporter, "kaleido_metrics_samples_total", result="ok") == 1
    rejected[0] = 7
    await reporter.sample_once()
    assert gauge(reporter, "kaleido_views_total", outcome="rejected") == 7  # mirrored, not summed

    async def consumer_idle() -> bool:  # c1 reads nothing more, so it becomes idle
        await reporter.sample_once()
        return gauge(reporter, "kaleido_stream_idle_consumers", **labels) == 1

    await wait_until(consumer_idle)
    assert f"idle_consumers:{INSIGHTS_STREAM}:{CONSUMER_GROUP}" in reporter.alerts.active


@pytest.mark.redis_kinds("single")  # one node's maxmemory
async def test_memory_alert_is_raised_once_and_cleared(backends: Backends) -> None:
    redis = backends.redis
    reply = await redis.execute("CONFIG", "GET", "maxmemory")
    original = reply[b"maxmemory"]
    reporter = reporter_of(backends)
    with capture_logs() as logs:
        try:
            used = int((await redis.execute("INFO", "memory"))["used_memory"])
            await redis.execute("CONFIG", "SET", "maxmemory", int(used / 0.9))
            for _ in range(3):
                assert await reporter.sample_once()
            assert "redis_memory" in reporter.alerts.active
            ratio = gauge(reporter, "kaleido_redis_memory_ratio")
            assert ratio is not None and ratio > 0.8
        finally:
            await redis.execute("CONFIG", "SET", "maxmemory", original)
        assert len(alert_events(logs, "alert.raised", "redis_memory")) == 1
        raised = alert_events(logs, "alert.raised", "redis_memory")[0]
        assert raised["log_level"] == "warning" and raised["maxmemory"] == int(used / 0.9)
        assert await reporter.sample_once()
        assert len(alert_events(logs, "alert.cleared", "redis_memory")) == 1
    assert "redis_memory" not in reporter.alerts.active


async def test_a_growing_dlq_raises_an_alert(backends: Backends) -> None:
    dlq_key = backends.keys.dlq(INSIGHTS_STREAM)
    reporter = reporter_of(backends)
    name = f"dlq_growing:{INSIGHTS_STREAM}"
    with capture_logs() as logs:
        assert await reporter.sample_once()
        assert name not in reporter.alerts.active
        await backends.redis.execute("XADD", dlq_key, "*", "f", "x")
        assert await reporter.sample_once()
        assert name in reporter.alerts.active
        await backends.redis.execute("XADD", dlq_key, "*", "f", "y")
        assert await reporter.sample_once()  # still growing: no second warning
        assert await reporter.sample_once()  # stable at 2: no longer growing
    assert [e["size"] for e in alert_events(logs, "alert.raised", name)] == [1]
    assert len(alert_events(logs, "alert.cleared", name)) == 1
    assert gauge(reporter, "kaleido_dlq_size", stream=INSIGHTS_STREAM) == 2


async def test_a_stale_sync_raises_an_alert_until_a_sync_succeeds(backends: Backends) -> None:
    reporter = reporter_of(backends, sync_interval=0.01)

    async def stale() -> bool:
        await reporter.sample_once()
        return "sync_stale" in reporter.alerts.active

    await wait_until(stale)
    age = gauge(reporter, "kaleido_seconds_since_last_good_sync")
    assert age is not None and age > 0.03
    reporter.metrics.last_sync_success.set(time.time())
    await reporter.sample_once()
    assert "sync_stale" not in reporter.alerts.active


async def test_a_sync_by_another_process_is_not_stale(backends: Backends) -> None:
    """With several workers (or machines) the lock holder syncs: the others see its syncs."""
    # Stale after 3 intervals (6 s): far from the sampling's own duration on a busy machine.
    reporter = reporter_of(backends, sync_interval=2.0)
    await mark_synced(backends.redis, backends.keys, time.time() - 100)  # a long time ago

    async def stale() -> bool:
        await reporter.sample_once()
        return "sync_stale" in reporter.alerts.active

    await wait_until(stale)
    await mark_synced(backends.redis, backends.keys, time.time())  # as another worker's sync does
    await reporter.sample_once()  # reads it
    await reporter.sample_once()  # uses it
    assert "sync_stale" not in reporter.alerts.active
    age = gauge(reporter, "kaleido_seconds_since_last_good_sync")
    assert age is not None and age < 5


async def test_lag_over_the_limit_raises_an_alert_until_it_is_read(backends: Backends) -> None:
    redis, stream = backends.redis, backends.keys.stream(INSIGHTS_STREAM)
    await redis.execute("XGROUP", "CREATE", stream, CONSUMER_GROUP, "$", "MKSTREAM")
    for n in range(3):
        await redis.execute("XADD", stream, "*", "f", str(n))
    reporter = reporter_of(backends, lag_limit=2)
    name = f"stream_lag:{INSIGHTS_STREAM}:{CONSUMER_GROUP}"
    with capture_logs() as logs:
        assert await reporter.sample_once()
        assert name in reporter.alerts.active
        await redis.execute("XREADGROUP", "GROUP", CONSUMER_GROUP, "c1", "STREAMS", stream, ">")
        assert await reporter.sample_once()
    assert [e["lag"] for e in alert_events(logs, "alert.raised", name)] == [3]
    assert len(alert_events(logs, "alert.cleared", name)) == 1


async def test_failing_syncs_raise_an_alert_until_one_succeeds(backends: Backends) -> None:
    reporter = reporter_of(backends)
    runs = reporter.metrics.sync_runs
    with capture_logs() as logs:
        assert await reporter.sample_once()
        runs.labels("failure").inc()
        assert await reporter.sample_once()
        assert "sync_failing" in reporter.alerts.active
        runs.labels("success").inc()
        reporter.metrics.last_sync_success.set(time.time())
        assert await reporter.sample_once()
        assert "sync_failing" not in reporter.alerts.active
    assert len(alert_events(logs, "alert.raised", "sync_failing")) == 1
    assert len(alert_events(logs, "alert.cleared", "sync_failing")) == 1


@asynccontextmanager
async def unreachable_redis(settings: Settings) -> AsyncIterator[Backends]:
    # Port 1 is reserved and closed: every connection is refused at once.
    async with open_backends(with_settings(settings, redis_url="redis://127.0.0.1:1/0")) as b:
        yield b


async def test_redis_down_is_a_counted_failed_sample(settings: Settings) -> None:
    async with unreachable_redis(settings) as backends:
        reporter = reporter_of(backends)
        with capture_logs() as logs:
            assert not await reporter.sample_once()
            assert not await reporter.sample_once()
        assert gauge(reporter, "kaleido_metrics_samples_total", result="failure") == 2
        assert gauge(reporter, "kaleido_redis_memory_used_bytes") == 0  # never sampled
        assert len(alert_events(logs, "alert.raised", "redis_unsampled")) == 1
