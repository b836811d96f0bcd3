"""The child-process lifecycle every dev server shares: spawn, wait until ready (moving to another
port if ours was taken), stop, kill, restart."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import ClassVar

from kaleido.devstack.process import (
    DevStackError,
    _free_port,
    _port_bindable,
    _read_from,
    _tail,
    _wait_until,
)

_ADDRESS_IN_USE = "Address already in use"
_START_ATTEMPTS = 5


class _ManagedServer:
    """Child-process lifecycle shared by both servers: spawn, wait until ready, stop, kill.

    Subclasses are attrs classes that declare the attributes annotated here and implement the
    ``_respawn``/``_probe`` hooks.
    """

    _what: ClassVar[str]
    _stop_signal: ClassVar[signal.Signals]

    dir: Path
    port: int
    _proc: subprocess.Popen[bytes] | None
    _log_offset: int
    _port_fixed: bool

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    def _respawn(self) -> None:
        """Start the server process on ``self.port`` (setting ``_proc`` and ``_log_offset``)."""
        raise NotImplementedError

    def _probe(self, pid: int) -> bool:
        """Whether the server ``pid`` (ours, not an intruder on our port) serves requests."""
        raise NotImplementedError

    def _after_ready(self, deadline: float) -> None:
        """Run once the server is ready (e.g. create the database)."""

    def _recoverable(self, log: str) -> bool:
        """Whether a start-up failure with this log is worth another attempt (after a fix)."""
        return False

    def _pick_port(self) -> int:
        """A port for the next start when none was given (or the picked one was taken)."""
        return _free_port()

    def _ports_free(self) -> bool:
        """Whether every port the server binds is free again (a restart on the same port)."""
        return _port_bindable(self.port)

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs, else None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def __attrs_post_init__(self) -> None:
        # A port given by the caller is never silently swapped for another one.
        self._port_fixed = self.port != 0

    def _launch_process(self, deadline: float) -> None:
        """Spawn the server without waiting for it (so that two can start in parallel)."""
        if self.running:
            raise DevStackError(f"{self._what} is already running (pid {self.pid})")
        if self.port == 0:
            self.port = self._pick_port()
        self._respawn()

    def _log_since_launch(self) -> str:
        return _read_from(self.log_path, self._log_offset)

    def _failure(self, message: str) -> DevStackError:
        return DevStackError(
            f"{self._what} {message}\n--- tail of {self.log_path} ---\n"
            f"{_tail(self._log_since_launch())}"
        )

    def _await_ready(self, deadline: float) -> None:
        """Wait until the server answers; move to another port if ours was taken meanwhile."""
        proc = self._proc
        if proc is None:
            raise DevStackError(f"{self._what} was not launched")
        attempts = 1
        while True:
            code = proc.poll()
            if code is not None:
                in_use = _ADDRESS_IN_USE in self._log_since_launch()
                if in_use and self._port_fixed:
                    # Our own port (a restart): wait for whoever holds it to let go.
                    if time.monotonic() < deadline and _wait_until(self._ports_free, deadline):
                        self._respawn()
                        proc = self._require_proc()
                        continue
                elif in_use and attempts < _START_ATTEMPTS:
                    # Someone grabbed the free port we picked before the server bound it.
                    attempts += 1
                    self.port = self._pick_port()
                    self._respawn()
                    proc = self._require_proc()
                    continue
                elif attempts < _START_ATTEMPTS and self._recoverable(self._log_since_launch()):
                    attempts += 1
                    self._respawn()
                    proc = self._require_proc()
                    continue
                error = self._failure(f"exited with code {code} while starting on port {self.port}")
                self._proc = None
                raise error
            if self._probe(proc.pid):
                self._port_fixed = True  # from now on the URL must stay valid across restarts
                self._after_ready(deadline)
                return
            if time.monotonic() >= deadline:
                self._kill_process()
                raise self._failure(f"did not become ready on port {self.port} in time")
            time.sleep(0.01)

    def _require_proc(self) -> subprocess.Popen[bytes]:
        assert self._proc is not None
        return self._proc

    def _signal(self, sig: int) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def _begin_stop(self) -> None:
        self._signal(self._stop_signal)
        # A paused (SIGSTOPped) server would keep the signal pending forever.
        self._signal(signal.SIGCONT)

    def _finish_stop(self, deadline: float) -> None:
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._kill_process()
        self._proc = None

    def _kill_process(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            # The whole process group (it is its own session): redis' fork children included.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self, timeout: float = 10) -> None:
        """Ask for a clean shutdown; SIGKILL after ``timeout`` seconds. Idempotent."""
        self._begin_stop()
        self._finish_stop(time.monotonic() + timeout)

    def kill(self) -> None:
        """SIGKILL the server and reap it: a simulated crash."""
        self._kill_process()
        self._proc = None

    def start(self, timeout: float = 10) -> None:
        """Start the server and return once it serves requests."""
        deadline = time.monotonic() + timeout
        self._launch_process(deadline)
        try:
            self._await_ready(deadline)
        except BaseException:
            self._kill_process()
            self._proc = None
            raise

    def restart(self, timeout: float = 10) -> None:
        """Stop the server if it runs, then start it again on the same port and directory."""
        self.stop()
        self.start(timeout)
