"""Running a few awaitables side by side in a nursery, and what leaves a nursery, unwrapped.

trio wraps whatever leaves a nursery in an exception group; callers here handle the project's
errors by type (TransientError → retry later), so `unwrap` is the one place that turns a group
back into the error the caller should see, without losing any of the errors in it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import trio


def leaves(exc: BaseException) -> list[BaseException]:
    """Every error inside `exc`, nested groups flattened, in order; `[exc]` for a lone error."""
    if not isinstance(exc, BaseExceptionGroup):
        return [exc]
    return [leaf for inner in exc.exceptions for leaf in leaves(inner)]


def unwrap(exc: BaseException) -> BaseException:
    """What left a nursery, as the caller should see it; every real error is kept.

    - No real error (only cancellations, which trio handles): `exc` itself.
    - One real error: that error, itself (its own cause and traceback); cancellations of the
      sibling tasks it caused are dropped.
    - Several of one type (one outage seen by two tasks): the first, itself, so the caller's
      `except` by type still sees it; the others are named in its notes.
    - Several of different types: one flat group of them all (an ExceptionGroup when all are
      Exceptions), so no second real error is silently lost.
    """
    real = [leaf for leaf in leaves(exc) if not isinstance(leaf, trio.Cancelled)]
    if not real:
        return exc
    first = real[0]
    others = real[1:]
    if all(type(other) is type(first) for other in others):
        for other in others:
            note = f"at the same time, another task raised {type(other).__name__}: {other}"
            if note not in getattr(first, "__notes__", ()):
                first.add_note(note)
        return first
    return BaseExceptionGroup(f"{len(real)} errors at once", real)


def raise_unwrapped(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise `unwrap(group)`: a lone error with its own cause (not the group); the group itself
    when it holds only cancellations."""
    exc = unwrap(group)
    if exc is group:
        raise group
    raise exc from exc.__cause__


async def gather(*jobs: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run the jobs at once and return their results in order. A failure cancels the others
    and is raised as `unwrap` says: as itself, with its own cause."""
    results: list[Any] = [None] * len(jobs)

    async def run(index: int) -> None:
        results[index] = await jobs[index]()

    try:
        async with trio.open_nursery() as nursery:
            for index in range(1, len(jobs)):
                nursery.start_soon(run, index)
            await run(0)
    except BaseExceptionGroup as group:
        raise_unwrapped(group)
    return results
