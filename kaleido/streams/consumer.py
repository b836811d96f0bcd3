"""The inbound stream consumer actor: Redis stream → handler → PostgreSQL, exactly-once effects.

One `StreamConsumer` per inbound stream, in the group `backend-group`, under a stable consumer
name (so that after a restart it finds its own pending entries). Its loop:

1. After (re)start, and after any failure, re-read its own pending entries (`XREADGROUP … 0`)
   until none is left, then read new ones (`>`, `COUNT n BLOCK ms`).
2. A batch: undecodable entries (and entries delivered more than `max_deliveries` times) go to
   `{stream}:dlq` with the reason; ignored entries are acknowledged; the rest are applied in ONE
   PostgreSQL transaction that also records `(stream, entry id)` in `processed_messages`
   (an id already there was applied before: skipped), COMMIT, then one MULTI round trip
   dead-letters and XACKs the whole batch. At-least-once delivery, exactly-once effects.
   In the common case (every entry new) the transaction is a single statement: the id insert
   and the handler's statements as data-modifying CTEs, with no BEGIN/COMMIT round trips; an id
   recorded before makes it fail whole, and the batch goes the transaction's way instead.
   New entries are read READ_BATCHES batches at a time and pipelined: while one batch is in
   PostgreSQL, the next is decoded and the one before is dead-lettered and acknowledged.
3. Every so often (between batches): XAUTOCLAIM entries idle longer than `min_idle` (left by dead
   consumers), XTRIM below the oldest entry still pending or undelivered, and prune old
   `processed_messages` rows.

How errors behave: bad input never leaves this module (it is dead-lettered). PostgreSQL down:
nothing is acknowledged, reading pauses while a cheap probe waits for PostgreSQL (delivery counts
are not burnt), then the pending entries are retried, one transaction each, so that an entry
that keeps failing holds back only itself until `max_deliveries` dead-letters it. A statement
PostgreSQL rejects (or an unexpected exception from the handler): the batch is applied entry by
entry so the good ones go through and the bad one is dead-lettered with the reason. NOGROUP
(Redis flushed or restarted empty): the group is recreated, with backoff. Redis down or any other
backend error: retried here with capped backoff, counted, never a crash. Nothing but a bug in
this module escapes to the supervisor.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, Generic, TypeVar

import attrs
import trio

from kaleido import failpoints
from kaleido.backoff import Backoff
from kaleido.concurrency import gather
from kaleido.errors import (
    BackendError,
    CircuitOpen,
    NoGroup,
    PostgresQueryError,
    PostgresUnavailable,
    RedisCommandError,
    TransientError,
)
from kaleido.gateways import PostgresGateway, RedisGateway, Script
from kaleido.keys import KeyLayout
from kaleido.logs import correlation_field, get_logger
from kaleido.messages import (
    CONSUMER_GROUP,
    CONSUMER_NAMES,
    DecodeError,
    IgnoredEntry,
    utc_timestamp,
)
from kaleido.metrics import Metrics
from kaleido.streams.groups import ensure_group
from kaleido.streams.handlers import Handler, StatementHandler

log = get_logger("kaleido.streams.consumer")

M = TypeVar("M")

# Entries per transaction: large enough to amortise a PostgreSQL transaction and the
# trio-asyncio hop, small enough that a batch of 1408-float embeddings (~30 KB each) stays a
# few MB.
BATCH_SIZE = 256
# New entries are read this many batches at a time, so that while one batch's transaction is
# in PostgreSQL the next one is decoded (the CPU-heavy part): the two overlap. Entries read
# together are pending together, as one larger batch would be.
READ_BATCHES = 2
# While decoding beside a transaction, let the transaction's task run at least this often.
DECODE_SLICE = 0.001
# Below the Redis client's 10 s socket timeout, and short so that shutdown is prompt.
BLOCK_MS = 1000
# An entry idle this long in another consumer's pending list is taken over (its owner is dead).
MIN_IDLE = 60.0
RECLAIM_INTERVAL = 30.0
TRIM_INTERVAL = 60.0
PRUNE_INTERVAL = 3600.0
# processed_messages rows are needed only while an entry can still be redelivered.
RETENTION = 7 * 24 * 3600.0
# Backoff for Redis errors and NOGROUP, and the PostgreSQL probe while it is down.
RETRY_BASE = 0.1
RETRY_CAP = 5.0
PG_PROBE_CAP = 1.0
# Settling (DLQ + XACK) is shielded from cancellation, but not for longer than this.
SETTLE_TIMEOUT = 5.0
# Dead-letter streams are bounded (approximately) so a flood of bad entries cannot fill Redis.
DLQ_MAXLEN = 100_000

# XPENDING's extended form through EVAL: redis-py's reply parser for XPENDING expects the
# summary form unless told otherwise, and the gateway passes raw commands only.
_PENDING_RANGE = Script(
    "pending_range",
    "return redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])",
)

Entry = tuple[str, Mapping[bytes, bytes]]


def consumer_name(stream: str, instance: str = "") -> str:
    """The contract's consumer name for `stream`, plus `-{instance}` when one is set."""
    base = CONSUMER_NAMES[stream]
    return f"{base}-{instance}" if instance else base


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def id_key(entry_id: bytes | str) -> tuple[int, int]:
    """A stream id as a sortable (milliseconds, sequence) pair."""
    ms, _, seq = _text(entry_id).partition("-")
    return int(ms), int(seq or 0)


