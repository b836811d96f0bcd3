"""Tests of `kaleido.breaker`: all timing runs on trio's virtual clock, nothing really sleeps."""

from __future__ import annotations

import contextlib
import math
from collections import deque
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from kaleido.breaker import BreakerConfig, BreakerSnapshot, BreakerState, CircuitBreaker
from kaleido.errors import (
    CircuitOpen,
    ConfigError,
    PostgresUnavailable,
    RedisCommandError,
    RedisUnavailable,
    TransientError,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class Abort(BaseException):
    """A non-`Exception` that is not `Cancelled`, like KeyboardInterrupt."""


async def ok() -> str:
    return "ok"


async def fail() -> None:
    raise TransientError("backend down")


async def sleep_then(seconds: float, result: str = "ok") -> str:
    await trio.sleep(seconds)
    return result


async def succeed(breaker: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        assert await breaker.call(ok) == "ok"


async def failures(breaker: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        with pytest.raises(TransientError, match="backend down"):
            await breaker.call(fail)


def make(**config: Any) -> tuple[CircuitBreaker, list[tuple[str, BreakerState, BreakerState]]]:
    seen: list[tuple[str, BreakerState, BreakerState]] = []

    def record(name: str, old: BreakerState, new: BreakerState) -> None:
        seen.append((name, old, new))

    defaults: dict[str, Any] = {"window_size": 10, "min_calls": 4, "open_wait": 5.0}
    breaker = CircuitBreaker("redis", BreakerConfig(**(defaults | config)), on_transition=record)
    return breaker, seen


async def open_breaker(breaker: CircuitBreaker) -> None:
    await failures(breaker, breaker.config.min_calls)
    assert breaker.state is OPEN


async def half_open_breaker(breaker: CircuitBreaker) -> None:
    await open_breaker(breaker)
    await trio.sleep(breaker.config.open_wait)
    assert breaker.state is HALF_OPEN


# -- CLOSED ------------------------------------------------------------------------------------


async def test_opens_at_threshold_only_after_min_calls() -> None:
    breaker, seen = make(min_calls=5)
    await failures(breaker, 4)
    assert breaker.state is CLOSED
    assert breaker.failure_rate == 1.0
    await failures(breaker)
    assert breaker.state is OPEN
    assert seen == [("redis", CLOSED, OPEN)]


async def test_opens_when_rate_equals_threshold() -> None:
    breaker, _ = make(min_calls=4, failure_rate_threshold=0.5)
    await succeed(breaker, 2)
    await failures(breaker, 1)
    assert breaker.state is CLOSED
    await failures(breaker, 1)
    assert breaker.state is OPEN


async def test_stays_closed_below_threshold() -> None:
    breaker, seen = make(window_size=6, min_calls=3)
    for _ in range(20):
        await succeed(breaker, 2)
        await failures(breaker)  # every prefix and every full window is below 50 %
        assert breaker.state is CLOSED
    assert breaker.failure_rate == pytest.approx(1 / 3)
    assert breaker.snapshot().calls == 6
    assert seen == []


async def test_window_slides_old_failures_out() -> None:
    breaker, _ = make(window_size=4, min_calls=4, failure_rate_threshold=0.75)
    await failures(breaker, 2)
    await succeed(breaker, 2)  # [F F S S]: 50 %
    await failures(breaker)  # [F S S F]: the first failure fell out, still 50 %
    assert breaker.state is CLOSED
    assert breaker.failure_rate == 0.5
    await failures(breaker, 1)  # [S S F F]
    await failures(breaker, 1)  # [S F F F]: 75 %
    assert breaker.state is OPEN


async def test_min_calls_above_window_size_means_window_size() -> None:
    breaker, _ = make(window_size=3, min_calls=10)
    await failures(breaker, 3)
    assert breaker.state is OPEN


async def test_non_failure_exceptions_count_as_success_and_are_reraised() -> None:
    breaker, _ = make(min_calls=2)

    async def bad_request() -> None:
        raise RedisCommandError("WRONGTYPE")

    for _ in range(5):
        with pytest.raises(RedisCommandError, match="WRONGTYPE"):
            await breaker.call(bad_request)
    await failures(breaker, 4)
    assert breaker.state is CLOSED  # 4 of 9 failed
    assert breaker.failure_rate == pytest.approx(4 / 9)


async def test_custom_is_failure() -> None:
    breaker = CircuitBreaker(
        "pg",
        BreakerConfig(min_calls=2),
        is_failure=lambda exc: isinstance(exc, ValueError),
    )

    async def value_error() -> None:
        raise ValueError("nope")

    await failures(breaker, 3)  # TransientError is not a failure for this breaker
    assert breaker.failure_rate == 0.0
    for _ in range(3):
        with pytest.raises(ValueError, match="nope"):
            await breaker.call(value_error)
    assert breaker.state is OPEN


async def test_slow_calls_open_when_slow_rate_threshold_lowered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, _ = make(min_calls=4, slow_call_threshold=1.0, slow_call_rate_threshold=0.5)
    await breaker.call(sleep_then, 1.0)  # exactly the threshold is not slow
    await breaker.call(sleep_then, 0.2)
    await breaker.call(sleep_then, 1.5)
    assert breaker.slow_call_rate == pytest.approx(1 / 3)
    assert breaker.state is CLOSED
    assert await breaker.call(sleep_then, 2.0, "late") == "late"
    assert breaker.state is OPEN
    assert breaker.failure_rate == 0.0
    assert breaker.slow_call_rate == 0.5


async def test_default_slow_rate_trips_only_when_every_call_is_slow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, _ = make(window_size=4, min_calls=4)
    for _ in range(3):
        await breaker.call(sleep_then, 2.0)
    await succeed(breaker)
    for _ in range(3):
        await breaker.call(sleep_then, 2.0)  # the fast call is still in the window
        assert breaker.state is CLOSED
    await breaker.call(sleep_then, 2.0)  # now all 4 are slow
    assert breaker.state is OPEN


# -- timeouts ----------------------------------------------------------------------------------


async def test_timeout_raises_configured_error_and_counts_as_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = CircuitBreaker(
        "redis",
        BreakerConfig(min_calls=2, call_timeout=1.5),
        timeout_error=RedisUnavailable,
    )
    started = trio.current_time()
    with pytest.raises(RedisUnavailable, match=r"^redis: call timed out after 1\.5 s$"):
        await breaker.call(sleep_then, 60.0)
    assert trio.current_time() - started == pytest.approx(1.5)
    assert breaker.failure_rate == 1.0
    with pytest.raises(RedisUnavailable):
        await breaker.call(sleep_then, 60.0)
    assert breaker.state is OPEN


async def test_timeout_counts_even_when_is_failure_says_no(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = CircuitBreaker(
        "pg",
        BreakerConfig(min_calls=1, call_timeout=1.0),
        is_failure=lambda exc: False,
        timeout_error=PostgresUnavailable,
    )
    with pytest.raises(PostgresUnavailable, match=r"pg: call timed out after 1\.0 s"):
        await breaker.call(sleep_then, 60.0)
    assert breaker.state is OPEN


async def test_exception_raised_after_the_deadline_counts_as_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, _ = make(min_calls=1, call_timeout=1.0)

    async def translate_cancellation() -> None:
        try:
            await trio.sleep(60)
        except trio.Cancelled:
            raise ValueError("driver turned the cancellation into this") from None

    with pytest.raises(ValueError, match="driver"):
        await breaker.call(translate_cancellation)
    assert breaker.state is OPEN


# -- OPEN --------------------------------------------------------------------------------------


async def test_fails_fast_while_open_without_calling_fn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, _ = make(open_wait=5.0)
    await open_breaker(breaker)
    called = 0

    async def counted() -> None:
        nonlocal called
        called += 1

    with pytest.raises(CircuitOpen, match=r"^redis: circuit open, half-opens in 5\.0 s$") as open_:
        await breaker.call(counted)
    assert open_.value.backend == "redis"  # which backend, without reading the message
    await trio.sleep(2.0)
    with pytest.raises(CircuitOpen, match=r"half-opens in 3\.0 s"):
        await breaker.call(counted)
    assert called == 0
    assert breaker.rejected_calls == 2
    assert isinstance(CircuitOpen("x"), TransientError)


async def test_half_opens_after_open_wait(autojump_clock: trio.testing.MockClock) -> None:
    breaker, seen = make(open_wait=5.0)
    await open_breaker(breaker)
    opened_at = breaker.opened_at
    assert opened_at == trio.current_time()
    await trio.sleep(4.9)
    assert breaker.state is OPEN
    await trio.sleep(0.1)
    assert seen == [("redis", CLOSED, OPEN)]  # the transition is lazy...
    assert breaker.state is HALF_OPEN  # ...and happens on this read
    assert seen[-1] == ("redis", OPEN, HALF_OPEN)
    assert breaker.snapshot().calls == 0


async def test_half_opens_lazily_on_call_attempt(autojump_clock: trio.testing.MockClock) -> None:
    breaker, seen = make(open_wait=5.0, half_open_probes=1)
    await open_breaker(breaker)
    await trio.sleep(5.0)
    await succeed(breaker)
    assert [(old, new) for _, old, new in seen] == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


# -- HALF_OPEN ---------------------------------------------------------------------------------


async def test_closes_after_successful_probes(autojump_clock: trio.testing.MockClock) -> None:
    breaker, _ = make(half_open_probes=3)
    await half_open_breaker(breaker)
    await succeed(breaker, 2)
    assert breaker.state is HALF_OPEN
    await succeed(breaker)
    assert breaker.state is CLOSED
    snap = breaker.snapshot()
    assert (snap.calls, snap.failure_rate, snap.opened_at) == (0, 0.0, None)


async def test_closes_when_probe_failure_rate_below_threshold(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, _ = make(half_open_probes=3, failure_rate_threshold=0.5)
    await half_open_breaker(breaker)
    await succeed(breaker)
    await failures(breaker)
    await succeed(breaker)  # 1 of 3 failed: 33 % < 50 %
    assert breaker.state is CLOSED


async def test_reopens_on_failed_probe(autojump_clock: trio.testing.MockClock) -> None:
    breaker, seen = make(half_open_probes=1, open_wait=5.0)
    await half_open_breaker(breaker)
    first_opening = breaker.opened_at
    await failures(breaker)
    assert breaker.state is OPEN
    assert breaker.opened_at == trio.current_time() != first_opening
    assert breaker.failure_rate == 1.0  # the window now shows the probes that reopened it
    with pytest.raises(CircuitOpen, match=r"half-opens in 5\.0 s"):
        await breaker.call(ok)
    assert [(old, new) for _, old, new in seen] == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
    ]


async def test_reopens_when_probe_failure_rate_reaches_threshold(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, _ = make(half_open_probes=4, failure_rate_threshold=0.5)
    await half_open_breaker(breaker)
    await succeed(breaker, 2)
    await failures(breaker, 1)
    assert breaker.state is HALF_OPEN  # decided only once all probes are in
    await failures(breaker, 1)
    assert breaker.state is OPEN


async def test_limits_concurrent_probes(autojump_clock: trio.testing.MockClock) -> None:
    breaker, _ = make(half_open_probes=3)
    await half_open_breaker(breaker)
    results: list[str] = []

    async def attempt(i: int) -> None:
        try:
            results.append(await breaker.call(sleep_then, 0.5, f"probe {i}"))
        except CircuitOpen as exc:
            assert "all 3 probe calls taken" in str(exc)
            results.append("rejected")

    async with trio.open_nursery() as nursery:
        for i in range(6):
            nursery.start_soon(attempt, i)
        await trio.testing.wait_all_tasks_blocked()
        assert results == ["rejected"] * 3  # turned away at once, without calling fn
        assert breaker.state is HALF_OPEN
    # Which tasks got the slots depends on trio's scheduling; how many does not.
    assert len({r for r in results if r.startswith("probe ")}) == 3
    assert results.count("rejected") == 3
    assert breaker.state is CLOSED
    assert breaker.rejected_calls == 3


async def test_probe_total_is_limited_not_only_concurrency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, _ = make(half_open_probes=2)
    await half_open_breaker(breaker)
    gate = trio.Event()

    async def wait_gate() -> str:
        await gate.wait()
        return "ok"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(breaker.call, ok)  # completes: one probe outcome in
        nursery.start_soon(breaker.call, wait_gate)  # in flight
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(CircuitOpen):
            await breaker.call(ok)
        gate.set()
    assert breaker.state is CLOSED


# -- cancellation ------------------------------------------------------------------------------


async def test_cancellation_is_not_counted(autojump_clock: trio.testing.MockClock) -> None:
    breaker, _ = make(min_calls=4)
    await failures(breaker)
    await succeed(breaker)
    before = breaker.snapshot()
    with trio.move_on_after(1.0) as scope:
        await breaker.call(sleep_then, 60.0)
    assert scope.cancelled_caught
    with trio.CancelScope() as scope:
        scope.cancel()
        await breaker.call(sleep_then, 60.0)
    assert scope.cancelled_caught
    assert breaker.snapshot() == before
    assert (before.calls, before.failure_rate) == (2, 0.5)


async def test_other_base_exceptions_are_not_counted() -> None:
    breaker, _ = make(min_calls=1)

    async def interrupted() -> None:
        raise Abort

    with pytest.raises(Abort):
        await breaker.call(interrupted)
    assert breaker.snapshot().calls == 0
    assert breaker.state is CLOSED


async def test_cancelled_probe_releases_its_slot(autojump_clock: trio.testing.MockClock) -> None:
    breaker, _ = make(half_open_probes=1)
    await half_open_breaker(breaker)
    with trio.move_on_after(0.5):
        await breaker.call(sleep_then, 60.0)
    assert breaker.state is HALF_OPEN
    assert breaker.snapshot().calls == 0

    async def interrupted() -> None:
        raise Abort

    with pytest.raises(Abort):
        await breaker.call(interrupted)
    assert breaker.state is HALF_OPEN
    await succeed(breaker)  # the slot is free again: not CircuitOpen
    assert breaker.state is CLOSED


async def test_probes_not_back_within_max_half_open_wait_reopen_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A probe stuck on a connection that never answers keeps the others out only until
    `max_half_open_wait`; then the breaker opens again, half-opens with fresh probe slots,
    and the stuck probe's late outcome is not counted."""
    breaker, seen = make(half_open_probes=1, call_timeout=60.0, max_half_open_wait=2.0)
    await half_open_breaker(breaker)
    late: list[str] = []

    async def stuck() -> None:
        late.append(await breaker.call(sleep_then, 30.0, "late"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stuck)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(CircuitOpen, match="probe calls taken"):
            await breaker.call(ok)
        await trio.sleep(2.0)
        assert breaker.state is OPEN
        await trio.sleep(breaker.config.open_wait)
        await succeed(breaker)  # a fresh probe slot
        assert breaker.state is CLOSED
    assert late == ["late"] and breaker.state is CLOSED
    assert [(old, new) for _, old, new in seen][-3:] == [
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


async def test_call_from_before_a_transition_is_not_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, _ = make(min_calls=2, open_wait=1.0, half_open_probes=1, call_timeout=10.0)

    async def slow_success() -> None:
        assert await breaker.call(sleep_then, 3.0) == "ok"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_success)  # started while CLOSED
        await trio.testing.wait_all_tasks_blocked()
        await failures(breaker, 2)
        assert breaker.state is OPEN
        await trio.sleep(1.0)
        assert breaker.state is HALF_OPEN
    # The success from the CLOSED days landed while HALF_OPEN: it is neither a probe outcome
    # nor does it free the probe slot.
    assert breaker.state is HALF_OPEN
    assert breaker.snapshot().calls == 0
    await succeed(breaker)
    assert breaker.state is CLOSED


# -- guard() -----------------------------------------------------------------------------------


async def test_guard_context_manager(autojump_clock: trio.testing.MockClock) -> None:
    breaker = CircuitBreaker(
        "redis", BreakerConfig(min_calls=3, call_timeout=1.0), timeout_error=RedisUnavailable
    )
    async with breaker.guard():
        await trio.sleep(0.1)
    with pytest.raises(TransientError, match="down"):
        async with breaker.guard():
            raise TransientError("down")
    with pytest.raises(RedisUnavailable, match=r"timed out after 1\.0 s"):
        async with breaker.guard():
            await trio.sleep(60)
    assert breaker.state is OPEN  # 2 of 3 failed
    entered = False
    with pytest.raises(CircuitOpen):
        async with breaker.guard():
            entered = True
    assert not entered


# -- transitions, snapshot, config -------------------------------------------------------------


async def test_on_transition_sequence_and_counters(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, seen = make(half_open_probes=2, open_wait=5.0)
    await open_breaker(breaker)
    await trio.sleep(5.0)
    await failures(breaker, 2)  # probes fail: reopen
    await trio.sleep(5.0)
    await succeed(breaker, 2)  # probes succeed: close
    await open_breaker(breaker)
    assert seen == [
        ("redis", CLOSED, OPEN),
        ("redis", OPEN, HALF_OPEN),
        ("redis", HALF_OPEN, OPEN),
        ("redis", OPEN, HALF_OPEN),
        ("redis", HALF_OPEN, CLOSED),
        ("redis", CLOSED, OPEN),
    ]
    snap = breaker.snapshot()
    assert snap == BreakerSnapshot(
        name="redis",
        state=OPEN,
        failure_rate=1.0,
        slow_call_rate=0.0,
        calls=4,
        opened_at=trio.current_time(),
        rejected_calls=0,
        transitions={
            (CLOSED, OPEN): 2,
            (OPEN, HALF_OPEN): 2,
            (HALF_OPEN, OPEN): 1,
            (HALF_OPEN, CLOSED): 1,
        },
    )
    assert [s.value for s in BreakerState] == ["closed", "open", "half_open"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("window_size", 0),
        ("min_calls", -1),
        ("half_open_probes", 0),
        ("window_size", True),
        ("failure_rate_threshold", 0.0),
        ("failure_rate_threshold", 1.5),
        ("slow_call_rate_threshold", math.nan),
        ("slow_call_threshold", 0.0),
        ("call_timeout", math.inf),
        ("open_wait", -1.0),
        ("max_half_open_wait", 0.0),
    ],
)
def test_invalid_config_raises_config_error(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"BreakerConfig.{field} must be"):
        BreakerConfig(**{field: value})


def test_default_config() -> None:
    cfg = BreakerConfig()
    assert (cfg.window_size, cfg.min_calls, cfg.half_open_probes) == (20, 10, 3)
    assert (cfg.failure_rate_threshold, cfg.slow_call_rate_threshold) == (0.5, 1.0)
    assert (cfg.slow_call_threshold, cfg.open_wait, cfg.call_timeout) == (1.0, 5.0, 5.0)


# -- property test against a model ------------------------------------------------------------

_CFG = BreakerConfig(
    window_size=4,
    min_calls=3,
    failure_rate_threshold=0.5,
    slow_call_threshold=1.0,
    slow_call_rate_threshold=0.75,
    open_wait=10.0,
    half_open_probes=2,
    call_timeout=5.0,
)
# Actions: a call that succeeds, fails, is slow, times out, raises a non-failure exception or is
# cancelled; or time passes beyond open_wait.
_ACTIONS = ["ok", "fail", "slow", "timeout", "bad_request", "cancel", "wait"]


class _Model:
    """The simplest possible statement of the rules, for sequential calls."""

    def __init__(self) -> None:
        self.state = CLOSED
        self.window: deque[tuple[bool, bool]] = deque(maxlen=_CFG.window_size)
        self.probes: list[tuple[bool, bool]] = []

    def tripped(self, outcomes: list[tuple[bool, bool]]) -> bool:
        n = len(outcomes)
        return (
            sum(f for f, _ in outcomes) / n >= _CFG.failure_rate_threshold
            or sum(s for _, s in outcomes) / n >= _CFG.slow_call_rate_threshold
        )

    def step(self, action: str) -> bool:
        """Apply one action; return whether the call was let through."""
        if action == "wait":
            if self.state is OPEN:
                self.state, self.probes = HALF_OPEN, []
            return False
        if self.state is OPEN:
            return False
        if action == "cancel":
            return True
        outcome = (action in ("fail", "timeout"), action in ("slow", "timeout"))
        if self.state is CLOSED:
            self.window.append(outcome)
            if len(self.window) >= _CFG.min_calls and self.tripped(list(self.window)):
                self.state = OPEN
        else:
            self.probes.append(outcome)
            if len(self.probes) == _CFG.half_open_probes:
                if self.tripped(self.probes):
                    self.state = OPEN
                    self.window = deque(self.probes, maxlen=_CFG.window_size)
                else:
                    self.state = CLOSED
                    self.window.clear()
        return True

    def outcomes(self) -> list[tuple[bool, bool]]:
        return self.probes if self.state is HALF_OPEN else list(self.window)


async def _fn(action: str) -> str:
    if action == "fail":
        raise TransientError("down")
    if action == "bad_request":
        raise RedisCommandError("WRONGTYPE")
    await trio.sleep({"slow": 2.0, "timeout": 60.0, "cancel": 60.0}.get(action, 0.1))
    return action


async def _run_against_model(actions: list[str]) -> None:
    breaker = CircuitBreaker("model", _CFG)
    model = _Model()
    for action in actions:
        called: list[str] = []

        async def fn(action: str = action, called: list[str] = called) -> str:
            called.append(action)
            return await _fn(action)

        if action == "wait":
            await trio.sleep(_CFG.open_wait)
        else:
            with trio.move_on_after(0.5 if action == "cancel" else math.inf):
                with contextlib.suppress(TransientError, RedisCommandError):
                    await breaker.call(fn)
        assert bool(called) == model.step(action), action
        assert breaker.state is model.state
        outcomes = model.outcomes()
        snap = breaker.snapshot()
        assert snap.calls == len(outcomes)
        if outcomes:
            assert snap.failure_rate == sum(f for f, _ in outcomes) / len(outcomes)
            assert snap.slow_call_rate == sum(s for _, s in outcomes) / len(outcomes)


@settings(derandomize=True, database=None, deadline=None, max_examples=300)
@given(st.lists(st.sampled_from(_ACTIONS), max_size=40))
def test_matches_model(actions: list[str]) -> None:
    trio.run(_run_against_model, actions, clock=trio.testing.MockClock(autojump_threshold=0))
