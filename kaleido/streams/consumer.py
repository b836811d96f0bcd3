"""The inbound stream consumer actor: it reads one stream and keeps reading through failures.

One `StreamConsumer` per inbound stream, in the group `backend-group`, under a stable consumer
name (so that after a restart it finds its own pending entries). Its loop:

1. After (re)start, and after any failure, re-read its own pending entries until none is left,
   then read new ones, READ_BATCHES batches at a time, blocking up to `block_ms`. A re-read
   after a start counts as a delivery (a process that crashes on an entry gets it to the DLQ
   eventually); one after an outage of Redis or PostgreSQL does not (XPENDING and XRANGE):
   an outage is no fault of the entries', and must not dead-letter good ones.
2. Each read goes through the batch pipeline (`kaleido.streams.batches`): triage, apply
   exactly once in PostgreSQL (`kaleido.streams.ledger`), dead-letter and acknowledge.
3. Between reads, housekeeping when due (`kaleido.streams.housekeeping`): XAUTOCLAIM entries
   idle longer than `min_idle` (left by dead consumers, handled here), trim, prune.

Redis is reached through `InboundStream` (`kaleido.streams.inbound`) and PostgreSQL through
`EffectLedger`, so a test can drive the loop with fakes.

How errors behave: bad input never leaves the pipeline (it is dead-lettered). PostgreSQL down:
nothing is acknowledged, reading pauses while a cheap probe waits for PostgreSQL (delivery
counts are not burnt), then the pending entries are retried. NOGROUP (Redis flushed or
restarted empty): the group is recreated, with backoff. Redis down or any other backend error:
retried with capped backoff, counted, never a crash. Nothing but a bug escapes to the
supervisor.

The protocol in full: docs/streams.md "Inbound".
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs
import trio

from kaleido.backoff import Backoff
from kaleido.concurrency import raise_unwrapped
from kaleido.errors import BackendError, NoGroup, PostgresUnavailable, TransientError
from kaleido.gateways import PostgresGateway, RedisGateway
from kaleido.keys import KeyLayout
from kaleido.messages import CONSUMER_NAMES
from kaleido.metrics import Metrics
from kaleido.streams.batches import BatchPipeline
from kaleido.streams.counters import ConsumerCounters, ConsumerStats, log
from kaleido.streams.handlers import Handler
from kaleido.streams.housekeeping import (
    PRUNE_INTERVAL,
    RECLAIM_INTERVAL,
    RETENTION,
    TRIM_INTERVAL,
    Housekeeping,
)
from kaleido.streams.inbound import Entry, InboundStream, RedisInboundStream
from kaleido.streams.ledger import EffectLedger, PostgresLedger
from kaleido.streams.read_size import ReadSize

__all__ = ["ConsumerStats", "StreamConsumer", "consumer_name"]

M = TypeVar("M")

# Entries per transaction: large enough to amortise a PostgreSQL transaction and the
# trio-asyncio hop, small enough that a batch of 1408-float embeddings (~30 KB each) stays a
# few MB.
BATCH_SIZE = 256
# New entries are read this many batches at a time, so that while one batch's transaction is
# in PostgreSQL the next one is decoded (the CPU-heavy part): the two overlap. Entries read
# together are pending together, as one larger batch would be.
READ_BATCHES = 2
# Below the Redis client's 10 s socket timeout; a stop does not wait for it (`_read_new`).
BLOCK_MS = 1000
# An entry idle this long in another consumer's pending list is taken over (its owner is dead).
MIN_IDLE = 60.0
# Backoff for Redis errors and NOGROUP, and the PostgreSQL probe while it is down.
RETRY_BASE = 0.1
RETRY_CAP = 5.0
PG_PROBE_CAP = 1.0


def consumer_name(stream: str, instance: str = "") -> str:
    """The contract's consumer name for `stream`, plus `-{instance}` when one is set."""
    base = CONSUMER_NAMES[stream]
    return f"{base}-{instance}" if instance else base


