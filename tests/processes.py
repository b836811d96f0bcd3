"""Helpers for tests that run Kaleido as a real process."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import attrs
import httpx
import trio

from kaleido.settings import Settings

from .conftest import REPO


@attrs.define
class RssPeak:
    """Resident memory of this process: at the start, and the highest sample since."""

    start: int
    peak: int

    @property
    def growth(self) -> int:
        return self.peak - self.start


def _rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


@contextmanager
def rss_sampler(interval: float = 0.002) -> Iterator[RssPeak]:
    """Sample this process's resident memory from a thread (so a busy event loop cannot hide a
    peak) every `interval` seconds while the block runs. ru_maxrss would not do: it is the whole
    test session's high-water mark."""
    peak = RssPeak(_rss_bytes(), _rss_bytes())
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval):
            peak.peak = max(peak.peak, _rss_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()
        peak.peak = max(peak.peak, _rss_bytes())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _live_processes() -> Iterator[tuple[Path, list[str]]]:
    """(/proc entry, the fields of its stat after the command name) of every live process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            yield entry, fields


def pids_under(folder: Path) -> list[int]:
    """Live processes whose working directory is inside `folder` (the private servers)."""
    found = []
    for entry, _ in _live_processes():
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(folder)):
            found.append(int(entry.name))
    return found


def children(pid: int) -> list[int]:
    """Live child processes of `pid`."""
    return sorted(int(entry.name) for entry, fields in _live_processes() if int(fields[1]) == pid)


def kaleido_env(**extra: str) -> dict[str, str]:
    """The environment without KALEIDO_* of the caller's, plus `extra`; the ops listener on a
    free port unless `extra` names one (its default, 9090, may be taken)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALEIDO_")}
    env["KALEIDO_OPS_BIND"] = f"127.0.0.1:{free_port()}"
    env.update(extra)
    return env


def servers_env(settings: Settings, **extra: str) -> dict[str, str]:
    """`kaleido_env` for a process on the test's servers (`settings`' URLs), console logs."""
    assert settings.redis_url and settings.database_url
    return kaleido_env(
        KALEIDO_REDIS_URL=settings.redis_url,
        KALEIDO_DATABASE_URL=settings.database_url,
        KALEIDO_LOG_FORMAT="console",
        **extra,
    )


def start_kaleido(
    args: list[str], env: Mapping[str, str], log: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """`python run.py ARGS`; its logs go to `log` (a file: a long run fills a pipe) or a pipe."""
    return subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), *args],
        env=dict(env),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if log is None else log,
    )


def _exit_report(proc: subprocess.Popen[bytes], log: Path | None) -> str:
    """Why a process that should be serving is gone: its status and the end of its logs."""
    if proc.stderr is not None:
        text = proc.stderr.read().decode(errors="replace")
    elif log is not None and log.exists():
        text = log.read_bytes()[-4000:].decode(errors="replace")
    else:
        text = ""
    return f"exited with status {proc.returncode}; its last log lines:\n{text}"


async def wait_ready(
    port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path | None = None
) -> float:
    """Poll /readyz until 200; return the seconds it took. Fails if the process exits, with
    its status and the end of its logs (its stderr pipe, or `log` when they go to a file)."""
    start = trio.current_time()
    async with httpx.AsyncClient(timeout=2) as http:
        with trio.fail_after(timeout):
            while True:
                assert proc.poll() is None, _exit_report(proc, log)
                try:
                    r = await http.get(f"http://127.0.0.1:{port}/readyz")
                    if r.status_code == 200:
                        return trio.current_time() - start
                except httpx.TransportError:
                    pass
                await trio.sleep(0.1)


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    with trio.fail_after(timeout):
        while proc.poll() is None:  # noqa: ASYNC110 - another process
            await trio.sleep(0.05)
    return proc.returncode
