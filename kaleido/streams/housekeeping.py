"""A consumer's housekeeping, run between batches when due: take over entries of dead
consumers (the consumer's own job, called from here), trim the stream below the oldest entry
any group still needs, and prune old `processed_messages` rows.

Trimming never removes an entry a group has pending or has not yet been delivered: the floor
is the lowest, over every group, of its oldest pending id or (nothing pending) its last
delivered id. Pruning keeps rows while an entry can still be redelivered (`retention`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
import trio

from kaleido.errors import PostgresQueryError
from kaleido.replies import id_text
from kaleido.streams.counters import ConsumerCounters
from kaleido.streams.inbound import InboundStream
from kaleido.streams.ledger import EffectLedger

RECLAIM_INTERVAL = 30.0
TRIM_INTERVAL = 60.0
PRUNE_INTERVAL = 3600.0
# processed_messages rows are needed only while an entry can still be redelivered.
RETENTION = 7 * 24 * 3600.0


@attrs.define
class Housekeeping:
    """The schedule and the chores of one consumer."""

    inbound: InboundStream
    ledger: EffectLedger
    counters: ConsumerCounters
    stream_key: str
    reclaim_interval: float = RECLAIM_INTERVAL
    trim_interval: float = TRIM_INTERVAL
    prune_interval: float = PRUNE_INTERVAL
    retention: float = RETENTION
    _next_reclaim: float = attrs.field(default=0.0, init=False)
    _next_trim: float = attrs.field(default=0.0, init=False)
    _next_prune: float = attrs.field(default=0.0, init=False)

    def start(self) -> None:
        """On (re)start: reclaim and prune at once (entries of consumers that died before we
        started), trim after an interval."""
        now = trio.current_time()
        self._next_reclaim = now
        self._next_trim = now + self.trim_interval
        self._next_prune = now

    async def run_due(self, reclaim: Callable[[], Awaitable[int]]) -> None:
        """Run the chores that are due; `reclaim` takes over and handles stale entries."""
        now = trio.current_time()
        if now >= self._next_reclaim:
            self._next_reclaim = now + self.reclaim_interval
            await reclaim()
        if now >= self._next_trim:
            self._next_trim = now + self.trim_interval
            await self.trim()
        if now >= self._next_prune:
            self._next_prune = now + self.prune_interval
            await self.prune()

    async def trim(self) -> int:
        """Trim below the oldest entry any group still has pending or undelivered."""
        floors = [group.floor for group in await self.inbound.group_positions()]
        if not floors or min(floors) == (0, 0):
            return 0
        trimmed = await self.inbound.trim_below(id_text(min(floors)))
        self.counters.stats.trimmed += trimmed
        return trimmed

    async def prune(self) -> int:
        """Delete processed_messages rows of this stream older than `retention`."""
        try:
            pruned = await self.ledger.prune(self.stream_key, self.retention)
        except PostgresQueryError as exc:
            self.counters.error("query_error", exc)
            return 0
        self.counters.stats.pruned += pruned
        return pruned
