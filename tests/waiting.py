"""Waiting for a condition with a deadline (never a fixed sleep)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio


async def wait_until(
    predicate: Callable[[], Awaitable[bool]],
    timeout: float = 10.0,
    interval: float = 0.02,
) -> None:
    """Poll `predicate` until it is true; trio.TooSlowError after `timeout` seconds."""
    with trio.fail_after(timeout):
        while not await predicate():  # noqa: ASYNC110 - the condition lives in another process
            await trio.sleep(interval)
