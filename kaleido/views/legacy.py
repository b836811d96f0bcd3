"""Layout v1 (the seed's keys), read only to take over a Redis that holds it.

v1 kept one dedup flag key per view (`user:view:{u}:{p}`, TTL), one counter key per post
(`post:views:{p}`), the `pending:views` set and in-flight batches `view:batch:{id}` listed in
`view:batches`. Its scripts build keys inside Lua, so this runs on a single Redis only (v1
never ran on a cluster). On takeover the syncer drains v1's counters and batches through the
same exactly-once protocol, and v1 flags keep deciding repeats until they expire.
"""

from __future__ import annotations

import attrs

from kaleido.gateways import RedisGateway, Script
from kaleido.views.moves import Moved, again_lua, mark_lua, parse_move


@attrs.frozen
class LegacyKeys:
    prefix: str = ""

    def user_view(self, user_id: int, post_id: int) -> str:
        return f"{self.prefix}user:view:{user_id}:{post_id}"

    def post_views(self, post_id: int) -> str:
        return f"{self.prefix}post:views:{post_id}"

    @property
    def pending(self) -> str:
        return f"{self.prefix}pending:views"

    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}view:batch:{batch_id}"

    @property
    def batches(self) -> str:
        return f"{self.prefix}view:batches"

    @property
    def sync_epoch(self) -> str:
        return f"{self.prefix}view:sync:epoch"

    @property
    def moved(self) -> str:
        """Not v1's: the latest ids of batches moved out of v1's counters (as `view:{q}:moved`)."""
        return f"{self.prefix}view:sync:moved"

    @property
    def journal_done(self) -> str:
        return f"{self.prefix}view:journal:done"


# v1's move: pop pending posts, move their counters into a batch hash. Returns
# {'moved', posts popped, views moved, post, views, ...}; a counter that is not a positive
# integer stays. KEYS: pending set, batch set, the batch hash, epoch, the moved batch ids;
# ARGV: prefix, batch id, posts to pop. The counter keys are built here from the prefix (v1
# never ran on a cluster). Runs past maxmemory, as MOVE_TO_BATCH, and is as safe to run again
# for the same batch id: it answers 'again' or 'stale' (kaleido.views.moves).
MOVE_V1 = Script(
    "move_to_batch_v1",
    again_lua(moved=5, batch_id=2)
    + """
local popped = redis.call('SPOP', KEYS[1], ARGV[3])
local out, views = {'moved', #popped, 0}, 0
for first = 1, #popped, 1000 do
  local posts, keys = {}, {}
  for i = first, math.min(first + 999, #popped) do
    posts[#posts + 1] = popped[i]
    keys[#keys + 1] = ARGV[1] .. 'post:views:' .. popped[i]
  end
  local values = redis.call('MGET', unpack(keys))
  local fields, moved_keys = {}, {}
  for i = 1, #posts do
    local n = tonumber(values[i])
    if n and n > 0 and n == math.floor(n) then
      fields[#fields + 1] = posts[i]
      fields[#fields + 1] = values[i]
      moved_keys[#moved_keys + 1] = keys[i]
      out[#out + 1] = posts[i]
      out[#out + 1] = values[i]
      views = views + n
    end
  end
  if #moved_keys > 0 then
    redis.call('DEL', unpack(moved_keys))
    redis.call('HSET', KEYS[3], unpack(fields))
  end
end
out[3] = views
if #out > 3 then
  redis.call('SADD', KEYS[2], ARGV[2])
  redis.call('INCR', KEYS[4])
"""
    + mark_lua(moved=5, batch_id=2)
    + """
end
return out
""",
    allow_oom=True,
)

# A post's v1 side: {epoch, counter, journal replays done (space-separated), batch, views, ...}.
# KEYS: epoch, batch set, the post's counter, journal replays done; ARGV: prefix, post id (the
# batch hashes' keys are built here).
SNAPSHOT_V1 = Script(
    "snapshot_post_v1",
    """
local out = {
  redis.call('GET', KEYS[1]) or '0',
  redis.call('GET', KEYS[3]) or '0',
  table.concat(redis.call('ZRANGE', KEYS[4], 0, -1), ' '),
}
for _, batch in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local views = redis.call('HGET', ARGV[1] .. 'view:batch:' .. batch, ARGV[2])
  if views then
    out[#out + 1] = batch
    out[#out + 1] = views
  end
end
return out
""",
    read_only=True,
)


@attrs.frozen
class LegacySnapshot:
    epoch: int
    counter: int
    in_flight: dict[str, int]
    replayed: list[str]


@attrs.define
class LegacyViews:
    """v1's counters and batches, drained by the syncer during a takeover."""

    redis: RedisGateway
    keys: LegacyKeys

    async def take_batch(self, batch_id: str, count: int) -> Moved:
        """Move up to `count` pending posts' counters into the batch `batch_id` (safe to run
        again: kaleido.views.moves)."""
        keys = self.keys
        reply = await self.redis.run_script(
            MOVE_V1,
            [keys.pending, keys.batches, keys.batch(batch_id), keys.sync_epoch, keys.moved],
            [keys.prefix, batch_id, count],
        )
        return parse_move(reply)

    async def in_flight_batches(self) -> list[str]:
        members = await self.redis.execute("SMEMBERS", self.keys.batches)
        return sorted(m.decode() for m in members)

    async def batch_contents(self, batch_id: str) -> dict[int, int]:
        raw = await self.redis.execute("HGETALL", self.keys.batch(batch_id))
        return {int(post): int(views) for post, views in raw.items()}

    async def forget_batch(self, batch_id: str) -> None:
        await self.redis.pipeline(
            [("DEL", self.keys.batch(batch_id)), ("SREM", self.keys.batches, batch_id)],
            transaction=True,
        )

    async def is_drained(self) -> bool:
        """No v1 counter can be left: nothing pending and no batch in flight."""
        pending, batches = await self.redis.pipeline(
            [("SCARD", self.keys.pending), ("SCARD", self.keys.batches)]
        )
        return not pending and not batches

    async def snapshot(self, post_id: int) -> LegacySnapshot:
        keys = self.keys
        reply = await self.redis.run_script(
            SNAPSHOT_V1,
            [keys.sync_epoch, keys.batches, keys.post_views(post_id), keys.journal_done],
            [keys.prefix, post_id],
        )
        in_flight = {reply[i].decode(): int(reply[i + 1]) for i in range(3, len(reply), 2)}
        return LegacySnapshot(int(reply[0]), int(reply[1]), in_flight, reply[2].decode().split())

    async def epoch(self) -> int:
        return int(await self.redis.execute("GET", self.keys.sync_epoch) or 0)
