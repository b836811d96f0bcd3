"""Redis server facts that matter to Kaleido: memory against maxmemory, eviction policy,
evictions, keyspace hits and misses, persistence; per master of a cluster, and combined.

All from `INFO` (server, memory, persistence, stats): Kaleido's Redis user has no `CONFIG`."""

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
    node: str = ""  # "host:port" of a cluster's master; "" for a single Redis
    # RDB snapshots since Redis started, seconds since the last one, writes since then: what
    # INFO says of the `save` schedule (a CONFIG setting).
    rdb_saves: int = 0
    rdb_age: int = 0
    rdb_changes: int = 0
    uptime: int = 0  # seconds since Redis started
    # Of several masters combined: the fullest one's used / maxmemory.
    fullest: float | None = None

    @property
    def memory_ratio(self) -> float | None:
        """used / maxmemory (of the fullest master), or None when no maxmemory is set."""
        if self.fullest is not None:
            return self.fullest
        return self.used_memory / self.maxmemory if self.maxmemory else None


async def read_node_facts(redis: RedisGateway) -> list[RedisFacts]:
    """The facts of every master (the one server of a single Redis), from one INFO each (INFO
    only: managed Redis services often disable CONFIG)."""
    facts = []
    for node, info in (await redis.on_each_master("INFO")).items():
        now = int(info.get("server_time_usec", 0)) // 1_000_000
        facts.append(
            RedisFacts(
                used_memory=int(info.get("used_memory", 0)),
                maxmemory=int(info.get("maxmemory", 0)),
                policy=str(info.get("maxmemory_policy", "unknown")),
                evicted_keys=int(info.get("evicted_keys", 0)),
                keyspace_hits=int(info.get("keyspace_hits", 0)),
                keyspace_misses=int(info.get("keyspace_misses", 0)),
                aof_enabled=bool(int(info.get("aof_enabled", 0))),
                node=node,
                rdb_saves=int(info.get("rdb_saves", 0)),
                rdb_age=max(0, now - int(info.get("rdb_last_save_time", now))),
                rdb_changes=int(info.get("rdb_changes_since_last_save", 0)),
                uptime=int(info.get("uptime_in_seconds", 0)),
            )
        )
    return facts


def combine(facts: list[RedisFacts]) -> RedisFacts:
    """One view of several masters: sums, the fullest master's ratio, and a policy or
    persistence that only holds if every master has it."""
    if len(facts) == 1:
        return facts[0]
    ratios = [f.memory_ratio for f in facts]
    policies = sorted({f.policy for f in facts})
    return RedisFacts(
        used_memory=sum(f.used_memory for f in facts),
        maxmemory=sum(f.maxmemory for f in facts) if all(f.maxmemory for f in facts) else 0,
        policy=policies[0] if len(policies) == 1 else "mixed: " + ", ".join(policies),
        evicted_keys=sum(f.evicted_keys for f in facts),
        keyspace_hits=sum(f.keyspace_hits for f in facts),
        keyspace_misses=sum(f.keyspace_misses for f in facts),
        aof_enabled=all(f.aof_enabled for f in facts),
        fullest=max((r for r in ratios if r is not None), default=None),
    )


async def read_facts(redis: RedisGateway) -> RedisFacts:
    """Every master's facts, combined."""
    return combine(await read_node_facts(redis))
