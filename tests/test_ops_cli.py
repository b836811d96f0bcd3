"""`kaleido streams` and `kaleido dlq list|replay|purge` as real processes against the stack."""

from __future__ import annotations

import json

import pytest

from kaleido.gateways import Backends
from kaleido.messages import CONSUMER_GROUP, INSIGHTS_STREAM, POST_IMAGE_STREAM
from kaleido.settings import Settings

from .cli_helpers import assert_no_traceback, kaleido, output
from .streams_helpers import dlq_len

pytestmark = pytest.mark.redis_kinds("single", "cluster")


async def dead_letters(backends: Backends, n: int) -> list[str]:
    key = backends.keys.dlq(INSIGHTS_STREAM)
    ids = []
    for i in range(n):
        entry_id = await backends.redis.execute(
            "XADD", key, "*", "mediaId", str(600 + i), "service", "tagging",
            "error", f"boom [red]{i}[/]", "errorType", "DecodeError", "originalId", f"1-{i}",
            "deliveries", "1", "failedAt", "2024-05-01T10:00:00Z",
        )  # fmt: skip
        ids.append(entry_id.decode())
    return ids


async def test_streams_shows_groups_lag_pending_and_dlq(
    settings: Settings, backends: Backends
) -> None:
    redis = backends.redis
    stream = backends.keys.stream(INSIGHTS_STREAM)
    for n in range(3):
        await redis.execute("XADD", stream, "*", "n", str(n))
    await redis.execute("XGROUP", "CREATE", stream, CONSUMER_GROUP, "0")
    await redis.execute(
        "XREADGROUP", "GROUP", CONSUMER_GROUP, "media-ai-consumer", "COUNT", 1,
        "STREAMS", stream, ">",
    )  # fmt: skip
    await dead_letters(backends, 2)
    result = await kaleido(settings, "streams", "--json")
    assert result.returncode == 0, result.stderr.decode()
    streams = {s["stream"]: s for s in json.loads(output(result))["streams"]}
    insights = streams[INSIGHTS_STREAM]
    assert insights["length"] == 3 and insights["dlqSize"] == 2
    (group,) = insights["groups"]
    assert (group["lag"], group["pending"]) == (2, 1)
    assert group["consumers"][0]["name"] == "media-ai-consumer"
    assert streams[POST_IMAGE_STREAM] == {
        "stream": POST_IMAGE_STREAM, "direction": "outbound", "length": 0, "dlqSize": 0,
        "groups": [],
    }  # fmt: skip

    table = await kaleido(settings, "streams")
    assert table.returncode == 0
    row = next(line for line in output(table).splitlines() if INSIGHTS_STREAM in line)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[:5] == [INSIGHTS_STREAM, "3", CONSUMER_GROUP, "2", "1"]
    assert cells[6].startswith("media-ai-consumer idle") and cells[7] == "2"
    assert_no_traceback(table)


async def test_dlq_list_replay_and_purge(settings: Settings, backends: Backends) -> None:
    ids = await dead_letters(backends, 3)
    listed = await kaleido(settings, "dlq", "list", INSIGHTS_STREAM, "--json", "--count", "2")
    assert listed.returncode == 0, listed.stderr.decode()
    body = json.loads(output(listed))
    assert body["size"] == 3
    assert [e["dlq_id"] for e in body["entries"]] == ids[:2]
    first = body["entries"][0]
    assert first["error"] == "boom [red]0[/]" and first["error_type"] == "DecodeError"
    assert first["fields"] == {"mediaId": "600", "service": "tagging"}

    human = await kaleido(settings, "dlq", "list", INSIGHTS_STREAM)
    assert human.returncode == 0 and "dead letters: 3" in output(human)
    assert "boom [red]1[/]" in output(human)  # data, not markup

    one = await kaleido(settings, "dlq", "replay", INSIGHTS_STREAM, "--id", ids[0])
    assert one.returncode == 0 and "replayed 1 dead letters" in output(one)
    assert await dlq_len(backends, INSIGHTS_STREAM) == 2
    replayed = await backends.redis.execute(
        "XRANGE", backends.keys.stream(INSIGHTS_STREAM), "-", "+"
    )
    assert [dict(fields) for _, fields in replayed] == [
        {b"mediaId": b"600", b"service": b"tagging"}
    ]

    refused = await kaleido(settings, "dlq", "purge", INSIGHTS_STREAM)
    assert refused.returncode == 2 and b"add --yes" in refused.stderr
    assert await dlq_len(backends, INSIGHTS_STREAM) == 2
    purged = await kaleido(settings, "dlq", "purge", INSIGHTS_STREAM, "--yes")
    assert purged.returncode == 0 and "purged 2 dead letters" in output(purged)
    assert await dlq_len(backends, INSIGHTS_STREAM) == 0


