"""Retry delays: capped exponential backoff, with optional jitter, that a success resets.

`Backoff(base, cap)` gives `base`, `2 * base`, `4 * base`, ... up to `cap`, then `cap` for
ever; `reset()` starts over at `base`. With `jitter` j (0 to 1) each delay is scaled by a
random factor in [1 - j, 1], so that many processes failing together do not retry together.
The object only computes delays; the caller waits however suits it (a sleep, an event with
a timeout, a deadline).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs


def _check_jitter(_: object, __: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"jitter must be between 0 and 1, got {value!r}")


@attrs.define
class Backoff:
    """Capped exponential retry delays (see the module docstring)."""

    base: float = attrs.field(validator=attrs.validators.gt(0))
    cap: float
    jitter: float = attrs.field(default=0.0, validator=_check_jitter)
    # Draws the jitter factor from [low, high]; a test passes a fixed one.
    uniform: Callable[[float, float], float] = random.uniform
    _delay: float = attrs.field(init=False)
    attempts: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        if self.cap < self.base:
            raise ValueError(f"cap {self.cap!r} is below base {self.base!r}")
        self._delay = self.base

    def next(self) -> float:
        """The delay to wait before the next attempt; each call doubles the following one."""
        delay = self._delay
        self._delay = min(delay * 2, self.cap)
        self.attempts += 1
        if self.jitter:
            delay *= self.uniform(1.0 - self.jitter, 1.0)
        return delay

    def peek(self) -> float:
        """The delay `next` will give (before jitter), without advancing."""
        return self._delay

    def reset(self) -> None:
        """After a success: the next delay is `base` again."""
        self._delay = self.base
        self.attempts = 0
