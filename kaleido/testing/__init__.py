"""`kaleido.testing`: a pytest plugin for the test suites of programs that embed Kaleido.

Installed with Kaleido (the `pytest11` entry point), it adds fixtures, all opt-in by name:

- `kaleido_servers` (session): a private redis-server and PostgreSQL on free ports, started once
  per test session and stopped at its end (the binaries must be installed; nothing else is
  touched). Both ask for a random password (their loopback ports are open to every local
  account), which their URLs carry; the Redis holds Kaleido's function library;
- `kaleido_settings`: `Settings` for one test: its own Redis key prefix and its own database
  (a copy of a migrated template), so tests never see each other's data;
- `kaleido_app`: a running Kaleido (`open_kaleido(kaleido_settings)`) wrapped in a
  `KaleidoDriver` that drives the actors deterministically: `sync()`, `drained()` and
  `feed(stream, fields)`.

`migrated_servers()` starts the same servers for a fixture of your own (another scope, your own
redis.conf, a Redis Cluster).

Async fixtures and tests run under trio: `pip install 'kaleido-core[testing]'` (pytest,
pytest-trio) and `trio_mode = true` in the pytest configuration; a test asking for
`kaleido_app` without them stops the session with one line saying so.

The plugin loads into every pytest session of the environment, so this module imports nothing
of Kaleido's until a fixture is used (and never the command line or the HTTP stack).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from kaleido.settings import Settings
    from kaleido.testing.driver import Fed, KaleidoDriver
    from kaleido.testing.servers import KaleidoServers, migrated_servers

__all__ = ["Fed", "KaleidoDriver", "KaleidoServers", "migrated_servers"]

# Fixtures that run under trio: they need pytest-trio, in trio mode (or a `trio` mark).
ASYNC_FIXTURES = ("kaleido_app",)
NEEDS = (
    "kaleido.testing: the kaleido_app fixture needs pytest-trio with trio_mode = true "
    "(pip install 'kaleido-core[testing]'; set trio_mode = true in the pytest configuration)"
)
_prefixes = itertools.count(1)

_LAZY = {
    "Fed": "kaleido.testing.driver",
    "KaleidoDriver": "kaleido.testing.driver",
    "KaleidoServers": "kaleido.testing.servers",
    "migrated_servers": "kaleido.testing.servers",
    "TEMPLATE_DATABASE": "kaleido.testing.servers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kaleido.testing' has no attribute {name!r}")


def _runs_under_trio(config: pytest.Config, item: pytest.Item) -> bool:
    if not config.pluginmanager.hasplugin("trio"):
        return False
    try:
        trio_mode = bool(config.getini("trio_mode"))
    except ValueError:  # the ini option is pytest-trio's
        return False
    return trio_mode or item.get_closest_marker("trio") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if any(name in names for name in ASYNC_FIXTURES) and not _runs_under_trio(config, item):
            raise pytest.UsageError(NEEDS)


@pytest.fixture(scope="session")
def kaleido_servers() -> Iterator[KaleidoServers]:
    """Private Redis and PostgreSQL for the session, with a migrated template database."""
    from kaleido.testing.servers import TEMPLATE_DATABASE, KaleidoServers, migrated_servers

    with migrated_servers(database=TEMPLATE_DATABASE) as stack:
        yield KaleidoServers(stack)


@pytest.fixture
def kaleido_settings(kaleido_servers: KaleidoServers) -> Settings:
    """Settings of a Kaleido of its own for this test: a fresh key prefix and database."""
    from kaleido.settings import Settings

    return Settings(
        redis_url=kaleido_servers.stack.redis_url,
        database_url=kaleido_servers.new_database(),
        key_prefix=f"test{next(_prefixes)}:",
        http_port=0,
        ops_port=0,
        sync_interval=3600.0,  # syncs run when the test asks (`KaleidoDriver.sync`)
        shutdown_deadline=5.0,
        log_format="console",
    )


@pytest.fixture
async def kaleido_app(kaleido_settings: Settings) -> AsyncIterator[KaleidoDriver]:
    """A running Kaleido for this test, stopped (and drained) after it."""
    from kaleido.embedded import open_kaleido
    from kaleido.testing.driver import KaleidoDriver

    async with open_kaleido(kaleido_settings) as running:
        yield KaleidoDriver(running, kaleido_settings)
