"""What leaves a nursery, unwrapped (kaleido.concurrency): one error as itself, none lost."""

from __future__ import annotations

import pytest
import trio

from kaleido.concurrency import gather, leaves, unwrap
from kaleido.errors import TransientError


async def a_cancelled() -> trio.Cancelled:
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled as exc:
            return exc
    raise AssertionError("the scope did not cancel")


def test_leaves_flattens_nested_groups_in_order() -> None:
    a, b, c = ValueError("a"), KeyError("b"), TypeError("c")
    group = BaseExceptionGroup("outer", [a, BaseExceptionGroup("inner", [b, c])])
    assert leaves(group) == [a, b, c]
    assert leaves(a) == [a]


async def test_one_real_error_comes_out_as_itself_without_the_cancellations() -> None:
    error = TransientError("redis down")
    group = BaseExceptionGroup("nursery", [await a_cancelled(), ExceptionGroup("x", [error])])
    assert unwrap(group) is error


async def test_a_group_of_cancellations_only_is_left_to_trio() -> None:
    group = BaseExceptionGroup("nursery", [await a_cancelled(), await a_cancelled()])
    assert unwrap(group) is group


def test_two_errors_of_one_type_come_out_as_the_first_naming_the_second() -> None:
    first, second = TransientError("reset by peer"), TransientError("timed out")
    error = unwrap(ExceptionGroup("nursery", [first, second]))
    assert error is first
    assert any("timed out" in note for note in first.__notes__)


def test_two_errors_of_different_types_are_both_kept() -> None:
    first, second = TransientError("redis down"), ValueError("a bug")
    error = unwrap(ExceptionGroup("nursery", [first, ExceptionGroup("inner", [second])]))
    assert isinstance(error, ExceptionGroup)
    assert list(error.exceptions) == [first, second]


async def test_gather_raises_the_failure_as_itself_with_its_own_cause() -> None:
    cause = OSError("connection reset")

    async def fails() -> None:
        raise TransientError("redis down") from cause

    async def waits() -> None:
        await trio.sleep_forever()

    with pytest.raises(TransientError) as caught:
        await gather(waits, fails)
    assert caught.value.__cause__ is cause


async def test_gather_keeps_a_second_error_of_another_type() -> None:
    both = trio.Event()

    async def transient() -> None:
        both.set()  # no checkpoint before the raise: both fail before either is cancelled
        raise TransientError("redis down")

    async def bug() -> None:
        with trio.CancelScope(shield=True):
            await both.wait()
            raise ValueError("a bug")

    with pytest.raises(ExceptionGroup) as caught:
        await gather(bug, transient)
    kinds = {type(leaf) for leaf in leaves(caught.value)}
    assert kinds == {TransientError, ValueError}
