"""A trio-native circuit breaker with resilience4j's COUNT_BASED semantics.

CLOSED: every call runs under `call_timeout` and its outcome (failed, slow) goes into a ring of
the last `window_size` calls. Once the ring holds `min_calls` outcomes and the failure rate or the
slow-call rate reaches its threshold, the breaker opens.

OPEN: calls fail fast with `CircuitOpen` without running. After `open_wait` seconds the breaker
half-opens; the transition happens lazily, at the next call attempt or `state` read.

HALF_OPEN: `half_open_probes` calls are let through (the rest get `CircuitOpen`). When all of them
have completed, the breaker closes with a fresh window if both rates are below their thresholds,
and opens again otherwise. If they have not all completed within `max_half_open_wait`
(resilience4j's maxWaitDurationInHalfOpenState), it opens again: a probe stuck on a connection
that never answers must not keep every other call out until its own timeout.

How outcomes are counted:

- an exception for which `is_failure` is true is a failure; it is re-raised unchanged;
- any other `Exception` (a bad request: the backend did answer) is a success; it is re-raised;
- a call that runs past `call_timeout` is cancelled, counts as a failure and raises
  `timeout_error`;
- `trio.Cancelled`, `KeyboardInterrupt` and every other non-`Exception` are not counted at all;
  a half-open probe slot held by such a call is given back;
- a call that started before a state change and finishes after it is not counted either.

Time comes from `clock` (monotonic, `trio.current_time` by default), so tests run on trio's
`autojump_clock`. The breaker is not thread-safe: use it from the trio thread only.
"""

from __future__ import annotations

import enum
import math
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TypeVar, TypeVarTuple

import attrs
import trio

from kaleido.errors import CircuitOpen, ConfigError, TransientError

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"BreakerConfig.{name} must be a finite number > 0, got {value!r}")


def _rate(name: str, value: float) -> None:
    if not (0 < value <= 1):
        raise ConfigError(f"BreakerConfig.{name} must be in (0, 1], got {value!r}")


