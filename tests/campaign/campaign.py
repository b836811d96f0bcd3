"""One campaign run: a fresh Kaleido on the campaign's backends, traffic, a schedule of faults
from a seed, a recovery period, the checker; and the shrinking of a failing schedule.

A run's result depends on its seed alone (the schedule and the traffic are drawn from it), up
to timing: `run_once(seed, only=...)` replays a subset of the schedule with the same traffic.
"""

from __future__ import annotations

import statistics
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import attrs
import httpx
import trio

from kaleido.gateways import open_backends
from kaleido.migrate import migrate
from kaleido.settings import Settings

from ..service_helpers import TABLES
from .checker import Verdict, check_entries, check_views
from .nemesis import Injected, Nemesis
from .schedule import NET, STALL, Fault, draw_cover, draw_schedule, only, periodic
from .service import Embedded, Service, rss_of
from .stack import Stack
from .traffic import (
    EMBEDDING_DIM,
    EPOCH_POSTS,
    EPOCHS,
    POSTS,
    POSTS_WITH_ROWS,
    EmbeddedViews,
    HttpViews,
    StreamFeeder,
    ViewModel,
    media_rows,
    post_views,
    record,
)

READY_WITHIN = 30.0  # the service is ready again this long after the last fault ended
RSS_BOUND = 300 * 1024 * 1024  # resident memory of any one Kaleido process
PROBE_EVERY = 0.2
AFTER_FAULTS = 2.0  # seconds of traffic once the service is ready again
RUN_OVERHEAD = 600.0  # seconds a run may take beyond its fault window (recovery, checks)


@attrs.frozen
class Scenario:
    name: str
    kinds: tuple[str, ...]
    seconds: float  # the fault window
    rate: float = 0.5  # faults a second, on average
    http_rate: float = 40.0
    sizes: tuple[int, ...] = (1, 10, 20)
    embedded_rate: float = 5.0
    stream_rate: float = 3.0  # media a second (each about 7 entries)
    workers: tuple[int, ...] = (1, 2)  # drawn by seed
    sync_interval: float | None = None  # None: drawn by seed between 0.5 and 2 s
    fixed: Callable[[], list[Fault]] | None = None  # a fixed schedule instead of drawing
    cover: bool = False  # every kind once (network ones once per backend) instead of Poisson
    stall: tuple[float, float] = STALL  # seconds a backend stays SIGSTOPped
    net: tuple[float, float] = NET  # seconds a network fault lasts
    # Restart the service and the embedding program before the checks, so that entries left
    # pending by a lost reply are read again at once rather than reclaimed after MIN_IDLE
    # (the short form's time budget).
    restart_before_checks: bool = False
    aof: bool = True  # Redis' persistence (off only where the scenario names that window)

    def workers_for(self, seed: int) -> int:
        return self.workers[seed % len(self.workers)]

    def schedule(self, seed: int) -> list[Fault]:
        if self.fixed is not None:
            return self.fixed()
        kinds = [k for k in self.kinds if applies(k, self.workers_for(seed))]
        if self.cover:
            return draw_cover(seed, kinds, self.seconds, self.stall, self.net)
        return draw_schedule(seed, kinds, self.seconds, self.rate)


def applies(kind: str, workers: int) -> bool:
    """Whether a kind of fault applies to a service of `workers` processes (`kill-service`
    kills all of them at once)."""
    return workers > 1 or kind not in ("kill-worker", "kill-supervisor")


ALL_KINDS = (
    "kill-service", "kill-worker", "kill-supervisor", "kill-embedded",
    "stall-redis", "stall-postgres", "drop-redis-clients", "drop-postgres-sessions",
    "restart-redis", "restart-postgres",
    "net-latency", "net-jitter", "net-black-hole", "net-reset", "net-half-open", "net-drop-reply",
)  # fmt: skip


def _http_only(
    name: str, kind: str, *, sync_interval: float, fixed: Callable[[], list[Fault]]
) -> Scenario:
    """One kind of fault on a fixed schedule for 20 s against one worker, with views over HTTP
    only (40 requests a second of 1- and 20-view bodies)."""
    return Scenario(
        name,
        (kind,),
        seconds=20.0,
        sizes=(1, 20),
        embedded_rate=0.0,
        stream_rate=0.0,
        workers=(1,),
        sync_interval=sync_interval,
        fixed=fixed,
    )


