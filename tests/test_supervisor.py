"""The supervisor with fake actors on trio's autojump clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from kaleido.errors import RedisUnavailable
from kaleido.supervisor import Supervisor, SupervisorGaveUp


async def test_restarts_a_failing_actor_until_it_runs(autojump_clock: trio.abc.Clock) -> None:
    attempts = 0
    running = trio.Event()

    async def flaky(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 4:
            raise RedisUnavailable("redis: connection refused")
        task_status.started()
        running.set()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        sup = Supervisor(nursery)
        await sup.start("flaky", flaky)  # returns after the first failure, retries behind
        assert not sup.actors["flaky"].running
        await running.wait()
        await trio.testing.wait_all_tasks_blocked()  # the supervisor marks it running next
        assert attempts == 4
        state = sup.actors["flaky"]
        assert state.running and state.transient_failures == 3 and state.restarts == 3
        assert sup.all_running
        nursery.cancel_scope.cancel()


async def test_restarts_after_a_crash_in_a_running_actor(autojump_clock: trio.abc.Clock) -> None:
    starts = 0
    second_start = trio.Event()

    async def crashes_once(
        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        nonlocal starts
        starts += 1
        task_status.started()
        if starts == 1:
            await trio.sleep(1)
            raise RuntimeError("bug")
        second_start.set()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        sup = Supervisor(nursery)
        await sup.start("a", crashes_once)
        await second_start.wait()
        assert sup.actors["a"].crashes == 1
        assert sup.actors["a"].last_error == "RuntimeError: bug"
        nursery.cancel_scope.cancel()


async def test_gives_up_after_too_many_crashes(autojump_clock: trio.abc.Clock) -> None:
    other_cancelled = False

    async def always_crashes(
        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        raise ValueError("always")

    async def bystander(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal other_cancelled
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            other_cancelled = True

    with pytest.RaisesGroup(pytest.RaisesExc(SupervisorGaveUp, match="crashed 4 times")):
        async with trio.open_nursery() as nursery:
            sup = Supervisor(nursery, max_crashes=3, crash_window=60)
            await sup.start("bystander", bystander)
            await sup.start("bad", always_crashes)
    assert other_cancelled  # giving up stops the whole process, not just one actor


async def test_crashes_outside_the_window_are_forgiven(autojump_clock: trio.abc.Clock) -> None:
    crashes = 0
    done = trio.Event()

    async def slow_crasher(
        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        nonlocal crashes
        task_status.started()
        await trio.sleep(30)  # one crash every 30 s: never 3 within a 60 s window
        crashes += 1
        if crashes == 6:
            done.set()
            await trio.sleep_forever()
        raise ValueError("occasional")

    # More than a window's worth of crashes: without forgiveness the third gives up
    # (SupervisorGaveUp out of the nursery), and a supervisor that stopped restarting would
    # leave `done` unset (the deadline, in virtual time).
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            sup = Supervisor(nursery, max_crashes=2, crash_window=60)
            await sup.start("x", slow_crasher)
            await done.wait()
            state = sup.actors["x"]
            assert (state.crashes, state.restarts) == (5, 5)
            assert state.running and not state.finished
            assert state.last_error == "ValueError: occasional"
            nursery.cancel_scope.cancel()


async def test_stopping_lets_actors_finish(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        sup = Supervisor(nursery)

        async def polite(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            await sup.stopping.wait()
            await trio.sleep(0.5)  # finish the current unit of work

        async def down(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            raise RedisUnavailable("redis: down")

        await sup.start("polite", polite)
        await sup.start("down", down)
        sup.stopping.set()
        with trio.fail_after(5):
            await sup.wait_finished()
        assert all(a.finished for a in sup.actors.values())
