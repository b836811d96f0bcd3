"""The PostgreSQL side of the relay: take committed outbox rows, hand them over, delete them.

`OutboxStore` is the typed interface the relay calls; `PostgresOutbox` implements it (tests
use an in-memory one). Rows are taken with `FOR UPDATE SKIP LOCKED` inside one transaction that
deletes them once they are published, so several relays (one per process) never publish one
row at the same time, and a relay that dies mid-way leaves its rows to the next one (whose
publish finds them marked in Redis if they got there: `kaleido.outbox.publish`).

How errors behave: PostgreSQL down is `PostgresUnavailable` (or `CircuitOpen`); whatever
`publish` raises propagates and nothing is deleted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import attrs

from kaleido.gateways import PostgresGateway, Transaction
from kaleido.messages import encode_aggregation_trigger
from kaleido.outbox.render import render_aggregation

_TAKE = """
SELECT id, stream, kind, fields, subject FROM outbox
ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
"""
_DELETE = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"
_BACKLOG = """
SELECT count(*) AS rows, min(id) AS lowest,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest
FROM outbox
"""


@attrs.frozen
class Announcement:
    """One outbox row ready to publish: `fields` in order, or None when there is nothing to
    publish any more (an aggregation claim superseded by a new media set)."""

    outbox_id: int
    stream: str
    fields: tuple[tuple[str, str], ...] | None


@attrs.frozen
class Backlog:
    """What waits in the outbox: rows, the lowest row id (None when empty), the oldest's age."""

    rows: int
    lowest_id: int | None
    oldest_seconds: float


Publish = Callable[[Sequence[Announcement]], Awaitable[None]]


class OutboxStore(Protocol):
    async def relay(self, limit: int, publish: Publish) -> int:
        """Take up to `limit` rows no other relay holds, `publish` them, delete them, in one
        transaction; return how many rows were taken. If `publish` raises, none is deleted."""
        ...

    async def backlog(self) -> Backlog:
        """The outbox's size and age."""
        ...


async def _announcement(tx: Transaction, row: object) -> Announcement:
    entry = dict(row)  # type: ignore[call-overload]
    if entry["kind"] == "aggregation":
        trigger = await render_aggregation(tx, entry["subject"])
        fields = None if trigger is None else tuple(encode_aggregation_trigger(trigger).items())
    else:
        flat = entry["fields"]
        fields = tuple(zip(flat[0::2], flat[1::2], strict=True))
    return Announcement(entry["id"], entry["stream"], fields)


@attrs.frozen
class PostgresOutbox:
    """`OutboxStore` over the PostgreSQL gateway and the `outbox` table."""

    postgres: PostgresGateway

    async def relay(self, limit: int, publish: Publish) -> int:
        async with self.postgres.transaction() as tx:
            rows = await tx.fetch(_TAKE, limit)
            if not rows:
                return 0
            announcements = [await _announcement(tx, row) for row in rows]
            await publish(announcements)
            await tx.execute(_DELETE, [a.outbox_id for a in announcements])
        return len(rows)

    async def backlog(self) -> Backlog:
        row = await self.postgres.fetchrow(_BACKLOG)
        return Backlog(int(row["rows"]), row["lowest"], float(row["oldest"]))
