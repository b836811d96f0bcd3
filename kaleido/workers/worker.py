"""A worker process of `kaleido run --workers N` (`python -m kaleido.workers.worker`): the
service on its share of the supervisor's ports, under its own stable instance name."""

from __future__ import annotations

import os
import sys

import attrs
import trio

from kaleido.app import Running, _serve
from kaleido.exit_status import guarded
from kaleido.logs import configure_logging, get_logger
from kaleido.settings import Settings, load_settings
from kaleido.workers.shared import (
    WORKER_DEMO_ENV,
    WORKER_INDEX_ENV,
    WORKER_PARENT_ENV,
    bind_shared,
    worker_instance,
)

log = get_logger("kaleido.workers")

# How often a worker checks that its supervisor is alive.
PARENT_CHECK = 1.0


async def _serve_worker(settings: Settings, demo: bool, parent: int) -> None:
    """`_serve` on this worker's share of the port; stops it if the supervisor dies (no one else
    would).

    Polling the parent rather than PR_SET_PDEATHSIG: that signal fires when the *thread* that
    spawned us ends, and trio spawns processes from short-lived worker threads."""
    # hypercorn adopts the descriptors (and closes them): detached, so each closes only once.
    public = bind_shared(settings.http_host, settings.http_port, listen=True).detach()
    ops = bind_shared(settings.ops_host, settings.ops_port, listen=True).detach()
    async with trio.open_nursery() as nursery:

        async def run(task_status: trio.TaskStatus[Running]) -> None:
            await _serve(
                settings,
                task_status=task_status,
                handle_signals=True,
                demo=demo,
                listen_fds=(public, ops),
            )
            nursery.cancel_scope.cancel()

        running: Running = await nursery.start(run)
        while os.getppid() == parent:  # noqa: ASYNC110 - another process
            await trio.sleep(PARENT_CHECK)
        log.warning("worker.orphaned", parent=parent)
        running.stop()


def worker_main() -> int:
    index = int(os.environ[WORKER_INDEX_ENV])
    settings = load_settings(os.environ)
    configure_logging(settings.log_format, worker=index)
    settings = attrs.evolve(settings, instance=worker_instance(settings.instance, index))
    demo = os.environ.get(WORKER_DEMO_ENV) == "1"
    parent = int(os.environ[WORKER_PARENT_ENV])
    return guarded(lambda: trio.run(_serve_worker, settings, demo, parent) or 0)


if __name__ == "__main__":
    sys.exit(worker_main())
