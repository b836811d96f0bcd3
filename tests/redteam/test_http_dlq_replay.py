"""Finding 4: replay-all of a DLQ whose entries fail again never ended: it read up to the
DLQ's live end, replayed its own re-failures forever, and went on after the client left.
Now one call replays at most the dead letters there when it began, at most `limit` of them,
says whether more remain, and stops when its client goes."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest
import trio
from structlog.testing import capture_logs

from kaleido.app import Running, service_of
from kaleido.messages import INSIGHTS_STREAM
from kaleido.streams import dlq as dlq_module
from kaleido.streams.dlq import REPLAY_LIMIT

from ..service_helpers import ADMIN
from ..waiting import wait_until
from .conftest import address, connect, ops

REPLAY = f"/v1/admin/dlq/{INSIGHTS_STREAM}/replay"


async def poison(running: Running, count: int) -> None:
    """`count` dead letters that fail again when replayed (mediaId is no number)."""
    backends = service_of(running).backends
    entry = ["mediaId", "not-a-number", "postId", "1", "service", "tagging", "tags", "[]",
             "error", "bad", "errorType", "DecodeError", "originalId", "1-1", "deliveries",
             "1", "failedAt", "2024-01-01T00:00:00Z"]  # fmt: skip
    dlq = backends.keys.dlq(INSIGHTS_STREAM)
    for start in range(0, count, 500):
        await backends.redis.pipeline(
            [("XADD", dlq, "*", *entry) for _ in range(min(500, count - start))]
        )


async def lengths(running: Running) -> tuple[int, int]:
    backends = service_of(running).backends
    keys = backends.keys
    dlq, stream = await backends.redis.pipeline(
        [("XLEN", keys.dlq(INSIGHTS_STREAM)), ("XLEN", keys.stream(INSIGHTS_STREAM))]
    )
    return int(dlq), int(stream)


async def test_replay_all_of_entries_that_fail_again_ends(secured: Running) -> None:
    await poison(secured, 30)
    async with ops(secured) as http:
        first = await http.post(REPLAY, headers=ADMIN)
        assert first.status_code == 200, first.text
        assert first.json()["replayed"] == 30 and first.json()["more"] is False

        async def failed_again() -> bool:
            return (await lengths(secured))[0] == 30

        await wait_until(failed_again)  # the consumer dead-lettered every one again
        bounded = await http.post(REPLAY + "?limit=10", headers=ADMIN)
        assert bounded.json()["replayed"] == 10 and bounded.json()["more"] is True
        assert (await http.post(REPLAY + "?limit=0", headers=ADMIN)).status_code == 400
        too_many = await http.post(REPLAY + f"?limit={REPLAY_LIMIT + 1}", headers=ADMIN)
        assert too_many.status_code == 400 and "limit" in too_many.json()["error"]


async def test_replay_all_stops_when_the_client_goes(
    secured: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kaleido.http.connection.DISCONNECT_GRACE", 0.05)
    # A slow Redis: each replayed entry takes 10 ms, so the whole replay would take 10 s and
    # the client's going is noticed long before it ends, however busy the machine is.
    replay_one = dlq_module._replay_one

    async def slow_replay_one(*args: object) -> str | None:
        await trio.sleep(0.01)
        return await replay_one(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(dlq_module, "_replay_one", slow_replay_one)
    await poison(secured, REPLAY_LIMIT)
    _, stream_before = await lengths(secured)
    with capture_logs() as logs:
        stream = await connect(address(secured.ops_addresses[0]))
        await stream.send_all(
            f"POST {REPLAY} HTTP/1.1\r\nHost: k\r\nAuthorization: {ADMIN['Authorization']}"
            "\r\nContent-Length: 0\r\n\r\n".encode()
        )

        async def started() -> bool:
            return (await lengths(secured))[1] > stream_before

        await wait_until(started)
        await stream.aclose()  # the client goes while the replay runs

        def stopped() -> list[MutableMapping[str, Any]]:
            return [e for e in logs if e["event"] == "dlq.replay_stopped"]

        async def has_stopped() -> bool:
            return bool(stopped())

        await wait_until(has_stopped, timeout=5)
    replayed = int(str(stopped()[0]["replayed"]))
    assert 0 < replayed < REPLAY_LIMIT
    _, stream_after = await lengths(secured)
    assert stream_after - stream_before == replayed  # nothing replayed after it stopped
    async with httpx.AsyncClient(timeout=10) as http:  # the listener serves on
        host, port = address(secured.ops_addresses[0])
        assert (await http.get(f"http://{host}:{port}/healthz")).status_code == 200
    await trio.lowlevel.checkpoint()
