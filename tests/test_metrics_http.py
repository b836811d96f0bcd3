"""`GET /metrics` on the whole service: it parses with prometheus-client's own parser and
carries every metric operators rely on, with figures that match what happened."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kaleido.app import Running, service_of
from kaleido.messages import CONSUMER_GROUP, INBOUND_STREAMS, INSIGHTS_STREAM

from .service_helpers import client, ops_client
from .streams_helpers import dlq_len, xadd
from .views_helpers import create_posts
from .waiting import wait_until

pytestmark = pytest.mark.redis_kinds("single", "cluster")

TOKEN = {"Authorization": "Bearer test-admin-token-0123456789"}

# Family name (as the parser reports it) → a label set that must have a sample.
REQUIRED: dict[str, list[dict[str, str]]] = {
    "kaleido_redis_memory_used_bytes": [{}],
    "kaleido_redis_memory_max_bytes": [{}],
    "kaleido_redis_memory_ratio": [{}],
    "kaleido_redis_evicted_keys": [{}],
    "kaleido_redis_keyspace_lookups": [{"result": "hit"}, {"result": "miss"}],
    "kaleido_pending_views": [{}],
    "kaleido_stream_lag": [{"stream": s, "group": CONSUMER_GROUP} for s in INBOUND_STREAMS],
    "kaleido_stream_pending": [{"stream": s, "group": CONSUMER_GROUP} for s in INBOUND_STREAMS],
    "kaleido_stream_oldest_pending_age_seconds": [
        {"stream": s, "group": CONSUMER_GROUP} for s in INBOUND_STREAMS
    ],
    "kaleido_stream_idle_consumers": [
        {"stream": s, "group": CONSUMER_GROUP} for s in INBOUND_STREAMS
    ],
    "kaleido_dlq_size": [{"stream": s} for s in INBOUND_STREAMS],
    "kaleido_views": [{"outcome": o} for o in ("counted", "duplicate", "rejected")],
    "kaleido_sync_runs": [{"result": r} for r in ("success", "failure")],
    "kaleido_sync_duration_seconds": [{}],
    "kaleido_seconds_since_last_good_sync": [{}],
    "kaleido_last_sync_success_timestamp_seconds": [{}],
    "kaleido_view_total_reads": [{"result": "hit"}, {"result": "miss"}],
    "kaleido_stream_entries": [
        {"stream": s, "outcome": o}
        for s in INBOUND_STREAMS
        for o in ("applied", "retried", "dead_lettered")
    ],
    "kaleido_breaker_state": [
        {"breaker": b, "state": st}
        for b in ("redis", "postgres")
        for st in ("closed", "open", "half_open")
    ],
}


async def scrape(running: Running) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, keyed by (sample name, labels)."""
    async with ops_client(running) as http:
        r = await http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    families = {}
    for family in text_string_to_metric_families(r.text):
        families[family.name] = family
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    missing = []
    for name, label_sets in REQUIRED.items():
        required = families.get(name)
        if required is None:
            missing.append(name)
            continue
        for labels in label_sets:
            if not any(set(labels.items()) <= set(s.labels.items()) for s in required.samples):
                missing.append(f"{name}{labels}")
    assert not missing, missing
    return out


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    return samples[(name, frozenset(labels.items()))]


async def test_metrics_parse_and_carry_every_figure(running: Running) -> None:
    backends = service_of(running).backends
    await create_posts(backends, 7)
    await xadd(backends, INSIGHTS_STREAM, {"service": "tagging"})  # undecodable → DLQ
    async with client(running) as http:
        views = [{"userId": 1, "postId": 7}, {"userId": 1, "postId": 7}, {"userId": 2, "postId": 7}]
        assert (await http.post("/v1/views", json=views)).status_code == 202
        assert (await http.get("/v1/posts/7/views")).json()["views"] == 2  # buffered: a hit
        async with ops_client(running) as ops:
            assert (await ops.post("/v1/admin/sync", headers=TOKEN)).status_code == 200
        assert (await http.get("/v1/posts/7/views")).json()["views"] == 2  # synced: a miss

    async def dead_lettered() -> bool:
        return await dlq_len(backends, INSIGHTS_STREAM) == 1

    await wait_until(dead_lettered)
    reporter = service_of(running).reporter
    assert reporter is not None
    assert await reporter.sample_once()
    samples = await scrape(running)

    assert value(samples, "kaleido_views_total", outcome="counted") == 2
    assert value(samples, "kaleido_views_total", outcome="duplicate") == 1
    assert value(samples, "kaleido_views_total", outcome="rejected") == 0
    assert value(samples, "kaleido_sync_runs_total", result="success") >= 1
    assert value(samples, "kaleido_sync_duration_seconds_count") >= 1
    assert value(samples, "kaleido_seconds_since_last_good_sync") < 60
    assert value(samples, "kaleido_view_total_reads_total", result="hit") == 1
    assert value(samples, "kaleido_view_total_reads_total", result="miss") == 1
    assert value(samples, "kaleido_dlq_size", stream=INSIGHTS_STREAM) == 1
    assert (
        value(samples, "kaleido_stream_entries_total", stream=INSIGHTS_STREAM,
              outcome="dead_lettered") == 1
    )  # fmt: skip
    masters = len(await backends.redis.master_names())  # each with redis.conf's 200 MB
    assert value(samples, "kaleido_redis_memory_max_bytes") == masters * 200 * 1024 * 1024
    assert value(samples, "kaleido_redis_memory_used_bytes") > 0
    assert value(samples, "kaleido_breaker_state", breaker="redis", state="closed") == 1
    assert value(samples, "kaleido_breaker_state", breaker="postgres", state="open") == 0
    assert value(samples, "kaleido_pending_views") == 0  # synced
