"""`open_kaleido(settings)`: Kaleido inside another trio program, without HTTP.

    async with kaleido.open_kaleido(kaleido.Settings(redis_url=..., database_url=...)) as k:
        k.views.record_nowait(user_id, post_id)           # never waits; False when full
        await k.views.record([(user_id, post_id)])        # durable when it returns
        n = await k.views.total(post_id)                  # exact
        await k.posts.create(post_id, user_id, [(media_id, "https://cdn.example.com/a.jpg")])
        report = await k.sync_now()

The block owns the backends, the schema, every actor (the stream consumers too) and the drain:
on the way out, however the block ends (an exception, a cancellation of the caller's nursery),
intake stops, the ingester writes what is queued to Redis, in-flight stream batches finish and a
last sync runs, shielded and under `settings.shutdown_deadline`. What is unfinished then stays
safely in Redis. Kaleido installs no signal handler: the program decides when to stop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterable
from contextlib import asynccontextmanager
from typing import Any, overload

import attrs
import trio

from kaleido.backoff import Backoff
from kaleido.embedded_posts import Posts
from kaleido.errors import (
    ConfigError,
    RedisPermissionDenied,
    SyncFailed,
    TransientError,
    warn_deprecated,
)
from kaleido.gateways import Backends, open_backends
from kaleido.logs import get_logger, use_default_logging
from kaleido.metrics import Metrics
from kaleido.migrate import migrate
from kaleido.redis_preflight import check_functions, check_redis_rights
from kaleido.redis_url import redis_credentials
from kaleido.service import Service
from kaleido.settings import Settings
from kaleido.supervisor import Supervisor
from kaleido.views.model import RecordResult, SyncReport

log = get_logger("kaleido.embedded")

# Start-up waits for PostgreSQL as long as it is unreachable (a restart, a failover): a process
# that gave up would need someone to start it again. The wait between attempts is capped.
SCHEMA_RETRY_CAP = 5.0
# How often `drained()` looks at the ingester's counters.
DRAIN_POLL = 0.005

__all__ = ["Kaleido", "SyncFailed", "Views", "open_kaleido"]  # SyncFailed: its old home


@attrs.frozen
class Views:
    """View counting: record views, read exact totals."""

    _service: Service

    def record_nowait(self, user_id: int, post_id: int) -> bool:
        """Queue one view without waiting; False when the queue is full or closed. Raises
        ValueError naming a bad id."""
        return self._service.tracker.record(user_id, post_id)

    @overload
    def record(self, views: Iterable[tuple[int, int]], /) -> Awaitable[RecordResult]: ...

    @overload
    def record(self, user_id: int, post_id: int, /) -> bool: ...

    def record(self, *args: Any) -> Awaitable[RecordResult] | bool:
        """`await record(views)`: record views and return once they are durable (in Redis, or
        in PostgreSQL's journal while Redis is down): counted and duplicates.

        `record(user_id, post_id)` (deprecated) is `record_nowait(user_id, post_id)`."""
        if len(args) == 2:
            warn_deprecated("Views.record(user_id, post_id)", "Views.record_nowait")
            return self.record_nowait(*args)
        (views,) = args
        return self._service.tracker.record_and_wait(views)

    async def record_and_wait(self, views: Iterable[tuple[int, int]]) -> RecordResult:
        """Deprecated: `await record(views)`."""
        warn_deprecated("Views.record_and_wait(views)", "await Views.record(views)")
        return await self._service.tracker.record_and_wait(views)

    async def total(self, post_id: int) -> int:
        """The exact total of the post's views (PostgreSQL's part alone while Redis is down)."""
        return (await self._service.view_total(post_id)).views


@attrs.define
class Kaleido:
    """A running Kaleido, as `open_kaleido` yields it: `views`, `posts`, `sync_now()` and
    `drained()`."""

    views: Views
    posts: Posts
    _service: Service = attrs.field(repr=False)
    # When the drain must be done by (trio time); set by whoever asked to stop first.
    _drain_deadline: float | None = attrs.field(default=None, init=False, repr=False)

    async def sync_now(self) -> SyncReport:
        """Sync buffered views to PostgreSQL now (under the shared lock; waits for a running
        sync); raises SyncFailed with the reason."""
        done = await self._service.syncer.request()
        if done.report is None:
            raise SyncFailed(done.error or "the sync did not run")
        return done.report

    async def drained(self) -> None:
        """Wait until every view queued so far has been dealt with by the ingester (in Redis, in
        the journal, or refused with an error to its waiter)."""
        tracker, ingester = self._service.tracker, self._service.ingester
        while ingester.settled < tracker.stats.queued:  # noqa: ASYNC110 - counters, no event
            await trio.sleep(DRAIN_POLL)

    # Deprecated names, kept for one release.

    @property
    def service(self) -> Service:
        warn_deprecated("Kaleido.service", "Kaleido.views and Kaleido.posts")
        return self._service

    @property
    def drain_deadline(self) -> float | None:
        warn_deprecated("Kaleido.drain_deadline", "leaving the open_kaleido block")
        return self._drain_deadline

    async def wait_drained(self, poll: float = DRAIN_POLL) -> None:
        warn_deprecated("Kaleido.wait_drained()", "Kaleido.drained()")
        await self.drained()

    def stop_intake(self, deadline: float) -> None:
        warn_deprecated("Kaleido.stop_intake()", "leaving the open_kaleido block")
        begin_drain(self, deadline)


def service_of(k: Kaleido) -> Service:
    """The Service behind `k`: for Kaleido's own hosts (kaleido.app, kaleido.testing) and
    tests, not part of the public API."""
    return k._service


def begin_drain(k: Kaleido, seconds: float) -> float:
    """Refuse new views from now on; the drain is to finish `seconds` from now (or by the
    deadline an earlier call set). Returns that deadline (trio time)."""
    if k._drain_deadline is None:
        k._drain_deadline = trio.current_time() + seconds
    k._service.stop_intake()
    return k._drain_deadline


async def prepare_schema(backends: Backends) -> None:
    """Apply migrations, retrying for as long as PostgreSQL is unreachable (the caller may
    cancel); any other error (a refused password, a failed migration) is raised at once."""
    backoff = Backoff(0.1, SCHEMA_RETRY_CAP)
    while True:
        try:
            applied = await migrate(backends.postgres)
            if applied:
                log.info("schema.migrated", versions=applied)
            return
        except TransientError as exc:
            log.warning("schema.waiting_for_postgres", error=str(exc))
            await trio.sleep(backoff.next())


async def check_view_layout(service: Service) -> None:
    """Create or check the view layout in Redis now, so that a mismatch (ConfigError) stops
    start-up; with Redis unreachable the first view call does it instead."""
    try:
        state = await service.views.layout()
    except TransientError as exc:
        log.warning("views.layout_unchecked", error=str(exc))
        return
    log.info("views.layout", **attrs.asdict(state))


async def check_redis_user(backends: Backends) -> None:
    """Stop start-up with a ConfigError when Redis lacks Kaleido's function library or its ACL
    refuses Kaleido a right it needs; with Redis unreachable, the actors report it instead."""
    try:
        await check_functions(backends.redis)
        await check_redis_rights(backends.redis, backends.keys)
    except RedisPermissionDenied as exc:
        user, _ = redis_credentials(backends.settings.redis_url or "")
        raise ConfigError(
            f"KALEIDO_REDIS_URL: the Redis user {user!r} lacks a right: {exc}"
        ) from None
    except TransientError as exc:
        log.warning("redis.rights_unchecked", error=str(exc))


@asynccontextmanager
async def open_kaleido(settings: Settings, **deprecated: Any) -> AsyncIterator[Kaleido]:
    """Run Kaleido's backends and actors for the duration of the block (see the module
    docstring)."""
    demo = bool(deprecated.pop("demo", False))
    if deprecated:
        raise TypeError(f"open_kaleido() got unexpected arguments: {', '.join(deprecated)}")
    if demo:
        warn_deprecated("open_kaleido(demo=True)", "kaleido run --demo")
    async with _open_kaleido(settings, demo=demo) as k:
        yield k


@asynccontextmanager
async def _open_kaleido(settings: Settings, *, demo: bool = False) -> AsyncIterator[Kaleido]:
    """`open_kaleido`, and for Kaleido's own hosts `demo`: the stand-in ML service and
    simulated users."""
    if settings.redis_url is None or settings.database_url is None:
        raise ConfigError("open_kaleido needs Settings.redis_url and Settings.database_url")
    use_default_logging(settings.log_format)
    stop = trio.Event()
    body = trio.CancelScope()  # the caller's block: the host cancels it if the actors fail
    async with trio.open_nursery() as nursery:
        k: Kaleido = await nursery.start(_host, settings, demo, stop, body)
        with body:
            try:
                yield k
            finally:
                stop.set()  # the host drains, shielded, before this nursery can exit


async def _host(
    settings: Settings,
    demo: bool,
    stop: trio.Event,
    body: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[Kaleido],
) -> None:
    """Owns the backends (their asyncio loop too) and the actors. Start-up can be cancelled;
    once running, only `stop` ends it, so that a cancelled caller's views are still drained
    (a cancellation would otherwise stop the loop and the actors before the drain).

    If the actors fail (the supervisor gives up), the caller's block is cancelled and has
    ended before the backends close: a request of the caller's still waiting on PostgreSQL
    or Redis must not find their event loop closed under it."""
    with trio.CancelScope() as scope:
        async with open_backends(settings) as backends:
            await prepare_schema(backends)
            await check_redis_user(backends)
            started = False
            try:
                async with trio.open_nursery() as actors:
                    supervisor = Supervisor(actors)
                    service = Service.build(backends, supervisor, Metrics())
                    await check_view_layout(service)
                    await service.start_actors()
                    if demo:
                        from kaleido.demo import start_demo

                        await start_demo(service)
                    k = Kaleido(Views(service), Posts(service), service)
                    scope.shield = True
                    task_status.started(k)
                    started = True
                    await stop.wait()
                    await _drain(k, settings.shutdown_deadline)
                    actors.cancel_scope.cancel()
            except BaseException:
                if started and not stop.is_set():
                    body.cancel()
                    with trio.CancelScope(shield=True):
                        await stop.wait()
                raise


async def _drain(k: Kaleido, deadline: float) -> None:
    # Intake closes before `stopping`: the ingester finishes once the queue is closed.
    drain_by = begin_drain(k, deadline)
    log.info("shutdown.begin", deadline=deadline)
    supervisor = k._service.supervisor
    with trio.move_on_at(drain_by) as scope:
        # The ingester first: it ends once the closed queue is written to Redis, so that the
        # syncer's last run (on `stopping`) takes those views to PostgreSQL too.
        ingester = supervisor.actors.get("view-ingester")
        if ingester is not None:
            await ingester.done.wait()
        supervisor.stopping.set()
        await supervisor.wait_finished()
    if scope.cancelled_caught:
        unfinished = [n for n, a in supervisor.actors.items() if not a.finished]
        log.warning("shutdown.deadline_passed", unfinished=unfinished)
