"""Private ``redis-server`` and PostgreSQL instances for development, tests and benchmarks.

Redis is one server (:class:`RedisServer`) or, with ``dev_stack(..., cluster=True)``, a Redis
Cluster of six (:class:`RedisCluster`: 3 masters, 3 replicas, created with ``redis-cli --cluster
create``) whose nodes tests can kill and restart one by one.

Synchronous on purpose (plain :mod:`subprocess`): it runs before trio starts (``run.py`` with no
URLs configured), in session-scoped pytest fixtures and in benchmarks.

Both servers run in the foreground as direct children of the calling process, each in its own
session so that a Ctrl-C in the terminal reaches only the application, which then still has its
backends while it drains and runs its last sync, and stops them afterwards.

No server outlives its parent, even one killed with SIGKILL: each child asks the kernel for a
death signal (``PR_SET_PDEATHSIG``). The kernel sends it when the parent *thread* that forked the
child exits, so start servers from a thread that outlives them: the main thread (a warning is
issued otherwise). :class:`DevStack` starts the two servers in parallel without helper threads:
it launches both, then waits for both.

PostgreSQL refuses to run as root: as root, ``initdb`` and ``postgres`` run as the ``postgres``
system user (or ``nobody``), the cluster directory is chowned to it, and the directories above it
get the search bit they need (never the read bit).

Linux only (``/proc``, ``prctl``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, ClassVar

import attrs

from kaleido.errors import KaleidoError

__all__ = [
    "ClusterNodeView",
    "DevStack",
    "DevStackError",
    "PostgresServer",
    "RedisCluster",
    "RedisClusterNode",
    "RedisServer",
    "dev_stack",
    "parse_cluster_nodes",
    "pid_alive",
    "postgres_bindir",
]

_PR_SET_PDEATHSIG = 1
_ADDRESS_IN_USE = "Address already in use"
_START_ATTEMPTS = 5
_LOG_TAIL_LINES = 40
# Bump when the initdb options change, so that stale cached templates are not reused.
_TEMPLATE_FORMAT = 1


class DevStackError(KaleidoError):
    """A dev server could not be set up, started or stopped; the message includes its log tail."""


# --------------------------------------------------------------------------------------------
# Process plumbing


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
            stdin=subprocess.DEVNULL,
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


def _clean_env() -> dict[str, str]:
    # PG* variables (PGSSLMODE, PGUSER, ...) would silently change what the clients connect to.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


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


# --------------------------------------------------------------------------------------------
# Redis

_REDIS_MANAGED = frozenset({"port", "bind", "dir", "daemonize", "logfile", "pidfile", "include"})


def _redis_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _check_overrides(_instance: object, _attribute: object, value: dict[str, str]) -> None:
    clash = sorted(_REDIS_MANAGED & {k.lower() for k in value})
    if clash:
        raise ValueError(f"RedisServer manages {', '.join(clash)} itself; remove from overrides")


def _redis_probe(port: int) -> tuple[bytes, int | None]:
    """PING (answered ``-LOADING`` while the dataset loads) and the ``process_id`` from
    ``INFO server``, which tells our server apart from another one that took the port."""
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            first, sep, rest = buf.partition(b"\r\n")
            if not sep:
                continue
            if rest.startswith(b"$"):
                header, sep2, body = rest.partition(b"\r\n")
                if sep2 and len(body) >= int(header[1:]) + 2:
                    break
            elif b"\r\n" in rest:
                break
    first = buf.partition(b"\r\n")[0]
    match = re.search(rb"\r\nprocess_id:(\d+)\r\n", buf)
    return first, int(match.group(1)) if match else None


def _redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise DevStackError("redis-server is not on PATH")
    return found


@attrs.define
class RedisServer(_ManagedServer):
    """A private ``redis-server`` in the foreground, configured by a generated file.

    The generated ``dir/redis-dev.conf`` first includes ``conf`` (the repo's redis.conf), then
    applies ``overrides`` (written verbatim, so multi-word values such as ``save`` work), then the
    settings this class manages (port, bind, dir, daemonize, logfile, pidfile).
    """

    _what: ClassVar[str] = "redis-server"
    _stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    dir: Path = attrs.field(converter=_absolute)
    conf: Path | None = None
    overrides: dict[str, str] = attrs.field(factory=dict, validator=_check_overrides)
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = attrs.field(default=None, init=False, repr=False)
    _log_offset: int = attrs.field(default=0, init=False, repr=False)
    _port_fixed: bool = attrs.field(default=False, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    @property
    def conf_path(self) -> Path:
        return self.dir / "redis-dev.conf"

    def config_text(self) -> str:
        """The generated configuration (``overrides`` may have been edited since __init__)."""
        _check_overrides(self, None, self.overrides)
        here = self.dir
        lines = ["# Generated by kaleido.devstack; rewritten at every start."]
        if self.conf is not None:
            lines.append(f"include {_redis_quote(str(Path(self.conf).absolute()))}")
        empty = '""'  # how redis.conf spells an empty value (e.g. save "")
        for key, value in self.overrides.items():
            lines.append(f"{key} {value or empty}")
        lines += [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {_redis_quote(str(here))}",
            "daemonize no",
            "supervised no",
            f"logfile {_redis_quote(str(self.log_path))}",
            f"pidfile {_redis_quote(str(here / 'redis.pid'))}",
        ]
        return "\n".join(lines) + "\n"

    def _respawn(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.config_text())
        self._log_offset = _file_size(self.log_path)
        # stderr goes to the log too: config errors are printed there before logging starts.
        self._proc = _spawn(
            [_redis_server_binary(), str(self.conf_path)],
            cwd=self.dir,
            log=self.log_path,
            death_signal=signal.SIGTERM,
        )

    def _probe(self, pid: int) -> bool:
        try:
            first, server_pid = _redis_probe(self.port)
        except (OSError, ValueError):
            return False
        if first.startswith(b"-NOAUTH"):
            return True  # a password in the included conf: it is up, we cannot tell more
        return first == b"+PONG" and server_pid == pid

    def pause(self) -> None:
        """SIGSTOP: the server hangs without closing connections (a stalled server)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self._signal(signal.SIGCONT)


# --------------------------------------------------------------------------------------------
# Redis Cluster

_SLOTS = 16384
_BUS_OFFSET = 10000  # a node's cluster bus listens on its port + 10000
_CLUSTER_MANAGED = frozenset(
    {"cluster-enabled", "cluster-config-file", "cluster-node-timeout", "cluster-port"}
)
# A master streams its first full sync after this delay, waiting for more replicas to attach;
# every replica of the dev cluster attaches at once, so waiting only slows the start-up down.
_CLUSTER_DEFAULTS = {"repl-diskless-sync-delay": "0"}
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _check_cluster_overrides(_instance: object, _attribute: object, value: dict[str, str]) -> None:
    _check_overrides(_instance, _attribute, value)
    clash = sorted(_CLUSTER_MANAGED & {k.lower() for k in value})
    if clash:
        raise ValueError(f"RedisCluster manages {', '.join(clash)} itself; remove from overrides")


def _redis_cli_binary() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        raise DevStackError("redis-cli is not on PATH (Debian: apt-get install redis-tools)")
    return found


def _cluster_port(avoid: Collection[int]) -> int:
    """A free port whose cluster bus port (+10000) is free too, neither of them in ``avoid``."""
    for _ in range(200):
        port = _free_port()
        bus = port + _BUS_OFFSET
        if bus <= 65535 and port not in avoid and bus not in avoid and _port_bindable(bus):
            return port
    raise DevStackError("found no free port whose cluster bus port (port + 10000) is free too")


def _encode_command(args: Sequence[str]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        raw = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


def _read_reply(stream: BinaryIO) -> str:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed in the middle of a reply")
    kind, rest = line[:1], line[1:-2].decode("utf-8", "replace")
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return ""
        data = stream.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError("connection closed in the middle of a reply")
        return data[:size].decode("utf-8", "replace")
    if kind == b"-":
        raise DevStackError(f"redis replied {rest}")
    if kind in (b"+", b":"):
        return rest
    raise DevStackError(f"unexpected redis reply {line!r}")


def _redis_calls(port: int, *commands: Sequence[str], timeout: float = 0.5) -> list[str]:
    """Pipeline ``commands`` on one fresh connection; each reply as text (status, integer or
    bulk string). Raises OSError when the node does not answer, DevStackError on an error."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"".join(_encode_command(c) for c in commands))
        with s.makefile("rb") as stream:
            return [_read_reply(stream) for _ in commands]


def _info_fields(text: str) -> dict[str, str]:
    """``name:value`` lines of ``INFO`` or ``CLUSTER INFO``."""
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            fields[name.strip()] = value.strip()
    return fields


@attrs.frozen
class ClusterNodeView:
    """One line of ``CLUSTER NODES``: a node of the cluster as some node sees it."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None  # None for a master
    slots: tuple[tuple[int, int], ...]  # inclusive ranges, in the order listed

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        """Flagged as failing (``fail``) or suspected (``fail?``) by the node that reported it."""
        return bool(self.flags & {"fail", "fail?"})

    @property
    def slot_count(self) -> int:
        return sum(last - first + 1 for first, last in self.slots)

    def owns(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)


def parse_cluster_nodes(text: str) -> tuple[ClusterNodeView, ...]:
    """Parse a ``CLUSTER NODES`` reply (slots being migrated, ``[...]``, are left out)."""
    views = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        node_id, address, flags, master = fields[:4]
        # ip:port@cport[,hostname]; ":0@0" while the address is unknown
        port = int(address.split("@", 1)[0].rpartition(":")[2] or 0)
        slots = []
        for token in fields[8:]:
            if token.startswith("["):
                continue
            first, _, last = token.partition("-")
            slots.append((int(first), int(last or first)))
        views.append(
            ClusterNodeView(
                node_id=node_id,
                port=port,
                flags=frozenset(flags.split(",")),
                master_id=None if master == "-" else master,
                slots=tuple(slots),
            )
        )
    return tuple(sorted(views, key=lambda v: v.port))


def _shape(
    view: Sequence[ClusterNodeView],
) -> list[tuple[str, int, bool, str | None, tuple[tuple[int, int], ...]]]:
    """What every node must agree on: who is master of which slots, who replicates whom."""
    return [(v.node_id, v.port, v.is_master, v.master_id, v.slots) for v in view]


def _no_ports() -> frozenset[int]:
    return frozenset()


@attrs.define
class RedisClusterNode(RedisServer):
    """One node of a :class:`RedisCluster`: a :class:`RedisServer` with cluster mode on.

    The generated configuration ends with the cluster settings: ``cluster-enabled yes``, the node
    file ``dir/nodes-<port>.conf`` (its identity and view of the cluster, written by Redis, so
    that :meth:`restart` brings back the same node on the same port) and the node timeout. Its
    port is picked so that the cluster bus port (port + 10000) is free too, and clear of
    ``avoid()`` (its siblings' ports).
    """

    _what: ClassVar[str] = "redis cluster node"

    node_timeout_ms: int = 2000
    _avoid: Callable[[], Collection[int]] = attrs.field(default=_no_ports, repr=False)

    @property
    def bus_port(self) -> int:
        return self.port + _BUS_OFFSET

    @property
    def nodes_conf(self) -> Path:
        return self.dir / f"nodes-{self.port}.conf"

    def config_text(self) -> str:
        _check_cluster_overrides(self, None, self.overrides)
        return super().config_text() + (
            "cluster-enabled yes\n"
            f"cluster-config-file {_redis_quote(str(self.nodes_conf))}\n"
            f"cluster-node-timeout {self.node_timeout_ms}\n"
        )

    def _pick_port(self) -> int:
        return _cluster_port(self._avoid())

    def _ports_free(self) -> bool:
        return _port_bindable(self.port) and _port_bindable(self.bus_port)


@attrs.frozen
class _Survey:
    """A cluster's health: the first problem found (None: healthy), and the agreed view."""

    problem: str | None
    view: tuple[ClusterNodeView, ...] = ()


@attrs.frozen
class _NodeReport:
    """What one running node says: ``CLUSTER INFO``, ``CLUSTER NODES``, ``INFO replication``."""

    port: int
    cluster_info: dict[str, str]
    view: tuple[ClusterNodeView, ...]
    replication: dict[str, str]


def _judge_cluster(reports: Sequence[_NodeReport], node_count: int) -> _Survey:
    """Whether the running nodes (one report each) form a healthy cluster of ``node_count``.

    Healthy: each reports ``cluster_state:ok`` with all 16384 slots served and every node known;
    all agree on masters, slots and replicas; none sees a running node as failing; every
    replica's link to its master is up.
    """
    if not reports:
        return _Survey("no node runs")
    running = {report.port for report in reports}
    first = reports[0]
    for report in reports:
        for name, want in [
            ("cluster_state", "ok"),
            ("cluster_slots_ok", str(_SLOTS)),
            ("cluster_known_nodes", str(node_count)),
        ]:
            have = report.cluster_info.get(name)
            if have != want:
                return _Survey(f"node {report.port} reports {name}:{have}")
        if _shape(report.view) != _shape(first.view):
            return _Survey(f"nodes {first.port} and {report.port} disagree on the cluster")
        failing = [v.port for v in report.view if v.port in running and v.failing]
        if failing:
            return _Survey(f"node {report.port} sees running nodes {failing} as failing")
        link = report.replication.get("master_link_status")
        if report.replication.get("role") == "slave" and link != "up":
            return _Survey(f"replica {report.port} has its master link {link}")
    return _Survey(None, first.view)


def _clear_node_files(directory: Path) -> None:
    """Remove a previous cluster's node file and data; logs and configuration stay."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if path.name == "appendonlydir":
            shutil.rmtree(path)
        elif path.match("nodes-*.conf") or path.name in ("dump.rdb", "appendonly.aof"):
            path.unlink()


@attrs.define
class RedisCluster:
    """A private Redis Cluster: ``masters`` masters with ``replicas`` replicas each, one
    :class:`RedisClusterNode` in each ``dir/"node-<i>"``, joined by ``redis-cli --cluster
    create``.

    Every node includes ``conf`` and applies ``overrides`` (see :class:`RedisServer`). The first
    :meth:`start` creates a new cluster on new ports, removing the node files and data that a
    previous cluster left under ``dir`` (logs stay); a later one, after :meth:`stop` or
    :meth:`kill`, brings the same nodes back on the same ports. A start returns once
    :meth:`wait_until_healthy` holds.

    :attr:`url` names the masters at creation as seed nodes; it stays the same for the life of
    this object. For failover tests: :meth:`kill_master` (or :meth:`kill_node`), then
    :meth:`wait_for_failover`, then :meth:`restart_node`.
    """

    dir: Path = attrs.field(converter=_absolute)
    conf: Path | None = None
    overrides: dict[str, str] = attrs.field(factory=dict, validator=_check_cluster_overrides)
    masters: int = attrs.field(default=3, validator=attrs.validators.ge(3))
    replicas: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    node_timeout_ms: int = 2000
    nodes: tuple[RedisClusterNode, ...] = attrs.field(init=False)
    _seeds: tuple[int, ...] = attrs.field(default=(), init=False, repr=False)
    _created: bool = attrs.field(default=False, init=False, repr=False)
    _slots_at_kill: dict[int, tuple[tuple[int, int], ...]] = attrs.field(
        factory=dict, init=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        overrides = {**_CLUSTER_DEFAULTS, **self.overrides}
        self.nodes = tuple(
            RedisClusterNode(
                self.dir / f"node-{i}",
                conf=self.conf,
                overrides=overrides,
                node_timeout_ms=self.node_timeout_ms,
                avoid=self._ports_in_use,
            )
            for i in range(1, self.masters * (1 + self.replicas) + 1)
        )

    def _ports_in_use(self) -> set[int]:
        return {p for n in self.nodes if n.port for p in (n.port, n.bus_port)}

    # -- what tests look at

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...``: the masters at creation."""
        if not self._seeds:
            raise DevStackError("the redis cluster has not been created yet: start it")
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self._seeds)

    @property
    def seeds(self) -> list[tuple[str, int]]:
        """The (host, port) pairs of :attr:`url`, for a cluster client's startup nodes."""
        return [("127.0.0.1", port) for port in self._seeds]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def pids(self) -> list[int]:
        """The pids of the nodes that run."""
        return [node.pid for node in self.nodes if node.pid is not None]

    @property
    def running(self) -> bool:
        """Whether any node runs."""
        return any(node.running for node in self.nodes)

    def node(self, port: int) -> RedisClusterNode:
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(port)

    def topology(self) -> tuple[ClusterNodeView, ...]:
        """``CLUSTER NODES`` as the first node that answers sees it (sorted by port)."""
        for node in self.nodes:
            if node.running:
                with contextlib.suppress(OSError, DevStackError):
                    return parse_cluster_nodes(_redis_calls(node.port, ("CLUSTER", "NODES"))[0])
        raise DevStackError("no node of the redis cluster answers")

    def master_nodes(self) -> list[RedisClusterNode]:
        """The masters serving slots (not failing), in slot order (index 0 serves slot 0)."""
        masters = [v for v in self.topology() if v.is_master and v.slots and not v.failing]
        masters.sort(key=lambda v: min(first for first, _ in v.slots))
        return [self.node(v.port) for v in masters]

    def master_for_slot(self, slot: int) -> RedisClusterNode:
        for view in self.topology():
            if view.is_master and view.owns(slot):
                return self.node(view.port)
        raise DevStackError(f"no master serves slot {slot}")

    # -- lifecycle of the whole cluster

    def start(self, timeout: float = 30) -> None:
        """Start every node (and create the cluster the first time); return once healthy."""
        deadline = time.monotonic() + timeout
        try:
            self._launch_process(deadline)
            self._await_ready(deadline)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 10) -> None:
        """Stop every node (in parallel); SIGKILL what is left after ``timeout``. Idempotent."""
        self._begin_stop()
        self._finish_stop(time.monotonic() + timeout)

    def kill(self) -> None:
        """SIGKILL every node."""
        for node in self.nodes:
            node.kill()

    def restart(self, timeout: float = 30) -> None:
        """Stop every node, then bring the same cluster back on the same ports."""
        self.stop()
        self.start(timeout)

    def pause(self) -> None:
        """SIGSTOP every node."""
        for node in self.nodes:
            node.pause()

    def resume(self) -> None:
        for node in self.nodes:
            node.resume()

    def _launch_process(self, deadline: float) -> None:
        if self.running:
            raise DevStackError(f"the redis cluster is already running (pids {self.pids})")
        if not self._created:
            _redis_cli_binary()  # fail before any node starts
            for node in self.nodes:
                _clear_node_files(node.dir)
        for node in self.nodes:
            node._launch_process(deadline)

    def _await_ready(self, deadline: float) -> None:
        for node in self.nodes:
            node._await_ready(deadline)
        if not self._created:
            self._create(deadline)
            self._created = True
        self._wait_for("the cluster to be healthy", lambda _: None, deadline)
        if not self._seeds:
            self._seeds = tuple(node.port for node in self.master_nodes())

    def _begin_stop(self) -> None:
        for node in self.nodes:
            node._begin_stop()

    def _finish_stop(self, deadline: float) -> None:
        for node in self.nodes:
            node._finish_stop(deadline)

    def _create(self, deadline: float) -> None:
        argv = [
            _redis_cli_binary(),
            *("--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes)),
            *("--cluster-replicas", str(self.replicas), "--cluster-yes"),
        ]
        log = self.dir / "cluster-create.log"
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=max(1.0, deadline - time.monotonic()),
            )
        except subprocess.TimeoutExpired as exc:
            output = _ANSI_ESCAPE.sub("", str(exc.stdout or "") + str(exc.stderr or ""))
            raise DevStackError(f"redis-cli --cluster create timed out\n{_tail(output)}") from exc
        output = _ANSI_ESCAPE.sub("", done.stdout + done.stderr)
        log.write_text(output)
        if done.returncode != 0:
            raise DevStackError(
                f"redis-cli --cluster create failed with code {done.returncode}\n"
                f"--- tail of {log} ---\n{_tail(output)}"
            )

    # -- health, failover

    def _survey(self) -> _Survey:
        """Ask every running node how it sees the cluster; :func:`_judge_cluster` judges."""
        reports = []
        for node in self.nodes:
            if not node.running:
                continue
            try:
                info, nodes, replication = _redis_calls(
                    node.port, ("CLUSTER", "INFO"), ("CLUSTER", "NODES"), ("INFO", "replication")
                )
            except (OSError, DevStackError) as exc:
                return _Survey(f"node {node.port} does not answer: {exc!r}")
            reports.append(
                _NodeReport(
                    port=node.port,
                    cluster_info=_info_fields(info),
                    view=parse_cluster_nodes(nodes),
                    replication=_info_fields(replication),
                )
            )
        return _judge_cluster(reports, len(self.nodes))

    def _wait_for(
        self, what: str, check: Callable[[_Survey], str | None], deadline: float
    ) -> _Survey:
        """Poll until the cluster is healthy and ``check`` finds no problem (returns None)."""
        last = _Survey("not checked yet")

        def done() -> bool:
            nonlocal last
            last = self._survey()
            if last.problem is None:
                problem = check(last)
                if problem is not None:
                    last = _Survey(problem, last.view)
            return last.problem is None

        if not _wait_until(done, deadline):
            raise DevStackError(f"redis cluster: timed out waiting for {what}: {last.problem}")
        return last

    def wait_until_healthy(self, timeout: float = 30) -> None:
        """Wait until the running nodes form a healthy cluster (see :func:`_judge_cluster`)."""
        self._wait_for("the cluster to be healthy", lambda _: None, time.monotonic() + timeout)

    def kill_node(self, node: RedisClusterNode) -> None:
        """SIGKILL ``node`` (a crash), noting first which slots it serves, for
        :meth:`wait_for_failover`."""
        self._slots_at_kill[node.port] = self._slots_of(node)
        node.kill()

    def kill_master(self, index: int = 0) -> RedisClusterNode:
        """SIGKILL the ``index``-th master of :meth:`master_nodes` and return it."""
        node = self.master_nodes()[index]
        self.kill_node(node)
        return node

    def wait_for_failover(self, killed: RedisClusterNode, timeout: float = 30) -> RedisClusterNode:
        """Wait until one running node serves every slot ``killed`` served when
        :meth:`kill_node` killed it, and the cluster is healthy; return that new master."""
        lost = self._slots_at_kill.get(killed.port)
        if not lost:
            raise DevStackError(
                f"node {killed.port} served no slots when killed (or was not killed with "
                "kill_node or kill_master)"
            )
        new_master: list[int] = []

        def replaced(survey: _Survey) -> str | None:
            for view in survey.view:
                if view.port != killed.port and all(view.owns(a) and view.owns(b) for a, b in lost):
                    new_master[:] = [view.port]
                    return None
            return f"the slots of {killed.port} have no new master yet"

        self._wait_for(
            f"a replica to take over from {killed.port}", replaced, time.monotonic() + timeout
        )
        return self.node(new_master[0])

    def restart_node(self, node: RedisClusterNode, timeout: float = 30) -> None:
        """Start a stopped or killed ``node`` again (same port, same node file); return once the
        cluster is healthy with it (a replaced master comes back as a replica)."""
        deadline = time.monotonic() + timeout
        if node.running:
            node.stop()
        node.start(max(0.0, deadline - time.monotonic()))
        self._wait_for(f"node {node.port} to rejoin", lambda _: None, deadline)

    def _slots_of(self, node: RedisClusterNode) -> tuple[tuple[int, int], ...]:
        for asked in (node, *self.nodes):
            if not asked.running:
                continue
            with contextlib.suppress(OSError, DevStackError):
                reply = _redis_calls(asked.port, ("CLUSTER", "NODES"))[0]
                for view in parse_cluster_nodes(reply):
                    if view.port == node.port:
                        return view.slots
        return ()


