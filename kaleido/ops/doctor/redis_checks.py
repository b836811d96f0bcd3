"""Judges of Redis: memory, eviction policy, persistence, key TTLs and the encoding of dedup
buckets. Pure functions of the facts (:class:`~kaleido.ops.redis_info.RedisFacts`,
:class:`KeySample`)."""

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
    # hash-max-listpack-entries, read when a bucket was converted (None: not read, or CONFIG
    # is disabled).
    listpack_entries: int | None = None
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


def check_persistence(facts: RedisFacts, save: str | None) -> list[Finding]:
    if facts.aof_enabled:
        return [Finding("persistence", Level.OK, "appendonly yes: counted views survive a crash")]
    window = "views counted since the last sync are lost if redis-server dies"
    if save is None:
        return [
            Finding(
                "persistence",
                Level.WARNING,
                f"appendonly no, RDB setting unknown (CONFIG disabled): {window}",
                "appendonly yes closes this window",
            )
        ]
    if save.strip():
        return [
            Finding(
                "persistence",
                Level.WARNING,
                f"RDB snapshots only (save {save}): {window} after the last snapshot",
                "appendonly yes closes this window",
            )
        ]
    return [
        Finding(
            "persistence",
            Level.WARNING,
            f'no persistence (appendonly no, save ""): {window}',
            "the known window of the shipped redis.conf; appendonly yes closes it",
        )
    ]


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
    largest, entries = max(converted), sample.listpack_entries
    message = (
        f"{len(converted)} of {sample.buckets} sampled dedup buckets left listpack encoding "
        f"(up to {largest} fields): memory per view multiplies (about 5x in a hashtable)"
    )
    kept = "converted buckets stay hashtables until they expire"
    if entries is None:
        hint = (
            f"raise {LISTPACK_SETTING} above {largest} (CONFIG is disabled here: in your "
            f"provider's settings); {kept}"
        )
    elif entries < largest:
        hint = (
            f"raise {LISTPACK_SETTING} (now {entries}) above {largest}: CONFIG SET and "
            f"redis.conf; {kept}"
        )
    else:
        hint = (
            f"{LISTPACK_SETTING} is {entries}, above their fields: it was lower when they grew "
            f"(keep it at 512 or more in redis.conf), or hash-max-listpack-value was exceeded; "
            f"{kept}"
        )
    return [Finding("dedup memory", Level.WARNING, message, hint)]


def _mb(n: int) -> str:
    return f"{n / 1048576:.1f} MB"