async def test_bad_dlq_arguments_are_one_clear_line(settings: Settings) -> None:
    unknown = await kaleido(settings, "dlq", "list", "no-such-stream")
    assert unknown.returncode == 2
    assert b"invalid choice: 'no-such-stream'" in unknown.stderr
    outbound = await kaleido(settings, "dlq", "replay", POST_IMAGE_STREAM)
    assert outbound.returncode == 2
    count = await kaleido(settings, "dlq", "list", INSIGHTS_STREAM, "--count", "0")
    assert count.returncode == 2 and b"expected a count from 1 to 100000" in count.stderr
    bad_id = await kaleido(settings, "dlq", "replay", INSIGHTS_STREAM, "--id", "latest")
    assert bad_id.returncode == 2 and b"expected a stream entry id" in bad_id.stderr
    for result in (unknown, outbound, count, bad_id):
        assert_no_traceback(result)


async def test_every_json_result_starts_with_the_same_keys_and_the_stack_line(
    settings: Settings, backends: Backends
) -> None:
    await dead_letters(backends, 3)
    runs = {
        "streams": ("streams",),
        "doctor": ("doctor", "--dlq-interval", "0.1"),
        "dlq list": ("dlq", "list", INSIGHTS_STREAM),
        "dlq replay": ("dlq", "replay", INSIGHTS_STREAM),
        "dlq purge": ("dlq", "purge", INSIGHTS_STREAM, "--yes"),
        "sync": ("sync",),
    }
    for command, args in runs.items():
        result = await kaleido(settings, *args, "--json")
        assert result.returncode in (0, 1), result.stderr.decode()
        body = json.loads(output(result))  # stdout is the one object, nothing else
        assert list(body)[:2] == ["command", "stack"] and body["command"] == command
        assert body["stack"]["source"] == "settings"
        assert "***" in body["stack"]["redis"] and "***" in body["stack"]["database"]
        first = result.stderr.decode().splitlines()[0]
        assert first.startswith(f"kaleido {command}: on redis"), first
        assert "***" in first
    # The result's keys are those of the HTTP route with the same result.
    replayed = await kaleido(settings, "dlq", "replay", INSIGHTS_STREAM, "--json")
    assert {"stream", "replayed", "newIds", "more"} <= set(json.loads(output(replayed)))
    synced = json.loads(output(await kaleido(settings, "sync", "--json")))
    assert synced["synced"] is True and {"batches", "posts", "views"} <= set(synced)


async def test_a_replay_shows_its_progress_on_stderr(
    settings: Settings, backends: Backends
) -> None:
    await dead_letters(backends, 3)
    result = await kaleido(settings, "dlq", "replay", INSIGHTS_STREAM)
    assert result.returncode == 0, result.stderr.decode()
    assert "kaleido dlq replay: 3 of 3 replayed" in result.stderr.decode()
    assert output(result) == f"replayed 3 dead letters onto {INSIGHTS_STREAM}\n"
    human = await kaleido(settings, "sync")
    assert human.returncode == 0 and output(human).startswith("synced 0 views of 0 posts")
