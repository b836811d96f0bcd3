"""Judges of Redis: memory, eviction policy, persistence, key TTLs, the encoding of dedup
buckets and the function library. Pure functions of the facts
(:class:`~kaleido.ops.redis_info.RedisFacts`, :class:`KeySample`).

The facts come from INFO and key reads: Kaleido's Redis user has no CONFIG, so two settings are
not checked (`NOT_CHECKED` says which): the RDB `save` schedule (judged from the snapshots INFO
counts) and `hash-max-listpack-entries` (named in the hint when buckets outgrow it)."""

from __future__ import annotations

import attrs

from kaleido.ops.doctor.findings import Finding, Level
from kaleido.ops.limits import (
    MEMORY_PROBLEM,
    MEMORY_WARNING,
)
from kaleido.ops.redis_info import RedisFacts

# Dedup buckets stay listpacks (a few bytes a field) up to this many fields; past it Redis
# converts them to hashtables, about five times the memory.
LISTPACK_SETTING = "hash-max-listpack-entries"

NOT_CHECKED = Finding(
    "not checked",
    Level.OK,
    "Kaleido's Redis user may not read CONFIG, so the RDB schedule (save) and "
    f"{LISTPACK_SETTING} are not checked; as an admin: CONFIG GET save {LISTPACK_SETTING}",
)


@attrs.frozen
class KeySample:
    """What SCAN samples of the keyspace say about TTLs, dedup buckets and view counters."""

    sampled: int = 0
    with_ttl: int = 0
    # Kaleido's keys that must never expire (counters, batches, streams...) found with a TTL.
    unexpected_ttl: tuple[str, ...] = ()
    buckets: int = 0
    buckets_without_ttl: int = 0
    # Fields of each sampled dedup bucket no longer in listpack encoding.
    converted_buckets: tuple[int, ...] = ()
    # Partitions with counters to sync (`view:{q}:counts` exists); None: not known.
    counted_partitions: int | None = None
    # Partitions whose counts hash was untouched for longer than a few sync intervals: the
    # sync is not draining them.
    stale_partitions: tuple[int, ...] = ()


def check_memory(facts: RedisFacts) -> list[Finding]:
    used = _mb(facts.used_memory)
    if not facts.maxmemory:
        return [
            Finding(
                "maxmemory",
                Level.PROBLEM,
                f"no maxmemory: Redis grows until the host kills it (using {used})",
                "set maxmemory (redis.conf ships 200mb) so Redis evicts dedup buckets instead",
            )
        ]
    ratio = facts.used_memory / facts.maxmemory
    text = f"{used} of {_mb(facts.maxmemory)} used ({ratio:.0%})"
    if ratio >= MEMORY_PROBLEM:
        return [
            Finding(
                "maxmemory",
                Level.PROBLEM,
                text,
                "raise maxmemory, or run a sync: views go to PostgreSQL when Redis is full",
            )
        ]
    if ratio >= MEMORY_WARNING:
        return [Finding("maxmemory", Level.WARNING, text, "raise maxmemory before it fills")]
    return [Finding("maxmemory", Level.OK, text)]


def check_policy(facts: RedisFacts) -> list[Finding]:
    policy = facts.policy
    evicted = f"; {facts.evicted_keys} keys evicted since Redis started"
    if policy.startswith("allkeys-"):
        return [
            Finding(
                "eviction policy",
                Level.PROBLEM,
                f"maxmemory-policy is {policy}: Redis may evict unsynced view counters "
                f"(view:{{q}}:counts), in-flight sync batches and whole streams{evicted}",
                "CONFIG SET maxmemory-policy volatile-lru (and set it in redis.conf)",
            )
        ]
    if policy == "noeviction":
        return [
            Finding(
                "eviction policy",
                Level.WARNING,
                "maxmemory-policy is noeviction: nothing is lost, but once full every write "
                "fails (views go to PostgreSQL) because old dedup buckets cannot be evicted",
                "volatile-lru lets Redis make room by evicting dedup buckets",
            )
        ]
    if policy.startswith("volatile-"):
        level = Level.WARNING if facts.evicted_keys else Level.OK
        hint = "dedup buckets were evicted: repeat views may have counted again" if level else ""
        return [Finding("eviction policy", level, f"{policy}: only keys with a TTL{evicted}", hint)]
    return [Finding("eviction policy", Level.WARNING, f"unknown maxmemory-policy {policy!r}")]


