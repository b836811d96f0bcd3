"""A move of counters into a sync batch, made safe to run twice (docs/ambiguity.md).

The syncer names each batch (a new UUID) before moving counters into it. When the move's reply
is lost after Redis ran it (a reset, a timeout), redis-py sends the same call again, and a call
stuck behind a stalled Redis may run late. Run again, a move must not take more counters into
the batch (HSET would overwrite a post's share of the first move, and the caller would apply
only what the second move answered, then forget the batch): it answers the batch it made.

So every move that makes a batch records the batch id in a sorted set beside the batches
(`view:{q}:moved`, `view:sync:moved` for v1's counters), and a move whose id is there does not
move anything: it answers `again` with the batch's contents while the batch is in flight, or
`stale` once it was applied and forgotten (nothing to apply: PostgreSQL recorded the id).
"""

from __future__ import annotations

from typing import Any

import attrs

# Batch ids remembered per partition. A move is sent again only by its own syncer, within
# seconds (redis-py's retries) or right after a stall ends (the call waited in Redis' input
# buffer), while that syncer holds the sync lock: a handful of moves happen in between at most.
MOVE_MARKS = 100

# Lua, first in a move script: a move of a batch id moved before answers that batch.
# KEYS[MOVED] the marks, KEYS[2] the batch set, KEYS[3] the batch hash; ARGV[ID] the batch id.
_AGAIN = """
if redis.call('ZSCORE', KEYS[MOVED], ARGV[ID]) then
  if redis.call('SISMEMBER', KEYS[2], ARGV[ID]) == 0 then return {'stale', 0, 0} end
  local entries = redis.call('HGETALL', KEYS[3])
  local out = {'again', #entries / 2, 0}
  for k = 1, #entries, 2 do
    out[#out + 1] = entries[k]
    out[#out + 1] = entries[k + 1]
    out[3] = out[3] + tonumber(entries[k + 1])
  end
  return out
end
"""

# Lua, once a move made its batch: remember the id, and only the latest MOVE_MARKS.
_MARK = """
local now = redis.call('TIME')
redis.call('ZADD', KEYS[MOVED], tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000),
  ARGV[ID])
redis.call('ZREMRANGEBYRANK', KEYS[MOVED], 0, -(MARKS + 1))
"""


def again_lua(moved: int, batch_id: int) -> str:
    """The check, for a script whose KEYS[moved] are the marks and ARGV[batch_id] the id."""
    return _AGAIN.replace("MOVED", str(moved)).replace("ID", str(batch_id))


def mark_lua(moved: int, batch_id: int) -> str:
    return (
        _MARK.replace("MOVED", str(moved))
        .replace("ID", str(batch_id))
        .replace("MARKS", str(MOVE_MARKS))
    )


@attrs.frozen
class Moved:
    """What one move did."""

    taken: int  # counters taken from the partition (0: it had none left); or the batch's posts
    deltas: dict[int, int]  # post id → views now in the batch
    again: bool = False  # the move had run before (its reply was lost): its batch, unchanged
    stale: bool = False  # it had run, and its batch was applied and forgotten since


def parse_move(reply: list[Any]) -> Moved:
    """A move script's reply: {'moved'|'again'|'stale', taken, views, post, views, ...}."""
    it = iter(reply[3:])
    deltas = {int(post): int(views) for post, views in zip(it, it, strict=True)}
    status = reply[0]
    return Moved(int(reply[1]), deltas, again=status == b"again", stale=status == b"stale")
