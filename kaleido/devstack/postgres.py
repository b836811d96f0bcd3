"""A private PostgreSQL (:class:`PostgresServer`): finding its binaries, creating the cluster from a
cached ``initdb`` template, running it as an unprivileged account under root, reaping the
backends a crash leaves.

Only password (SCRAM-SHA-256) authentication over TCP, and no Unix socket, so another local
account cannot connect as the superuser (see :mod:`kaleido.devstack.pg_auth`)."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import attrs

from kaleido.devstack.pg_auth import set_superuser_password, write_hba
from kaleido.devstack.process import (
    DevStackError,
    _absolute,
    _clean_env,
    _cwd_pids,
    _file_size,
    _postgres_account,
    _read_from,
    _RunAs,
    _spawn,
    _tail,
    _wait_until,
)
from kaleido.devstack.server import _ManagedServer

# Bump when the initdb options change, so that stale cached templates are not reused.
_TEMPLATE_FORMAT = 1


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
        """``postgresql://postgres:PASSWORD@127.0.0.1:PORT/DATABASE``: the superuser."""
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{self.database}"

    @property
    def password_file(self) -> Path:
        return self.dir / "password"

    @property
    def password(self) -> str:
        """The superuser's password (made when the cluster was; see :meth:`start`)."""
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            raise DevStackError(f"{self.password_file} is missing: start the server") from None

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
        env = {**_clean_env(), "PGPASSWORD": self.password}  # never in the arguments
        try:
            done = subprocess.run(
                argv, input=sql, capture_output=True, text=True, timeout=timeout, env=env
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
        write_hba(self.data_dir, account)
        attempts = 3
        while not self.password_file.exists():
            attempts -= 1
            try:
                set_superuser_password(self._bindir(), self.dir, account, deadline)
            except DevStackError as exc:
                if not attempts or not self._recoverable(str(exc)):
                    raise

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
