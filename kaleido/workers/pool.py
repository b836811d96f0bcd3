"""The worker supervisor of `kaleido run --workers N` (see kaleido.workers): holds the ports,
keeps N worker processes running, restarts the ones that die, stops them all on a signal."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import attrs
import trio

from kaleido.backoff import Backoff
from kaleido.exit_status import CONFIG_ERROR_STATUS
from kaleido.http.auth import check_exposure
from kaleido.logs import get_logger
from kaleido.metrics import MULTIPROC_ENV, mark_worker_dead
from kaleido.settings import Settings, settings_to_env
from kaleido.stop_signals import stop_on_signals
from kaleido.workers.shared import (
    WORKER_DEMO_ENV,
    WORKER_INDEX_ENV,
    WORKER_PARENT_ENV,
    bind_shared,
)

log = get_logger("kaleido.workers")

# Restart delays of a worker that died: quick first, capped; reset after a stable run.
RESTART_BASE = 0.5
RESTART_CAP = 10.0
STABLE_RUN = 30.0
# Beyond the shutdown deadline: time for a worker to close its backends and exit.
KILL_MARGIN = 5.0
# What a worker process runs.
WORKER_MODULE = "kaleido.workers.worker"


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
                [sys.executable, "-m", WORKER_MODULE],
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
