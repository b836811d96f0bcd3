"""Consumer groups: create `backend-group` on a stream, idempotently."""

from __future__ import annotations

from kaleido.errors import RedisCommandError
from kaleido.gateways import RedisGateway
from kaleido.messages import CONSUMER_GROUP


async def ensure_group(redis: RedisGateway, stream_key: str, group: str = CONSUMER_GROUP) -> bool:
    """Create `group` on `stream_key` from id 0 (creating the stream too); True if it was new.

    BUSYGROUP (the group exists) is success. Other errors are raised as `kaleido.errors`.
    """
    try:
        await redis.execute("XGROUP", "CREATE", stream_key, group, "0", "MKSTREAM")
    except RedisCommandError as exc:
        if exc.code == "BUSYGROUP":
            return False
        raise
    return True
