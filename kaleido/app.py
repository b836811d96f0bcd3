"""`serve(settings)`: the long-lived process. Backends, schema, actors, HTTP, graceful stop.

Lifetimes nest: the backends (and their asyncio loop) outlive the supervisor's nursery, which
outlives every actor and the HTTP server. On SIGINT/SIGTERM (or `stop` being set) intake stops
first, then actors finish their current unit of work, all under `shutdown_deadline`; whatever is
unfinished then is cancelled and stays safely in Redis.
"""

from __future__ import annotations

import signal
from typing import Any

import attrs
import trio

from kaleido.demo import start_demo
from kaleido.errors import ConfigError, TransientError
from kaleido.gateways import Backends, open_backends
from kaleido.http.app import bind_address, create_app, create_ops_app, serve_http
from kaleido.http.auth import check_exposure
from kaleido.logs import get_logger
from kaleido.metrics import Metrics
from kaleido.migrate import migrate
from kaleido.redis_url import is_cluster_url
from kaleido.service import Service
from kaleido.settings import Settings
from kaleido.supervisor import Supervisor

log = get_logger("kaleido.app")

# How long start-up waits for PostgreSQL to accept the schema before giving up.
SCHEMA_WAIT = 30.0


@attrs.frozen
class Running:
    """What `serve` reports through `task_status` once the service is ready."""

    service: Service
    http_addresses: list[str]
    stop: trio.Event
    ops_addresses: list[str] = attrs.Factory(list)


async def prepare_schema(backends: Backends, wait: float = SCHEMA_WAIT) -> None:
    """Apply migrations, retrying while PostgreSQL is starting or briefly unreachable."""
    delay = 0.1
    with trio.fail_after(wait):
        while True:
            try:
                applied = await migrate(backends.postgres)
                if applied:
                    log.info("schema.migrated", versions=applied)
                return
            except TransientError as exc:
                log.warning("schema.waiting_for_postgres", error=str(exc))
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)


async def check_view_layout(service: Service) -> None:
    """Create or check the view layout in Redis now, so that a mismatch (ConfigError) stops
    start-up; with Redis unreachable the first view call does it instead."""
    try:
        state = await service.views.layout()
    except TransientError as exc:
        log.warning("views.layout_unchecked", error=str(exc))
        return
    log.info("views.layout", **attrs.asdict(state))


async def _watch_signals(stop: trio.Event) -> None:
    # Listens until the end: a second signal (Ctrl-C reaches a worker and then its supervisor's
    # SIGTERM follows) must not fall back to the default action and kill the drain.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("shutdown.signal", signal=signal.Signals(signum).name)
            stop.set()


async def serve(
    settings: Settings,
    *,
    handle_signals: bool = True,
    demo: bool = False,
    listen_fds: tuple[int, int] | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run Kaleido until a signal (or `Running.stop`) asks it to stop; `demo` adds the stand-in
    ML service and simulated traffic; `listen_fds` (public, ops) serve HTTP on listening sockets
    made by a worker of `kaleido run --workers N` instead of binding the two addresses."""
    check_exposure(settings)
    stop = trio.Event()
    if demo and settings.redis_url is not None and is_cluster_url(settings.redis_url):
        # The stand-in ML service reads its three streams in one XREADGROUP and answers in one
        # MULTI: keys of several slots.
        raise ConfigError("--demo needs a single Redis, not a Redis Cluster (KALEIDO_REDIS_URL)")
    async with open_backends(settings) as backends:
        await prepare_schema(backends)
        async with trio.open_nursery() as nursery:
            if handle_signals:
                nursery.start_soon(_watch_signals, stop)
            supervisor = Supervisor(nursery)
            service = Service.build(backends, supervisor, Metrics())
            await check_view_layout(service)
            await service.start_actors()
            if demo:
                await start_demo(service)
            http_stop = trio.Event()
            if listen_fds is None:
                binds = (
                    bind_address(settings.http_host, settings.http_port),
                    bind_address(settings.ops_host, settings.ops_port),
                )
            else:
                binds = (f"fd://{listen_fds[0]}", f"fd://{listen_fds[1]}")
            addresses: list[str] = await nursery.start(
                serve_http, create_app(service), binds[0], http_stop
            )
            ops: list[str] = await nursery.start(
                serve_http, create_ops_app(service), binds[1], http_stop
            )
            log.info("service.ready", http=addresses, ops=ops, settings=settings.public_dict())
            task_status.started(Running(service, addresses, stop, ops))
            await stop.wait()
            await _shutdown(service, http_stop, settings.shutdown_deadline)
            nursery.cancel_scope.cancel()
    log.info("service.stopped")


async def _shutdown(service: Service, http_stop: trio.Event, deadline: float) -> None:
    log.info("shutdown.begin", deadline=deadline)
    with trio.move_on_after(deadline) as scope:
        http_stop.set()  # stop intake first
        service.stop_intake()
        service.supervisor.stopping.set()
        await service.supervisor.wait_finished()
    if scope.cancelled_caught:
        unfinished = [n for n, a in service.supervisor.actors.items() if not a.finished]
        log.warning("shutdown.deadline_passed", unfinished=unfinished)


def run_forever(settings: Settings, **kwargs: Any) -> int:
    """Blocking entry point: `trio.run(serve, settings)`; 0 once it stopped."""
    trio.run(lambda: serve(settings, **kwargs))
    return 0