SCENARIOS = {
    # Every kind of fault, overlapping, at random moments.
    "mixed": Scenario("mixed", ALL_KINDS, seconds=45.0, rate=0.6),
    # CLIENT KILL TYPE normal every 2 s for 20 s against Kaleido's Redis, 40 requests a second
    # of 1- and 20-view bodies, syncs every second.
    "dropped-connections": _http_only(
        "dropped-connections",
        "drop-redis-clients",
        sync_interval=1.0,
        fixed=lambda: periodic("drop-redis-clients", 2.0, 20.0),
    ),
    # Kaleido's Redis calls run and their replies are lost (the proxy drops them after
    # forwarding the request): every call site's retry meets the ambiguous case.
    "ambiguous-replies": _http_only(
        "ambiguous-replies",
        "net-drop-reply",
        sync_interval=0.5,
        fixed=lambda: [Fault(0, "net-drop-reply", 1.0, 19.0, "redis", 0.0, 0.05)],
    ),
    # The windows docs/resilience.md documents, and only here: a Redis without persistence
    # restarted, FLUSHALL, Redis past maxmemory; with faults that overlap them. Views only: the
    # views of the posts a window may cost are counted apart (ViewModel's epochs).
    "documented-windows": Scenario(
        "documented-windows",
        (
            "restart-redis",
            "flushall",
            "maxmemory",
            "kill-service",
            "stall-postgres",
            "drop-postgres-sessions",
            "drop-redis-clients",
            "net-latency",
        ),
        seconds=40.0,
        rate=0.25,
        embedded_rate=0.0,
        stream_rate=0.0,
        workers=(1,),
        aof=False,
    ),
    # The short form of `make test`: a few faults of every kind in 20 s.
    "short": Scenario(
        "short",
        ALL_KINDS,
        seconds=15.0,
        http_rate=25.0,
        cover=True,
        stall=(0.5, 4.0),
        net=(1.0, 3.0),
        restart_before_checks=True,
    ),
}


@attrs.define
class RunResult:
    seed: int
    scenario: str
    redis: str
    workers: int
    schedule: list[Fault]
    injected: list[Injected]
    verdict: Verdict
    recoveries: list[float]
    ready_after: float | None  # seconds from the end of the last fault until ready
    rss_max: int
    statuses: Counter[str]
    unexpected_exits: list[int]

    @property
    def ok(self) -> bool:
        return self.verdict.ok

    def replay(self) -> str:
        subset = ",".join(str(f.index) for f in self.schedule)
        return f"make torture SEED={self.seed} SCENARIO={self.scenario} REDIS={self.redis}" + (
            f" FAULTS={subset}" if subset else " FAULTS=none"
        )

    def summary(self) -> str:
        v = self.verdict
        kinds = Counter(i.fault.kind for i in self.injected)
        counts = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        return (
            f"seed {self.seed} {self.scenario} on {self.redis}, {self.workers} worker(s): "
            f"{len(self.injected)} faults ({counts}); "
            f"views {v.acknowledged} acknowledged, {v.unknown} unknown; entries {v.entries}; "
            f"lost {v.lost}, doubled {v.doubled}; ready {fmt(self.ready_after)} after the last "
            f"fault; RSS max {self.rss_max / 2**20:.0f} MB: {'ok' if self.ok else 'FAILED'}"
        )

    def details(self) -> str:
        lines = [self.summary(), "schedule:"]
        done = {i.fault.index: i for i in self.injected}
        for fault in self.schedule:
            i = done.get(fault.index)
            note = "" if i is None else f" -> {i.detail}{' ERROR ' + i.error if i.error else ''}"
            lines.append(f"  {fault.describe()}{note}")
        lines += [f"failure: {f}" for f in self.verdict.failures]
        lines += [f"note: {n}" for n in self.verdict.notes]
        lines.append(f"replay: {self.replay()}")
        return "\n".join(lines)


