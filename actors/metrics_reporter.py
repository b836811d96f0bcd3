"""The metrics reporter: every `interval` seconds, samples Redis (memory, evictions, keyspace
hits, streams, DLQs, pending views) and the process's own state (breakers, sync age) into the
Prometheus gauges of `kaleido.metrics`, and logs a warning when a threshold is crossed (once
per crossing: kaleido.ops.alerts). Each tick also adds a `Sample` to the console's history
ring (kaleido.ops.history), when it has one.

How errors behave: a failed sample (Redis down, breaker open) is counted
(`kaleido_metrics_samples_total{result="failure"}`), leaves the Redis gauges at their last
values and is retried at the next tick; it never crashes the actor.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from kaleido.breaker import BreakerState, CircuitBreaker
from kaleido.errors import BackendError
from kaleido.gateways import RedisGateway
from kaleido.keys import KeyLayout
from kaleido.metrics import Metrics, views_by_outcome
from kaleido.ops.alerts import Alerts
from kaleido.ops.history import History, Sample
from kaleido.ops.limits import IDLE_LIMIT, LAG_LIMIT, MEMORY_WARNING, STALE_SYNC_INTERVALS
from kaleido.ops.redis_info import RedisFacts, combine, read_node_facts
from kaleido.ops.streams import StreamStatus, read_streams
from kaleido.views.store import last_synced, pending_posts

# INFO and a few stream reads every 5 s: cheap for Redis, fresh enough for a 15 s scrape.
INTERVAL = 5.0


@attrs.define
class MetricsReporter:
    redis: RedisGateway
    keys: KeyLayout
    metrics: Metrics
    stopping: trio.Event
    breakers: Sequence[CircuitBreaker] = ()
    interval: float = INTERVAL
    sync_interval: float = 300.0
    memory_limit: float = MEMORY_WARNING
    lag_limit: int = LAG_LIMIT
    idle_limit: float = IDLE_LIMIT
    # The view tracker's count of rejected views, mirrored into kaleido_views{outcome=rejected}.
    rejected_views: Callable[[], int] | None = None
    alerts: Alerts = attrs.Factory(Alerts)
    history: History | None = None
    failures: int = 0
    _started: float = attrs.field(factory=time.time, init=False)
    _last_dlq: dict[str, int] = attrs.Factory(dict)
    _last_rejected: int = attrs.field(default=0, init=False)
    _last_sync_failures: float = attrs.field(default=0.0, init=False)
    _last_good: float | None = attrs.field(default=None, init=False)
    _nodes: set[str] = attrs.field(factory=set, init=False)
    # The consumer groups of each stream as last sampled: series of a group that left go.
    _groups: dict[str, set[str]] = attrs.field(factory=dict, init=False)
    # The last good sync by any process (Redis), as of the last sample.
    _shared_good: float | None = attrs.field(default=None, init=False)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sample until `stopping` is set. Ready at once: Redis may be down at start-up."""
        self._started = time.time()
        task_status.started()
        while not self.stopping.is_set():
            await self.sample_once()
            with trio.move_on_after(self.interval):
                await self.stopping.wait()

    async def sample_once(self) -> bool:
        """One sample; False if Redis could not be sampled (counted, logged once)."""
        self._sample_process()
        try:
            redis_figures = await self._sample_redis()
        except BackendError as exc:
            self._remember({})
            self.failures += 1
            self.metrics.samples.labels("failure").inc()
            self.alerts.update(
                "redis_unsampled", True, "cannot sample Redis; gauges keep old values",
                error=str(exc),
            )  # fmt: skip
            return False
        self._remember(redis_figures)
        self.alerts.update("redis_unsampled", False)
        self.metrics.samples.labels("ok").inc()
        self.metrics.last_sample.set(time.time())
        return True

    def _remember(self, redis_figures: dict[str, Any]) -> None:
        """Add this tick to the history ring (Redis figures left out when Redis failed)."""
        if self.history is None:
            return
        views = views_by_outcome(self.metrics)
        snapshots = [b.snapshot() for b in self.breakers]
        breakers = {snap.name: snap.state.value for snap in snapshots}
        self.history.add(
            Sample(
                at=time.time(),
                views_counted=views.get("counted", 0.0),
                views_duplicate=views.get("duplicate", 0.0),
                breakers=breakers,
                last_good_sync=self._shared_good,
                **redis_figures,
            )
        )

    # ------------------------------------------------------------------ the process

    def _sample_process(self) -> None:
        m = self.metrics
        for breaker in self.breakers:
            snap = breaker.snapshot()
            for state in BreakerState:
                m.breaker_state.labels(snap.name, state.value).set(int(snap.state is state))
            m.breaker_failure_rate.labels(snap.name).set(snap.failure_rate)
            m.breaker_rejected.labels(snap.name).set(snap.rejected_calls)
        if self.rejected_views is not None:
            rejected = self.rejected_views()
            m.views.labels("rejected").inc(max(0, rejected - self._last_rejected))
            self._last_rejected = rejected
        last_good = m.registry.get_sample_value("kaleido_last_sync_success_timestamp_seconds")
        # Another worker or machine may hold the lock at every tick: its syncs count too.
        latest = max(last_good or 0.0, self._shared_good or 0.0)
        age = max(0.0, time.time() - (latest or self._started))
        m.seconds_since_sync.set(age)
        self.alerts.update(
            "sync_stale",
            age > STALE_SYNC_INTERVALS * self.sync_interval,
            f"no good sync for {STALE_SYNC_INTERVALS} sync intervals",
            seconds_since_last_good_sync=round(age, 1),
        )
        # Failing: runs failed since the last sample and none succeeded meanwhile.
        failures = m.registry.get_sample_value("kaleido_sync_runs_total", {"result": "failure"})
        failures = failures or 0.0
        if failures > self._last_sync_failures or last_good != self._last_good:
            failing = failures > self._last_sync_failures and last_good == self._last_good
            self.alerts.update("sync_failing", failing, "view sync is failing", failures=failures)
        self._last_sync_failures, self._last_good = failures, last_good

    # ------------------------------------------------------------------ Redis

    async def _sample_redis(self) -> dict[str, Any]:
        """Set the Redis gauges; return the figures the history keeps."""
        m = self.metrics
        nodes = await read_node_facts(self.redis)
        streams = await read_streams(self.redis, self.keys)
        pending = await pending_posts(self.redis, self.keys)
        self._shared_good = await last_synced(self.redis, self.keys)
        self._record_nodes(nodes)
        facts = combine(nodes)
        m.redis_memory_used.set(facts.used_memory)
        m.redis_memory_max.set(facts.maxmemory)
        ratio = facts.memory_ratio
        m.redis_memory_ratio.set(ratio or 0.0)
        self.alerts.update(
            "redis_memory",
            ratio is not None and ratio > self.memory_limit,
            f"Redis memory over {self.memory_limit:.0%} of maxmemory",
            used=facts.used_memory,
            maxmemory=facts.maxmemory,
        )
        m.redis_evicted_keys.set(facts.evicted_keys)
        m.redis_keyspace.labels("hit").set(facts.keyspace_hits)
        m.redis_keyspace.labels("miss").set(facts.keyspace_misses)
        m.pending_views.set(pending)
        for status in streams:
            self._record_stream(status)
        return {
            "pending_posts": pending,
            "memory_used": facts.used_memory,
            "memory_max": facts.maxmemory,
            "evicted_keys": facts.evicted_keys,
            "lag": sum(status.lag for status in streams),
            "dlq": sum(status.dlq_size for status in streams if status.inbound),
        }

    def _record_nodes(self, nodes: list[RedisFacts]) -> None:
        """Per-master series; a master that left (failover, resharding) stops being exported."""
        m = self.metrics
        current = {f.node or "redis" for f in nodes}
        for gone in self._nodes - current:
            for gauge in (m.redis_node_memory_used, m.redis_node_memory_max,
                          m.redis_node_evicted_keys):  # fmt: skip
                gauge.remove(gone)
        self._nodes = current
        for f in nodes:
            node = f.node or "redis"  # a single Redis
            m.redis_node_memory_used.labels(node).set(f.used_memory)
            m.redis_node_memory_max.labels(node).set(f.maxmemory)
            m.redis_node_evicted_keys.labels(node).set(f.evicted_keys)

    def _forget_groups(self, status: StreamStatus) -> None:
        """A group deleted (XGROUP DESTROY, or by whoever owns an outbound stream's groups)
        stops being exported and alerted on: label sets follow the groups there are now."""
        m, s = self.metrics, status.stream
        current = {g.name for g in status.groups}
        for gone in self._groups.get(s, set()) - current:
            for gauge in (m.stream_lag, m.stream_pending, m.stream_oldest_pending_age,
                          m.stream_idle_consumers):  # fmt: skip
                with contextlib.suppress(KeyError):
                    gauge.remove(s, gone)
            self.alerts.update(f"stream_lag:{s}:{gone}", False, stream=s, group=gone)
            self.alerts.update(f"idle_consumers:{s}:{gone}", False, stream=s, group=gone)
        self._groups[s] = current

    def _record_stream(self, status: StreamStatus) -> None:
        m, s = self.metrics, status.stream
        self._forget_groups(status)
        m.stream_length.labels(s).set(status.length)
        for g in status.groups:
            m.stream_lag.labels(s, g.name).set(g.lag or 0)
            m.stream_pending.labels(s, g.name).set(g.pending)
            m.stream_oldest_pending_age.labels(s, g.name).set(g.oldest_pending_age or 0.0)
            m.stream_idle_consumers.labels(s, g.name).set(len(g.idle_consumers(self.idle_limit)))
            self.alerts.update(
                f"stream_lag:{s}:{g.name}",
                (g.lag or 0) > self.lag_limit,
                f"stream lag over {self.lag_limit}",
                stream=s,
                group=g.name,
                lag=g.lag,
            )
            stuck = [c.name for c in g.idle_consumers(self.idle_limit) if c.pending]
            self.alerts.update(
                f"idle_consumers:{s}:{g.name}",
                bool(stuck),
                f"consumers idle over {self.idle_limit:g} s hold pending entries",
                stream=s,
                group=g.name,
                consumers=stuck,
            )
        if not status.inbound:
            return
        m.dlq_size.labels(s).set(status.dlq_size)
        previous = self._last_dlq.get(s)
        self._last_dlq[s] = status.dlq_size
        self.alerts.update(
            f"dlq_growing:{s}",
            previous is not None and status.dlq_size > previous,
            "dead-letter queue is growing",
            stream=s,
            size=status.dlq_size,
            previous=previous,
        )
