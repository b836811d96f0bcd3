"""kaleido.gateways._bridge runs every asyncio client call through trio-asyncio's
`run_aio_coroutine` and relies on how it treats cancellation: a trio cancellation cancels the
asyncio task and comes back as trio.Cancelled; an asyncio-side CancelledError trio did not ask
for comes back as itself (the bridge maps it); any other error comes back unchanged. These
checks fail first when a trio-asyncio release changes that; pyproject.toml bounds the version
to the ones checked here."""

from __future__ import annotations

import asyncio
from importlib.metadata import version

import pytest
import trio
import trio_asyncio


def test_the_installed_trio_asyncio_is_within_the_checked_versions() -> None:
    installed = tuple(int(part) for part in version("trio-asyncio").split(".")[:2])
    assert (0, 15) <= installed < (0, 17), f"trio-asyncio {installed}: check the canaries"


async def test_a_trio_cancellation_cancels_the_asyncio_task_and_returns_as_cancelled() -> None:
    cancelled_inside = False

    async def waits() -> None:
        nonlocal cancelled_inside
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled_inside = True
            raise

    async with trio_asyncio.open_loop() as loop:
        with trio.move_on_after(0.05) as scope:
            await loop.run_aio_coroutine(waits())
    assert scope.cancelled_caught, "the trio cancellation did not come back as trio.Cancelled"
    assert cancelled_inside, "the asyncio task was not cancelled with the trio scope"


async def test_an_asyncio_side_cancellation_comes_back_as_itself() -> None:
    async def cancels_itself() -> None:
        raise asyncio.CancelledError

    async with trio_asyncio.open_loop() as loop:
        with pytest.raises(asyncio.CancelledError):
            await loop.run_aio_coroutine(cancels_itself())


async def test_other_errors_come_back_unchanged() -> None:
    error = ConnectionResetError("reset by peer")

    async def fails() -> None:
        raise error

    async with trio_asyncio.open_loop() as loop:
        with pytest.raises(ConnectionResetError) as caught:
            await loop.run_aio_coroutine(fails())
    assert caught.value is error
