"""How the service and the other commands reach the private servers of `kaleido run --dev`
(`make run`): as Kaleido's own Redis user, and through URLs kept in the state folder.

The dev Redis gets Kaleido's least-privilege user (a new random password at every start), made
by the same admin step as in production (`kaleido.redis_admin`). While the stack runs,
`STATE_DIR/dev-urls.env` (mode 0600) holds the URLs the service uses, its pid, its listeners'
URLs and where its admin token is; `kaleido doctor`, `streams`, `dlq`, `sync`, `top` and
`redis-acl` read it when neither URL is set (and say so), and the file goes away when the stack
stops. The servers' admin passwords stay in their own files (`redis/password`,
`postgres/password`, 0600).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from kaleido.gateways import open_redis
from kaleido.keys import KeyLayout
from kaleido.private_files import write_private
from kaleido.redis_admin import install
from kaleido.redis_url import is_cluster_url
from kaleido.settings import Settings

if TYPE_CHECKING:
    from kaleido.devstack import DevStack

FILE_NAME = "dev-urls.env"
# Beside the two URLs, for the commands and for people: who runs the stack, where it listens.
PID = "KALEIDO_DEV_PID"
HTTP_URL = "KALEIDO_DEV_HTTP_URL"
OPS_URL = "KALEIDO_DEV_OPS_URL"
ADMIN_TOKEN_FILE = "KALEIDO_ADMIN_TOKEN_FILE"
# Kaleido's own Redis user on the dev servers, as in production.
DEV_REDIS_USER = "kaleido"
_VARIABLES = {"KALEIDO_REDIS_URL": "redis_url", "KALEIDO_DATABASE_URL": "database_url"}


async def dev_redis_user(stack: DevStack, settings: Settings) -> str:
    """Set Kaleido's user on the dev Redis (for the settings' key prefix and script mode) with a
    new random password; return its URL."""
    password = secrets.token_urlsafe(24)
    keys = KeyLayout(settings.key_prefix, cluster=is_cluster_url(stack.redis_url))
    async with open_redis(stack.redis_url) as admin:
        await install(admin, DEV_REDIS_USER, password, keys, settings.redis_scripts)
    return stack.redis_url_for(DEV_REDIS_USER, password)


@attrs.frozen
class DevStackFound:
    """A running `kaleido run --dev` as its state file describes it."""

    path: Path
    pid: int | None
    redis_url: str | None
    database_url: str | None
    http_url: str | None = None
    ops_url: str | None = None
    admin_token_file: str | None = None

    def describe(self) -> str:
        """Which stack, in a few words (the commands' line on stderr)."""
        pid = f"pid {self.pid}, " if self.pid is not None else ""
        return f"the dev stack of `make run` ({pid}{self.path})"


def write_dev_urls(
    state_dir: Path,
    settings: Settings,
    *,
    http_url: str | None = None,
    ops_url: str | None = None,
    admin_token_file: Path | None = None,
) -> Path:
    """Keep the settings' two URLs, and where the stack's listeners and admin token are, in the
    state folder, readable by its owner only. Its lines are `NAME=value`: `set -a; .
    .state/dev-urls.env` gives a shell the same URLs."""
    values: dict[str, object] = {
        variable: getattr(settings, field) for variable, field in _VARIABLES.items()
    }
    values[PID] = os.getpid()
    values[HTTP_URL] = http_url
    values[OPS_URL] = ops_url
    values[ADMIN_TOKEN_FILE] = admin_token_file
    lines = [
        f"# kaleido run --dev, pid {os.getpid()}: its servers' URLs; removed when it stops\n",
        *(f"{name}={value}\n" for name, value in values.items() if value is not None),
    ]
    path = state_dir / FILE_NAME
    write_private(path, "".join(lines))
    return path


def find_dev_stack(state_dir: Path) -> DevStackFound | None:
    """The dev stack running from `state_dir`, if any: a state file left by a process that is
    gone (killed with SIGKILL) does not count."""
    path = state_dir / FILE_NAME
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if value and not name.startswith("#"):
            found[name] = value
    pid = int(found[PID]) if found.get(PID, "").isdigit() else None
    if pid is not None and not process_alive(pid):
        return None
    return DevStackFound(
        path=path,
        pid=pid,
        redis_url=found.get("KALEIDO_REDIS_URL"),
        database_url=found.get("KALEIDO_DATABASE_URL"),
        http_url=found.get(HTTP_URL),
        ops_url=found.get(OPS_URL),
        admin_token_file=found.get(ADMIN_TOKEN_FILE),
    )


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def with_dev_urls(settings: Settings) -> tuple[Settings, DevStackFound | None]:
    """`settings` with the running dev stack's URLs when it names neither, and that stack
    (unchanged and None when it names one, or when no dev stack runs)."""
    if settings.redis_url is not None or settings.database_url is not None:
        return settings, None
    found = find_dev_stack(settings.state_dir)
    if found is None:
        return settings, None
    evolved = attrs.evolve(settings, redis_url=found.redis_url, database_url=found.database_url)
    return evolved, found
