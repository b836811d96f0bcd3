"""The process's own counters, as prometheus-client metrics in one private registry.

Under `kaleido run --workers N` each worker writes its values into the folder named by
`PROMETHEUS_MULTIPROC_DIR` (prometheus-client's multiprocess mode) and `exposition()` merges
every worker's: counters add up; each gauge says how (`multiprocess_mode`): sampled facts of the
shared Redis take the most recent sample, a worker's own state the live workers' maximum.
A single process also exports prometheus-client's `process_*` metrics (resident memory, CPU,
open files); merged workers do not: whichever worker answered the scrape would speak for all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from glob import glob
from pathlib import Path
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from kaleido.messages import CONSUMER_NAMES, OUTBOUND_STREAMS

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Gauges sampled from the shared Redis: every worker samples the same thing.
SHARED: Final = "mostrecent"


def exposition(metrics: Metrics) -> bytes:
    """The text exposition: this process's registry, or every worker's values merged."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return generate_latest(metrics.registry)
    merged = CollectorRegistry()
    MultiProcessCollector(merged, folder)  # type: ignore[no-untyped-call]
    return generate_latest(merged)


def views_by_outcome(metrics: Metrics) -> dict[str, float]:
    """`kaleido_views_total` by outcome: this process's, or every worker's summed (reading only
    the counters' files: this runs at every reporter tick)."""
    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        files = glob(os.path.join(folder, "counter_*.db"))
        families = MultiProcessCollector.merge(files)  # type: ignore[no-untyped-call]
    else:
        families = metrics.views.collect()
    totals: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name == "kaleido_views_total":
                outcome = sample.labels["outcome"]
                totals[outcome] = totals.get(outcome, 0.0) + sample.value
    return totals


