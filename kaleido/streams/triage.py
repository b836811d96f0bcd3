"""Triage of a batch read from a stream: what to dead-letter, what to acknowledge as it is,
and the decoded messages to apply (no I/O).

- An entry with no fields (deleted or trimmed while pending) is acknowledged: nothing is left.
- An entry delivered more than `max_deliveries` times is dead-lettered (MaxDeliveriesExceeded),
  unless it was applied already (the batch pipeline asks the ledger).
- An entry the handler cannot decode is dead-lettered with the `DecodeError` (field: reason);
  any other exception from a decoder (a bug) is dead-lettered too, so it cannot stall the
  stream.
- An `IgnoredEntry` is acknowledged and counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Generic, TypeVar

import attrs
import trio

from kaleido.messages import DecodeError, Fields, IgnoredEntry
from kaleido.messages.dlq import Rejection
from kaleido.streams.counters import log
from kaleido.streams.inbound import Entry

M = TypeVar("M")

MAX_DELIVERIES_EXCEEDED = "MaxDeliveriesExceeded"
# While decoding beside a transaction, let the transaction's task run at least this often.
DECODE_SLICE = 0.001


@attrs.define
class Triaged(Generic[M]):
    """One batch, sorted."""

    dead: list[Rejection] = attrs.Factory(list)
    done: list[str] = attrs.Factory(list)  # deleted or ignored entries: acknowledged as they are
    ignored: int = 0
    good: list[tuple[str, M]] = attrs.Factory(list)
    fields_of: dict[str, Mapping[bytes, bytes]] = attrs.Factory(dict)  # of the `good` ones


async def triage(
    entries: Sequence[Entry],
    deliveries: Mapping[str, int],
    decode: Callable[[Fields], M | IgnoredEntry],
    *,
    max_deliveries: int,
    stream: str,
    yielding: bool = False,
) -> Triaged[M]:
    """Sort `entries` (see the module docstring); `deliveries` counts default to 1.

    `yielding`: another task (a transaction) runs beside this one; let it run every
    DECODE_SLICE seconds so that its next statement is not held back by the decoding.
    """
    out: Triaged[M] = Triaged()
    slice_end = time.perf_counter() + DECODE_SLICE
    for entry in entries:
        if yielding and time.perf_counter() > slice_end:
            await trio.lowlevel.checkpoint()
            slice_end = time.perf_counter() + DECODE_SLICE
        entry_id, fields = entry.id, entry.fields
        if not fields:
            out.done.append(entry_id)
            continue
        count = deliveries.get(entry_id, 1)
        if count > max_deliveries:
            reason = f"delivered {count} times, over max_deliveries={max_deliveries}"
            out.dead.append(Rejection(entry_id, fields, MAX_DELIVERIES_EXCEEDED, reason, count))
            continue
        try:
            message = decode(fields)
        except DecodeError as exc:
            out.dead.append(Rejection(entry_id, fields, "DecodeError", str(exc), count))
            continue
        except Exception as exc:  # a decoder bug must not stall the stream
            log.exception("consumer.decoder_bug", stream=stream, entry_id=entry_id)
            out.dead.append(Rejection(entry_id, fields, type(exc).__name__, str(exc), count))
            continue
        if isinstance(message, IgnoredEntry):
            out.done.append(entry_id)
            out.ignored += 1
            continue
        out.good.append((entry_id, message))
        out.fields_of[entry_id] = fields
    return out
