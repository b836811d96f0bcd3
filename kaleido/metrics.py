"""The process's own counters, as prometheus-client metrics in one private registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every metric Kaleido exports; one instance per process (tests make their own)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
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
        self.sync_duration = Histogram(
            "kaleido_sync_duration_seconds", "Duration of successful syncs", registry=r
        )
        self.synced_views = Counter(
            "kaleido_synced_views", "Views written to PostgreSQL", registry=r
        )
        self.last_sync_success = Gauge(
            "kaleido_last_sync_success_timestamp_seconds",
            "Unix time of the last successful sync",
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
        )  # applied, duplicate, ignored, dead_lettered, reclaimed, retried
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