def mark_worker_dead(folder: Path, pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay: totals must not go down)."""
    mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]


class Metrics:
    """Every metric Kaleido exports; one instance per process (tests make their own)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)  # process_resident_memory_bytes and the like (Linux /proc)
        self.views = Counter(
            "kaleido_views", "Views by outcome", ["outcome"], registry=r
        )  # counted, duplicate, rejected, fallback
        self.ingest_batches = Counter(
            "kaleido_ingest_batches", "Batches applied to Redis by the ingester", registry=r
        )
        self.ingest_batch_size = Histogram(
            "kaleido_ingest_batch_size",
            "Views per ingest batch",
            buckets=(1, 10, 100, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.sync_runs = Counter("kaleido_sync_runs", "Sync runs by result", ["result"], registry=r)
        self.unknown_post_backlog = Gauge(
            "kaleido_unknown_post_backlog",
            "Posts without a row whose synced views wait in post_view_backlog (after a sync)",
            multiprocess_mode=SHARED,
            registry=r,
        )
        self.sync_duration = Histogram(
            "kaleido_sync_duration_seconds", "Duration of successful syncs", registry=r
        )
        self.synced_views = Counter(
            "kaleido_synced_views", "Views written to PostgreSQL", registry=r
        )
        self.last_sync_success = Gauge(
            "kaleido_last_sync_success_timestamp_seconds",
            "Unix time of the last successful sync",
            multiprocess_mode="max",
            registry=r,
        )
        self.total_reads = Counter(
            "kaleido_view_total_reads",
            "View total reads: hit = Redis held buffered views, miss = PostgreSQL alone",
            ["result"],
            registry=r,
        )
        self.actor_restarts = Counter(
            "kaleido_actor_restarts", "Actor restarts by kind", ["actor", "kind"], registry=r
        )
        # Inbound streams (kaleido.streams.consumer).
        self.stream_entries = Counter(
            "kaleido_stream_entries",
            "Inbound stream entries by outcome",
            ["stream", "outcome"],
            registry=r,
        )  # applied, duplicate, ignored, stale, dead_lettered, reclaimed, retried
        self.stream_errors = Counter(
            "kaleido_stream_errors",
            "Inbound stream consumer errors by kind (each one recovered from)",
            ["stream", "kind"],
            registry=r,
        )  # nogroup, redis_unavailable, postgres_unavailable, query_error, handler_error,
        # backend_error
        self.stream_batches = Counter(
            "kaleido_stream_batches", "Inbound batches committed", ["stream"], registry=r
        )
        # The outbox and its relay (kaleido.outbox, actors.outbox_relay).
        self.announcements = Counter(
            "kaleido_announcements",
            "Outbound entries published from the outbox",
            ["stream"],
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "kaleido_outbox_backlog",
            "Announcements committed and not yet published",
            multiprocess_mode="max",
            registry=r,
        )
        self.outbox_oldest = Gauge(
            "kaleido_outbox_oldest_seconds",
            "Age of the oldest announcement not yet published (0 when none waits)",
            multiprocess_mode="max",
            registry=r,
        )
        self.outbox_failures = Counter(
            "kaleido_outbox_relay_failures", "Relay passes that failed (retried)", registry=r
        )
        self._add_sampled(r)
        self._initialise_labels()

    def _add_sampled(self, r: CollectorRegistry) -> None:
        """Gauges set by the metrics reporter (actors/metrics_reporter.py) every few seconds."""

        def sampled(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
            # Facts of the shared backends: merged workers export the most recent sample.
            return Gauge(name, documentation, labels, multiprocess_mode=SHARED, registry=r)

        self.redis_memory_used = sampled(
            "kaleido_redis_memory_used_bytes", "Redis INFO used_memory"
        )
        self.redis_memory_max = sampled(
            "kaleido_redis_memory_max_bytes", "Redis maxmemory (0: no limit)"
        )
        self.redis_memory_ratio = sampled(
            "kaleido_redis_memory_ratio", "used_memory / maxmemory (0 when unlimited)"
        )
        self.redis_evicted_keys = sampled(
            "kaleido_redis_evicted_keys", "Redis INFO evicted_keys (since the server started)"
        )
        self.redis_keyspace = sampled(
            "kaleido_redis_keyspace_lookups",
            "Redis INFO keyspace_hits / keyspace_misses (since the server started)",
            ["result"],
        )
        self.redis_node_memory_used = sampled(
            "kaleido_redis_node_memory_used_bytes",
            "used_memory of each master (host:port)",
            ["node"],
        )
        self.redis_node_memory_max = sampled(
            "kaleido_redis_node_memory_max_bytes",
            "maxmemory of each master (0: no limit)",
            ["node"],
        )
        self.redis_node_evicted_keys = sampled(
            "kaleido_redis_node_evicted_keys", "evicted_keys of each master", ["node"]
        )
        self.pending_views = sampled(
            "kaleido_pending_views",
            "Posts with views not yet synced (HLEN of view:{q}:counts, summed over partitions)",
        )
        self.stream_length = sampled(
            "kaleido_stream_length", "Entries in the stream (XLEN)", ["stream"]
        )
        self.stream_lag = sampled(
            "kaleido_stream_lag", "Entries not yet delivered to the group", ["stream", "group"]
        )
        self.stream_pending = sampled(
            "kaleido_stream_pending", "Entries delivered, not acknowledged", ["stream", "group"]
        )
        self.stream_oldest_pending_age = sampled(
            "kaleido_stream_oldest_pending_age_seconds",
            "Age of the oldest pending entry (from its id), 0 when none",
            ["stream", "group"],
        )
        self.stream_idle_consumers = sampled(
            "kaleido_stream_idle_consumers",
            "Consumers of the group idle longer than the reporter's limit",
            ["stream", "group"],
        )
        self.dlq_size = sampled(
            "kaleido_dlq_size", "Entries in the stream's dead-letter queue", ["stream"]
        )
        self.seconds_since_sync = Gauge(
            "kaleido_seconds_since_last_good_sync",
            "Seconds since the last successful sync (since start-up while there was none)",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.breaker_state = Gauge(
            "kaleido_breaker_state", "1 for the breaker's current state", ["breaker", "state"],
            multiprocess_mode="livemax", registry=r,
        )  # fmt: skip
        self.breaker_failure_rate = Gauge(
            "kaleido_breaker_failure_rate", "Failure rate in the breaker's window (percent)",
            ["breaker"], multiprocess_mode="livemax", registry=r,
        )  # fmt: skip
        self.breaker_transitions = Counter(
            "kaleido_breaker_transitions", "Circuit breaker state changes, by the state entered",
            ["breaker", "to"], registry=r,
        )  # fmt: skip
        self.breaker_rejected = Gauge(
            "kaleido_breaker_rejected_calls", "Calls refused by the open breaker", ["breaker"],
            multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.samples = Counter(
            "kaleido_metrics_samples", "Metrics reporter samples by result", ["result"], registry=r
        )  # ok, failure (Redis down: the gauges keep their last values)
        self.last_sample = Gauge(
            "kaleido_metrics_last_sample_timestamp_seconds",
            "Unix time of the last successful sample",
            multiprocess_mode="max",
            registry=r,
        )

    def _initialise_labels(self) -> None:
        """Export known label values at 0 from the start, so dashboards and alerts see them."""
        for outcome in ("counted", "duplicate", "rejected", "journaled", "dropped_unknown_post",
                        "refused_unknown_post"):  # fmt: skip
            self.views.labels(outcome)
        for result in ("success", "failure", "busy"):
            self.sync_runs.labels(result)
        for result in ("hit", "miss", "degraded"):
            self.total_reads.labels(result)
        for result in ("ok", "failure"):
            self.samples.labels(result)
        for stream in CONSUMER_NAMES:
            for outcome in ("applied", "duplicate", "ignored", "stale", "retried", "dead_lettered"):
                self.stream_entries.labels(stream, outcome)
        for stream in OUTBOUND_STREAMS:
            self.announcements.labels(stream)
