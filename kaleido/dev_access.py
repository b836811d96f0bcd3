"""How the service and the other commands reach the private servers of `kaleido run --dev`
(`make run`): as Kaleido's own Redis user, and through URLs kept in the state folder.

The dev Redis gets Kaleido's least-privilege user (a new random password at every start), made
by the same admin step as in production (`kaleido.redis_admin`). While the stack runs,
`STATE_DIR/dev-urls.env` (mode 0600) holds the URLs the service uses; `kaleido doctor`,
`streams`, `dlq`, `sync` and `top` read it when neither URL is set, and the file goes away when
the stack stops. The servers' admin passwords stay in their own files (`redis/password`,
`postgres/password`, 0600).
"""

from __future__ import annotations

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


def write_dev_urls(state_dir: Path, settings: Settings) -> Path:
    """Keep the settings' two URLs in the state folder, readable by its owner only."""
    lines = [
        f"{variable}={getattr(settings, field)}\n"
        for variable, field in _VARIABLES.items()
        if getattr(settings, field) is not None
    ]
    path = state_dir / FILE_NAME
    write_private(path, "".join(lines))
    return path


def with_dev_urls(settings: Settings) -> Settings:
    """`settings` with the running dev stack's URLs when it names neither (unchanged when it
    names one, or when no dev stack runs)."""
    if settings.redis_url is not None or settings.database_url is not None:
        return settings
    try:
        text = (settings.state_dir / FILE_NAME).read_text()
    except FileNotFoundError:
        return settings
    found: dict[str, str] = {}
    for line in text.splitlines():
        variable, _, value = line.partition("=")
        if variable in _VARIABLES and value:
            found[_VARIABLES[variable]] = value
    return attrs.evolve(
        settings, redis_url=found.get("redis_url"), database_url=found.get("database_url")
    )
