"""What a handler is, and the pieces its statements share.

A handler decodes one inbound stream's entries and applies a batch of them. `statements` (the
`StatementHandler` form) gives one set-based statement per kind of effect per batch (rows passed
as `unnest` arrays), not one per entry; the consumer runs them inside its transaction, or joined
with its `processed_messages` insert into one statement.

**A batch is an optimisation, never a meaning** (docs/DESIGN.md): the effect, the dead letters
and the counts of a batch are those of its entries applied one by one in stream order.
- Entries of one batch that touch the same row are merged in Python, in stream order, with the
  rules the SQL applies to the stored row (an upsert cannot touch one row twice anyway).
- Every per-entry check runs per entry: a row is keyed by everything an entry names (a result
  names its media AND its post), so an entry naming another post than its neighbours is a row
  of its own; the owner check (`kaleido_media_of_post`) then refuses it, the whole statement
  fails, and the batch is retried entry by entry, where only that entry is dead-lettered.
- A handler whose entries may be refused for what is stored (a stale answer) reads what it
  needs per entry inside the transaction (`apply`) and reports those entries as stale.

**Stream order, whatever the order of application.** Entries may be applied out of stream
order (a read whose reply was lost leaves its entries to a later re-read; a dead consumer's
entries are reclaimed after newer ones; several processes share a group). Each stored value
remembers the `position` of the entry that set it, and an older entry never overwrites a newer
one (migration 0006, `kaleido_newer`), so any order of application ends where stream order
ends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import attrs

from kaleido.gateways import Transaction
from kaleido.messages import Fields, IgnoredEntry
from kaleido.replies import id_key

M = TypeVar("M")
A = TypeVar("A", bound="Answer")
M_contra = TypeVar("M_contra", contravariant=True)

Statement = tuple[str, tuple[Any, ...]]
# Entry ids a handler recorded without effect: answers to a request that was superseded.
Stale = frozenset[str]
NOTHING_STALE: Stale = frozenset()


class Handler(Protocol[M]):
    """Decoding and applying for one inbound stream."""

    @property
    def stream(self) -> str:
        """The contract's stream name."""
        ...

    def decode(self, fields: Fields) -> M | IgnoredEntry:
        """The message, or IgnoredEntry; raises `DecodeError` for a bad entry."""
        ...

    async def apply(self, tx: Transaction, messages: Sequence[tuple[str, M]]) -> Stale:
        """Apply the effects of `messages` (entry id, message), in stream order; return the
        ids of those that were stale (recorded, no effect)."""
        ...


@runtime_checkable
class StatementHandler(Protocol[M_contra]):
    """A handler whose effects are statements the consumer may run as it sees fit: the
    consumer runs them with the batch's `processed_messages` insert as ONE statement (data-
    modifying CTEs), which is a transaction of its own (no BEGIN/COMMIT round trips)."""

    def statements(self, messages: Sequence[tuple[str, M_contra]]) -> list[Statement]:
        """The statements (SQL, arguments) that apply `messages`; they touch different rows
        (or tables), so their order does not matter."""
        ...


def position(entry_id: str) -> int:
    """An entry's place in its stream as one number (milliseconds * 2^64 + sequence): the
    order of stream ids, as PostgreSQL compares `numeric` values."""
    ms, seq = id_key(entry_id)
    return ms << 64 | seq


def positions(values: Sequence[int | None]) -> list[str | None]:
    """Positions as `numeric` parameters (text: asyncpg's numeric codec wants Decimal)."""
    return [None if v is None else str(v) for v in values]


async def execute(tx: Transaction, statements: list[Statement]) -> Stale:
    for sql, args in statements:
        await tx.execute(sql, *args)
    return NOTHING_STALE


class Answer(Protocol):
    """A result that answers one request, named by the request's correlation id."""

    @property
    def correlation_id(self) -> str: ...


async def answers_to_latest(
    tx: Transaction,
    latest: str,
    column: str,
    messages: Sequence[tuple[str, A]],
    subject: Callable[[A], int],
) -> tuple[list[tuple[str, A]], Stale]:
    """Split `messages` into the answers to their subject's latest request (in stream order)
    and the ids of the others: an answer without a correlation id, or to a superseded request,
    is stale. `latest` reads the latest request's `correlation_id` of each subject in
    `ANY($1)`, the subject in `column` (a row lock it takes holds to the transaction's end)."""
    subjects = sorted({subject(m) for _, m in messages})
    current = {row[column]: row["correlation_id"] for row in await tx.fetch(latest, subjects)}
    answers = []
    stale = set()
    for entry_id, answer in messages:
        if answer.correlation_id and current.get(subject(answer)) == answer.correlation_id:
            answers.append((entry_id, answer))
        else:
            stale.add(entry_id)
    return answers, frozenset(stale)


def array_literal(values: Sequence[float]) -> str:
    """A PostgreSQL array literal: ragged arrays per row cannot go through unnest otherwise."""
    return "{" + ",".join(map(repr, values)) + "}"


@attrs.define
class Packed:
    """The float arrays of one batch (ragged, some NULL) as ONE 2-D real[] parameter.

    asyncpg checks every element of a 1-D list parameter for being a nested array (an ABC
    isinstance per float, several times the cost of encoding it), but of a 2-D one only the
    first row. So the arrays are cut into rows of `width` floats (the most common length, so
    a typical array is exactly one row; the last row of an array is padded with NULLs), and
    array i is rows `first[i]..last[i]` flattened and cut to `lengths[i]` (see `unpacked`).
    """

    rows: list[list[float | None]] = attrs.Factory(list)
    first: list[int | None] = attrs.Factory(list)
    last: list[int | None] = attrs.Factory(list)
    lengths: list[int | None] = attrs.Factory(list)

    @classmethod
    def of(cls, arrays: Sequence[Sequence[float] | None]) -> Packed:
        packed = cls()
        sizes = Counter(len(a) for a in arrays if a)
        width = sizes.most_common(1)[0][0] if sizes else 1
        rows = packed.rows
        for values in arrays:
            if not values:  # NULL stays NULL, and an empty array needs no rows
                packed.first.append(None)
                packed.last.append(None)
                packed.lengths.append(None if values is None else 0)
                continue
            packed.first.append(len(rows) + 1)  # PostgreSQL subscripts start at 1
            if len(values) == width:
                rows.append(list(values))
            else:
                for start in range(0, len(values), width):
                    row: list[float | None] = list(values[start : start + width])
                    row += [None] * (width - len(row))
                    rows.append(row)
            packed.last.append(len(rows))
            packed.lengths.append(len(values))
        return packed


def unpacked(matrix: str, first: str, last: str, length: str) -> str:
    """SQL for one array of a `Packed` (NULL stays NULL; a zero length gives '{}')."""
    return (
        f"CASE WHEN {length} IS NULL THEN NULL"
        f" WHEN {length} = 0 THEN '{{}}'::real[]"
        f" ELSE (ARRAY(SELECT unnest(({matrix}::real[])[{first}:{last}][:])))[1:{length}] END"
    )
