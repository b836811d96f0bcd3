"""`kaleido run --workers N`: one supervisor process binds the public port and keeps N service
processes serving on it.

- Every worker listens on the public and the ops port with SO_REUSEPORT, so the kernel spreads
  connections evenly over the workers' own accept queues (one shared socket would let whichever
  worker wakes first take most of a client's keep-alive connections). The supervisor binds both
  ports first without listening: it picks a port when 0 is asked and holds it across restarts.
- Worker i runs every actor under the instance name `{instance}-w{i}` (`w{i}` with none set): its
  consumer names survive a restart, so a restarted worker finds its own pending entries (the
  others reclaim them meanwhile). The sync lock keeps one sync at a time across all of them.
- A worker that exits is restarted after a backoff, which resets once it has run a while. Exit
  status 2 (bad configuration) stops them all instead: a restart cannot fix it.
- SIGTERM/SIGINT: every worker gets SIGTERM and drains under the shutdown deadline; one still
  running after that (and a margin) is killed. A worker stops when its supervisor dies.
- Metrics: prometheus-client's multiprocess mode in a fresh folder, so whichever worker answers
  `/metrics` reports the whole service.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import attrs
import trio

from kaleido.app import Running, serve, stop_on_signals
from kaleido.backoff import Backoff
from kaleido.http.auth import check_exposure
from kaleido.logs import get_logger
from kaleido.metrics import MULTIPROC_ENV, mark_worker_dead
from kaleido.settings import Settings, settings_to_env

log = get_logger("kaleido.workers")

# Internal variables a worker process reads (beside the KALEIDO_* settings).
WORKER_INDEX_ENV = "KALEIDO_WORKER_INDEX"
WORKER_DEMO_ENV = "KALEIDO_WORKER_DEMO"
WORKER_PARENT_ENV = "KALEIDO_WORKER_PARENT"

# Restart delays of a worker that died: quick first, capped; reset after a stable run.
RESTART_BASE = 0.5
RESTART_CAP = 10.0
STABLE_RUN = 30.0
# Beyond the shutdown deadline: time for a worker to close its backends and exit.
KILL_MARGIN = 5.0
LISTEN_BACKLOG = 1024
CONFIG_ERROR_STATUS = 2


def worker_instance(instance: str, index: int) -> str:
    """The instance name of worker `index`: stable, so its consumer names are too."""
    return f"{instance}-w{index}" if instance else f"w{index}"


def bind_shared(host: str, port: int, *, listen: bool) -> socket.socket:
    """A socket on (host, port) that other SO_REUSEPORT sockets of this user may share. Only
    listening ones receive connections: the supervisor's, bound only, just holds the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


