"""The PostgreSQL side of the consumer: apply a batch's effects exactly once.

Each applied entry's `(stream, entry id)` is recorded in `processed_messages` in the same
transaction as its effects: an id recorded before was applied before and is skipped, so a
redelivered entry has no second effect. `EffectLedger` is the typed interface the consumer
calls; `PostgresLedger` implements it (tests use an in-memory one).

The common case (every entry new) is ONE statement: the id insert and the handler's
statements as data-modifying CTEs, no BEGIN/COMMIT round trips; an id recorded before makes
it fail whole (unique violation), and the batch goes through a transaction instead.

A handler may report entries it recorded without effect (stale answers, see
`kaleido.streams.handlers.base`); they are applied as far as the ledger is concerned (recorded,
never applied again) and reported apart.

How errors behave: PostgreSQL down, or its breaker open, is `PostgresUnavailable`; a
statement PostgreSQL rejects is `PostgresQueryError`; an exception from the handler's own
`apply` propagates as it is. Nothing is recorded when anything fails.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from functools import partial
from typing import Generic, Protocol, TypeVar

import attrs

from kaleido.errors import CircuitOpen, PostgresQueryError, PostgresUnavailable
from kaleido.gateways import PostgresGateway
from kaleido.streams.handlers import NOTHING_STALE, Handler, Stale, StatementHandler

M = TypeVar("M")


@attrs.frozen
class Applied(Generic[M]):
    """What one `apply_once` did: the entries applied now (recorded for the first time), in
    batch order, and which of them the handler found stale."""

    fresh: list[tuple[str, M]]
    stale: Stale = NOTHING_STALE


_UNIQUE_VIOLATION = "23505"
_PLACEHOLDER = re.compile(r"\$(\d+)")

_RECORD_NEW = (
    "INSERT INTO processed_messages (stream, entry_id)"
    " SELECT $1, unnest($2::text[])"
    " ON CONFLICT DO NOTHING RETURNING entry_id"
)
_RECORDED = (
    "SELECT entry_id FROM processed_messages WHERE stream = $1 AND entry_id = ANY($2::text[])"
)
_PRUNE = (
    "DELETE FROM processed_messages WHERE stream = $1"
    " AND processed_at < now() - make_interval(secs => $2)"
)


class EffectLedger(Protocol):
    """Where entries are applied once and recorded."""

    async def apply_once(
        self, stream_key: str, handler: Handler[M], batch: Sequence[tuple[str, M]]
    ) -> Applied[M]:
        """Record the batch's entry ids and apply, with `handler`, the entries not recorded
        before, atomically; return those applied now (in batch order)."""
        ...

    async def recorded(self, stream_key: str, entry_ids: Sequence[str]) -> set[str]:
        """Which of `entry_ids` were applied (recorded) before."""
        ...

    async def probe(self) -> None:
        """Return if PostgreSQL answers; PostgresUnavailable if it (or its breaker) says no."""
        ...

    async def prune(self, stream_key: str, older_than: float) -> int:
        """Forget records of `stream_key` older than `older_than` seconds; return how many."""
        ...


@attrs.frozen
class PostgresLedger:
    """`EffectLedger` over the PostgreSQL gateway and the `processed_messages` table."""

    postgres: PostgresGateway

    async def apply_once(
        self, stream_key: str, handler: Handler[M], batch: Sequence[tuple[str, M]]
    ) -> Applied[M]:
        try:
            applied = await self._apply_at_once(stream_key, handler, batch)
            if applied is None:
                applied = await self._apply_in_transaction(stream_key, handler, batch)
        except CircuitOpen as exc:  # PostgreSQL's breaker: down as far as we are concerned
            raise PostgresUnavailable(str(exc)) from exc
        return applied

    async def _apply_at_once(
        self, stream_key: str, handler: Handler[M], batch: Sequence[tuple[str, M]]
    ) -> Applied[M] | None:
        """Everything in one statement; None when an id was recorded before (then nothing
        was applied), or when the handler gives no statements. A reply lost after it ran is
        as a lost COMMIT (`_apply_in_transaction`): the redelivery finds the ids recorded."""
        if not isinstance(handler, StatementHandler):
            return None
        statements = handler.statements(batch)
        sql = one_statement(tuple((text, len(args)) for text, args in statements))
        ids = [entry_id for entry_id, _ in batch]
        try:
            await self.postgres.execute(
                sql, stream_key, ids, *(arg for _, args in statements for arg in args)
            )
        except PostgresQueryError as exc:
            if exc.sqlstate != _UNIQUE_VIOLATION:
                raise
            return None
        return Applied(list(batch))

    async def _apply_in_transaction(
        self, stream_key: str, handler: Handler[M], batch: Sequence[tuple[str, M]]
    ) -> Applied[M]:
        """One transaction: record the entry ids, apply those not recorded before, COMMIT.

        Ambiguous call: a COMMIT whose reply was lost leaves the entries unacknowledged; when
        they are delivered again their recorded ids make this apply nothing, and they are
        acknowledged (tests/campaign/test_lost_replies.py)."""
        stale = NOTHING_STALE
        async with self.postgres.transaction() as tx:
            rows = await tx.fetch(_RECORD_NEW, stream_key, [entry_id for entry_id, _ in batch])
            new = {row["entry_id"] for row in rows}
            fresh = [item for item in batch if item[0] in new]
            if fresh:
                stale = await handler.apply(tx, fresh)
        return Applied(fresh, stale)

    async def recorded(self, stream_key: str, entry_ids: Sequence[str]) -> set[str]:
        try:
            rows = await self.postgres.fetch(_RECORDED, stream_key, list(entry_ids))
        except CircuitOpen as exc:
            raise PostgresUnavailable(str(exc)) from exc
        return {row["entry_id"] for row in rows}

    async def probe(self) -> None:
        try:
            await self.postgres.fetchval("SELECT 1")
        except CircuitOpen as exc:
            raise PostgresUnavailable(str(exc)) from exc

    async def prune(self, stream_key: str, older_than: float) -> int:
        try:
            status = await self.postgres.execute(_PRUNE, stream_key, older_than)
        except CircuitOpen as exc:
            raise PostgresUnavailable(str(exc)) from exc
        return int(status.rsplit(" ", 1)[-1])


@functools.lru_cache(maxsize=64)
def one_statement(statements: tuple[tuple[str, int], ...]) -> str:
    """One statement that records the batch's ids ($1 the stream, $2 the ids; no ON CONFLICT,
    so an id recorded before fails it all) and runs the handler's statements (their SQL and
    argument counts), their placeholders renumbered to follow. Data-modifying CTEs run
    exactly once, whether the main query reads them or not.

    Handlers write `$n` only as placeholders (never inside a string literal), so renumbering
    by pattern is exact; `tests/test_consumer_unit.py` checks it on every handler's SQL.
    """
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
