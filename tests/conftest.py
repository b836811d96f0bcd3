"""Shared fixtures: one private Redis and PostgreSQL per test session (real servers on free
ports, started by kaleido.devstack), reset before each test that uses them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from kaleido.app import Running
from kaleido.devstack import DevStack
from kaleido.gateways import Backends, open_backends
from kaleido.settings import Settings
from kaleido.testing import migrated_servers

from .service_helpers import ADMIN_TOKEN, reset, serving

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def stack() -> Iterator[DevStack]:
    with migrated_servers(REPO / "redis.conf") as running:
        yield running


@pytest.fixture(scope="session")
def cluster_stack() -> Iterator[DevStack]:
    """A private 3-master Redis Cluster (and PostgreSQL), for tests marked to run on both."""
    with migrated_servers(REPO / "redis.conf", cluster=True) as running:
        yield running


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "redis_kinds(*kinds): run the test on each kind of Redis ('single', 'cluster')"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `redis_kinds("single", "cluster")` runs once per kind of Redis; the
    cluster's run is slow (`make test-fast` skips it)."""
    marker = metafunc.definition.get_closest_marker("redis_kinds")
    if marker is not None and "redis_kind" in metafunc.fixturenames:
        kinds = [
            pytest.param(kind, marks=pytest.mark.slow) if kind == "cluster" else kind
            for kind in marker.args
        ]
        metafunc.parametrize("redis_kind", kinds, indirect=True)


# Whole suites that are slow by nature: the fault, campaign and red-team suites, the container
# image, the real browser, the ML and OpenAPI contract tests, the property and fuzz suites.
# `make test-fast` (`-m "not slow"`) skips them.
SLOW_SUITES = ("tests/campaign/", "tests/faults/", "tests/container/", "tests/redteam/")
SLOW_MODULES = (
    "test_console_browser.py",
    "test_peer_edge.py",
    "test_cluster_failover.py",
    "test_streams_outages.py",  # PostgreSQL stopped and started again: a fault test
    "test_openapi_contract.py",
    "test_openapi_typescript.py",
    # hypothesis against real servers: tens of seconds each
    "test_views_property.py",
    "test_streams_batch_property.py",
    "test_views_batch_property.py",
    "test_fuzz.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark slow what SLOW_SUITES and SLOW_MODULES name, and every test on a Redis Cluster (its
    six nodes take seconds to start and to check)."""
    for item in items:
        where = Path(str(item.path)).relative_to(REPO).as_posix()
        on_a_cluster = "cluster_stack" in getattr(item, "fixturenames", ()) or (
            Path(where).name == "test_devstack.py" and "cluster" in item.name
        )
        if (
            where.startswith(SLOW_SUITES)
            or Path(where).name in SLOW_MODULES
            or on_a_cluster
            or item.get_closest_marker("container") is not None
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def redis_kind(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "single"))


@pytest.fixture
def settings(stack: DevStack, redis_kind: str, request: pytest.FixtureRequest) -> Settings:
    if redis_kind == "cluster":
        stack = request.getfixturevalue("cluster_stack")
    return Settings(
        redis_url=stack.redis_url,
        database_url=stack.database_url,
        http_port=0,
        ops_port=0,
        sync_interval=300.0,
        admin_token=ADMIN_TOKEN,
        log_format="console",
    )


@pytest.fixture
async def backends(settings: Settings) -> AsyncIterator[Backends]:
    async with open_backends(settings) as opened:
        await reset(opened)
        yield opened


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[Running]:
    """The whole service in-process on the test's settings, on emptied backends."""
    async with serving(settings) as service:
        yield service


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return attrs.evolve(settings, **changes)