def log(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", flush=True)


def fmt(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


async def reset(stack: Stack) -> None:
    """Empty backends with the schema, posts 1-30 and their media rows."""
    for proxies in stack.proxies.values():
        for proxy in proxies:
            proxy.faults.delay = proxy.faults.jitter = 0.0
            proxy.faults.reset_reply = proxy.faults.drop_reply = 0.0
            if proxy.faults.black_hole:
                proxy.close_hole()
            proxy.reset_all()
    settings = Settings(redis_url=stack.redis_url, database_url=stack.direct_database_url)
    async with open_backends(settings) as backends:
        await migrate(backends.postgres)
        await backends.redis.execute("FLUSHALL")
        await backends.postgres.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        await backends.postgres.execute(
            "INSERT INTO posts (post_id, user_id) SELECT e * $1 + p, 1 "
            "FROM generate_series(0, $2 - 1) e, generate_series(1, $3) p",
            EPOCH_POSTS,
            EPOCHS,
            POSTS_WITH_ROWS,
        )
        rows = media_rows()
        await backends.postgres.execute(
            "INSERT INTO post_media (media_id, post_id, media_url, position) "
            "SELECT m, p, 'https://cdn.example.com/' || m, 0 FROM unnest($1::bigint[], "
            "$2::bigint[]) AS t(m, p)",
            [m for m, _ in rows],
            [p for _, p in rows],
        )


@attrs.define
class Probe:
    """Every PROBE_EVERY seconds: /readyz, then one new view; the times both worked."""

    service: Service
    model: ViewModel
    good: list[float] = attrs.Factory(list)
    _n: int = 0

    async def run(self, stop: trio.Event) -> None:
        async with httpx.AsyncClient(base_url=self.service.base_url, timeout=2) as http:
            while not stop.is_set():
                if await self.once(http):
                    self.good.append(trio.current_time())
                await trio.sleep(PROBE_EVERY)

    async def once(self, http: httpx.AsyncClient) -> bool:
        if not await self.service.ready(http):
            return False
        self._n += 1
        views = [(9_000_000 + self._n, self.model.post(1 + self._n % POSTS))]
        status = await post_views(http, views)
        record(self.model, views, status)
        return status == "202"

    def recovered_at(self, since: float) -> float | None:
        later = [t for t in self.good if t >= since]
        return later[0] - since if later else None


async def run_once(
    stack: Stack,
    scenario: Scenario,
    seed: int,
    workdir: Path,
    indexes: Sequence[int] | None = None,
) -> RunResult:
    workers = scenario.workers_for(seed)
    schedule = only(scenario.schedule(seed), indexes)
    sync_interval = scenario.sync_interval or round(0.5 + (seed * 7919 % 1500) / 1000, 2)
    await reset(stack)
    env = {
        "KALEIDO_REDIS_URL": stack.redis_url,
        "KALEIDO_DATABASE_URL": stack.database_url,
        "KALEIDO_SYNC_INTERVAL": str(sync_interval),
        "KALEIDO_SYNC_LOCK_TTL": "5",
        "KALEIDO_SHUTDOWN_DEADLINE": "8",
        "KALEIDO_IMAGE_EMBEDDING_DIM": str(EMBEDDING_DIM),
        "KALEIDO_FACE_EMBEDDING_DIM": str(EMBEDDING_DIM),
    }
    workdir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    service = Service(env, workdir / f"kaleido-{seed}.log", workers)
    embedded = Embedded(env, workdir / f"embedded-{seed}.log") if scenario.embedded_rate else None
    model = ViewModel(seed)
    feeder = StreamFeeder(stack.client, seed, scenario.stream_rate)
    probe = Probe(service, model)
    rss_max = 0
    ready_after: float | None = None
    stop = trio.Event()
    service.spawn()
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            with trio.fail_after(60):
                while not await service.ready(http):
                    service.check_alive()
                    await trio.sleep(0.1)
        async with trio.open_nursery() as nursery:
            http_views = HttpViews(service.base_url, model, scenario.http_rate, scenario.sizes)
            nemesis = Nemesis(stack, service, embedded, nursery, views=http_views)
            if embedded is not None:
                await embedded.run(nursery)
                embedded_views = EmbeddedViews(embedded, model, scenario.embedded_rate)
                nursery.start_soon(embedded_views.run, stop)
            nursery.start_soon(http_views.run, stop)
            if scenario.stream_rate:
                nursery.start_soon(feeder.run, stop)
            nursery.start_soon(probe.run, stop)

            async def watch() -> None:
                nonlocal rss_max
                while not stop.is_set():
                    if not nemesis.busy("service"):
                        service.check_alive()
                    rss_max = max(rss_max, *(rss_of_each(service)), 0)
                    await trio.sleep(0.5)

            nursery.start_soon(watch)
            await nemesis.run(schedule, trio.current_time())
            log("faults done; waiting for the service to be ready")
            last = max((i.ended for i in nemesis.injected), default=trio.current_time())
            with trio.move_on_after(READY_WITHIN + 30):
                while (ready_after := probe.recovered_at(last)) is None:  # noqa: ASYNC110
                    await trio.sleep(PROBE_EVERY)  # the probe's next answer
            await trio.sleep(AFTER_FAULTS)  # traffic on a recovered service
            stop.set()
            if embedded is not None:
                await embedded.stop()  # answers what it has, drains and exits
                embedded_views.collect()
        log("checking")
        verdict = Verdict()
        if ready_after is None or ready_after > READY_WITHIN:
            verdict.fail(
                f"not ready within {READY_WITHIN:.0f} s of the last fault "
                f"(ready after {fmt(ready_after)})"
            )
        if ready_after is not None:
            settings = Settings(redis_url=stack.redis_url, database_url=stack.direct_database_url)
            async with open_backends(settings) as backends, trio.open_nursery() as checks:
                if scenario.restart_before_checks:
                    log("restarting the consumers")
                    await restart(service, embedded, checks)
                log("views")
                await check_views(verdict, model, service, backends)
                log("entries")
                await check_entries(verdict, feeder.written, backends)
                if scenario.restart_before_checks and embedded is not None:
                    await embedded.stop()
        if rss_max > RSS_BOUND:
            verdict.fail(f"a Kaleido process reached {rss_max / 2**20:.0f} MB resident")
        if feeder.unconfirmed:
            verdict.fail(f"{feeder.unconfirmed} entries could not be written after the faults")
        if service.exits:
            verdict.fail(f"the service exited by itself with status {service.exits}")
        recoveries = [r for i in nemesis.injected if (r := probe.recovered_at(i.ended)) is not None]
        return RunResult(
            seed,
            scenario.name,
            stack.kind,
            workers,
            schedule,
            nemesis.injected,
            verdict,
            recoveries,
            ready_after,
            rss_max,
            model.statuses,
            service.exits,
        )
    finally:
        service.close()
        if embedded is not None:
            embedded.kill()


async def restart(service: Service, embedded: Embedded | None, nursery: trio.Nursery) -> None:
    """Stop the service (SIGTERM) and start it again, start the embedding program again: each
    consumer re-reads the entries it took and did not acknowledge, as after any restart."""
    await service.terminate()
    service.spawn()
    async with httpx.AsyncClient(timeout=2) as http:
        with trio.fail_after(60):
            while not await service.ready(http):  # noqa: ASYNC110 - another process
                await trio.sleep(0.1)
    if embedded is not None:
        await embedded.run(nursery)


async def run_guarded(
    stack: Stack,
    scenario: Scenario,
    seed: int,
    workdir: Path,
    indexes: Sequence[int] | None = None,
) -> RunResult:
    """`run_once` under a deadline; a run that raises or does not finish is a failed run."""
    try:
        with trio.fail_after(scenario.seconds + RUN_OVERHEAD):
            return await run_once(stack, scenario, seed, workdir, indexes)
    except Exception as exc:
        print("".join(traceback.format_exception(exc)), flush=True)
        verdict = Verdict()
        verdict.fail(f"the run did not complete: {type(exc).__name__}: {exc}"[:2000])
        return RunResult(
            seed,
            scenario.name,
            stack.kind,
            scenario.workers_for(seed),
            only(scenario.schedule(seed), indexes),
            [],
            verdict,
            [],
            None,
            0,
            Counter(),
            [],
        )


def rss_of_each(service: Service) -> list[int]:
    return [rss_of(pid) for pid in service.pids()]


async def shrink(
    result: RunResult, replay: Callable[[list[int]], Awaitable[RunResult]], budget: int = 12
) -> list[int]:
    """Delta debugging (ddmin) over the failing run's faults: the smallest subset found, within
    `budget` replays, whose replay still fails. A failure that does not come back (timing) leaves
    the schedule as it was."""
    faults = [f.index for f in result.schedule]
    granularity = 2
    runs = 0
    while len(faults) >= 2 and runs < budget:
        size = max(1, len(faults) // granularity)
        chunks = [faults[i : i + size] for i in range(0, len(faults), size)]
        reduced = False
        for chunk in chunks:
            rest = [f for f in faults if f not in chunk]
            for candidate in (chunk, rest):
                if runs >= budget or not candidate:
                    continue
                runs += 1
                if not (await replay(candidate)).ok:
                    faults, reduced = candidate, True
                    granularity = max(granularity - 1, 2) if candidate is rest else 2
                    break
            if reduced:
                break
        if not reduced:
            if granularity >= len(faults):
                break
            granularity = min(len(faults), granularity * 2)
    return faults


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