@contextmanager
def metrics_folder() -> Iterator[Path]:
    """A fresh folder for prometheus-client's per-process files (stale files would add a
    previous run's counters), removed on exit."""
    folder = Path(tempfile.mkdtemp(prefix="kaleido-metrics-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@attrs.define
class WorkerPool:
    """Keeps `settings.workers` processes serving on `settings.http_port`."""

    settings: Settings
    metrics_dir: Path
    demo: bool = False
    stopping: trio.Event = attrs.Factory(trio.Event)
    processes: dict[int, trio.Process] = attrs.Factory(dict)
    restarts: int = 0
    exit_status: int = 0

    async def run(
        self,
        *,
        handle_signals: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> int:
        """Run until a signal (or `stopping`); return the exit status for the supervisor."""
        async with trio.open_nursery() as outer:
            if handle_signals:
                outer.start_soon(stop_on_signals, self.stopping)
            async with trio.open_nursery() as workers:
                for index in range(self.settings.workers):
                    workers.start_soon(self._keep, index)
                log.info("workers.started", workers=self.settings.workers, pid=os.getpid())
                task_status.started()
                await self.stopping.wait()
                self.signal_all(signal.SIGTERM)
                outer.start_soon(self._kill_after, self.settings.shutdown_deadline + KILL_MARGIN)
            outer.cancel_scope.cancel()
        log.info("workers.stopped", restarts=self.restarts)
        return self.exit_status

    def signal_all(self, signum: signal.Signals) -> None:
        for process in list(self.processes.values()):
            with suppress(ProcessLookupError):
                process.send_signal(signum)

    def environment(self, index: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KALEIDO_")}
        env.update(settings_to_env(attrs.evolve(self.settings, workers=1)))
        env[WORKER_INDEX_ENV] = str(index)
        env[WORKER_PARENT_ENV] = str(os.getpid())
        env[MULTIPROC_ENV] = str(self.metrics_dir)
        if self.demo and index == 0:  # one stand-in ML service and one set of simulated users
            env[WORKER_DEMO_ENV] = "1"
        return env

    async def _keep(self, index: int) -> None:
        backoff = Backoff(RESTART_BASE, RESTART_CAP)
        while not self.stopping.is_set():
            started = trio.current_time()
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "kaleido.workers"],
                env=self.environment(index),
            )
            self.processes[index] = process
            log.info("worker.started", worker=index, pid=process.pid)
            status = await process.wait()
            del self.processes[index]
            mark_worker_dead(self.metrics_dir, process.pid)
            if self.stopping.is_set():
                log.info("worker.stopped", worker=index, pid=process.pid, status=status)
                return
            if status == CONFIG_ERROR_STATUS:
                log.error("worker.config_error", worker=index, pid=process.pid)
                self.exit_status = CONFIG_ERROR_STATUS
                self.stopping.set()
                return
            if trio.current_time() - started > STABLE_RUN:
                backoff.reset()
            delay = backoff.next()
            log.error("worker.died", worker=index, pid=process.pid, status=status, restart_in=delay)
            self.restarts += 1
            with trio.move_on_after(delay):
                await self.stopping.wait()

    async def _kill_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
        if self.processes:
            log.warning("workers.killed", pids=[p.pid for p in self.processes.values()])
            self.signal_all(signal.SIGKILL)


def run_workers(settings: Settings, *, demo: bool = False) -> int:
    """The supervisor's blocking entry point; returns its exit status."""
    check_exposure(settings)  # before any worker starts: one clear line, exit 2
    with (
        bind_shared(settings.http_host, settings.http_port, listen=False) as public,
        bind_shared(settings.ops_host, settings.ops_port, listen=False) as ops,
        metrics_folder() as folder,
    ):
        ports = {"http_port": public.getsockname()[1], "ops_port": ops.getsockname()[1]}
        pool = WorkerPool(attrs.evolve(settings, **ports), folder, demo=demo)
        return trio.run(pool.run)


# ---------------------------------------------------------------------- the worker process


# How often a worker checks that its supervisor is alive.
PARENT_CHECK = 1.0


async def _serve_worker(settings: Settings, demo: bool, parent: int) -> None:
    """`serve` on this worker's share of the port; stops it if the supervisor dies (no one else
    would).

    Polling the parent rather than PR_SET_PDEATHSIG: that signal fires when the *thread* that
    spawned us ends, and trio spawns processes from short-lived worker threads."""
    # hypercorn adopts the descriptors (and closes them): detached, so each closes only once.
    public = bind_shared(settings.http_host, settings.http_port, listen=True).detach()
    ops = bind_shared(settings.ops_host, settings.ops_port, listen=True).detach()
    async with trio.open_nursery() as nursery:

        async def run(task_status: trio.TaskStatus[Running]) -> None:
            await serve(settings, demo=demo, listen_fds=(public, ops), task_status=task_status)
            nursery.cancel_scope.cancel()

        running: Running = await nursery.start(run)
        while os.getppid() == parent:  # noqa: ASYNC110 - another process
            await trio.sleep(PARENT_CHECK)
        log.warning("worker.orphaned", parent=parent)
        running.stop.set()


def worker_main() -> int:
    from kaleido.cli import guarded
    from kaleido.logs import configure_logging
    from kaleido.settings import load_settings

    index = int(os.environ[WORKER_INDEX_ENV])
    settings = load_settings(os.environ)
    configure_logging(settings.log_format, worker=index)
    settings = attrs.evolve(settings, instance=worker_instance(settings.instance, index))
    demo = os.environ.get(WORKER_DEMO_ENV) == "1"
    parent = int(os.environ[WORKER_PARENT_ENV])
    return guarded(lambda: trio.run(_serve_worker, settings, demo, parent) or 0)


if __name__ == "__main__":
    sys.exit(worker_main())
