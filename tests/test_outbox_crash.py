"""A Kaleido process SIGKILLed between a post's commit and its publication, or between the
publication and the outbox row's deletion, then a new one: every stored post's media reach
`post-image-processing` exactly once."""

from __future__ import annotations

import signal

import httpx
import pytest

from kaleido.gateways import Backends
from kaleido.messages import POST_IMAGE_STREAM
from kaleido.settings import Settings

from .processes import free_port, servers_env, start_kaleido, wait_exit, wait_ready
from .waiting import wait_until

pytestmark = pytest.mark.slow

POSTS = 5


async def _published(backends: Backends) -> list[str]:
    reply = await backends.redis.execute(
        "XRANGE", backends.keys.stream(POST_IMAGE_STREAM), "-", "+"
    )
    return [fields[b"mediaId"].decode() for _, fields in reply]


@pytest.mark.parametrize("failpoint", ["outbox.before_publish", "outbox.after_publish"])
async def test_a_crash_around_publication_delays_it_and_never_repeats_it(
    backends: Backends, settings: Settings, failpoint: str
) -> None:
    port = free_port()
    env = servers_env(settings, KALEIDO_HTTP_BIND=f"127.0.0.1:{port}")
    crashing = start_kaleido([], {**env, "KALEIDO_FAILPOINTS": failpoint})
    await wait_ready(port, crashing, 30)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        for post in range(1, POSTS + 1):
            item = {"mediaId": post * 10, "mediaUrl": f"https://a.example/{post}"}
            body = {"postId": post, "userId": 1, "media": [item]}
            try:
                await http.post("/v1/posts", json=body)
            except httpx.TransportError:
                break  # the relay took the first post and the process died with it
    assert await wait_exit(crashing, 30) == -signal.SIGKILL
    stored = await backends.postgres.fetchval("SELECT count(*) FROM posts")
    assert stored >= 1
    waiting = await backends.postgres.fetchval(
        "SELECT count(*) FROM outbox WHERE stream = $1", POST_IMAGE_STREAM
    )
    assert waiting == stored  # every stored post still has its announcement
    before = await _published(backends)
    if failpoint == "outbox.before_publish":
        assert before == []
    else:  # published and not deleted: the new process must not publish them again
        assert len(before) >= 1

    recovering = start_kaleido([], env)
    try:
        await wait_ready(port, recovering, 30)

        async def relayed() -> bool:
            return not await backends.postgres.fetchval("SELECT count(*) FROM outbox")

        await wait_until(relayed, timeout=15)
    finally:
        recovering.send_signal(signal.SIGTERM)
        assert await wait_exit(recovering, 20) == 0
    media = await backends.postgres.fetch("SELECT media_id FROM post_media ORDER BY media_id")
    assert sorted(await _published(backends)) == sorted(str(row["media_id"]) for row in media)
