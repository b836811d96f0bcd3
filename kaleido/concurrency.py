"""Running a few awaitables side by side in a nursery, with errors raised as themselves.

trio wraps whatever leaves a nursery in an exception group; callers here handle the project's
errors by type (TransientError → retry later), so the first real error is re-raised unwrapped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a nursery's group, itself. A group of cancellations only is returned
    as it is (trio handles those)."""
    _, rest = group.split(trio.Cancelled)
    if rest is None:
        return group
    exc: BaseException = rest
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def gather(*jobs: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run the jobs at once and return their results in order. A failure cancels the others
    and is raised as itself (see `first_error`), with its own cause."""
    results: list[Any] = [None] * len(jobs)

    async def run(index: int) -> None:
        results[index] = await jobs[index]()

    try:
        async with trio.open_nursery() as nursery:
            for index in range(1, len(jobs)):
                nursery.start_soon(run, index)
            await run(0)
    except BaseExceptionGroup as group:
        exc = first_error(group)
        if exc is group:
            raise
        raise exc from exc.__cause__
    return results
