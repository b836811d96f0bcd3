"""Kaleido as processes the nemesis kills: `run.py` (one process, or a supervisor and its
workers with `--workers 2`), and an embedding program (`embedded.py`, `open_kaleido`) fed views
through its standard input."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import attrs
import httpx
import trio

from ..conftest import REPO
from ..processes import children, free_port, kaleido_env, start_kaleido

ADMIN_TOKEN = "campaign-admin-token-0123456789"


def rss_of(pid: int) -> int:
    """Resident bytes of `pid` (0 if gone)."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


@attrs.define
class Service:
    """`python run.py` on fixed ports, against the campaign's backends (through the proxies)."""

    env: dict[str, str]
    log_path: Path
    workers: int = 1
    port: int = attrs.Factory(free_port)
    ops_port: int = attrs.Factory(free_port)
    proc: subprocess.Popen[bytes] | None = None
    seen: set[int] = attrs.Factory(set)  # every pid of ours, to clean up orphans at the end
    exits: list[int] = attrs.Factory(list)  # statuses of exits the nemesis did not cause

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    def spawn(self) -> None:
        env = kaleido_env(
            **self.env,
            KALEIDO_HTTP_BIND=f"127.0.0.1:{self.port}",
            KALEIDO_OPS_BIND=f"127.0.0.1:{self.ops_port}",
            KALEIDO_ADMIN_TOKEN=ADMIN_TOKEN,
        )
        args = ["--workers", str(self.workers)] if self.workers > 1 else []
        with self.log_path.open("ab") as log:
            self.proc = start_kaleido(args, env, log)
        self.seen.add(self.proc.pid)

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        workers = children(self.proc.pid)
        self.seen.update(workers)
        return [self.proc.pid, *workers]

    def workers_pids(self) -> list[int]:
        return self.pids()[1:]

    def check_alive(self) -> None:
        """Note (and restart) a process that exited without being killed."""
        if self.proc is not None and self.proc.poll() is not None:
            self.exits.append(self.proc.returncode)
            self.spawn()

    def kill(self) -> str:
        """SIGKILL of `run.py` (the supervisor of `--workers N`: its workers stop on their own)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return "run.py"

    def kill_all(self) -> str:
        """SIGKILL of every process of the service at once (workers first)."""
        pids = self.pids()
        for pid in reversed(pids[1:]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.kill()
        return f"{len(pids)} processes"

    async def terminate(self, timeout: float = 20) -> None:
        """SIGTERM, and wait for the exit (SIGKILL after `timeout`)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(timeout):
            while self.proc.poll() is None:  # noqa: ASYNC110 - another process
                await trio.sleep(0.05)
        self.kill()

    def kill_worker(self, pick: float) -> str:
        workers = self.workers_pids()
        if not workers:
            return "no worker running"
        victim = workers[int(pick * len(workers))]
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        return f"worker {victim}"

    def rss(self) -> int:
        return sum(rss_of(pid) for pid in self.pids())

    def close(self) -> None:
        self.kill()
        for pid in self.seen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def ready(self, http: httpx.AsyncClient) -> bool:
        try:
            return (await http.get(f"{self.base_url}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def sync(self, http: httpx.AsyncClient) -> dict[str, object] | None:
        """One sync now (POST /v1/admin/sync); its report, or None if it failed."""
        try:
            r = await http.post(
                f"{self.ops_url}/v1/admin/sync",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=60,
            )
        except httpx.TransportError:
            return None
        return r.json() if r.status_code == 200 else None


@attrs.define
class Embedded:
    """`python -m tests.campaign.embedded`: a program that embeds Kaleido (`open_kaleido`) and
    records the batches of views written to its standard input with `await views.record`, one
    JSON line each way (`{"id", "views"}` in, `{"id", "ok"}` out)."""

    env: dict[str, str]
    log_path: Path
    proc: trio.Process | None = None
    pending: dict[int, list[tuple[int, int]]] = attrs.Factory(dict)
    acked: list[list[tuple[int, int]]] = attrs.Factory(list)
    unknown: list[list[tuple[int, int]]] = attrs.Factory(list)
    _next: int = 0
    _generation: int = 0

    async def run(self, nursery: trio.Nursery) -> None:
        """Start the program and read its answers in `nursery`."""
        env = kaleido_env(**self.env, KALEIDO_INSTANCE="embedded")
        with self.log_path.open("ab") as log:
            self.proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "tests.campaign.embedded"],
                cwd=REPO,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        self._generation += 1
        nursery.start_soon(self._read, self.proc, self._generation)

    async def _read(self, proc: trio.Process, generation: int) -> None:
        assert proc.stdout is not None
        buffer = b""
        try:
            while chunk := await proc.stdout.receive_some(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    answer = json.loads(line)
                    views = self.pending.pop(answer["id"], None)
                    if views is not None:
                        (self.acked if answer["ok"] else self.unknown).append(views)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        if generation == self._generation:
            self._forget_pending()

    def _forget_pending(self) -> None:
        """The program is gone: what it did not answer has an unknown outcome."""
        self.unknown.extend(self.pending.values())
        self.pending.clear()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def send(self, views: list[tuple[int, int]]) -> bool:
        if self.proc is None or self.proc.stdin is None or self.proc.returncode is not None:
            return False
        self._next += 1
        self.pending[self._next] = views
        line = json.dumps({"id": self._next, "views": views}).encode() + b"\n"
        try:
            await self.proc.stdin.send_all(line)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.unknown.append(self.pending.pop(self._next))
            return False
        return True

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
        self._generation += 1
        self._forget_pending()

    async def stop(self) -> None:
        """Close its input: it answers what it has, drains, and exits."""
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.proc.stdin.aclose()
        with trio.move_on_after(30):
            await self.proc.wait()
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
