"""The view layout recorded in Redis (`view:layout`), and the takeover of a v1 Redis.

The number of partitions is fixed when the layout is created: posts are placed by
`post_id mod partitions`, so a process configured with another number would count a post's
views where no reader looks. `open_layout` creates the record or checks it, and stops start-up
with a `ConfigError` on a mismatch.

A Redis that holds v1 keys and no record is taken over: the record notes that v1 counters may
remain (`v1_counters`, cleared by the syncer once it has drained them) and until when v1 dedup
flags may still decide repeats (`v1_flags_until`, unix ms: now plus the dedup TTL).

The takeover in full: docs/views.md "Taking over a v1 Redis".
"""

from __future__ import annotations

import attrs

from kaleido.errors import ConfigError
from kaleido.gateways import RedisGateway, Script
from kaleido.keys import KeyLayout
from kaleido.views.legacy import LegacyKeys

VERSION = 2
# SCAN page size while looking for v1 keys once, when a layout is first created.
_SCAN_COUNT = 1000

# Create the record unless it exists; return it as it is now (field, value, ...).
# KEYS: the layout record; ARGV: its fields and values.
_CLAIM = Script(
    "claim_view_layout",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV))
end
return redis.call('HGETALL', KEYS[1])
""",
)


@attrs.frozen
class LayoutState:
    partitions: int
    v1_counters: bool = False  # v1 counters or batches may remain: sync and read them too
    v1_flags_until: int = 0  # unix ms until which v1 dedup flags may exist

    def v1_flags_live(self, now_ms: int) -> bool:
        return now_ms < self.v1_flags_until


async def open_layout(redis: RedisGateway, keys: KeyLayout, dedup_ttl: int) -> LayoutState:
    """Create or check the layout record; raise ConfigError if it says otherwise."""
    raw = await redis.execute("HGETALL", keys.layout)
    if not raw:
        fields: dict[str, int] = {"version": VERSION, "partitions": keys.partitions}
        # v1 never ran on a cluster (its scripts build keys of many slots).
        if not redis.is_cluster and await _holds_v1(redis, LegacyKeys(keys.prefix)):
            seconds, micros = await redis.execute("TIME")
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            fields["v1_counters"] = 1
            fields["v1_flags_until"] = now_ms + dedup_ttl * 1000
        args = [x for item in fields.items() for x in item]
        reply = await redis.run_script(_CLAIM, [keys.layout], args)
        it = iter(reply)
        raw = dict(zip(it, it, strict=True))
    state = parse_state(raw)
    if state.partitions != keys.partitions:
        raise ConfigError(
            f"KALEIDO_VIEW_PARTITIONS: this Redis holds a view layout with {state.partitions} "
            f"partitions ({keys.layout}), not {keys.partitions}; set it to {state.partitions}"
        )
    return state


def parse_state(raw: dict[bytes, bytes]) -> LayoutState:
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    version = int(fields.get("version", "0"))
    if version != VERSION:
        raise ConfigError(f"view layout version {version} in Redis; this Kaleido knows {VERSION}")
    return LayoutState(
        partitions=int(fields["partitions"]),
        v1_counters=fields.get("v1_counters") == "1",
        v1_flags_until=int(fields.get("v1_flags_until", "0")),
    )


async def read_state(redis: RedisGateway, keys: KeyLayout) -> LayoutState:
    return parse_state(await redis.execute("HGETALL", keys.layout))


async def v1_counters_drained(redis: RedisGateway, keys: KeyLayout) -> None:
    await redis.execute("HDEL", keys.layout, "v1_counters")


async def _holds_v1(redis: RedisGateway, legacy: LegacyKeys) -> bool:
    if await redis.execute("EXISTS", legacy.pending, legacy.batches):
        return True
    v1_keys = (f"{legacy.prefix}user:view:".encode(), f"{legacy.prefix}post:views:".encode())
    cursor = 0
    while True:
        cursor, found = await redis.execute(
            "SCAN", cursor, "MATCH", f"{legacy.prefix}*", "COUNT", _SCAN_COUNT
        )
        if any(key.startswith(v1_keys) for key in found):
            return True
        if int(cursor) == 0:
            return False