@attrs.define
class ConsumerStats:
    """Counters of one consumer (the same as the Prometheus ones, handy in tests)."""

    applied: int = 0
    duplicates: int = 0
    ignored: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0
    retried: int = 0  # entries left pending because PostgreSQL was down
    batches: int = 0
    nogroup: int = 0
    redis_errors: int = 0
    postgres_outages: int = 0
    trimmed: int = 0
    pruned: int = 0


@attrs.frozen
class _DeadLetter:
    entry_id: str
    fields: Mapping[bytes, bytes]
    error_type: str
    error: str
    deliveries: int


@attrs.frozen
class _Rejected:
    entry_id: str
    error_type: str
    error: str


# What to dead-letter, and the ids to acknowledge, for one batch.
_Settle = tuple[list[_DeadLetter], list[str]]


@attrs.define
class _Decoded(Generic[M]):
    """One batch, decoded: what to dead-letter, to acknowledge as it is, and to apply."""

    dead: list[_DeadLetter] = attrs.Factory(list)
    done: list[str] = attrs.Factory(list)  # deleted or ignored entries: acknowledged as they are
    ignored: int = 0
    good: list[tuple[str, M]] = attrs.Factory(list)
    fields_of: dict[str, Mapping[bytes, bytes]] = attrs.Factory(dict)


