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
import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import trio
from rich.console import Console
from rich.text import Text

from kaleido.errors import BackendError, RedisCommandError
from kaleido.gateways import Backends, PostgresGateway, RedisGateway
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
from kaleido.ops.redis_info import RedisFacts, read_node_facts
from kaleido.ops.streams import ALL_STREAMS, StreamStatus, dlq_sizes, read_streams
from kaleido.replies import as_text
from kaleido.views.sync import BACKLOG_MAX_AGE_DAYS, BACKLOG_MAX_POSTS

# Keys sampled by SCAN for the TTL checks: enough to see a pattern, cheap on a big keyspace.
SAMPLE_SIZE = 2000
SCAN_COUNT = 1000
# SCAN with MATCH may return few keys per call; bound the calls, not only the keys.
MAX_SCAN_CALLS = 100
# Dedup buckets stay listpacks (a few bytes a field) up to this many fields; past it Redis
# converts them to hashtables, about five times the memory.
LISTPACK_SETTING = "hash-max-listpack-entries"
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


async def _scan(redis: RedisGateway, pattern: str, limit: int) -> list[bytes]:
    """Up to `limit` keys matching `pattern`, from every master (each has its own cursor)."""
    found: list[bytes] = []
    for node in await redis.master_names():
        cursor: Any = 0
        for _ in range(MAX_SCAN_CALLS):
            cursor, batch = await redis.on_master(
                node, "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT
            )
            found += batch
            if int(cursor) == 0 or len(found) >= limit:
                break
        if len(found) >= limit:
            break
    return found[:limit]


def _must_not_expire(keys: KeyLayout, streams: set[str], name: str) -> bool:
    """Whether a key is Kaleido's and must never carry a TTL: every `view:` key but the dedup
    buckets, their directories and the sync lock, and every stream. Other keys are not judged
    (a Redis shared with other applications holds theirs)."""
    if fnmatch.fnmatchcase(name, keys.seen_pattern()) or name == keys.lock:
        return False
    if fnmatch.fnmatchcase(name, keys.directory_pattern()):
        return False
    return name.startswith(keys.prefix + "view:") or name in streams


def _stream_keys(keys: KeyLayout) -> set[str]:
    return {keys.stream(s) for s in ALL_STREAMS} | {keys.dlq(s) for s in INBOUND_STREAMS}


async def sample_keys(
    redis: RedisGateway, keys: KeyLayout, stale_after: float, sample: int = SAMPLE_SIZE
) -> KeySample:
    """SCAN a sample of keys for their TTL, and of dedup buckets for their TTL and encoding;
    read how long each partition's counts hash has been idle."""
    sampled = await _scan(redis, keys.prefix + "*", sample)
    ttls = await redis.pipeline([("TTL", k) for k in sampled])
    live = [
        (k.decode(errors="replace"), int(t))
        for k, t in zip(sampled, ttls, strict=True)
        if int(t) != -2
    ]
    streams = _stream_keys(keys)
    unexpected = tuple(k for k, t in live if t >= 0 and _must_not_expire(keys, streams, k))

    buckets = await _scan(redis, keys.seen_pattern(), sample)
    replies = await redis.pipeline(
        [("TTL", b) for b in buckets] + [("OBJECT", "ENCODING", b) for b in buckets]
    )
    bucket_ttls, encodings = replies[: len(buckets)], replies[len(buckets) :]
    # A bucket that expired between SCAN and these reads has TTL -2 and no encoding.
    converted = [
        b for b, e in zip(buckets, encodings, strict=True) if e is not None and e != b"listpack"
    ]
    sizes = await redis.pipeline([("HLEN", b) for b in converted])
    entries = await read_config(redis, LISTPACK_SETTING) if converted else None

    counts = [keys.counts(q) for q in range(keys.partitions)]
    # Only OBJECT reads them: a command on the hash would reset the idle time it measures.
    counted: int | None = None
    stale: tuple[int, ...] = ()
    try:
        idle = await redis.pipeline([("OBJECT", "IDLETIME", k) for k in counts])
    except RedisCommandError:
        pass  # an LFU eviction policy keeps no idle times
    else:
        counted = sum(1 for i in idle if i is not None)
        stale = tuple(q for q, i in enumerate(idle) if i is not None and int(i) > stale_after)
    return KeySample(
        sampled=len(live),
        with_ttl=sum(1 for _, t in live if t >= 0),
        unexpected_ttl=unexpected,
        buckets=sum(1 for t in bucket_ttls if int(t) != -2),
        buckets_without_ttl=sum(1 for t in bucket_ttls if int(t) == -1),
        converted_buckets=tuple(int(n) for n in sizes if int(n)),
        listpack_entries=int(entries) if entries and entries.isdigit() else None,
        counted_partitions=counted,
        stale_partitions=stale,
    )


