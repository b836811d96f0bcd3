"""The Redis key layout, behind an optional deployment prefix.

View counting uses layout v2 (its keys: docs/views.md "The keys"): per-post state lives in a
fixed number of partitions (post id mod `partitions`), and every key of a partition carries the
hash tag `{n}`, so each script call touches one Redis Cluster slot. The seed's layout (v1) is
only read when a Redis that holds it is taken over (`kaleido.views.legacy`).
"""

from __future__ import annotations

import attrs

# Partitions of a new layout: enough to spread over a cluster's masters and to keep a sync
# chunk per partition small; recorded in Redis with the layout (`view:layout`).
DEFAULT_PARTITIONS = 64


def _power_of_two(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1 or value > 1024 or value & (value - 1):
        raise ValueError(f"{attribute.name}: expected a power of two from 1 to 1024, got {value}")


@attrs.frozen
class KeyLayout:
    """Builds every Redis key Kaleido reads or writes."""

    prefix: str = ""
    partitions: int = attrs.field(default=DEFAULT_PARTITIONS, validator=_power_of_two)
    # On Redis Cluster a dead-letter stream shares its stream's slot (see `dlq`).
    cluster: bool = False

    def partition_of(self, post_id: int) -> int:
        return post_id & (self.partitions - 1)

    # -- layout-wide keys --------------------------------------------------------------------

    @property
    def layout(self) -> str:
        """Hash: `version`, `partitions`, and the v1 takeover's state while it lasts."""
        return f"{self.prefix}view:layout"

    @property
    def synced_at(self) -> str:
        """Unix time of the last successful sync, by whichever process ran it."""
        return f"{self.prefix}view:synced_at"

    @property
    def lock(self) -> str:
        """The syncer's lock; the same name as v1's, so the two never sync at once."""
        return f"{self.prefix}view:batch:lock"

    # -- per partition (hash tag {n}) --------------------------------------------------------

    def counts(self, partition: int) -> str:
        """Hash postId → views counted in Redis and not yet moved into a sync batch."""
        return f"{self.prefix}view:{{{partition}}}:counts"

    def epoch(self, partition: int) -> str:
        """Bumped whenever counters leave `counts` or journal views enter it (exact reads)."""
        return f"{self.prefix}view:{{{partition}}}:epoch"

    def batches(self, partition: int) -> str:
        """Set of the partition's in-flight sync batch ids."""
        return f"{self.prefix}view:{{{partition}}}:batches"

    def batch(self, partition: int, batch_id: str) -> str:
        """Hash postId → views of one in-flight sync batch."""
        return f"{self.prefix}view:{{{partition}}}:batch:{batch_id}"

    def moved(self, partition: int) -> str:
        """Sorted set of the partition's latest sync batch ids (scored by when they were
        moved): a move run again after its reply was lost finds its batch by id."""
        return f"{self.prefix}view:{{{partition}}}:moved"

    def replayed(self, partition: int) -> str:
        """Sorted set of journal replay batches applied to this partition (scored by time)."""
        return f"{self.prefix}view:{{{partition}}}:replayed"

    def seen_directory(self, partition: int, window: int) -> str:
        """String: the depth of each dedup bucket of one window (see kaleido.views.dedup)."""
        return f"{self.prefix}view:{{{partition}}}:dir:{window}"

    def seen_bucket(self, partition: int, window: int, address: int) -> str:
        """Hash (packed user, post) → when the pair last counted: one dedup bucket."""
        return f"{self.prefix}view:{{{partition}}}:seen:{window}:{address}"

    def seen_pattern(self) -> str:
        """SCAN pattern of every dedup bucket."""
        return f"{self.prefix}view:{{*}}:seen:*"

    def directory_pattern(self) -> str:
        """SCAN pattern of every dedup bucket directory."""
        return f"{self.prefix}view:{{*}}:dir:*"

    def unknown_post_views(self, hour: int) -> str:
        """Hash userId → views of posts with no row that user sent in one clock hour (unix
        time // 3600); expires after two hours (kaleido.views.unknown_posts)."""
        return f"{self.prefix}view:unknown-posts:{hour}"

    def stream(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def outbox_marks(self, stream: str) -> str:
        """Sorted set of the outbox rows published on `stream` (kaleido.outbox.publish), in the
        stream's slot on a cluster (as `dlq`), so one script adds an entry and its mark."""
        if self.cluster:
            return f"{{{self.prefix}{stream}}}:outbox"
        return f"{self.prefix}{stream}:outbox"

    # -- the ops console (kaleido.http.console.store) ----------------------------------------

    @property
    def console_sessions(self) -> str:
        """Hash session id → expiry (unix time) of every console session not signed out."""
        return f"{self.prefix}ops:sessions"

    def signin_attempts(self, client: str, minute: int) -> str:
        """Counter of one client address's sign-in attempts in one minute (expires after 2)."""
        return f"{self.prefix}ops:signin:{client}:{minute}"

    def signin_failures(self, client: str) -> str:
        """Counter of one client address's failed sign-ins; expires once it stops failing."""
        return f"{self.prefix}ops:signin-failures:{client}"

    def dlq(self, stream: str) -> str:
        """The dead-letter stream of `stream`: `{stream}:dlq`. On a cluster the stream's name
        is its hash tag, `{ml-insights-results}:dlq`, so that dead-lettering an entry (XADD to
        the DLQ, XACK on the stream) and replaying one stay single atomic steps."""
        if self.cluster:
            return f"{{{self.prefix}{stream}}}:dlq"
        return f"{self.prefix}{stream}:dlq"