@attrs.define
class StreamConsumer(Generic[M]):
    """Consumes one inbound stream; `run` is a supervisor actor."""

    redis: RedisGateway
    postgres: PostgresGateway
    keys: KeyLayout
    handler: Handler[M]
    consumer_name: str
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
    stats: ConsumerStats = attrs.Factory(ConsumerStats)
    # Where the re-read of our own pending entries stands; None once they are all handled.
    _cursor: str | None = attrs.field(default="0", init=False)
    _group_ready: bool = attrs.field(default=False, init=False)
    _next_reclaim: float = attrs.field(default=0.0, init=False)
    _next_trim: float = attrs.field(default=0.0, init=False)
    _next_prune: float = attrs.field(default=0.0, init=False)

    @property
    def stream(self) -> str:
        """The contract's stream name (without the deployment prefix)."""
        return self.handler.stream

    @property
    def stream_key(self) -> str:
        return self.keys.stream(self.handler.stream)

    @property
    def dlq_key(self) -> str:
        return self.keys.dlq(self.handler.stream)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Consume until `stopping` is set, then return after finishing the batch in hand.

        Raises only for a bug, or a TransientError before it is ready (the supervisor retries).
        """
        await ensure_group(self.redis, self.stream_key)
        self._group_ready = True
        self._cursor = "0"
        now = trio.current_time()
        self._next_reclaim = now  # entries of consumers that died before we started
        self._next_trim = now + self.trim_interval
        self._next_prune = now
        task_status.started()
        log.info("consumer.started", stream=self.stream, consumer=self.consumer_name)
        backoff = Backoff(RETRY_BASE, RETRY_CAP)
        while not self.stopping.is_set():
            try:
                await self._step()
                backoff.reset()
                continue
            except NoGroup as exc:
                self._error("nogroup", exc)
                self._group_ready = False
            except PostgresUnavailable as exc:
                self._error("postgres_unavailable", exc)
                await self._wait_for_postgres()
                self._cursor = "0"  # retry what is still pending
                continue
            except TransientError as exc:  # Redis down, or its breaker open
                self._error("redis_unavailable", exc)
            except BackendError as exc:  # e.g. OOM on a DLQ write, a wrong-type key
                self._error("backend_error", exc)
            # Whatever happened, entries may be left pending: re-read them first.
            self._cursor = "0"
            await self._pause(backoff.next())
        log.info("consumer.stopped", stream=self.stream, consumer=self.consumer_name)

    # ------------------------------------------------------------------ the loop

    async def _step(self) -> None:
        if not self._group_ready:
            if await ensure_group(self.redis, self.stream_key):
                log.info("consumer.group_created", stream=self.stream)
            self._group_ready = True
        if self._cursor is None:
            await self._maintain()
            if self.stopping.is_set():
                return
        entries = await self._read()
        if self._cursor is None:
            if entries:
                await self._handle(entries, {})
            return
        if not entries:
            self._cursor = None  # our own backlog is done: on to new entries
            return
        self._cursor = entries[-1][0]
        await self._handle(entries, await self._deliveries(entries), retry=True)

    async def _read(self) -> list[Entry]:
        count = self.batch_size * (READ_BATCHES if self._cursor is None else 1)
        command: list[Any] = [
            "XREADGROUP", "GROUP", CONSUMER_GROUP, self.consumer_name, "COUNT", count
        ]  # fmt: skip
        if self._cursor is None:
            command += ["BLOCK", self.block_ms]
        command += ["STREAMS", self.stream_key, self._cursor or ">"]
        try:
            reply = await self.redis.execute(*command)
        except RedisCommandError as exc:
            if exc.code == "UNBLOCKED":  # the stream was deleted while we were blocked
                raise NoGroup(str(exc)) from exc
            raise
        if not reply:
            return []
        return [(_text(entry_id), fields or {}) for entry_id, fields in reply[0][1]]

    async def _deliveries(self, entries: Sequence[Entry]) -> dict[str, int]:
        """How often each of `entries` (pending with us) was delivered, from XPENDING."""
        reply = await self.redis.run_script(
            _PENDING_RANGE,
            [self.stream_key],
            [CONSUMER_GROUP, entries[0][0], entries[-1][0], len(entries), self.consumer_name],
        )
        return {_text(row[0]): int(row[3]) for row in reply or []}

    async def _pause(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            await self.stopping.wait()

    async def _wait_for_postgres(self) -> None:
        """Probe PostgreSQL until it answers (or shutdown); nothing is read meanwhile."""
        self.stats.postgres_outages += 1
        backoff = Backoff(RETRY_BASE, PG_PROBE_CAP)
        while not self.stopping.is_set():
            await self._pause(backoff.next())
            try:
                await self._probe_postgres()
            except PostgresUnavailable:
                continue
            log.info("consumer.postgres_back", stream=self.stream)
            return

    async def _probe_postgres(self) -> None:
        """A cheap query; PostgresUnavailable if PostgreSQL (or its breaker) says no."""
        try:
            await self.postgres.fetchval("SELECT 1")
        except CircuitOpen as exc:
            raise PostgresUnavailable(str(exc)) from exc

    # ------------------------------------------------------------------ a batch

    async def _handle(
        self, entries: Sequence[Entry], deliveries: Mapping[str, int], *, retry: bool = False
    ) -> None:
        """Decode, apply and acknowledge entries, `batch_size` per transaction, in order.

        Batches are pipelined (READ_BATCHES): while one batch's transaction runs, the next
        batch is decoded and the one before is dead-lettered and acknowledged.
        `retry`: the entries were delivered before (our own pending ones), so they are applied
        one per transaction: an entry that keeps failing, even transiently, then holds back
        only itself until max_deliveries sends it to the DLQ.
        """
        size = self.batch_size
        if retry or len(entries) <= size:
            decoded = await self._decode(entries, deliveries)
            await self._settle_shielded(await self._apply_decoded(decoded, deliveries, retry=retry))
            return
        batches = [entries[i : i + size] for i in range(0, len(entries), size)]
        decoded = await self._decode(batches[0], deliveries)
        settle: _Settle | None = None
        for following in [*batches[1:], None]:
            # A failure stops here: the following batches stay pending and are read again.
            jobs: list[Callable[[], Awaitable[Any]]] = [
                partial(self._apply_decoded, decoded, deliveries)
            ]
            if following is not None:
                jobs.append(partial(self._decode, following, deliveries, yielding=True))
            if settle is not None:
                jobs.append(partial(self._settle_shielded, settle))
            results = await gather(*jobs)
            settle = results[0]
            if following is not None:
                decoded = results[1]
        if settle is not None:
            await self._settle_shielded(settle)

    async def _decode(
        self, entries: Sequence[Entry], deliveries: Mapping[str, int], *, yielding: bool = False
    ) -> _Decoded[M]:
        """Sort entries into dead letters, entries to acknowledge as they are, and messages.

        `yielding`: another task (a transaction) runs beside this one; let it run every
        DECODE_SLICE seconds so that its next statement is not held back by the decoding.
        """
        decoded: _Decoded[M] = _Decoded()
        slice_end = time.perf_counter() + DECODE_SLICE
        for entry_id, fields in entries:
            if yielding and time.perf_counter() > slice_end:
                await trio.lowlevel.checkpoint()
                slice_end = time.perf_counter() + DECODE_SLICE
            if not fields:  # trimmed or deleted while pending: nothing left to apply
                decoded.done.append(entry_id)
                continue
            count = deliveries.get(entry_id, 1)
            if count > self.max_deliveries:
                reason = f"delivered {count} times, over max_deliveries={self.max_deliveries}"
                decoded.dead.append(
                    _DeadLetter(entry_id, fields, "MaxDeliveriesExceeded", reason, count)
                )
                continue
            try:
                message = self.handler.decode(fields)
            except DecodeError as exc:
                decoded.dead.append(_DeadLetter(entry_id, fields, "DecodeError", str(exc), count))
                continue
            except Exception as exc:  # a decoder bug must not stall the stream
                log.exception("consumer.decoder_bug", stream=self.stream, entry_id=entry_id)
                decoded.dead.append(
                    _DeadLetter(entry_id, fields, type(exc).__name__, str(exc), count)
                )
                continue
            if isinstance(message, IgnoredEntry):
                decoded.done.append(entry_id)
                decoded.ignored += 1
                continue
            decoded.good.append((entry_id, message))
            decoded.fields_of[entry_id] = fields
        return decoded

    async def _apply_decoded(
        self, decoded: _Decoded[M], deliveries: Mapping[str, int], *, retry: bool = False
    ) -> _Settle:
        """Apply one decoded batch; return what to dead-letter and acknowledge for it.

        If applying fails, what is known is settled at once (shielded), then the error raised.
        """
        dead, done, good = decoded.dead, decoded.done, decoded.good
        self._count("ignored", decoded.ignored)
        applied: list[str] = []
        rejected: list[_Rejected] = []

        def settlement() -> _Settle:
            letters = [
                _DeadLetter(
                    r.entry_id,
                    decoded.fields_of[r.entry_id],
                    r.error_type,
                    r.error,
                    deliveries.get(r.entry_id, 1),
                )
                for r in rejected
            ]
            return [*dead, *letters], [*done, *applied]

        try:
            if good:
                await self._apply(good, applied, rejected, one_by_one=retry)
                failpoints.hit("streams.after_commit")  # crash tests: committed, not acked
        except BaseException as exc:
            if isinstance(exc, TransientError):
                self._count("retried", len(good) - len(applied) - len(rejected))
            # Even when PostgreSQL is down, what needs no PostgreSQL is settled now.
            await self._settle_shielded(settlement())
            raise
        return settlement()

    async def _settle_shielded(self, settle: _Settle) -> None:
        """`_settle`, shielded from cancellation but bounded: whatever is left unacknowledged
        is simply delivered again."""
        with trio.CancelScope(shield=True), trio.move_on_after(SETTLE_TIMEOUT):
            await self._settle(*settle)

    async def _apply(
        self,
        good: list[tuple[str, M]],
        applied: list[str],
        rejected: list[_Rejected],
        *,
        one_by_one: bool,
    ) -> None:
        """Apply `good`, filling `applied` (ids committed) and `rejected` (ids and reasons).

        A rejection is anything but a TransientError: PostgreSQL refusing a statement, or an
        unexpected exception from the handler (bad data it did not foresee, or a bug: the DLQ
        keeps the entries for a replay once fixed). The batch goes in one transaction; if it is
        rejected, entry by entry. A TransientError propagates once PostgreSQL does not answer
        a probe either; what is not applied by then stays pending and is retried.
        """
        if not one_by_one:
            try:
                await self._apply_batch(good)
                applied += [entry_id for entry_id, _ in good]
                return
            except TransientError:
                raise
            except Exception as exc:
                if len(good) == 1:
                    rejected.append(await self._rejected(good[0][0], exc))
                    return
                log.warning(
                    "consumer.batch_rejected", stream=self.stream, entries=len(good), error=str(exc)
                )
        failure: TransientError | None = None
        for item in good:
            try:
                await self._apply_batch([item])
                applied.append(item[0])
            except TransientError as exc:
                await self._probe_postgres()  # down for real: stop here, retry later
                failure = exc  # only this entry fails: go on with the others
            except Exception as exc:
                rejected.append(await self._rejected(item[0], exc))
        if failure is not None:
            raise failure

    async def _rejected(self, entry_id: str, exc: Exception) -> _Rejected:
        if isinstance(exc, PostgresQueryError):
            self._error("query_error", exc)
        else:
            # An error nobody foresaw while PostgreSQL is going down is the outage, not the
            # entry: the probe raises PostgresUnavailable and the entry stays pending.
            await self._probe_postgres()
            self._error("handler_error", exc)
        return _Rejected(entry_id, type(exc).__name__, str(exc))

    async def _apply_batch(self, batch: Sequence[tuple[str, M]]) -> None:
        """Record the entry ids and apply the entries not recorded before, atomically.

        The common case (every entry new) is ONE statement, a transaction of its own; when an
        entry was recorded before (a redelivery), or the handler gives no statements, one
        transaction records the ids and applies only the new ones.
        """
        try:
            fresh = await self._apply_at_once(batch)
            if fresh is None:
                fresh = await self._apply_in_transaction(batch)
        except CircuitOpen as exc:  # PostgreSQL's breaker: down as far as we are concerned
            raise PostgresUnavailable(str(exc)) from exc
        # After COMMIT: the line says what really happened. One line per batch, naming each
        # entry with its correlation id: a line per entry would cost more than applying it.
        if fresh:
            log.info(
                "consumer.applied",
                stream=self.stream,
                entries=len(fresh),
                applied=[
                    {"entry_id": entry_id, **correlation_field(_correlation_id(message))}
                    for entry_id, message in fresh
                ],
            )
        self._count("applied", len(fresh))
        self._count("duplicate", len(batch) - len(fresh))
        self.stats.batches += 1
        if self.metrics is not None:
            self.metrics.stream_batches.labels(self.stream).inc()

    async def _apply_at_once(self, batch: Sequence[tuple[str, M]]) -> list[tuple[str, M]] | None:
        """Insert every entry id into processed_messages and apply the handler's statements,
        all in one statement (data-modifying CTEs): no BEGIN/COMMIT round trips. A unique
        violation means an id was recorded before: then nothing was applied, and None says
        so (as does a handler that gives no statements)."""
        if not isinstance(self.handler, StatementHandler):
            return None
        statements = self.handler.statements(batch)
        sql = _one_statement(tuple((text, len(args)) for text, args in statements))
        ids = [entry_id for entry_id, _ in batch]
        try:
            await self.postgres.execute(
                sql, self.stream_key, ids, *(arg for _, args in statements for arg in args)
            )
        except PostgresQueryError as exc:
            if exc.sqlstate != _UNIQUE_VIOLATION:
                raise
            return None
        return list(batch)

    async def _apply_in_transaction(self, batch: Sequence[tuple[str, M]]) -> list[tuple[str, M]]:
        """One transaction: record the entry ids, apply those not recorded before, COMMIT."""
        async with self.postgres.transaction() as tx:
            rows = await tx.fetch(
                "INSERT INTO processed_messages (stream, entry_id)"
                " SELECT $1, unnest($2::text[])"
                " ON CONFLICT DO NOTHING RETURNING entry_id",
                self.stream_key,
                [entry_id for entry_id, _ in batch],
            )
            new = {row["entry_id"] for row in rows}
            fresh = [item for item in batch if item[0] in new]
            if fresh:
                await self.handler.apply(tx, fresh)
        return fresh

    async def _settle(self, dead: Sequence[_DeadLetter], done: Sequence[str]) -> None:
        """Dead-letter and acknowledge in one MULTI round trip (a DLQ copy is never lost)."""
        if not dead and not done:
            return
        failed_at = utc_timestamp()
        commands: list[list[Any]] = []
        for letter in dead:
            extra = {
                "error": letter.error,
                "errorType": letter.error_type,
                "originalId": letter.entry_id,
                "deliveries": str(letter.deliveries),
                "failedAt": failed_at,
            }
            flat: list[Any] = []
            for key, value in [*letter.fields.items(), *extra.items()]:
                flat += [key, value]
            commands.append(["XADD", self.dlq_key, "MAXLEN", "~", DLQ_MAXLEN, "*", *flat])
            log.warning(
                "consumer.dead_letter",
                stream=self.stream,
                entry_id=letter.entry_id,
                error_type=letter.error_type,
                error=letter.error,
                **correlation_field(letter.fields.get(b"correlationId")),
            )
        ids = [letter.entry_id for letter in dead] + list(done)
        commands.append(["XACK", self.stream_key, CONSUMER_GROUP, *ids])
        await self.redis.pipeline(commands, transaction=True)
        self._count("dead_lettered", len(dead))

    # ------------------------------------------------------------------ housekeeping

    async def _maintain(self) -> None:
        now = trio.current_time()
        if now >= self._next_reclaim:
            self._next_reclaim = now + self.reclaim_interval
            await self.reclaim()
        if now >= self._next_trim:
            self._next_trim = now + self.trim_interval
            await self.trim()
        if now >= self._next_prune:
            self._next_prune = now + self.prune_interval
            await self.prune()

    async def reclaim(self) -> int:
        """Take over entries idle longer than `min_idle` and handle them; return how many."""
        cursor = "0-0"
        total = 0
        while not self.stopping.is_set():
            reply = await self.redis.execute(
                "XAUTOCLAIM",
                self.stream_key,
                CONSUMER_GROUP,
                self.consumer_name,
                int(self.min_idle * 1000),
                cursor,
                "COUNT",
                self.batch_size,
            )
            cursor = _text(reply[0])
            entries = [(_text(i), fields or {}) for i, fields in reply[1]]
            if entries:
                total += len(entries)
                self._count("reclaimed", len(entries))
                log.info("consumer.reclaimed", stream=self.stream, entries=len(entries))
                await self._handle(entries, await self._deliveries(entries))
            if cursor == "0-0":
                break
        return total

    async def trim(self) -> int:
        """XTRIM MINID below the oldest entry any group still has pending or undelivered."""
        groups = await self.redis.execute("XINFO", "GROUPS", self.stream_key)
        floor: tuple[int, int] | None = None
        for group in groups or []:
            info = {_text(k): v for k, v in group.items()}
            summary = await self.redis.execute("XPENDING", self.stream_key, info["name"])
            oldest = summary["min"] if summary["pending"] else info["last-delivered-id"]
            key = id_key(oldest)
            floor = key if floor is None else min(floor, key)
        if floor is None or floor == (0, 0):
            return 0
        trimmed = int(
            await self.redis.execute("XTRIM", self.stream_key, "MINID", f"{floor[0]}-{floor[1]}")
        )
        self.stats.trimmed += trimmed
        return trimmed

    async def prune(self) -> int:
        """Delete processed_messages rows of this stream older than `retention`."""
        try:
            status = await self.postgres.execute(
                "DELETE FROM processed_messages WHERE stream = $1"
                " AND processed_at < now() - make_interval(secs => $2)",
                self.stream_key,
                self.retention,
            )
        except PostgresQueryError as exc:
            self._error("query_error", exc)
            return 0
        except CircuitOpen as exc:
            raise PostgresUnavailable(str(exc)) from exc
        pruned = int(status.rsplit(" ", 1)[-1])
        self.stats.pruned += pruned
        return pruned

    # ------------------------------------------------------------------ counting

    def _count(self, outcome: str, n: int) -> None:
        if not n:
            return
        match outcome:
            case "applied":
                self.stats.applied += n
            case "duplicate":
                self.stats.duplicates += n
            case "ignored":
                self.stats.ignored += n
            case "dead_lettered":
                self.stats.dead_lettered += n
            case "reclaimed":
                self.stats.reclaimed += n
            case "retried":
                self.stats.retried += n
        if self.metrics is not None:
            self.metrics.stream_entries.labels(self.stream, outcome).inc(n)

    def _error(self, kind: str, exc: BaseException) -> None:
        if kind == "nogroup":
            self.stats.nogroup += 1
        elif kind == "redis_unavailable":
            self.stats.redis_errors += 1
        if self.metrics is not None:
            self.metrics.stream_errors.labels(self.stream, kind).inc()
        level = (
            log.error if kind in ("query_error", "handler_error", "backend_error") else log.warning
        )
        # A traceback only where it helps: an exception nobody foresaw.
        trace = exc if kind == "handler_error" else None
        level("consumer.error", stream=self.stream, kind=kind, error=str(exc), exc_info=trace)


def _correlation_id(message: object) -> str | None:
    cid = getattr(message, "correlation_id", None)
    return cid if isinstance(cid, str) else None


# The SQLSTATE of a unique violation, as the gateway's error message carries it.
_UNIQUE_VIOLATION = "23505"
_PLACEHOLDER = re.compile(r"\$(\d+)")


@functools.lru_cache(maxsize=64)
def _one_statement(statements: tuple[tuple[str, int], ...]) -> str:
    """One statement that records the batch's ids ($1 the stream, $2 the ids; no ON CONFLICT,
    so an id recorded before fails it all) and runs the handler's statements (their SQL and
    argument counts), renumbered to follow. Data-modifying CTEs run exactly once, whether the
    main query reads them or not."""
    parts = [
        "recorded AS (INSERT INTO processed_messages (stream, entry_id)"
        " SELECT $1, unnest($2::text[]))"
    ]
    offset = 2
    for index, (sql, count) in enumerate(statements):
        renumbered = _PLACEHOLDER.sub(partial(_shifted, offset), sql)
        parts.append(f"effect{index} AS ({renumbered})")
        offset += count
    return "WITH " + ",\n".join(parts) + "\nSELECT 1"


def _shifted(offset: int, placeholder: re.Match[str]) -> str:
    return f"${int(placeholder[1]) + offset}"