@attrs.define
class StreamConsumer(Generic[M]):
    """Consumes one inbound stream; `run` is a supervisor actor."""

    inbound: InboundStream
    ledger: EffectLedger
    handler: Handler[M]
    consumer_name: str
    stream_key: str  # the stream's Redis key, under which processed_messages records entries
    stopping: trio.Event
    metrics: Metrics | None = None
    max_deliveries: int = 5
    batch_size: int = BATCH_SIZE
    block_ms: int = BLOCK_MS
    min_idle: float = MIN_IDLE
    reclaim_interval: float = RECLAIM_INTERVAL
    trim_interval: float = TRIM_INTERVAL
    prune_interval: float = PRUNE_INTERVAL
    retention: float = RETENTION
    counters: ConsumerCounters = attrs.field(init=False)
    pipeline: BatchPipeline[M] = attrs.field(init=False)
    housekeeping: Housekeeping = attrs.field(init=False)
    # Where the re-read of our own pending entries stands; None once they are all handled.
    _cursor: str | None = attrs.field(default="0", init=False)
    _group_ready: bool = attrs.field(default=False, init=False)
    # Re-read our own pending entries without counting it as their delivery (after an outage).
    _quiet: bool = attrs.field(default=False, init=False)
    _read_size: ReadSize = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._read_size = ReadSize(self.batch_size * READ_BATCHES)
        self.counters = ConsumerCounters(self.handler.stream, self.metrics)
        self.pipeline = BatchPipeline(
            self.inbound,
            self.ledger,
            self.handler,
            self.counters,
            self.stream_key,
            self.max_deliveries,
            self.batch_size,
        )
        self.housekeeping = Housekeeping(
            self.inbound,
            self.ledger,
            self.counters,
            self.stream_key,
            reclaim_interval=self.reclaim_interval,
            trim_interval=self.trim_interval,
            prune_interval=self.prune_interval,
            retention=self.retention,
        )

    @classmethod
    def over(
        cls,
        redis: RedisGateway,
        postgres: PostgresGateway,
        keys: KeyLayout,
        handler: Handler[M],
        name: str,
        stopping: trio.Event,
        metrics: Metrics | None = None,
        **options: Any,
    ) -> StreamConsumer[M]:
        """A consumer of `handler.stream` over the Redis and PostgreSQL gateways."""
        stream_key = keys.stream(handler.stream)
        inbound = RedisInboundStream(redis, stream_key, keys.dlq(handler.stream), name)
        return cls(
            inbound,
            PostgresLedger(postgres),
            handler,
            name,
            stream_key,
            stopping,
            metrics,
            **options,
        )

    @property
    def stream(self) -> str:
        """The contract's stream name (without the deployment prefix)."""
        return self.handler.stream

    @property
    def stats(self) -> ConsumerStats:
        return self.counters.stats

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Consume until `stopping` is set, then return after finishing the batch in hand.

        Raises only for a bug, or a TransientError before it is ready (the supervisor retries).
        """
        await self.inbound.create_group()
        self._group_ready = True
        self._cursor = "0"
        self.housekeeping.start()
        task_status.started()
        log.info("consumer.started", stream=self.stream, consumer=self.consumer_name)
        backoff = Backoff(RETRY_BASE, RETRY_CAP)
        while not self.stopping.is_set():
            try:
                await self._step()
                backoff.reset()
                continue
            except NoGroup as exc:
                self.counters.error("nogroup", exc)
                self._group_ready = False
            except PostgresUnavailable as exc:
                self.counters.error("postgres_unavailable", exc)
                outage = await self._wait_for_postgres()
                # Retry what is still pending. After an outage or a lost connection, quietly:
                # no fault of the entries', so it must not bring them closer to the DLQ. A
                # statement refused for now while PostgreSQL answers at once may be the
                # entry's own doing (a timeout it causes every time): that re-read counts.
                self._cursor, self._quiet = "0", outage or not exc.statement
                continue
            except TransientError as exc:  # Redis down, or its breaker open
                self.counters.error("redis_unavailable", exc)
            except BackendError as exc:  # e.g. OOM on a DLQ write, a wrong-type key
                self.counters.error("backend_error", exc)
            # Whatever happened, entries may be left pending: re-read them first, quietly.
            self._cursor, self._quiet = "0", True
            await self._pause(backoff.next())
        log.info("consumer.stopped", stream=self.stream, consumer=self.consumer_name)

    async def _step(self) -> None:
        if not self._group_ready:
            if await self.inbound.create_group():
                log.info("consumer.group_created", stream=self.stream)
            self._group_ready = True
        if self._cursor is None:
            await self.housekeeping.run_due(self.reclaim)
            if self.stopping.is_set():
                return
            entries = await self._read_new()
            self._read_size.saw(entries)
            if entries:
                await self.pipeline.handle(entries, {})
            return
        count = self._read_size.at_most(self.batch_size)
        if self._quiet:
            entries, deliveries = await self.inbound.reread_pending(self._cursor, count)
        else:  # after a start: a crash on an entry must count as its delivery
            entries = await self.inbound.read_pending(self._cursor, count)
            deliveries = await self.inbound.deliveries(entries)
        self._read_size.saw(entries)
        if not entries:
            self._cursor, self._quiet = None, False  # our own backlog is done: on to new ones
            return
        self._cursor = entries[-1].id
        await self.pipeline.handle(entries, deliveries, retry=True)

    async def _read_new(self) -> list[Entry]:
        """New entries, waiting up to `block_ms` for them; given up when shutdown begins, so
        that a stop is not held by a quiet stream. Entries Redis had handed that read are
        pending with this consumer, re-read at its next start (the read is an ambiguous call
        already: docs/ambiguity.md)."""
        entries: list[Entry] = []

        async def read(reading: trio.Nursery) -> None:
            nonlocal entries
            entries = await self.inbound.read_new(self._read_size.count, self.block_ms)
            reading.cancel_scope.cancel()

        try:
            async with trio.open_nursery() as reading:
                reading.start_soon(read, reading)
                await self.stopping.wait()
                reading.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise_unwrapped(group)  # a TransientError as itself, for `run` to handle
        return entries

    async def _pause(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            await self.stopping.wait()

    async def _wait_for_postgres(self) -> bool:
        """Probe PostgreSQL until it answers (or shutdown); nothing is read meanwhile. True
        when a probe failed (an outage), False when PostgreSQL answered the first one."""
        self.stats.postgres_outages += 1
        backoff = Backoff(RETRY_BASE, PG_PROBE_CAP)
        outage = False
        while not self.stopping.is_set():
            await self._pause(backoff.next())
            try:
                await self.ledger.probe()
            except PostgresUnavailable:
                outage = True
                continue
            log.info("consumer.postgres_back", stream=self.stream)
            break
        return outage

    async def reclaim(self) -> int:
        """Take over entries idle longer than `min_idle` and handle them; return how many."""
        cursor = "0-0"
        total = 0
        while not self.stopping.is_set():
            count = self._read_size.at_most(self.batch_size)
            claimed = await self.inbound.claim_stale(self.min_idle, cursor, count)
            self._read_size.saw(claimed.entries)
            cursor = claimed.cursor
            if claimed.entries:
                await self._handle_reclaimed(claimed.entries)
                total += len(claimed.entries)
            if claimed.done:
                break
        return total

    async def _handle_reclaimed(self, entries: list[Entry]) -> None:
        self.counters.entries("reclaimed", len(entries))
        log.info("consumer.reclaimed", stream=self.stream, entries=len(entries))
        await self.pipeline.handle(entries, await self.inbound.deliveries(entries))

    async def trim(self) -> int:
        """Trim the stream below the oldest entry any group still needs; return how many."""
        return await self.housekeeping.trim()

    async def prune(self) -> int:
        """Delete processed_messages rows of this stream older than `retention`."""
        return await self.housekeeping.prune()
