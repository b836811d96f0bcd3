"""Process plumbing of the dev servers: spawning a child tied to our life (``PR_SET_PDEATHSIG``),
the unprivileged account it runs as under root, /proc look-ups, free ports, polling with a deadline,
reading logs, and the files only their owner reads (passwords, configuration with a password)."""

from __future__ import annotations

import ctypes
import functools
import os
import pwd
import secrets
import signal
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from kaleido.errors import KaleidoError
from kaleido.private_files import write_private

_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 40


class DevStackError(KaleidoError):
    """A dev server could not be set up, started or stopped; the message includes its log tail."""


@functools.cache
def _prctl() -> Callable[..., int]:
    # Resolved in the parent: the child runs it between fork and exec, where less is better.
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def _child_setup(parent_pid: int, death_signal: int) -> Callable[[], None]:
    """Build the ``preexec_fn`` that ties a child's life to ours.

    CPython's ``_posixsubprocess.child_exec`` runs ``chdir``, ``setsid``, ``setgroups``,
    ``setregid`` and ``setreuid`` *before* ``preexec_fn``. That order matters: a credential change
    clears the death signal, so it must be set after the user switch, i.e. here.
    """
    prctl = _prctl()

    def setup() -> None:
        # A signal mask is inherited across exec; the servers expect an empty one.
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        if prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent_pid:
            # The parent died between fork and prctl: nobody would ever stop this server.
            os._exit(0)

    return setup


@attrs.frozen
class _RunAs:
    """The unprivileged account servers run under when we are root."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def _postgres_account() -> _RunAs | None:
    """``None`` when not root (run as ourselves), else the ``postgres`` or ``nobody`` account."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        groups = tuple(os.getgrouplist(name, entry.pw_gid))
        return _RunAs(name, entry.pw_uid, entry.pw_gid, groups)
    raise DevStackError("running as root, but neither a 'postgres' nor a 'nobody' user exists")


def _spawn(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    log: Path,
    death_signal: int,
    run_as: _RunAs | None = None,
    env: dict[str, str] | None = None,
    stdin: int = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    if threading.current_thread() is not threading.main_thread():
        warnings.warn(
            "kaleido.devstack: a server started from a non-main thread gets its death signal "
            "when that thread exits; start servers from the main thread",
            RuntimeWarning,
            stacklevel=3,
        )
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # keep the terminal's Ctrl-C away from the servers
            preexec_fn=_child_setup(os.getpid(), death_signal),
            user=None if run_as is None else run_as.uid,
            group=None if run_as is None else run_as.gid,
            extra_groups=None if run_as is None else list(run_as.groups),
        )


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process. A zombie counts as dead: an orphaned server is reaped by
    init, which in some containers never happens."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself contain ") ".
    state = raw[raw.rindex(b")") + 2 : raw.rindex(b")") + 3]
    return state not in (b"Z", b"X", b"x")


def _wait_until(condition: Callable[[], bool], deadline: float) -> bool:
    """Poll ``condition`` until it holds (True) or ``deadline`` (monotonic) passes (False)."""
    delay = 0.005
    while not condition():
        now = time.monotonic()
        if now >= deadline:
            return False
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, 0.05)
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_bindable(port: int) -> bool:
    # Both servers set SO_REUSEADDR, so TIME_WAIT connections do not block them; mirror that.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty)"


def _absolute(path: str | os.PathLike[str]) -> Path:
    # Absolute at construction: a later os.chdir() must not move the server's files.
    return Path(path).absolute()


def new_password() -> str:
    """A random password, safe in URLs and configuration files (no quoting needed)."""
    return secrets.token_urlsafe(24)


def stored_password(path: Path) -> str:
    """The password kept in ``path`` (mode 0600), made at random on first use."""
    try:
        password = path.read_text().strip()
    except FileNotFoundError:
        password = ""
    if password:
        return password
    path.parent.mkdir(parents=True, exist_ok=True)
    password = new_password()
    write_private(path, password + "\n")
    return password


def _clean_env() -> dict[str, str]:
    # PG* variables (PGSSLMODE, PGUSER, ...) would silently change what the clients connect to.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _cwd_pids(directory: Path) -> list[int]:
    """Pids of live processes whose working directory is ``directory``.

    Every PostgreSQL process of a cluster chdirs into its data directory, including backends
    that outlive a SIGKILLed postmaster (and that re-parent away from us), so this finds them.
    """
    target = str(directory.resolve())
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
        except OSError:
            continue
        if cwd == target:
            found.append(int(entry.name))
    return found