# --------------------------------------------------------------------------------------------
# PostgreSQL


@functools.cache
def postgres_bindir() -> Path:
    """Where the PostgreSQL server binaries live.

    ``pg_config --bindir`` if it points at a server, else the newest /usr/lib/postgresql/*/bin
    (Debian keeps them off PATH), else the directory of ``postgres`` on PATH.
    """
    if shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["pg_config", "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            if out and (Path(out) / "postgres").is_file():
                return Path(out)

    def version_key(path: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", path.parent.parent.name))

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=version_key)
    if candidates:
        return candidates[-1].parent
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).resolve().parent
    raise DevStackError(
        "PostgreSQL server binaries not found (pg_config, /usr/lib/postgresql, PATH)"
    )


@functools.cache
def _postgres_version(bindir: Path) -> str:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"(\d+(?:\.\d+)*)", out)
    if match is None:
        raise DevStackError(f"cannot parse the PostgreSQL version from {out!r}")
    return match.group(1)


def _default_template_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kaleido"


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def _make_reachable(path: Path, account: _RunAs) -> None:
    """Give ``account`` search permission on ``path`` and every directory above it.

    ``postgres`` chdirs into its data directory by absolute path, so each ancestor needs the
    search (x) bit for it. Only that bit is added (listing stays forbidden), and only where the
    account lacks it, e.g. pytest's 0700 ``/tmp/pytest-of-root`` or ``/root``.
    """
    for directory in (path, *path.parents):
        st = directory.stat()
        if st.st_uid == account.uid:
            bit = stat.S_IXUSR
        elif st.st_gid in account.groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            os.chmod(directory, stat.S_IMODE(st.st_mode) | bit)


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