def check_persistence(facts: RedisFacts) -> list[Finding]:
    if facts.aof_enabled:
        return [Finding("persistence", Level.OK, "appendonly yes: counted views survive a crash")]
    window = "views counted since the last sync are lost if redis-server dies"
    if facts.rdb_saves:
        return [
            Finding(
                "persistence",
                Level.WARNING,
                f"RDB snapshots only ({facts.rdb_saves} since Redis started, the last "
                f"{facts.rdb_age} s ago, {facts.rdb_changes} writes since): {window} after the "
                "last snapshot",
                "appendonly yes closes this window",
            )
        ]
    return [
        Finding(
            "persistence",
            Level.WARNING,
            f"no persistence seen (appendonly no, no RDB snapshot in the {facts.uptime} s since "
            f"Redis started): {window}, and with them Kaleido's function library",
            'the known window of the shipped redis.conf (save ""); appendonly yes closes it',
        )
    ]


def check_scripts(mode: str, problem: str | None, version: str) -> list[Finding]:
    """How Kaleido's scripts run: the function library in place (`problem` None), missing or
    outdated (`problem` says where and what to run), or the weaker `eval` mode."""
    if mode != "functions":
        return [
            Finding(
                "scripts",
                Level.WARNING,
                "KALEIDO_REDIS_SCRIPTS=eval: Kaleido's Redis user may load and run any Lua "
                "script (EVALSHA, SCRIPT LOAD), the weaker mode",
                "load the function library and use KALEIDO_REDIS_SCRIPTS=functions (docs/redis.md)",
            )
        ]
    if problem is not None:
        return [Finding("scripts", Level.PROBLEM, problem)]
    return [Finding("scripts", Level.OK, f"function library version {version} on every master")]


def check_keys(sample: KeySample, stale_after: float) -> list[Finding]:
    out: list[Finding] = []
    if sample.buckets_without_ttl:
        out.append(
            Finding(
                "key TTLs",
                Level.PROBLEM,
                f"{sample.buckets_without_ttl} of {sample.buckets} sampled dedup buckets "
                "(view:{q}:seen:*) have no TTL: they never expire and volatile-lru cannot "
                "evict them",
                "something other than Kaleido writes them; give them a TTL "
                "(EXPIRE key <2 × KALEIDO_VIEW_DEDUP_TTL>) or delete them",
            )
        )
    if sample.unexpected_ttl:
        shown = ", ".join(sample.unexpected_ttl[:5])
        out.append(
            Finding(
                "key TTLs",
                Level.PROBLEM,
                f"{len(sample.unexpected_ttl)} sampled keys that must never expire have a TTL "
                f"({shown}): volatile-lru may evict them, losing the views or entries they hold",
                "PERSIST each of them; only dedup buckets, their directories and the sync lock "
                "may expire",
            )
        )
    if not out:
        counted = (
            ""
            if sample.counted_partitions is None
            else f", {sample.counted_partitions} partitions with counters to sync"
        )
        summary = (
            f"sampled {sample.sampled} keys ({sample.with_ttl} with a TTL), "
            f"{sample.buckets} dedup buckets{counted}"
        )
        out.append(Finding("key TTLs", Level.OK, summary))
    out += check_dedup_memory(sample)
    if sample.stale_partitions:
        shown = ", ".join(str(q) for q in sample.stale_partitions[:5])
        out.append(
            Finding(
                "view counters",
                Level.WARNING,
                f"the counts hashes (view:{{q}}:counts) of {len(sample.stale_partitions)} "
                f"partitions (q = {shown}) untouched for over {stale_after:g} s: syncs are not "
                "draining them",
                "is the service running? try `kaleido sync`",
            )
        )
    return out


def check_dedup_memory(sample: KeySample) -> list[Finding]:
    converted = sample.converted_buckets
    if not converted:
        if not sample.buckets:
            return []
        return [
            Finding(
                "dedup memory",
                Level.OK,
                f"{sample.buckets} sampled dedup buckets, all in listpack encoding",
            )
        ]
    largest = max(converted)
    message = (
        f"{len(converted)} of {sample.buckets} sampled dedup buckets left listpack encoding "
        f"(up to {largest} fields): memory per view multiplies (about 5x in a hashtable)"
    )
    hint = (
        f"keep {LISTPACK_SETTING} above {largest} (512 in the shipped redis.conf; as an admin: "
        f"CONFIG GET {LISTPACK_SETTING}): it was lower when they grew, or "
        "hash-max-listpack-value was exceeded; converted buckets stay hashtables until they "
        "expire"
    )
    return [Finding("dedup memory", Level.WARNING, message, hint)]


def _mb(n: int) -> str:
    return f"{n / 1048576:.1f} MB"
