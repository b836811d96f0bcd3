"""`serve(settings)`: the long-lived process: `open_kaleido` plus the two HTTP listeners and
signal handling.

Lifetimes nest: Kaleido (backends, actors) outlives the HTTP servers. On SIGINT/SIGTERM (or
`Running.stop` being set) the listeners stop taking requests and view intake closes, then the
actors finish their current unit of work, all under `shutdown_deadline`; whatever is unfinished
then is cancelled and stays safely in Redis.
"""

from __future__ import annotations

import signal
from typing import Any

import attrs
import trio

from kaleido.embedded import Kaleido, open_kaleido
from kaleido.http.app import create_app, create_ops_app, server_limits
from kaleido.http.auth import check_exposure
from kaleido.http.server import serve_http
from kaleido.logs import get_logger
from kaleido.service import Service
from kaleido.setting_values import join_host_port
from kaleido.settings import Settings

log = get_logger("kaleido.app")


@attrs.frozen
class Running:
    """What `serve` reports through `task_status` once the service is ready."""

    service: Service
    http_addresses: list[str]
    stop: trio.Event
    ops_addresses: list[str] = attrs.Factory(list)
    kaleido: Kaleido | None = None


async def stop_on_signals(stop: trio.Event) -> None:
    """Set `stop` on SIGINT or SIGTERM, until cancelled: the signal handling of `serve` and of
    the worker supervisor (kaleido.workers), in one place.

    Listens until the end: a second signal (Ctrl-C reaches a worker and then its supervisor's
    SIGTERM follows) must not fall back to the default action and kill the drain."""
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
    """Run Kaleido with its HTTP listeners until a signal (or `Running.stop`) asks it to stop;
    `demo` adds the stand-in ML service and simulated traffic; `listen_fds` (public, ops) serve
    HTTP on listening sockets made by a worker of `kaleido run --workers N` instead of binding
    the two addresses. Also `await nursery.start(kaleido.serve, settings)`."""
    check_exposure(settings)
    if listen_fds is None:
        binds = (
            join_host_port(settings.http_host, settings.http_port),
            join_host_port(settings.ops_host, settings.ops_port),
        )
    else:
        binds = (f"fd://{listen_fds[0]}", f"fd://{listen_fds[1]}")
    stop = trio.Event()
    async with open_kaleido(settings, demo=demo) as k, trio.open_nursery() as outer:
        if handle_signals:
            outer.start_soon(stop_on_signals, stop)
        http_stop = trio.Event()
        async with trio.open_nursery() as listeners:
            limits = server_limits(settings)
            public: list[str] = await listeners.start(
                serve_http, create_app(k.service), binds[0], http_stop, limits
            )
            ops: list[str] = await listeners.start(
                serve_http, create_ops_app(k.service), binds[1], http_stop, limits
            )
            log.info("service.ready", http=public, ops=ops, settings=settings.public_dict())
            task_status.started(Running(k.service, public, stop, ops, k))
            await stop.wait()
            # Intake first: the listeners drain their requests while the actors still run.
            http_stop.set()
            k.stop_intake(settings.shutdown_deadline)
            assert k.drain_deadline is not None
            listeners.cancel_scope.deadline = k.drain_deadline
        outer.cancel_scope.cancel()
    log.info("service.stopped")


def run_forever(settings: Settings, **kwargs: Any) -> int:
    """Blocking entry point: `trio.run(serve, settings)`; 0 once it stopped."""
    trio.run(lambda: serve(settings, **kwargs))
    return 0