@attrs.define
class PostgresServer(_ManagedServer):
    """A private PostgreSQL cluster in ``dir/"data"``, its postmaster a direct child.

    The cluster is created on first start, by copying a template cached under ``template_cache``
    (made by one ``initdb``; ``None`` disables the cache). ``fast`` trades durability against an
    OS crash for speed (fsync, synchronous_commit and full_page_writes off): for tests and
    benchmarks; a crash of PostgreSQL itself still loses nothing committed but the last
    ``synchronous_commit=off`` window. ``settings`` are extra ``-c name=value`` options.
    """

    _what: ClassVar[str] = "postgres"
    _stop_signal: ClassVar[signal.Signals] = signal.SIGINT  # fast shutdown

    dir: Path = attrs.field(converter=_absolute)
    fast: bool = False
    port: int = 0
    database: str = "kaleido"
    settings: dict[str, str] = attrs.field(factory=dict)
    bindir: Path | None = None
    template_cache: Path | None = attrs.field(factory=_default_template_cache)
    _proc: subprocess.Popen[bytes] | None = attrs.field(default=None, init=False, repr=False)
    _log_offset: int = attrs.field(default=0, init=False, repr=False)
    _port_fixed: bool = attrs.field(default=False, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_path(self) -> Path:
        return self.dir / "postgres.log"

    def _bindir(self) -> Path:
        return self.bindir if self.bindir is not None else postgres_bindir()

    def cluster_pids(self) -> list[int]:
        """Every live process of this cluster (postmaster, backends, stragglers of a crash)."""
        if not self.data_dir.exists():
            return []
        return _cwd_pids(self.data_dir)

    def psql(self, sql: str, *, database: str | None = None, timeout: float = 10) -> str:
        """Run ``sql`` (backslash commands allowed) with psql as superuser; return its stdout."""
        argv = [
            str(self._bindir() / "psql"),
            *["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"],
            *("-p", str(self.port), "-d", database or self.database),
        ]
        try:
            done = subprocess.run(
                argv, input=sql, capture_output=True, text=True, timeout=timeout, env=_clean_env()
            )
        except subprocess.TimeoutExpired as exc:
            raise DevStackError(f"psql timed out after {timeout}s running {sql!r}") from exc
        if done.returncode != 0:
            raise DevStackError(f"psql failed ({done.returncode}) running {sql!r}:\n{done.stderr}")
        return done.stdout

    # -- lifecycle

    def start(self, timeout: float = 30) -> None:
        super().start(timeout)

    def stop(self, timeout: float = 15) -> None:
        super().stop(timeout)

    def restart(self, timeout: float = 30) -> None:
        super().restart(timeout)

    def kill(self) -> None:
        """SIGKILL the postmaster, like a crash. Its backends notice and exit on their own a
        moment later; :meth:`start`, :meth:`restart` and :meth:`stop` wait for them."""
        super().kill()

    def _launch_process(self, deadline: float) -> None:
        if self.running:
            raise DevStackError(f"postgres is already running (pid {self.pid})")
        self._prepare(deadline)
        super()._launch_process(deadline)

    def _prepare(self, deadline: float) -> None:
        account = _postgres_account()
        self.dir.mkdir(parents=True, exist_ok=True)
        if account is not None:
            _make_reachable(self.dir, account)
        self._ensure_cluster(account, deadline)
        # Backends of a SIGKILLed postmaster keep the shared memory attached for a moment and
        # the new postmaster refuses to start until they are gone.
        self._reap_stragglers(deadline, kill_after=5.0)

    def _ensure_cluster(self, account: _RunAs | None, deadline: float) -> None:
        data = self.data_dir
        bindir = self._bindir()
        version = _postgres_version(bindir)
        if (data / "PG_VERSION").exists():
            have = (data / "PG_VERSION").read_text().strip()
            if have != version.split(".")[0]:
                raise DevStackError(
                    f"{data} holds a PostgreSQL {have} cluster, binaries are {version}"
                )
            if account is not None and data.stat().st_uid != account.uid:
                _chown_tree(data, account.uid, account.gid)
            return
        if data.exists():
            if any(data.iterdir()):
                raise DevStackError(f"{data} is not empty and holds no cluster; remove it")
            data.rmdir()
        template = self._template_path(version)
        if template is not None and (template / "PG_VERSION").exists():
            try:
                shutil.copytree(template, data, symlinks=True)
                if account is not None:
                    _chown_tree(data, account.uid, account.gid)
            except BaseException:
                shutil.rmtree(data, ignore_errors=True)
                raise
            return
        self._initdb(bindir, account, deadline)
        if template is not None:
            self._save_template(template)

    def _template_path(self, version: str) -> Path | None:
        if self.template_cache is None:
            return None
        return self.template_cache / f"pg-template-{version}-v{_TEMPLATE_FORMAT}"

    def _initdb(self, bindir: Path, account: _RunAs | None, deadline: float) -> None:
        data = self.data_dir
        data.mkdir(mode=0o700)
        if account is not None:
            os.chown(data, account.uid, account.gid)
        log = self.dir / "initdb.log"
        offset = _file_size(log)
        # --no-locale: C collation, identical on every machine and the fastest.
        proc = _spawn(
            [
                bindir / "initdb",
                *("-D", data),
                *["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"],
            ],
            cwd=self.dir,
            log=log,
            death_signal=signal.SIGTERM,
            run_as=account,
            env=_clean_env(),
        )
        try:
            code = proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        except BaseException:
            proc.kill()
            proc.wait()
            shutil.rmtree(data, ignore_errors=True)
            raise
        if code != 0:
            shutil.rmtree(data, ignore_errors=True)
            raise DevStackError(
                f"initdb {'timed out' if code is None else f'failed with code {code}'}\n"
                f"--- tail of {log} ---\n{_tail(_read_from(log, offset))}"
            )

    def _save_template(self, template: Path) -> None:
        """Copy a fresh, never started cluster into the cache; best effort, race-safe (rename)."""
        if template.exists():
            return
        with contextlib.suppress(OSError):
            template.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f"{template.name}.tmp-", dir=template.parent))
            try:
                shutil.copytree(self.data_dir, staging / "data", symlinks=True)
                os.rename(staging / "data", template)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _reap_stragglers(self, deadline: float, *, kill_after: float) -> None:
        """Wait until no process of this cluster is left; SIGKILL any after ``kill_after`` s."""
        own = self.pid

        def others() -> list[int]:
            return [p for p in self.cluster_pids() if p != own]

        if _wait_until(lambda: not others(), min(deadline, time.monotonic() + kill_after)):
            return
        for pid in others():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not _wait_until(lambda: not others(), max(deadline, time.monotonic() + 2)):
            raise DevStackError(f"processes of {self.data_dir} do not exit: {others()}")

    def _respawn(self) -> None:
        postgres = self._bindir() / "postgres"
        argv: list[str | os.PathLike[str]] = [postgres, "-D", self.data_dir, "-p", str(self.port)]
        settings = {
            "listen_addresses": "127.0.0.1",
            # No unix socket: clients use TCP, and socket paths are limited to ~107 bytes,
            # which pytest's tmp_path easily exceeds.
            "unix_socket_directories": "",
        }
        if self.fast:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        settings.update(self.settings)
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        self._log_offset = _file_size(self.log_path)
        self._proc = _spawn(
            argv,
            cwd=self.dir,
            log=self.log_path,
            death_signal=signal.SIGINT,  # fast shutdown: roll back, checkpoint, exit
            run_as=_postgres_account(),
            env=_clean_env(),
        )

    def _probe(self, pid: int) -> bool:
        # The postmaster writes "ready" into line 8 of postmaster.pid once it accepts
        # connections (what pg_ctl waits for); line 1 tells our postmaster from a stale file.
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"

    def _recoverable(self, log: str) -> bool:
        # A concurrent pytest session resets its basetemp to 0700 at start-up; if that happened
        # between our chmod and the postmaster's chdir, make the path reachable again and retry.
        account = _postgres_account()
        if account is None or "Permission denied" not in log:
            return False
        _make_reachable(self.dir, account)
        return True

    def _after_ready(self, deadline: float) -> None:
        name = self.database.replace('"', '""')
        literal = self.database.replace("'", "''")
        sql = (
            f"SELECT 'CREATE DATABASE \"{name}\"' "
            f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{literal}')\\gexec\n"
        )
        self.psql(sql, database="postgres", timeout=max(5.0, deadline - time.monotonic()))

    def _finish_stop(self, deadline: float) -> None:
        super()._finish_stop(deadline)
        # After a timeout (postmaster SIGKILLed) or an earlier kill(), backends may linger.
        self._reap_stragglers(deadline + 5, kill_after=max(0.0, deadline - time.monotonic()))


