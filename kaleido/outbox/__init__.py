"""The transactional outbox: everything Kaleido announces to the ML service.

An announcement (a stream entry) is written as an `outbox` row in the transaction of the change
it announces (`announce`), so it exists exactly when the change is committed. The relay
(`actors.outbox_relay`) publishes committed rows after commit and deletes each once Redis has
its entry; the publish is idempotent per row (`publish`: a row's id is marked beside its
stream, in the same script that adds the entry), so a crash, a lost reply or a Redis outage
delays an announcement but never loses or repeats it. `store` is the PostgreSQL side the relay
calls, `render` turns an aggregation claim into its trigger when it is published.

The protocol in full: docs/pipeline.md "Announcements go through an outbox".
"""

from kaleido.outbox.announce import (
    announce_entries,
    announce_post_media,
    announce_profile_picture,
    outbound_correlation_id,
)
from kaleido.outbox.publish import Announcer, RedisAnnouncer
from kaleido.outbox.store import Announcement, Backlog, OutboxStore, PostgresOutbox

__all__ = [
    "Announcement",
    "Announcer",
    "Backlog",
    "OutboxStore",
    "PostgresOutbox",
    "RedisAnnouncer",
    "announce_entries",
    "announce_post_media",
    "announce_profile_picture",
    "outbound_correlation_id",
]
