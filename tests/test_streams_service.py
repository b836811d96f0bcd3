"""The consumers as part of the whole service: wiring, names, prefixes, graceful stop."""

from __future__ import annotations

import attrs
import pytest
import trio

from kaleido.app import Running, serve, service_of
from kaleido.gateways import Backends
from kaleido.messages import FACE_RECOGNITION_STREAM, INSIGHTS_STREAM
from kaleido.settings import Settings
from kaleido.streams import consumer_name

from .service_helpers import reset
from .streams_helpers import dlq_len, insight, running, xadd
from .views_helpers import all_keys
from .waiting import wait_until

pytestmark = pytest.mark.redis_kinds("single", "cluster")


def test_consumer_names_follow_the_contract() -> None:
    assert consumer_name(INSIGHTS_STREAM) == "media-ai-consumer"
    assert consumer_name(FACE_RECOGNITION_STREAM, "worker2") == "face-recognition-consumer-worker2"


async def test_the_service_runs_the_three_consumers(settings: Settings) -> None:
    settings = attrs.evolve(settings, instance="w1")
    async with trio.open_nursery() as nursery:
        service: Running = await nursery.start(
            lambda task_status: serve(settings, task_status=task_status)
        )
        backends = service_of(service).backends
        await reset(backends)
        actors = service_of(service).supervisor.actors
        assert {
            "media-ai-consumer-w1",
            "face-detection-consumer-w1",
            "face-recognition-consumer-w1",
        } <= set(actors)
        await xadd(backends, INSIGHTS_STREAM, {"mediaId": "8", "postId": "9", "service": "tagging",
                                               "tags": '["x"]'})  # fmt: skip

        async def applied() -> bool:
            return await insight(backends, 8) is not None

        await wait_until(applied, timeout=10)
        service.stop()  # the consumers return within a BLOCK period
    assert all(state.finished for state in actors.values())


async def test_every_key_carries_the_deployment_prefix(backends: Backends) -> None:
    prefixed = attrs.evolve(backends, keys=attrs.evolve(backends.keys, prefix="tenant7:"))
    async with running(prefixed, INSIGHTS_STREAM):
        await xadd(prefixed, INSIGHTS_STREAM, {"mediaId": "3", "postId": "4", "service": "tagging",
                                               "tags": '["y"]'})  # fmt: skip
        await xadd(prefixed, INSIGHTS_STREAM, {"service": "tagging"})

        async def done() -> bool:
            return (
                await insight(backends, 3) is not None
                and await dlq_len(prefixed, INSIGHTS_STREAM) == 1
            )

        await wait_until(done)
    keys = sorted(k.decode() for k in await all_keys(backends))
    assert keys == sorted(
        [prefixed.keys.stream(INSIGHTS_STREAM), prefixed.keys.dlq(INSIGHTS_STREAM)]
    )
    assert all(key.startswith("tenant7:") or key.startswith("{tenant7:") for key in keys)
