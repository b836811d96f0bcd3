"""The short form of the fault campaign (`make torture` runs the long one): a fixed seed, every
kind of fault once in 15 s, on a single Redis with AOF and `--workers 2`; and the parts of the
campaign on their own (the proxy's faults, schedules, shrinking)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from .campaign import SCENARIOS, RunResult, run_once, shrink
from .checker import Verdict
from .proxy import FaultProxy
from .schedule import KINDS, WINDOWS, draw_schedule, only
from .stack import Stack

# The campaign starts its servers from a thread of its own that lives as long as they do.
pytestmark = pytest.mark.filterwarnings("ignore:kaleido.devstack. a server started from a non-main")


@pytest.fixture
async def single(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Stack]:
    (tmp_path / "stack").mkdir()
    stack = Stack("single", tmp_path / "stack")
    await stack.start(nursery)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.mark.slow
async def test_every_kind_of_fault_loses_and_doubles_nothing(single: Stack, tmp_path: Path) -> None:
    scenario = SCENARIOS["short"]
    result = await run_once(single, scenario, 1, tmp_path / "runs")
    print(result.details())
    assert result.workers == 2
    assert {i.fault.kind for i in result.injected if not i.error} == set(scenario.kinds)
    assert result.ok, result.details()
    assert result.verdict.acknowledged > 1000 and result.verdict.entries > 100


# ------------------------------------------------------------------------------ the proxy


async def echo(stream: trio.SocketStream) -> None:
    """A backend that answers every chunk with the same bytes."""
    try:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


@pytest.fixture
async def proxied(nursery: trio.Nursery) -> FaultProxy:
    listeners = await nursery.start(trio.serve_tcp, echo, 0)
    proxy = FaultProxy(listeners[0].socket.getsockname()[1])
    await nursery.start(proxy.run)
    return proxy


async def ask(proxy: FaultProxy, data: bytes = b"ping") -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        await stream.send_all(data)
        return await stream.receive_some(65536)


async def test_a_transparent_proxy_forwards_both_ways(proxied: FaultProxy) -> None:
    assert await ask(proxied) == b"ping"


async def test_latency_holds_every_chunk(proxied: FaultProxy) -> None:
    proxied.faults.delay = 0.2
    started = trio.current_time()
    assert await ask(proxied) == b"ping"
    assert trio.current_time() - started >= 0.4  # once each way


async def test_a_dropped_reply_resets_the_connection_after_the_request_ran(
    proxied: FaultProxy,
) -> None:
    proxied.faults.drop_reply = 1.0
    with pytest.raises(trio.BrokenResourceError):
        await ask(proxied)  # the echo server received and answered: the reply is gone


async def test_a_reset_mid_reply_delivers_only_a_prefix(proxied: FaultProxy) -> None:
    proxied.faults.reset_reply = 1.0
    stream = await trio.open_tcp_stream("127.0.0.1", proxied.port)
    async with stream:
        await stream.send_all(b"0123456789")
        got = b""
        with pytest.raises(trio.BrokenResourceError):
            while chunk := await stream.receive_some(65536):
                got += chunk
    assert 0 < len(got) < 10 and b"0123456789".startswith(got)


async def test_a_black_hole_never_answers_then_resets(proxied: FaultProxy) -> None:
    proxied.open_hole()
    stream = await trio.open_tcp_stream("127.0.0.1", proxied.port)
    async with stream:
        await stream.send_all(b"ping")
        with trio.move_on_after(0.3) as waited:
            await stream.receive_some(65536)
        assert waited.cancelled_caught
        proxied.close_hole()
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some(65536)
    assert await ask(proxied) == b"ping"  # new connections pass again


async def test_a_half_open_connection_stays_open_and_unanswered(proxied: FaultProxy) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", proxied.port)
    async with stream:
        await stream.send_all(b"one")
        assert await stream.receive_some(65536) == b"one"
        assert proxied.half_open(1.0) == 1
        await stream.send_all(b"two")  # accepted by the proxy, never forwarded
        with trio.move_on_after(0.3) as waited:
            await stream.receive_some(65536)
        assert waited.cancelled_caught
    assert await ask(proxied) == b"ping"


# ------------------------------------------------------------------------------ schedules


def test_a_seed_always_means_the_same_schedule() -> None:
    kinds = tuple(KINDS)
    assert draw_schedule(7, kinds, 60, 0.5) == draw_schedule(7, kinds, 60, 0.5)
    assert draw_schedule(7, kinds, 60, 0.5) != draw_schedule(8, kinds, 60, 0.5)
    subset = only(draw_schedule(7, kinds, 60, 0.5), [1, 3])
    assert [f.index for f in subset] == [1, 3]


def test_the_short_form_covers_every_kind() -> None:
    faults = SCENARIOS["short"].schedule(1)
    assert {f.kind for f in faults} == set(SCENARIOS["short"].kinds)
    assert not {f.kind for f in faults} & set(WINDOWS)  # never where no test names them
    network = {(f.kind, f.target) for f in faults if f.kind.startswith("net-")}
    assert len(network) == 12  # each network fault on each backend


async def test_shrinking_finds_the_faults_that_fail_together() -> None:
    scenario = SCENARIOS["mixed"]
    schedule = scenario.schedule(3)
    culprits = {schedule[2].index, schedule[5].index}

    def result(faults: list[int]) -> RunResult:
        verdict = Verdict()
        if culprits <= set(faults):
            verdict.fail("lost")
        return RunResult(
            3, "mixed", "single", 1, only(schedule, faults), [], verdict, [], 0.0, 0, Counter(), []
        )

    async def replay(faults: list[int]) -> RunResult:
        return result(faults)

    smallest = await shrink(result([f.index for f in schedule]), replay, budget=100)
    assert set(smallest) == culprits
