"""Dead-letter streams (`{stream}:dlq`): list, replay onto the stream, purge.

`dlq_page` reads one page (optionally of one error type) for the ops console, and
`dlq_purge_through` deletes only the entries an operator was shown, not those that failed since.
`dlq_replay_all` is bounded the same way: it replays only entries up to the DLQ's newest id when
it starts (a replayed entry that fails again lands after it, so it is not replayed again in the
same call), and at most `limit` of them; its report says whether older ones remain.

Each dead letter is the original entry plus `error`, `errorType`, `originalId`, `deliveries`
and `failedAt`, written by the consumer and read here with the one codec of
`kaleido.messages.dlq`. Replaying an entry XADDs its original fields back onto
the stream (a new id, so a fresh delivery count) and XDELs it from the DLQ in one Lua script:
an entry is replayed once even when two replays race.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs
import trio

from kaleido.gateways import RedisGateway, Script
from kaleido.keys import KeyLayout
from kaleido.logs import get_logger
from kaleido.messages.dlq import DLQ_FIELDS, DeadLetter, decode_dead_letter
from kaleido.replies import as_text
from kaleido.streams.inbound import length, read_range

log = get_logger("kaleido.streams.dlq")

__all__ = [
    "DLQ_FIELDS", "DeadLetter", "DlqPage", "ReplayReport", "dlq_last_id", "dlq_list", "dlq_page",
    "dlq_purge", "dlq_purge_through", "dlq_replay", "dlq_replay_all", "dlq_size",
]  # fmt: skip
# Entries fetched per XRANGE while replaying a whole DLQ.
REPLAY_PAGE = 200
# Dead letters one replay-all call puts back at most: about 2 s of work, so a call answers well
# within a client's patience; more are replayed by calling again.
REPLAY_LIMIT = 1000
# Entries fetched per XRANGE while looking for one page of dead letters.
SCAN_FETCH = 100

# KEYS: dlq, stream; ARGV: dlq entry id, then the DLQ's own field names. Returns the new id,
# or false when the entry is no longer in the DLQ (replayed or purged meanwhile).
# Ambiguous call: run again after its reply was lost, the dead letter is gone from the DLQ, so
# it is put back once; only that call's answer says "not replayed".
_REPLAY = Script(
    "dlq_replay",
    """
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return false end
local skip = {}
for i = 2, #ARGV do skip[ARGV[i]] = true end
local fields = found[1][2]
local out = {}
for i = 1, #fields, 2 do
  if not skip[fields[i]] then
    out[#out + 1] = fields[i]
    out[#out + 1] = fields[i + 1]
  end
end
if #out == 0 then out = {'replayed', 'empty'} end
local new_id = redis.call('XADD', KEYS[2], '*', unpack(out))
redis.call('XDEL', KEYS[1], ARGV[1])
return new_id
""",
)


async def dlq_list(
    redis: RedisGateway, keys: KeyLayout, stream: str, count: int = 100
) -> list[DeadLetter]:
    """The oldest `count` dead letters of `stream` (a contract stream name)."""
    entries = await read_range(redis, keys.dlq(stream), "-", count)
    return [decode_dead_letter(entry.id, entry.fields) for entry in entries]


async def dlq_size(redis: RedisGateway, keys: KeyLayout, stream: str) -> int:
    return await length(redis, keys.dlq(stream))


async def dlq_replay(
    redis: RedisGateway, keys: KeyLayout, stream: str, ids: Iterable[str]
) -> list[str]:
    """Put the dead letters `ids` back onto `stream`, in the order given; return the new ids.

    An id no longer in the DLQ (replayed or purged meanwhile) is skipped."""
    replayed: list[str] = []
    for dlq_id in ids:
        new_id = await _replay_one(redis, keys, stream, dlq_id)
        if new_id is not None:
            replayed.append(new_id)
    return replayed


@attrs.frozen
class ReplayReport:
    """What one `dlq_replay_all` call did."""

    new_ids: list[str]
    more: bool  # dead letters that were in the DLQ when the call began are still there

    @property
    def replayed(self) -> int:
        return len(self.new_ids)


async def dlq_replay_all(
    redis: RedisGateway,
    keys: KeyLayout,
    stream: str,
    *,
    limit: int = REPLAY_LIMIT,
    progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Put back, oldest first, the dead letters of `stream` that are in its DLQ now, at most
    `limit` of them. Entries dead-lettered while this runs (a replayed entry that fails again
    included) wait for the next call, so a call always ends. Cancelling it (the client went
    away) stops it between two entries: each entry is moved atomically. `progress` hears the
    count replayed so far after each page."""
    if limit < 1:
        raise ValueError(f"limit: expected at least 1, got {limit}")
    last = await dlq_last_id(redis, keys, stream)
    new_ids: list[str] = []
    if last is None:
        return ReplayReport(new_ids, more=False)
    start, end = "-", _id_key(last)
    try:
        while True:
            page = await read_range(redis, keys.dlq(stream), start, REPLAY_PAGE)
            for entry in page:
                if _id_key(entry.id) > end:
                    return ReplayReport(new_ids, more=False)
                if len(new_ids) >= limit:
                    return ReplayReport(new_ids, more=True)
                new_id = await _replay_one(redis, keys, stream, entry.id)
                if new_id is not None:
                    new_ids.append(new_id)
            if progress is not None:
                progress(len(new_ids))
            if len(page) < REPLAY_PAGE:
                return ReplayReport(new_ids, more=False)
            start = "(" + page[-1].id
    except trio.Cancelled:
        log.info("dlq.replay_stopped", stream=stream, replayed=len(new_ids))
        raise


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def _replay_one(redis: RedisGateway, keys: KeyLayout, stream: str, dlq_id: str) -> str | None:
    new_id = await redis.run_script(
        _REPLAY, [keys.dlq(stream), keys.stream(stream)], [dlq_id, *DLQ_FIELDS]
    )
    return as_text(new_id) if new_id else None


async def dlq_purge(redis: RedisGateway, keys: KeyLayout, stream: str) -> int:
    """Delete the DLQ of `stream`; return how many dead letters it held."""
    dlq_key = keys.dlq(stream)
    size, _ = await redis.pipeline([("XLEN", dlq_key), ("DEL", dlq_key)], transaction=True)
    return int(size)


@attrs.frozen
class DlqPage:
    letters: list[DeadLetter]
    next_after: str | None  # the id to continue after, None when the DLQ ends here
    scanned: int  # entries read (more than shown when filtering)


async def dlq_page(
    redis: RedisGateway, keys: KeyLayout, stream: str, *, after: str | None = None,
    error_type: str | None = None, limit: int = 50, budget: int = 1000,
) -> DlqPage:  # fmt: skip
    """Up to `limit` dead letters of `stream` after the id `after` (oldest first), only those of
    `error_type` if given. Reads at most `budget` entries: a filter that matches little returns
    a short page with `next_after` set, and the caller continues from there."""
    key = keys.dlq(stream)
    start = "-" if after is None else "(" + after
    letters: list[DeadLetter] = []
    scanned = 0
    while True:
        batch = await read_range(redis, key, start, SCAN_FETCH)
        for index, entry in enumerate(batch):
            scanned += 1
            letter = decode_dead_letter(entry.id, entry.fields)
            if error_type is None or letter.error_type == error_type:
                letters.append(letter)
            if len(letters) >= limit or scanned >= budget:
                more = index + 1 < len(batch) or len(batch) == SCAN_FETCH
                return DlqPage(letters, letter.dlq_id if more else None, scanned)
        if len(batch) < SCAN_FETCH:
            return DlqPage(letters, None, scanned)
        start = "(" + batch[-1].id


async def dlq_last_id(redis: RedisGateway, keys: KeyLayout, stream: str) -> str | None:
    """The id of the newest dead letter of `stream`, None when its DLQ is empty."""
    reply = await redis.execute("XREVRANGE", keys.dlq(stream), "+", "-", "COUNT", 1)
    if not reply:
        return None
    return as_text(reply[0][0])


async def dlq_purge_through(redis: RedisGateway, keys: KeyLayout, stream: str, last_id: str) -> int:
    """Delete the dead letters of `stream` up to and including `last_id` (an `ms-seq` id);
    later ones stay. Return how many were deleted."""
    ms, _, seq = last_id.partition("-")
    following = f"{ms}-{int(seq) + 1}"
    return int(await redis.execute("XTRIM", keys.dlq(stream), "MINID", following))
