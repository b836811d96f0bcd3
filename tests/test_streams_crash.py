"""A Kaleido process SIGKILLed between COMMIT and XACK, then a new one: one effect per entry."""

from __future__ import annotations

import signal

import pytest

from kaleido.gateways import Backends
from kaleido.messages import INSIGHTS_STREAM
from kaleido.settings import Settings

from .processes import free_port, servers_env, start_kaleido, wait_exit, wait_ready
from .streams_helpers import pending_count, processed, xadd
from .waiting import wait_until

pytestmark = pytest.mark.slow

ENTRIES = 20


async def test_sigkill_after_commit_before_xack_applies_each_entry_once(
    backends: Backends, settings: Settings
) -> None:
    for n in range(1, ENTRIES + 1):
        fields = {"mediaId": str(n), "postId": "1", "service": "image_captioning"}
        await xadd(backends, INSIGHTS_STREAM, {**fields, "caption": f"caption {n}"})
    port = free_port()
    env = servers_env(settings, KALEIDO_HTTP_BIND=f"127.0.0.1:{port}")
    crashing = start_kaleido([], {**env, "KALEIDO_FAILPOINTS": "streams.after_commit"})
    assert await wait_exit(crashing, 30) == -signal.SIGKILL
    # The first batch (the first read's entries: the read is sized, so maybe not all of them).
    committed = await processed(backends, INSIGHTS_STREAM)
    assert committed >= 1
    assert await pending_count(backends, INSIGHTS_STREAM) == committed  # never acknowledged
    # A second application would write the captions again over this marker.
    await backends.postgres.execute("UPDATE media_ai_insights SET caption = 'marker'")

    recovering = start_kaleido([], env)
    try:
        await wait_ready(port, recovering, 30)

        async def drained() -> bool:
            # Pending alone is not enough: the entries the crashed read never took are
            # not pending until the new process reads them.
            return (
                await processed(backends, INSIGHTS_STREAM) == ENTRIES
                and await pending_count(backends, INSIGHTS_STREAM) == 0
            )

        await wait_until(drained, timeout=15)
    finally:
        recovering.send_signal(signal.SIGTERM)
        assert await wait_exit(recovering, 20) == 0
    captions = await backends.postgres.fetch(
        "SELECT caption FROM media_ai_insights ORDER BY media_id"
    )
    later = [f"caption {n}" for n in range(committed + 1, ENTRIES + 1)]
    assert [row["caption"] for row in captions] == ["marker"] * committed + later
    assert await processed(backends, INSIGHTS_STREAM) == ENTRIES