@attrs.frozen
class BreakerConfig:
    """Tunables of one breaker; an invalid value raises `ConfigError` naming the field.

    `min_calls` larger than `window_size` is treated as `window_size` (as resilience4j does).
    Rates are fractions: 0.5 is 50 %. A rate threshold trips when the rate is >= it, so the default
    `slow_call_rate_threshold` of 1.0 trips only when every call in a full window is slow.
    """

    window_size: int = 20
    min_calls: int = 10
    failure_rate_threshold: float = 0.5
    slow_call_threshold: float = 1.0
    slow_call_rate_threshold: float = 1.0
    open_wait: float = 5.0
    half_open_probes: int = 3
    call_timeout: float = 5.0
    max_half_open_wait: float = math.inf

    def __attrs_post_init__(self) -> None:
        for name in ("window_size", "min_calls", "half_open_probes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"BreakerConfig.{name} must be an integer >= 1, got {value!r}")
        _rate("failure_rate_threshold", self.failure_rate_threshold)
        _rate("slow_call_rate_threshold", self.slow_call_rate_threshold)
        _positive("slow_call_threshold", self.slow_call_threshold)
        _positive("call_timeout", self.call_timeout)
        if not self.max_half_open_wait > 0:  # math.inf: wait for every probe, however long
            raise ConfigError(
                f"BreakerConfig.max_half_open_wait must be > 0, got {self.max_half_open_wait!r}"
            )
        if not (math.isfinite(self.open_wait) and self.open_wait >= 0):
            raise ConfigError(
                f"BreakerConfig.open_wait must be a finite number >= 0, got {self.open_wait!r}"
            )


class BreakerState(enum.Enum):
    """State of a breaker; the values are lowercase names, handy as metric labels."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@attrs.frozen
class BreakerSnapshot:
    """A point-in-time view of a breaker, for metrics, health checks and logs.

    `failure_rate`, `slow_call_rate` and `calls` describe the current window: the ring while
    CLOSED, the completed probes while HALF_OPEN, and, frozen, whichever opened it while OPEN.
    `opened_at` is the clock time of the last opening, None unless OPEN or HALF_OPEN.
    """

    name: str
    state: BreakerState
    failure_rate: float
    slow_call_rate: float
    calls: int
    opened_at: float | None
    rejected_calls: int
    transitions: Mapping[tuple[BreakerState, BreakerState], int]


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientError)


# One recorded outcome: (failed, slow).
_Outcome = tuple[bool, bool]


def _rates(outcomes: deque[_Outcome] | list[_Outcome]) -> tuple[float, float]:
    if not outcomes:
        return 0.0, 0.0
    n = len(outcomes)
    return sum(f for f, _ in outcomes) / n, sum(s for _, s in outcomes) / n


@attrs.define
class CircuitBreaker:
    """A circuit breaker guarding one backend; see the module docstring for the semantics.

    `on_transition(name, old, new)` is called after every state change, once the breaker is
    consistent; it must not raise (an exception from it escapes from the call that caused the
    change). `transitions` counts changes by (old, new); `rejected_calls` counts `CircuitOpen`s.
    With the default clock, every method must run inside `trio.run`.
    """

    name: str
    config: BreakerConfig = attrs.field(factory=BreakerConfig)
    clock: Callable[[], float] = trio.current_time
    is_failure: Callable[[BaseException], bool] = _is_transient
    on_transition: Callable[[str, BreakerState, BreakerState], None] | None = None
    timeout_error: type[TransientError] = TransientError

    transitions: Counter[tuple[BreakerState, BreakerState]] = attrs.field(
        init=False, factory=Counter
    )
    rejected_calls: int = attrs.field(init=False, default=0)
    opened_at: float | None = attrs.field(init=False, default=None)
    _state: BreakerState = attrs.field(init=False, default=BreakerState.CLOSED)
    # Bumped on every transition; a call only counts if it ends in the epoch it started in.
    _epoch: int = attrs.field(init=False, default=0)
    _window: deque[_Outcome] = attrs.field(init=False)
    _probes: list[_Outcome] = attrs.field(init=False, factory=list)
    _probes_in_flight: int = attrs.field(init=False, default=0)
    _half_opened_at: float = attrs.field(init=False, default=0.0)

    @_window.default
    def _new_window(self) -> deque[_Outcome]:
        return deque(maxlen=self.config.window_size)

    # -- public -----------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; reading it may move OPEN to HALF_OPEN once `open_wait` is over,
        and HALF_OPEN back to OPEN once `max_half_open_wait` is."""
        self._timed_transitions(self.clock())
        return self._state

    @property
    def failure_rate(self) -> float:
        """Failed / recorded calls in the current window, 0.0 when nothing is recorded."""
        return _rates(self._current_outcomes())[0]

    @property
    def slow_call_rate(self) -> float:
        """Slow / recorded calls in the current window, 0.0 when nothing is recorded."""
        return _rates(self._current_outcomes())[1]

    def snapshot(self) -> BreakerSnapshot:
        """Return the current state and counters as a frozen value."""
        state = self.state
        outcomes = self._current_outcomes()
        failure_rate, slow_rate = _rates(outcomes)
        return BreakerSnapshot(
            name=self.name,
            state=state,
            failure_rate=failure_rate,
            slow_call_rate=slow_rate,
            calls=len(outcomes),
            opened_at=self.opened_at,
            rejected_calls=self.rejected_calls,
            transitions=dict(self.transitions),
        )

    async def call(self, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
        """Run `await fn(*args)` through the breaker and return its result.

        Raises `CircuitOpen` without calling `fn` when the breaker does not let the call through,
        `timeout_error` when `fn` overruns `call_timeout`, and otherwise whatever `fn` raised.
        """
        async with self.guard():
            return await fn(*args)

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run the body of `async with breaker.guard():` as one guarded call.

        Same rules as `call`: `CircuitOpen` on entry when not permitted, the body is cancelled
        and `timeout_error` raised after `call_timeout`, the body's exceptions pass through.
        """
        epoch = self._acquire()
        started = self.clock()
        scope = trio.move_on_after(self.config.call_timeout)
        try:
            with scope:
                yield
        except Exception as exc:
            # A call that overran its deadline failed, whatever it turned the cancellation into.
            self._complete(epoch, started, scope.cancel_called or self.is_failure(exc))
            raise
        except BaseException:
            self._release(epoch)
            raise
        if scope.cancelled_caught:
            self._complete(epoch, started, failed=True)
            raise self.timeout_error(
                f"{self.name}: call timed out after {self.config.call_timeout} s"
            )
        self._complete(epoch, started, failed=False)

    # -- internals --------------------------------------------------------------------------

    def _current_outcomes(self) -> deque[_Outcome] | list[_Outcome]:
        return self._probes if self._state is BreakerState.HALF_OPEN else self._window

    def _timed_transitions(self, now: float) -> None:
        """The transitions time alone makes: OPEN to HALF_OPEN after `open_wait`, HALF_OPEN
        back to OPEN after `max_half_open_wait`."""
        if (
            self._state is BreakerState.HALF_OPEN
            and now >= self._half_opened_at + self.config.max_half_open_wait
        ):
            self._transition(BreakerState.OPEN, now)  # probes still out: they do not count
        if (
            self._state is BreakerState.OPEN
            and self.opened_at is not None
            and now >= self.opened_at + self.config.open_wait
        ):
            self._transition(BreakerState.HALF_OPEN, now)

    def _acquire(self) -> int:
        """Return the epoch of a permitted call, or raise `CircuitOpen`."""
        now = self.clock()
        self._timed_transitions(now)
        if self._state is BreakerState.OPEN:
            assert self.opened_at is not None
            self.rejected_calls += 1
            wait = max(0.0, self.opened_at + self.config.open_wait - now)
            raise CircuitOpen(
                f"{self.name}: circuit open, half-opens in {wait:.1f} s", backend=self.name
            )
        if self._state is BreakerState.HALF_OPEN:
            taken = self._probes_in_flight + len(self._probes)
            if taken >= self.config.half_open_probes:
                self.rejected_calls += 1
                raise CircuitOpen(
                    f"{self.name}: circuit half-open, all {self.config.half_open_probes}"
                    " probe calls taken",
                    backend=self.name,
                )
            self._probes_in_flight += 1
        return self._epoch

    def _release(self, epoch: int) -> None:
        """Forget a call that ended without an outcome (cancelled, interrupted)."""
        if epoch == self._epoch and self._state is BreakerState.HALF_OPEN:
            self._probes_in_flight -= 1

    def _complete(self, epoch: int, started: float, failed: bool) -> None:
        if epoch != self._epoch:
            return  # started before a state change: it says nothing about the new state
        now = self.clock()
        outcome = (failed, now - started > self.config.slow_call_threshold)
        cfg = self.config
        if self._state is BreakerState.CLOSED:
            self._window.append(outcome)
            if len(self._window) >= min(cfg.min_calls, cfg.window_size) and self._tripped(
                self._window
            ):
                self._transition(BreakerState.OPEN, now)
        elif self._state is BreakerState.HALF_OPEN:
            self._probes_in_flight -= 1
            self._probes.append(outcome)
            if len(self._probes) >= cfg.half_open_probes:
                tripped = self._tripped(self._probes)
                self._transition(BreakerState.OPEN if tripped else BreakerState.CLOSED, now)

    def _tripped(self, outcomes: deque[_Outcome] | list[_Outcome]) -> bool:
        failure_rate, slow_rate = _rates(outcomes)
        return (
            failure_rate >= self.config.failure_rate_threshold
            or slow_rate >= self.config.slow_call_rate_threshold
        )

    def _transition(self, new: BreakerState, now: float) -> None:
        old = self._state
        self._state = new
        self._epoch += 1
        self.transitions[(old, new)] += 1
        if new is BreakerState.OPEN:
            self.opened_at = now
            if old is BreakerState.HALF_OPEN:
                # While OPEN the window shows what opened the breaker: here, the probes.
                self._window.clear()
                self._window.extend(self._probes)
        elif new is BreakerState.HALF_OPEN:
            self._probes = []
            self._probes_in_flight = 0
            self._half_opened_at = now
        else:
            self._window.clear()
            self.opened_at = None
        if self.on_transition is not None:
            self.on_transition(self.name, old, new)
