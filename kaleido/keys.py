"""The Redis key layout (CONTRACT.md section 1), behind an optional deployment prefix."""

from __future__ import annotations

import attrs


@attrs.frozen
class KeyLayout:
    """Builds every Redis key Kaleido reads or writes.

    The contract's keys (`user:view:…`, `post:views:…`, `pending:views`, `view:batch:lock`) keep
    their exact names; Kaleido's own keys follow the same style:

    - `view:batch:{batchId}`: hash postId → views of one in-flight sync batch;
    - `view:batches`: set of in-flight batch ids (a crashed syncer's batch is found here);
    - `view:sync:epoch`: bumped each time counters move into a batch (or journal views are
      replayed), so that a reader can tell whether its snapshot raced a sync;
    - `view:journal:done`: sorted set of journal replay batches applied to Redis (scored by
      time, kept a day), so a replay interrupted after Redis took it is not applied twice.
    """

    prefix: str = ""

    def user_view(self, user_id: int, post_id: int) -> str:
        return f"{self.prefix}user:view:{user_id}:{post_id}"

    def post_views(self, post_id: int) -> str:
        return f"{self.prefix}post:views:{post_id}"

    @property
    def pending(self) -> str:
        return f"{self.prefix}pending:views"

    @property
    def lock(self) -> str:
        return f"{self.prefix}view:batch:lock"

    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}view:batch:{batch_id}"

    @property
    def batches(self) -> str:
        return f"{self.prefix}view:batches"

    @property
    def sync_epoch(self) -> str:
        return f"{self.prefix}view:sync:epoch"

    @property
    def journal_done(self) -> str:
        return f"{self.prefix}view:journal:done"

    def stream(self, name: str) -> str:
        return f"{self.prefix}{name}"
