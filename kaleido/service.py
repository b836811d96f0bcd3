"""`Service`: everything a running Kaleido process shares between its actors and its routes,
and `start_actors`, which wires the actors to it under the supervisor."""

from __future__ import annotations

from functools import partial
from typing import Any

import attrs
import trio

from actors.metrics_reporter import MetricsReporter
from actors.outbox_relay import OutboxRelay
from actors.view_ingester import ViewIngester
from actors.view_syncer import ViewSyncer
from kaleido.breaker import BreakerState
from kaleido.errors import CircuitOpen, RedisUnavailable
from kaleido.gateways import Backends
from kaleido.gateways.backends import log_transition
from kaleido.lock import RedisLock
from kaleido.metrics import Metrics
from kaleido.ops.history import History
from kaleido.outbox import PostgresOutbox, RedisAnnouncer
from kaleido.posts import Posts
from kaleido.profiles import Profiles
from kaleido.streams import StreamConsumer, build_consumers
from kaleido.supervisor import Supervisor
from kaleido.views import ledger
from kaleido.views.store import ViewStore
from kaleido.views.sync import ViewSync
from kaleido.views.totals import ViewTotal, read_total
from kaleido.views.tracker import Item, ViewTracker

# Views that may wait in memory for the ingester: about a second of peak intake.
INGEST_QUEUE_SIZE = 100_000


@attrs.define
class Service:
    backends: Backends
    supervisor: Supervisor
    metrics: Metrics
    views: ViewStore
    tracker: ViewTracker
    ingester: ViewIngester
    syncer: ViewSyncer
    relay: OutboxRelay = attrs.field(kw_only=True)
    # What the post and profile routes call; built once here, not per request.
    posts: Posts = attrs.field(kw_only=True)
    profiles: Profiles = attrs.field(kw_only=True)
    consumers: list[StreamConsumer[Any]] = attrs.field(kw_only=True, factory=list)
    reporter: MetricsReporter | None = attrs.field(kw_only=True, default=None)

    @classmethod
    def build(cls, backends: Backends, supervisor: Supervisor, metrics: Metrics) -> Service:
        settings = backends.settings
        store = ViewStore(backends.redis, backends.keys, settings.view_dedup_ttl)
        send, receive = trio.open_memory_channel[Item](INGEST_QUEUE_SIZE)
        syncer = ViewSyncer(
            ViewSync(store, backends.postgres),
            RedisLock(backends.redis, backends.keys.lock, settings.sync_lock_ttl),
            metrics,
            supervisor.stopping,
            interval=settings.sync_interval,
        )
        ingester = ViewIngester(
            store,
            receive,
            metrics,
            on_pending=syncer.notify_pending,
            journal=backends.postgres,
            on_journaled=syncer.wake,
        )
        supervisor.on_restart = lambda actor, kind: metrics.actor_restarts.labels(actor, kind).inc()
        breakers = [b for b in (backends.redis.breaker, backends.postgres.breaker) if b]
        for breaker in breakers:
            breaker.on_transition = partial(_count_transition, metrics)
        relay = OutboxRelay(
            PostgresOutbox(backends.postgres),
            RedisAnnouncer(backends.redis, backends.keys, settings.stream_maxlen),
            supervisor.stopping,
            metrics,
        )
        tracker = ViewTracker(send)
        reporter = MetricsReporter(
            backends.redis,
            backends.keys,
            metrics,
            supervisor.stopping,
            breakers=breakers,
            interval=settings.metrics_interval,
            sync_interval=settings.sync_interval,
            rejected_views=lambda: tracker.stats.rejected,
            history=History(settings.metrics_interval),
        )
        return cls(
            backends,
            supervisor,
            metrics,
            store,
            tracker,
            ingester,
            syncer,
            relay=relay,
            posts=Posts(backends.postgres_for_routes, relay.kick),
            profiles=Profiles(backends.postgres_for_routes, relay.kick),
            consumers=build_consumers(backends, metrics, supervisor.stopping),
            reporter=reporter,
        )

    async def start_actors(self) -> None:
        await self.supervisor.start("view-ingester", self.ingester.run)
        await self.supervisor.start("view-syncer", self.syncer.run)
        await self.supervisor.start("outbox-relay", self.relay.run)
        for consumer in self.consumers:
            await self.supervisor.start(consumer.consumer_name, consumer.run)
        if self.reporter is not None:
            await self.supervisor.start("metrics-reporter", self.reporter.run)

    def stop_intake(self) -> None:
        self.tracker.close()

    async def view_total(self, post_id: int) -> ViewTotal:
        """The exact total; while Redis is unreachable, PostgreSQL's part (`degraded`)."""
        try:
            total = await read_total(self.views, self.backends.postgres_for_routes, post_id)
        except (RedisUnavailable, CircuitOpen) as exc:
            if isinstance(exc, CircuitOpen) and exc.backend != "redis":
                raise  # PostgreSQL's breaker: no degraded answer to give
            synced, _ = await ledger.read_synced(self.backends.postgres_for_routes, post_id, [])
            self.metrics.total_reads.labels("degraded").inc()
            return ViewTotal(post_id, synced, 0, degraded=True)
        self.metrics.total_reads.labels("hit" if total.buffered else "miss").inc()
        return total


def _count_transition(metrics: Metrics, name: str, old: BreakerState, new: BreakerState) -> None:
    log_transition(name, old, new)
    metrics.breaker_transitions.labels(name, new.value).inc()
