"""`serve(settings)`: Kaleido with its two HTTP listeners, in the caller's nursery.

    running = await nursery.start(kaleido.serve, settings)
    ...
    running.stop()  # or cancel the nursery: Kaleido drains either way

Lifetimes nest: Kaleido (backends, actors) outlives the HTTP servers. Once asked to stop (by
`Running.stop()`, or `shutdown_trigger` returning) the listeners stop taking requests and view
intake closes, then the actors finish their current unit of work, all under
`shutdown_deadline`; whatever is unfinished then is cancelled and stays safely in Redis. A
cancelled caller gets the same drain of the actors (shielded), without the listeners' grace.

Like hypercorn's embeddable `serve`, it installs no signal handler: SIGINT and SIGTERM belong
to the program. The command line (`kaleido run`, run.py) and the worker processes install them
through the internal `_serve`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from kaleido.embedded import Kaleido, _open_kaleido, begin_drain
from kaleido.embedded import service_of as _service_of_kaleido
from kaleido.errors import warn_deprecated
from kaleido.http.app import create_app, create_ops_app, server_limits
from kaleido.http.auth import check_exposure
from kaleido.http.server import serve_http
from kaleido.logs import get_logger
from kaleido.service import Service
from kaleido.setting_values import join_host_port
from kaleido.settings import Settings
from kaleido.stop_signals import stop_on_signals

log = get_logger("kaleido.app")

ShutdownTrigger = Callable[[], Awaitable[object]]


@attrs.frozen
class _Stop:
    """`Running.stop()`; `Running.stop.set()`, its old spelling, still works for a release."""

    _event: trio.Event

    def __call__(self) -> None:
        self._event.set()

    def set(self) -> None:
        warn_deprecated("Running.stop.set()", "Running.stop()")
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@attrs.frozen
class Running:
    """What `serve` reports through `task_status` once it takes requests: the bound addresses
    (`http://HOST:PORT`; port 0 asked means the one picked), the running Kaleido (its `views`
    and `posts`), and `stop()`, which starts the graceful shutdown."""

    http_addresses: list[str]
    ops_addresses: list[str]
    kaleido: Kaleido
    stop: _Stop

    @property
    def service(self) -> Service:
        warn_deprecated("Running.service", "Running.kaleido")
        return _service_of_kaleido(self.kaleido)


def service_of(running: Running | Kaleido) -> Service:
    """The Service behind a running Kaleido: for Kaleido's own tests and hosts, not part of
    the public API."""
    k = running.kaleido if isinstance(running, Running) else running
    return _service_of_kaleido(k)


async def serve(
    settings: Settings,
    *,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
    shutdown_trigger: ShutdownTrigger | None = None,
    **deprecated: Any,
) -> None:
    """Run Kaleido with its HTTP listeners until `Running.stop()` is called, `shutdown_trigger`
    (an async callable, as hypercorn's) returns, or the caller's nursery is cancelled:
    `running = await nursery.start(kaleido.serve, settings)`. Installs no signal handler."""
    unknown = deprecated.keys() - {"handle_signals", "demo"}
    if unknown:
        raise TypeError(f"serve() got unexpected arguments: {', '.join(sorted(unknown))}")
    if "handle_signals" in deprecated:
        warn_deprecated("serve(handle_signals=...)", "serve(shutdown_trigger=...)")
    handle_signals = bool(deprecated.get("handle_signals", False))
    demo = bool(deprecated.get("demo", False))
    if demo:
        warn_deprecated("serve(demo=True)", "kaleido run --demo")
    await _serve(
        settings,
        task_status=task_status,
        shutdown_trigger=shutdown_trigger,
        handle_signals=handle_signals,
        demo=demo,
    )


async def _trigger(shutdown_trigger: ShutdownTrigger, stop: trio.Event) -> None:
    await shutdown_trigger()
    stop.set()


async def _serve(
    settings: Settings,
    *,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
    shutdown_trigger: ShutdownTrigger | None = None,
    handle_signals: bool = False,
    demo: bool = False,
    listen_fds: tuple[int, int] | None = None,
) -> None:
    """`serve` for Kaleido's own processes: `handle_signals` stops it on SIGINT/SIGTERM (the
    command line), `demo` adds the stand-in ML service and simulated traffic, `listen_fds`
    (public, ops) serve on listening sockets a worker of `kaleido run --workers N` made instead
    of binding the two addresses."""
    check_exposure(settings)
    if listen_fds is None:
        binds = (
            join_host_port(settings.http_host, settings.http_port),
            join_host_port(settings.ops_host, settings.ops_port),
        )
    else:
        binds = (f"fd://{listen_fds[0]}", f"fd://{listen_fds[1]}")
    stop = trio.Event()
    async with _open_kaleido(settings, demo=demo) as k, trio.open_nursery() as outer:
        if handle_signals:
            outer.start_soon(stop_on_signals, stop)
        if shutdown_trigger is not None:
            outer.start_soon(_trigger, shutdown_trigger, stop)
        http_stop = trio.Event()
        service = _service_of_kaleido(k)
        async with trio.open_nursery() as listeners:
            limits = server_limits(settings)
            public: list[str] = await listeners.start(
                serve_http, create_app(service), binds[0], http_stop, limits
            )
            ops: list[str] = await listeners.start(
                serve_http, create_ops_app(service), binds[1], http_stop, limits
            )
            log.info("service.ready", http=public, ops=ops, settings=settings.public_dict())
            task_status.started(Running(public, ops, k, _Stop(stop)))
            await stop.wait()
            # Intake first: the listeners drain their requests while the actors still run.
            http_stop.set()
            listeners.cancel_scope.deadline = begin_drain(k, settings.shutdown_deadline)
        outer.cancel_scope.cancel()
    log.info("service.stopped")


def run_forever(settings: Settings, *, demo: bool = False) -> int:
    """The command line's blocking entry point: `_serve` until SIGINT/SIGTERM; 0 once it
    stopped."""
    trio.run(lambda: _serve(settings, handle_signals=True, demo=demo))
    return 0
