"""`kaleido run --dev` (what `make run` runs): the service on private throwaway servers under
the state folder, found afterwards by the other commands.

One dev stack per state folder: the first start holds a lock (`STATE_DIR/dev.lock`, released by
the kernel however the process ends), and a second start says where the first one is, in one
line, before touching anything (its servers' data, configuration and pid files stay whole).
URLs in the environment together with `--dev` are refused: which servers were meant is unclear.
Once the stack runs, `STATE_DIR/dev-urls.env` says where it is (kaleido.dev_access), and a
banner on standard error says so to a person.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import trio

from kaleido import __version__
from kaleido.dev_access import DevStackFound, dev_redis_user, find_dev_stack, write_dev_urls
from kaleido.dev_token import dev_admin_token, token_path
from kaleido.devstack import default_redis_conf, dev_stack
from kaleido.errors import ConfigError
from kaleido.logs import get_logger
from kaleido.ports import check_listen_addresses
from kaleido.secret_settings import redact_url
from kaleido.settings import Settings

log = get_logger("kaleido.dev_run")

LOCK_NAME = "dev.lock"

# Runs the service with these settings; calls the second argument once it listens.
Serve = Callable[[Settings, Callable[[], None]], int]


def refuse_urls(settings: Settings) -> None:
    """`--dev` starts its own servers: URLs set as well are one clear error."""
    named = [
        variable
        for variable, url in (
            ("KALEIDO_REDIS_URL", settings.redis_url),
            ("KALEIDO_DATABASE_URL", settings.database_url),
        )
        if url is not None
    ]
    if named:
        raise ConfigError(
            f"--dev starts private servers, but {' and '.join(named)} "
            f"{'is' if len(named) == 1 else 'are'} set: unset "
            f"{'it' if len(named) == 1 else 'them'} (a shell that sourced dev-urls.env?) or "
            "drop --dev to use those servers"
        )


def run_dev(settings: Settings, serve: Serve, *, cluster: bool = False) -> int:
    """Start the dev stack, run `serve` on it, stop it; 1 (after one line on stderr) when a dev
    stack already runs from the same state folder."""
    refuse_urls(settings)
    state_dir = settings.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)  # passwords inside (the dev stack adds the search bit postgres needs)
    with claim(state_dir) as holder:
        if holder is not None:
            print(f"kaleido run --dev: {already_running(state_dir, holder)}", file=sys.stderr)
            return 1
        check_listen_addresses(settings)
        log.warning(
            "devstack.throwaway",
            detail="--dev: private servers under the state folder; their data is for "
            "development only, never for production",
            state_dir=str(state_dir),
            cluster=cluster,
        )
        with dev_stack(state_dir, default_redis_conf(), cluster=cluster) as stack:
            redis_url = trio.run(dev_redis_user, stack, settings)
            settings = attrs.evolve(
                settings, redis_url=redis_url, database_url=stack.database_url, state_dir=state_dir
            )
            token_file = None
            if settings.admin_token is None and settings.jwt_secret is None:
                settings = attrs.evolve(settings, admin_token=dev_admin_token(state_dir))
                token_file = token_path(state_dir)
            http_url, ops_url = listener_urls(settings)
            urls = write_dev_urls(
                state_dir, settings, http_url=http_url, ops_url=ops_url, admin_token_file=token_file
            )
            found = DevStackFound(
                urls, os.getpid(), settings.redis_url, settings.database_url,
                http_url, ops_url, str(token_file) if token_file else None,
            )  # fmt: skip
            try:
                return serve(settings, lambda: print(banner(found), file=sys.stderr, flush=True))
            finally:
                urls.unlink(missing_ok=True)


@contextmanager
def claim(state_dir: Path) -> Iterator[int | None]:
    """Hold the state folder's lock for the block; yields None when it is ours, or the pid
    that holds it (0 if unknown). The lock is no file's presence: a killed holder leaves none."""
    fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            yield int(text) if text.isdigit() else 0
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield None
    finally:
        os.close(fd)


def already_running(state_dir: Path, pid: int) -> str:
    """One line: a dev stack runs from `state_dir`, where it listens and how to stop it."""
    found = find_dev_stack(state_dir)
    where = ""
    if found is not None and found.http_url:
        where = f", serving {found.http_url} (ops {found.ops_url})"
    who = f"pid {pid}" if pid else "another process"
    stop = f"Ctrl-C in its terminal or `kill {pid}`" if pid else "Ctrl-C in its terminal"
    return (
        f"a dev stack already runs from {state_dir} ({who}{where}); use it (`kaleido doctor` "
        f"finds it), stop it first ({stop}), or set KALEIDO_STATE_DIR to another folder"
    )


def listener_urls(settings: Settings) -> tuple[str, str]:
    return _url(settings.http_host, settings.http_port), _url(settings.ops_host, settings.ops_port)


def _url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}"


def banner(found: DevStackFound) -> str:
    """What a person needs once the dev stack serves: where, how to sign in, how to stop."""
    token = found.admin_token_file or "KALEIDO_ADMIN_TOKEN / a JWT with ROLE_ADMIN (yours)"
    cli = Path(sys.executable).with_name("kaleido")
    lines = [
        "",
        f"Kaleido {__version__} is running on a dev stack (throwaway data in {found.path.parent})",
        f"  public API    {found.http_url}    try: curl {found.http_url}/healthz",
        f"  ops, console  {found.ops_url}/ops/    metrics: {found.ops_url}/metrics",
        f"  admin token   {token}",
        f"  Redis         {redact_url(found.redis_url)}",
        f"  PostgreSQL    {redact_url(found.database_url)}",
        f"  its URLs      {found.path} (the CLI reads it: {cli} doctor)",
        f"  stop          Ctrl-C here (buffered views are synced first), or kill {found.pid}",
        "",
    ]
    return "\n".join(lines)
