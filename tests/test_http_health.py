"""Probes stay cheap however many come: concurrent /readyz share one check of the backends."""

from __future__ import annotations

from types import SimpleNamespace

import trio
import trio.testing

from kaleido.http.health import Readiness


def fake_service(pings: list[int], gate: trio.Event) -> SimpleNamespace:
    async def ping() -> bool:
        pings.append(1)
        await gate.wait()
        return True

    async def fetchval(query: str) -> int:
        return 1

    backends = SimpleNamespace(redis=SimpleNamespace(ping=ping),
                               postgres=SimpleNamespace(fetchval=fetchval))  # fmt: skip
    supervisor = SimpleNamespace(actors={}, all_running=True, stopping=trio.Event())
    return SimpleNamespace(backends=backends, supervisor=supervisor)


async def test_concurrent_readiness_checks_share_one_backend_check() -> None:
    pings: list[int] = []
    gate = trio.Event()
    service = fake_service(pings, gate)
    readiness = Readiness()
    answers: list[int] = []

    async def ask() -> None:
        answers.append((await readiness.check(service))[1])  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
    assert answers == [200] * 50 and len(pings) == 1


async def test_a_cancelled_check_does_not_answer_for_the_others() -> None:
    """The check's own client went away: the others wait for a check of their own."""
    pings: list[int] = []
    gate = trio.Event()
    service = fake_service(pings, gate)
    readiness = Readiness()
    scopes: list[trio.CancelScope] = []
    answers: list[int] = []

    async def gone() -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            await readiness.check(service)  # type: ignore[arg-type]

    async def ask() -> None:
        answers.append((await readiness.check(service))[1])  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(gone)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        scopes[0].cancel()
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
    assert answers == [200] and len(pings) == 2
