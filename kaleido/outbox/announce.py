"""Writing announcements: outbox rows added inside the caller's transaction.

Whatever a transaction announces is committed with it or not at all; nothing here talks to
Redis. The caller kicks the relay after its commit so that the entries go out at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson

from kaleido.gateways import Transaction
from kaleido.logs import current_correlation_id, new_correlation_id
from kaleido.messages import (
    PROFILE_PICTURE_STREAM,
    PostMediaEvent,
    ProfilePictureEvent,
    encode_post_media,
    encode_profile_picture,
    usable_correlation_id,
)

# One statement for any number of rows: the fields of each travel as one JSON array of
# name, value, name, value ... (a ragged text[][] cannot go through unnest).
_INSERT = """
INSERT INTO outbox (stream, fields)
SELECT t.stream, ARRAY(SELECT jsonb_array_elements_text(t.fields::jsonb))
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(stream, fields, n)
ORDER BY t.n
"""


def outbound_correlation_id() -> str:
    """The correlation id an announcement carries: the one in context (a request's, an
    entry's) when the ML service keeps it as text, else a new one."""
    return usable_correlation_id(current_correlation_id()) or new_correlation_id()


async def announce_entries(
    tx: Transaction, entries: Sequence[tuple[str, Mapping[str, str]]]
) -> int:
    """Add one outbox row per (stream, fields), in order; return how many."""
    if not entries:
        return 0
    streams = [stream for stream, _ in entries]
    flat = [
        orjson.dumps([part for pair in fields.items() for part in pair]).decode()
        for _, fields in entries
    ]
    await tx.execute(_INSERT, streams, flat)
    return len(entries)


async def announce_post_media(
    tx: Transaction, stream: str, events: Sequence[PostMediaEvent]
) -> int:
    """Announce `events` on `stream` (post-image- or post-update-processing)."""
    return await announce_entries(tx, [(stream, encode_post_media(e)) for e in events])


async def announce_profile_picture(tx: Transaction, event: ProfilePictureEvent) -> int:
    """Announce a profile picture to the ML service's enrolment worker."""
    return await announce_entries(tx, [(PROFILE_PICTURE_STREAM, encode_profile_picture(event))])
