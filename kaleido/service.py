"""`Service`: everything a running Kaleido process shares between its actors and its routes,
and `start_actors`, which wires the actors to it under the supervisor."""

from __future__ import annotations

import attrs
import trio

from actors.view_ingester import ViewIngester
from actors.view_syncer import ViewSyncer
from kaleido.gateways import Backends
from kaleido.lock import RedisLock
from kaleido.metrics import Metrics
from kaleido.supervisor import Supervisor
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

    @classmethod
    def build(cls, backends: Backends, supervisor: Supervisor, metrics: Metrics) -> Service:
        settings = backends.settings
        store = ViewStore(backends.redis, backends.keys, settings.view_dedup_ttl)
        send, receive = trio.open_memory_channel[Item](INGEST_QUEUE_SIZE)
        syncer = ViewSyncer(
            ViewSync(store, backends.postgres),
            RedisLock(backends.redis, backends.keys.lock),
            metrics,
            supervisor.stopping,
            interval=settings.sync_interval,
        )
        ingester = ViewIngester(store, receive, metrics, on_pending=syncer.notify_pending)
        supervisor.on_restart = lambda actor, kind: metrics.actor_restarts.labels(
            actor, kind
        ).inc()
        return cls(backends, supervisor, metrics, store, ViewTracker(send), ingester, syncer)

    async def start_actors(self) -> None:
        await self.supervisor.start("view-ingester", self.ingester.run)
        await self.supervisor.start("view-syncer", self.syncer.run)

    def stop_intake(self) -> None:
        self.tracker.close()

    async def view_total(self, post_id: int) -> ViewTotal:
        total = await read_total(self.views, self.backends.postgres, post_id)
        self.metrics.total_reads.labels("hit" if total.buffered else "miss").inc()
        return total
