"""The batch pipeline of a consumer: triage, apply exactly once, then dead-letter and
acknowledge ("settle") in one script call. At-least-once delivery, exactly-once effects.

Entries are applied `batch_size` per transaction, in order. When more than one batch was read
at once they are pipelined: while one batch's transaction runs, the next batch is decoded and
the one before is settled. Entries delivered before (retries) are applied one per transaction,
so an entry that keeps failing, even transiently, holds back only itself until
`max_deliveries` sends it to the DLQ.

How errors behave: a statement PostgreSQL rejects, or an unexpected exception from the handler,
makes the batch go entry by entry so the good ones go through and the bad one is
dead-lettered with the reason. A TransientError propagates once PostgreSQL does not answer a
probe either; what is not applied by then stays pending. Whatever is known is settled
(shielded, time-bounded) before an error propagates; what is left unacknowledged is simply
delivered again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, Generic, TypeVar

import attrs
import trio

from kaleido import failpoints
from kaleido.concurrency import gather
from kaleido.errors import PostgresQueryError, TransientError
from kaleido.logs import correlation_field
from kaleido.messages.dlq import Rejection
from kaleido.replies import id_key
from kaleido.streams.counters import ConsumerCounters, log
from kaleido.streams.handlers import Handler
from kaleido.streams.inbound import Entry, InboundStream
from kaleido.streams.ledger import EffectLedger
from kaleido.streams.triage import MAX_DELIVERIES_EXCEEDED, Triaged, triage

M = TypeVar("M")

# Settling (DLQ + XACK) is shielded from cancellation, but not for longer than this.
SETTLE_TIMEOUT = 5.0

# What to dead-letter, and the ids to acknowledge as they are, for one batch.
Settlement = tuple[list[Rejection], list[str]]


@attrs.frozen
class _Refused:
    entry_id: str
    error_type: str
    error: str


@attrs.define
class BatchPipeline(Generic[M]):
    """Handles entries read from one stream (see the module docstring)."""

    inbound: InboundStream
    ledger: EffectLedger
    handler: Handler[M]
    counters: ConsumerCounters
    stream_key: str  # what processed_messages records the entries under
    max_deliveries: int
    batch_size: int

    @property
    def stream(self) -> str:
        return self.handler.stream

    async def handle(
        self, entries: Sequence[Entry], deliveries: Mapping[str, int], *, retry: bool = False
    ) -> None:
        """Triage, apply and settle `entries`, in order. `retry`: they were delivered before
        (our own pending ones): one per transaction."""
        size = self.batch_size
        if retry or len(entries) <= size:
            triaged = await self._triage(entries, deliveries)
            await self.settle(await self._apply_triaged(triaged, deliveries, retry=retry))
            return
        batches = [entries[i : i + size] for i in range(0, len(entries), size)]
        triaged = await self._triage(batches[0], deliveries)
        settlement: Settlement | None = None
        for following in [*batches[1:], None]:
            # A failure stops here: the following batches stay pending and are read again.
            jobs: list[Callable[[], Awaitable[Any]]] = [
                partial(self._apply_triaged, triaged, deliveries)
            ]
            if following is not None:
                jobs.append(partial(self._triage, following, deliveries, yielding=True))
            if settlement is not None:
                jobs.append(partial(self.settle, settlement))
            results = await gather(*jobs)
            settlement = results[0]
            if following is not None:
                triaged = results[1]
        if settlement is not None:
            await self.settle(settlement)

    async def _triage(
        self, entries: Sequence[Entry], deliveries: Mapping[str, int], *, yielding: bool = False
    ) -> Triaged[M]:
        return await triage(
            entries,
            deliveries,
            self.handler.decode,
            max_deliveries=self.max_deliveries,
            stream=self.stream,
            yielding=yielding,
        )

    async def _apply_triaged(
        self, triaged: Triaged[M], deliveries: Mapping[str, int], *, retry: bool = False
    ) -> Settlement:
        """Apply one triaged batch; return what to dead-letter and acknowledge for it.

        If applying fails, what is known is settled at once (shielded), then the error raised.
        """
        self.counters.entries("ignored", triaged.ignored)
        applied: list[str] = []
        refused: list[_Refused] = []

        def settlement() -> Settlement:
            letters = [
                Rejection(
                    r.entry_id,
                    triaged.fields_of[r.entry_id],
                    r.error_type,
                    r.error,
                    deliveries.get(r.entry_id, 1),
                )
                for r in refused
            ]
            # In stream order, as one by one would write them (triage finds some, PostgreSQL
            # refuses others).
            dead = sorted([*triaged.dead, *letters], key=lambda r: id_key(r.entry_id))
            return dead, [*triaged.done, *applied]

        good = triaged.good
        try:
            await self._spare_the_applied(triaged)
            if good:
                await self._apply(good, applied, refused, one_by_one=retry)
                failpoints.hit("streams.after_commit")  # crash tests: committed, not acked
        except BaseException as exc:
            if isinstance(exc, TransientError):
                self.counters.entries("retried", len(good) - len(applied) - len(refused))
            # Even when PostgreSQL is down, what needs no PostgreSQL is settled now.
            await self.settle(settlement())
            raise
        return settlement()

    async def _spare_the_applied(self, triaged: Triaged[M]) -> None:
        """Acknowledge, instead of dead-lettering, the entries past `max_deliveries` that were
        applied already: a commit whose reply was lost (then retried until the limit) applied
        the entry, and its effect stands. If PostgreSQL cannot say, they stay pending."""
        over = [r.entry_id for r in triaged.dead if r.error_type == MAX_DELIVERIES_EXCEEDED]
        if not over:
            return
        try:
            recorded = await self.ledger.recorded(self.stream_key, over)
        except BaseException:
            triaged.dead = [r for r in triaged.dead if r.error_type != MAX_DELIVERIES_EXCEEDED]
            raise
        triaged.dead = [r for r in triaged.dead if r.entry_id not in recorded]
        triaged.done += [entry_id for entry_id in over if entry_id in recorded]
        self.counters.entries("duplicate", len(recorded))

    async def _apply(
        self,
        good: list[tuple[str, M]],
        applied: list[str],
        refused: list[_Refused],
        *,
        one_by_one: bool,
    ) -> None:
        """Apply `good`, filling `applied` (ids committed) and `refused` (ids and reasons).

        A refusal is anything but a TransientError: PostgreSQL rejecting a statement, or an
        unexpected exception from the handler (bad data it did not foresee, or a bug: the DLQ
        keeps the entries for a replay once fixed).
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
                    refused.append(await self._refused(good[0][0], exc))
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
                await self.ledger.probe()  # down for real: stop here, retry later
                failure = exc  # only this entry fails: go on with the others
            except Exception as exc:
                refused.append(await self._refused(item[0], exc))
        if failure is not None:
            raise failure

    async def _refused(self, entry_id: str, exc: Exception) -> _Refused:
        if isinstance(exc, PostgresQueryError):
            self.counters.error("query_error", exc)
        else:
            # An error nobody foresaw while PostgreSQL is going down is the outage, not the
            # entry: the probe raises PostgresUnavailable and the entry stays pending.
            await self.ledger.probe()
            self.counters.error("handler_error", exc)
        return _Refused(entry_id, type(exc).__name__, str(exc))

    async def _apply_batch(self, batch: Sequence[tuple[str, M]]) -> None:
        done = await self.ledger.apply_once(self.stream_key, self.handler, batch)
        fresh, stale = done.fresh, done.stale
        # After COMMIT: the line says what really happened. One line per batch, naming each
        # entry with its correlation id: a line per entry would cost more than applying it.
        if fresh:
            log.info(
                "consumer.applied",
                stream=self.stream,
                entries=len(fresh),
                applied=[
                    {
                        "entry_id": entry_id,
                        **correlation_field(_correlation_id(message)),
                        **({"stale": True} if entry_id in stale else {}),
                    }
                    for entry_id, message in fresh
                ],
            )
        self.counters.entries("applied", len(fresh) - len(stale))
        self.counters.entries("stale", len(stale))
        self.counters.entries("duplicate", len(batch) - len(fresh))
        self.counters.batch()

    async def settle(self, settlement: Settlement) -> None:
        """Dead-letter and acknowledge in one script call (a DLQ copy is never lost, and made
        only by the XACK that acknowledged its entry: a call run again after its reply was
        lost copies nothing twice), shielded from cancellation but bounded: whatever is left
        unacknowledged is simply delivered again."""
        dead, done = settlement
        if not dead and not done:
            return
        # Logged before the write, so the line is there by the time the DLQ entry is.
        for letter in dead:
            log.warning(
                "consumer.dead_letter",
                stream=self.stream,
                entry_id=letter.entry_id,
                error_type=letter.error_type,
                error=letter.error,
                **correlation_field(letter.fields.get(b"correlationId")),
            )
        with trio.CancelScope(shield=True), trio.move_on_after(SETTLE_TIMEOUT):
            await self.inbound.dead_letter_and_ack(dead, done)
            self.counters.entries("dead_lettered", len(dead))


def _correlation_id(message: object) -> str | None:
    cid = getattr(message, "correlation_id", None)
    return cid if isinstance(cid, str) else None
