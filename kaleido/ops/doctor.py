"""`kaleido doctor`: the troubleshooting guide of the original backend, as checks.

Each check turns facts read from Redis and PostgreSQL into findings: ok, a warning (worth
knowing, nothing is being lost) or a problem (data can be lost, or work has stopped). The
command exits 1 when there is a problem. Checks are pure functions of the facts, so each rule
is easy to read and to test; `diagnose` gathers the facts.

How errors behave: a server that cannot be reached is itself a problem finding; the checks that
need it are skipped. Nothing here writes to Redis or PostgreSQL.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import trio
from rich.console import Console
from rich.text import Text

from kaleido.errors import BackendError, RedisCommandError
from kaleido.gateways import Backends, RedisGateway
from kaleido.keys import KeyLayout
from kaleido.messages import INBOUND_STREAMS
from kaleido.migrate import available_migrations, schema_version
from kaleido.ops.limits import (
    IDLE_LIMIT,
    LAG_LIMIT,
    MEMORY_PROBLEM,
    MEMORY_WARNING,
    PENDING_AGE_LIMIT,
    STALE_SYNC_INTERVALS,
)
from kaleido.ops.redis_info import RedisFacts, read_facts
from kaleido.ops.streams import StreamStatus, dlq_sizes, read_streams

# Keys sampled by SCAN for the TTL checks: enough to see a pattern, cheap on a big keyspace.
SAMPLE_SIZE = 2000
SCAN_COUNT = 1000
# SCAN with MATCH may return few keys per call; bound the calls, not only the keys.
MAX_SCAN_CALLS = 100
# DLQ sizes are read twice this far apart to tell a growing queue from an old one.
DLQ_INTERVAL = 2.0


class Level(enum.IntEnum):
    OK = 0
    WARNING = 1
    PROBLEM = 2


@attrs.frozen
class Finding:
    check: str
    level: Level
    message: str
    hint: str = ""

    def as_json(self) -> dict[str, str]:
        return {
            "check": self.check,
            "level": self.level.name.lower(),
            "message": self.message,
            "hint": self.hint,
        }


def exit_code(findings: Sequence[Finding]) -> int:
    return 1 if any(f.level is Level.PROBLEM for f in findings) else 0


# ---------------------------------------------------------------------- facts


@attrs.frozen
class KeySample:
    """What a SCAN sample of the keyspace says about TTLs and view counters."""

    sampled: int = 0
    without_ttl: int = 0
    dedup_flags: int = 0
    dedup_without_ttl: int = 0
    counters: int = 0
    # Counters whose post is not in pending:views: no sync will ever move them.
    orphan_counters: tuple[str, ...] = ()
    # Counters untouched for longer than a few sync intervals: the sync is not draining them.
    stale_counters: int = 0


async def _scan(redis: RedisGateway, pattern: str, limit: int) -> list[bytes]:
    cursor: Any = 0
    found: list[bytes] = []
    for _ in range(MAX_SCAN_CALLS):
        cursor, batch = await redis.execute("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
        found += batch
        if int(cursor) == 0 or len(found) >= limit:
            break
    return found[:limit]


async def sample_keys(
    redis: RedisGateway, keys: KeyLayout, stale_after: float, sample: int = SAMPLE_SIZE
) -> KeySample:
    """SCAN a sample of keys for their TTL, and of view counters for their pending flag."""
    flag_prefix = (keys.prefix + "user:view:").encode()
    sampled = await _scan(redis, keys.prefix + "*", sample)
    ttls = await redis.pipeline([("TTL", k) for k in sampled])
    live = [(k, int(t)) for k, t in zip(sampled, ttls, strict=True) if int(t) != -2]
    flags = [(k, t) for k, t in live if k.startswith(flag_prefix)]

    counter_prefix = keys.prefix + "post:views:"
    counters = await _scan(redis, counter_prefix + "*", sample)
    post_ids = [k.decode(errors="replace")[len(counter_prefix) :] for k in counters]
    replies = await redis.pipeline(
        [("SISMEMBER", keys.pending, p) for p in post_ids]
        + [("OBJECT", "IDLETIME", k) for k in counters]
    )
    member, idle = replies[: len(counters)], replies[len(counters) :]
    # A counter deleted between SCAN and SISMEMBER reads as idle None: not an orphan.
    orphans = tuple(
        p for p, m, i in zip(post_ids, member, idle, strict=True) if not m and i is not None
    )
    return KeySample(
        sampled=len(live),
        without_ttl=sum(1 for _, t in live if t == -1),
        dedup_flags=len(flags),
        dedup_without_ttl=sum(1 for _, t in flags if t == -1),
        counters=len(counters),
        orphan_counters=orphans,
        stale_counters=sum(1 for i in idle if i is not None and int(i) > stale_after),
    )


async def read_save_config(redis: RedisGateway) -> str | None:
    """The RDB `save` setting, or None when CONFIG is disabled (as on many managed Redis)."""
    try:
        reply = await redis.execute("CONFIG", "GET", "save")
    except RedisCommandError:
        return None
    value = reply.get(b"save", reply.get("save")) if isinstance(reply, dict) else None
    if value is None and isinstance(reply, list) and len(reply) == 2:
        value = reply[1]
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------- checks


def check_memory(facts: RedisFacts) -> list[Finding]:
    used = _mb(facts.used_memory)
    if not facts.maxmemory:
        return [
            Finding(
                "maxmemory",
                Level.PROBLEM,
                f"no maxmemory: Redis grows until the host kills it (using {used})",
                "set maxmemory (redis.conf ships 200mb) so Redis evicts dedup flags instead",
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
                f"maxmemory-policy is {policy}: Redis may evict unsynced view counters, "
                f"pending:views, in-flight sync batches and whole streams{evicted}",
                "CONFIG SET maxmemory-policy volatile-lru (and set it in redis.conf)",
            )
        ]
    if policy == "noeviction":
        return [
            Finding(
                "eviction policy",
                Level.WARNING,
                "maxmemory-policy is noeviction: nothing is lost, but once full every write "
                "fails (views go to PostgreSQL) because old dedup flags cannot be evicted",
                "volatile-lru lets Redis make room by evicting dedup flags",
            )
        ]
    if policy.startswith("volatile-"):
        level = Level.WARNING if facts.evicted_keys else Level.OK
        hint = "dedup flags were evicted: a repeat view may have counted again" if level else ""
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
    summary = (
        f"sampled {sample.sampled} keys: {sample.without_ttl} without a TTL, "
        f"{sample.dedup_flags} dedup flags, {sample.counters} view counters"
    )
    if sample.dedup_without_ttl:
        out.append(
            Finding(
                "key TTLs",
                Level.PROBLEM,
                f"{sample.dedup_without_ttl} of {sample.dedup_flags} sampled user:view:* dedup "
                "flags have no TTL: they never expire and volatile-lru cannot evict them",
                "something other than Kaleido writes them; give them a TTL (EXPIRE key 86400)",
            )
        )
    else:
        out.append(Finding("key TTLs", Level.OK, summary))
    if sample.orphan_counters:
        shown = ", ".join(sample.orphan_counters[:5])
        out.append(
            Finding(
                "view counters",
                Level.PROBLEM,
                f"{len(sample.orphan_counters)} post:views:* counters are not in pending:views "
                f"(posts {shown}): no sync will ever move them",
                "pending:views was evicted or deleted: SADD pending:views <postId> for each",
            )
        )
    if sample.stale_counters:
        out.append(
            Finding(
                "view counters",
                Level.WARNING,
                f"{sample.stale_counters} view counters untouched for over {stale_after:g} s: "
                "syncs are not draining them",
                "is the service running? try `kaleido sync`",
            )
        )
    return out


def check_streams(statuses: Sequence[StreamStatus]) -> list[Finding]:
    out: list[Finding] = []
    for s in statuses:
        own = s.inbound  # inbound groups are Kaleido's; outbound ones are the ML service's
        if own and not s.groups:
            out.append(
                Finding(
                    f"stream {s.stream}",
                    Level.WARNING,
                    "no consumer group: Kaleido has not consumed from this Redis yet",
                    "start the service; it creates backend-group",
                )
            )
            continue
        if not own and not s.groups and s.length:
            out.append(
                Finding(
                    f"stream {s.stream}",
                    Level.WARNING,
                    f"{s.length} entries and no consumer group: the ML service is not reading",
                    "is the ML service running against this Redis?",
                )
            )
            continue
        problems: list[tuple[Level, str, str]] = []
        for g in s.groups:
            lag = g.lag or 0
            if lag > LAG_LIMIT:
                level = Level.PROBLEM if own else Level.WARNING
                problems.append((level, f"group {g.name} is {lag} entries behind", "add consumers"))
            stuck = [c for c in g.idle_consumers(IDLE_LIMIT) if c.pending]
            if stuck:
                names = ", ".join(f"{c.name} ({c.pending} pending)" for c in stuck)
                problems.append(
                    (
                        Level.PROBLEM if own else Level.WARNING,
                        f"group {g.name}: consumers idle over {IDLE_LIMIT:g} s hold entries: "
                        f"{names}",
                        "a running consumer of the group reclaims them after 60 s",
                    )
                )
            stale = [c.name for c in g.idle_consumers(IDLE_LIMIT) if not c.pending]
            if stale:
                problems.append(
                    (
                        Level.WARNING,
                        f"group {g.name}: consumers idle over {IDLE_LIMIT:g} s: {', '.join(stale)}",
                        f"old instances? XGROUP DELCONSUMER {s.stream} {g.name} <name>",
                    )
                )
            age = g.oldest_pending_age
            if age is not None and age > PENDING_AGE_LIMIT:
                problems.append(
                    (
                        Level.WARNING,
                        f"group {g.name}: oldest pending entry is {age:.0f} s old",
                        "see `kaleido streams`; failing entries reach the DLQ after max deliveries",
                    )
                )
        if not problems:
            lag_text = ", ".join(f"{g.name} lag {g.lag}, {g.pending} pending" for g in s.groups)
            out.append(Finding(f"stream {s.stream}", Level.OK, lag_text or "no consumer group"))
        for level, message, hint in problems:
            out.append(Finding(f"stream {s.stream}", level, message, hint))
    return out


def check_dlq(
    first: Mapping[str, int], second: Mapping[str, int], interval: float
) -> list[Finding]:
    out: list[Finding] = []
    for stream in INBOUND_STREAMS:
        before, after = first.get(stream, 0), second.get(stream, 0)
        check = f"dlq {stream}"
        if after > before:
            out.append(
                Finding(
                    check,
                    Level.PROBLEM,
                    f"dead-letter queue is growing: {before} → {after} in {interval:g} s",
                    f"see `kaleido dlq list {stream}`: entries are failing now",
                )
            )
        elif after:
            out.append(
                Finding(
                    check,
                    Level.WARNING,
                    f"{after} dead letters (not growing)",
                    f"`kaleido dlq list {stream}`, then replay or purge",
                )
            )
        else:
            out.append(Finding(check, Level.OK, "empty"))
    return out


def check_schema(applied: int | None, latest: int) -> list[Finding]:
    if applied is None:
        return [
            Finding(
                "schema",
                Level.PROBLEM,
                "no schema_migrations table: the database was never migrated",
                "start the service once: it applies the migrations",
            )
        ]
    if applied < latest:
        return [
            Finding(
                "schema",
                Level.PROBLEM,
                f"schema version {applied}, this Kaleido needs {latest}",
                "start the service: it applies the missing migrations",
            )
        ]
    if applied > latest:
        return [
            Finding(
                "schema",
                Level.WARNING,
                f"schema version {applied} is newer than this Kaleido's ({latest})",
                "upgrade this Kaleido",
            )
        ]
    return [Finding("schema", Level.OK, f"version {applied}, all migrations applied")]


# ---------------------------------------------------------------------- gathering


def _unreachable(what: str, exc: BackendError) -> Finding:
    return Finding(what, Level.PROBLEM, f"cannot reach {what}: {exc}", "is it running?")


async def diagnose(backends: Backends, dlq_interval: float = DLQ_INTERVAL) -> list[Finding]:
    """Gather the facts and run every check; read-only."""
    redis, keys = backends.redis, backends.keys
    stale_after = STALE_SYNC_INTERVALS * backends.settings.sync_interval
    findings: list[Finding] = []
    first_dlq: dict[str, int] | None = None
    started = trio.current_time()
    try:
        facts = await read_facts(redis)
        findings += check_memory(facts)
        findings += check_policy(facts)
        findings += check_persistence(facts, await read_save_config(redis))
        statuses = await read_streams(redis, keys)
        first_dlq = {s.stream: s.dlq_size for s in statuses if s.inbound}
        findings += check_keys(await sample_keys(redis, keys, stale_after), stale_after)
        findings += check_streams(statuses)
    except BackendError as exc:
        findings.append(_unreachable("Redis", exc))
    try:
        applied = await schema_version(backends.postgres)
        findings += check_schema(applied, available_migrations()[-1].version)
    except BackendError as exc:
        findings.append(_unreachable("PostgreSQL", exc))
    if first_dlq is not None:
        await trio.sleep_until(started + dlq_interval)
        try:
            findings += check_dlq(first_dlq, await dlq_sizes(redis, keys), dlq_interval)
        except BackendError as exc:
            findings.append(_unreachable("Redis", exc))
    return findings


def _mb(n: int) -> str:
    return f"{n / 1048576:.1f} MB"


_STYLE = {Level.OK: "green", Level.WARNING: "yellow", Level.PROBLEM: "bold red"}


def print_report(console: Console, findings: Sequence[Finding], header: str = "") -> None:
    """One line per finding (and its hint), then a summary; never wrapped mid-word."""
    if header:
        console.print(header, style="bold", soft_wrap=True, markup=False)
    for f in findings:
        line = Text.assemble(
            (f"{f.level.name:<8} ", _STYLE[f.level]), (f"{f.check}: ", "bold"), f.message
        )
        console.print(line, soft_wrap=True)
        if f.hint and f.level is not Level.OK:
            console.print(Text(f"         → {f.hint}", style="dim"), soft_wrap=True)
    problems = sum(1 for f in findings if f.level is Level.PROBLEM)
    warnings = sum(1 for f in findings if f.level is Level.WARNING)
    verdict = "problems found" if problems else "no problems"
    counts = f"{_plural(problems, 'problem')}, {_plural(warnings, 'warning')}"
    style = _STYLE[Level.PROBLEM if problems else Level.OK]
    console.print(Text(f"doctor: {verdict} ({counts})", style=style), soft_wrap=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