# --------------------------------------------------------------------------------------------
# Both


@attrs.define
class DevStack:
    """A private Redis (one server, or a :class:`RedisCluster`) and PostgreSQL pair."""

    redis: RedisServer | RedisCluster
    postgres: PostgresServer

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def cluster(self) -> RedisCluster:
        """The Redis Cluster of a stack started with ``cluster=True``."""
        if not isinstance(self.redis, RedisCluster):
            raise DevStackError("this dev stack runs a single redis-server, not a cluster")
        return self.redis

    @property
    def database_url(self) -> str:
        return self.postgres.url

    def start(self, timeout: float = 60) -> None:
        """Start both, overlapping their start-up; on failure stop whatever started."""
        deadline = time.monotonic() + timeout
        try:
            # Launch both before waiting for either: redis boots while initdb/copy runs.
            self.redis._launch_process(deadline)
            self.postgres._launch_process(deadline)
            self.redis._await_ready(deadline)
            self.postgres._await_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15) -> None:
        """Stop both (in parallel), even if stopping one of them fails."""
        deadline = time.monotonic() + timeout
        self.redis._begin_stop()
        self.postgres._begin_stop()
        try:
            self.postgres._finish_stop(deadline)
        finally:
            self.redis._finish_stop(deadline)


@contextlib.contextmanager
def dev_stack(
    state_dir: Path,
    redis_conf: Path | None,
    *,
    fast: bool = False,
    redis_overrides: dict[str, str] | None = None,
    timeout: float = 60,
    cluster: bool = False,
) -> Iterator[DevStack]:
    """Start redis-server in ``state_dir/"redis"`` and PostgreSQL in ``state_dir/"postgres"``;
    stop both when the block exits, however it exits (exception, KeyboardInterrupt).

    With ``cluster``, a :class:`RedisCluster` of 3 masters and 3 replicas in
    ``state_dir/"redis-cluster"`` replaces the single redis-server (``redis_overrides`` apply to
    every node). Call it from the main thread (see the module docstring).
    """
    state_dir = Path(state_dir)
    overrides = redis_overrides or {}
    redis: RedisServer | RedisCluster
    if cluster:
        redis = RedisCluster(state_dir / "redis-cluster", conf=redis_conf, overrides=overrides)
    else:
        redis = RedisServer(state_dir / "redis", conf=redis_conf, overrides=overrides)
    stack = DevStack(redis=redis, postgres=PostgresServer(state_dir / "postgres", fast=fast))
    stack.start(timeout)
    try:
        yield stack
    finally:
        stack.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kaleido.devstack STATE_DIR [--conf redis.conf] [--fast] [--cluster]``: run
    until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kaleido.devstack", description=main.__doc__)
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--conf", type=Path, default=None, help="redis.conf to include")
    parser.add_argument("--fast", action="store_true", help="fsync off etc. (tests, benchmarks)")
    parser.add_argument(
        "--cluster", action="store_true", help="a Redis Cluster (3 masters, 3 replicas)"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    with dev_stack(args.state_dir, args.conf, fast=args.fast, cluster=args.cluster) as stack:
        print(f"KALEIDO_REDIS_URL={stack.redis_url}")
        print(f"KALEIDO_DATABASE_URL={stack.database_url}")
        if args.cluster:
            for view in stack.cluster.topology():
                role = "master" if view.is_master else f"replica of {view.master_id}"
                print(f"# node 127.0.0.1:{view.port} {view.node_id} {role}")
        print(f"# ready in {time.monotonic() - started:.2f}s; Ctrl-C stops both", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
