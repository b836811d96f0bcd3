"""SIGINT and SIGTERM as a stop request: the command line's signal handling (`kaleido run`,
and the worker supervisor), never the embedding surface's (`kaleido.serve` installs none)."""

from __future__ import annotations

import signal

import trio

from kaleido.logs import get_logger

log = get_logger(__name__)


async def stop_on_signals(stop: trio.Event) -> None:
    """Set `stop` on SIGINT or SIGTERM, until cancelled.

    Listens until the end: a second signal (Ctrl-C reaches a worker and then its supervisor's
    SIGTERM follows) must not fall back to the default action and kill the drain."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("shutdown.signal", signal=signal.Signals(signum).name)
            stop.set()