async def read_config(redis: RedisGateway, name: str) -> str | None:
    """A CONFIG setting, or None when CONFIG is disabled (as on many managed Redis)."""
    try:
        reply = await redis.execute("CONFIG", "GET", name)
    except RedisCommandError:
        return None
    value = reply.get(name.encode(), reply.get(name)) if isinstance(reply, dict) else None
    if value is None and isinstance(reply, list) and len(reply) == 2:
        value = reply[1]
    if value is None:
        return None
    return as_text(value)


async def read_save_config(redis: RedisGateway) -> str | None:
    """The RDB `save` setting, or None when CONFIG is disabled."""
    return await read_config(redis, "save")


# ---------------------------------------------------------------------- checks


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


@attrs.frozen
class BacklogFacts:
    posts: int
    views: int
    oldest_age_days: float | None


async def read_backlog(postgres: PostgresGateway) -> BacklogFacts:
    row = await postgres.fetchrow(
        "SELECT count(*) AS posts, coalesce(sum(views), 0) AS views,"
        " extract(epoch FROM now() - min(updated_at)) / 86400 AS age FROM post_view_backlog"
    )
    age = None if row["age"] is None else float(row["age"])
    return BacklogFacts(int(row["posts"]), int(row["views"]), age)


def check_backlog(facts: BacklogFacts) -> list[Finding]:
    """Views of posts with no row: normal while posts are being created, dropped past the
    syncer's bounds (kaleido.views.sync)."""
    if not facts.posts:
        return [Finding("unknown posts", Level.OK, "no synced views wait for a post row")]
    age = facts.oldest_age_days or 0.0
    message = (
        f"{facts.posts} posts without a row hold {facts.views} synced views (oldest "
        f"{age:.1f} days); kept {BACKLOG_MAX_AGE_DAYS:g} days, {BACKLOG_MAX_POSTS} posts at most"
    )
    near = facts.posts > 0.8 * BACKLOG_MAX_POSTS or age > BACKLOG_MAX_AGE_DAYS - 1
    if not near:
        return [Finding("unknown posts", Level.OK, message)]
    hint = "views are counted for posts that are never created: check the callers' post ids"
    return [Finding("unknown posts", Level.WARNING, message, hint)]


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


def on_node(finding: Finding, node: str) -> Finding:
    """A finding about one master of a cluster names it."""
    if not node:
        return finding
    return attrs.evolve(finding, message=f"{node}: {finding.message}")


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
        save = await read_save_config(redis)
        for facts in await read_node_facts(redis):  # every master of a cluster
            node_findings = check_memory(facts) + check_policy(facts)
            node_findings += check_persistence(facts, save)
            findings += [on_node(f, facts.node) for f in node_findings]
        statuses = await read_streams(redis, keys)
        first_dlq = {s.stream: s.dlq_size for s in statuses if s.inbound}
        findings += check_keys(await sample_keys(redis, keys, stale_after), stale_after)
        findings += check_streams(statuses)
    except BackendError as exc:
        findings.append(_unreachable("Redis", exc))
    try:
        applied = await schema_version(backends.postgres)
        findings += check_schema(applied, available_migrations()[-1].version)
        if applied is not None:
            findings += check_backlog(await read_backlog(backends.postgres))
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
