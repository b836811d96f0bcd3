"""Redis server facts that matter to Kaleido: memory against maxmemory, eviction policy,
evictions, keyspace hits and misses, persistence."""

from __future__ import annotations

import attrs

from kaleido.gateways import RedisGateway


@attrs.frozen
class RedisFacts:
    used_memory: int
    maxmemory: int  # 0: no limit
    policy: str
    evicted_keys: int
    keyspace_hits: int
    keyspace_misses: int
    aof_enabled: bool

    @property
    def memory_ratio(self) -> float | None:
        """used / maxmemory, or None when no maxmemory is set."""
        return self.used_memory / self.maxmemory if self.maxmemory else None


async def read_facts(redis: RedisGateway) -> RedisFacts:
    """INFO memory, stats and persistence in one round trip (INFO only: managed Redis services
    often disable CONFIG)."""
    memory, stats, persistence = await redis.pipeline(
        [("INFO", "memory"), ("INFO", "stats"), ("INFO", "persistence")]
    )
    return RedisFacts(
        used_memory=int(memory.get("used_memory", 0)),
        maxmemory=int(memory.get("maxmemory", 0)),
        policy=str(memory.get("maxmemory_policy", "unknown")),
        evicted_keys=int(stats.get("evicted_keys", 0)),
        keyspace_hits=int(stats.get("keyspace_hits", 0)),
        keyspace_misses=int(stats.get("keyspace_misses", 0)),
        aof_enabled=bool(int(persistence.get("aof_enabled", 0))),
    )
