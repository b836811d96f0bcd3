"""The one backoff helper: doubling from base, capped, jittered within bounds, reset."""

from __future__ import annotations

import pytest

from kaleido.backoff import Backoff


def test_doubles_from_base_up_to_the_cap() -> None:
    backoff = Backoff(0.1, 1.0)
    delays = [backoff.next() for _ in range(7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    assert backoff.attempts == 7


def test_stays_at_the_cap_however_long_it_fails() -> None:
    backoff = Backoff(0.5, 10.0)
    for _ in range(5000):  # no overflow, no creeping above the cap
        delay = backoff.next()
    assert delay == 10.0


def test_reset_starts_over_at_base() -> None:
    backoff = Backoff(0.2, 5.0)
    for _ in range(4):
        backoff.next()
    assert backoff.peek() == pytest.approx(3.2)
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next() == pytest.approx(0.2)
    assert backoff.next() == pytest.approx(0.4)


def test_jitter_scales_each_delay_within_its_bounds() -> None:
    drawn: list[tuple[float, float]] = []

    def lowest(low: float, high: float) -> float:
        drawn.append((low, high))
        return low

    backoff = Backoff(1.0, 8.0, jitter=0.5, uniform=lowest)
    assert [backoff.next() for _ in range(5)] == pytest.approx([0.5, 1.0, 2.0, 4.0, 4.0])
    assert drawn == [(0.5, 1.0)] * 5


def test_real_jitter_stays_between_half_and_whole() -> None:
    backoff = Backoff(1.0, 1.0, jitter=0.5)
    delays = [backoff.next() for _ in range(200)]
    assert all(0.5 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize(
    ("base", "cap", "jitter"), [(0.0, 1.0, 0.0), (-1.0, 1.0, 0.0), (2.0, 1.0, 0.0), (1.0, 2.0, 1.5)]
)
def test_rejects_nonsense(base: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base, cap, jitter=jitter)
