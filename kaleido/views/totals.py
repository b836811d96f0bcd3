"""Exact view totals: PostgreSQL + the Redis counter + the post's share of in-flight batches.

Redis and PostgreSQL cannot be read in one snapshot, so the read is optimistic (a seqlock):
snapshot Redis (epoch, counter, in-flight batches of the post's one partition), read PostgreSQL
in one statement (synced views and which of those batches are applied), then check the epoch.
The partition's epoch changes only when its counters move into a batch or journal views are
replayed into it (and v1's, during a takeover, likewise); if it did not
change, no counter the Redis snapshot holds can also be in PostgreSQL, an in-flight batch is
counted exactly when PostgreSQL says it is not applied yet, and a journal row exactly when
its replay batch is not in Redis yet. Otherwise the read is retried.

The protocol in full: docs/views.md "Exact totals".
"""

from __future__ import annotations

import attrs

from kaleido.errors import TransientError
from kaleido.gateways import PostgresGateway
from kaleido.views import ledger
from kaleido.views.store import ViewStore

# A move happens once per sync chunk, so a read rarely retries at all; this bounds pathology.
MAX_ATTEMPTS = 20


@attrs.frozen
class ViewTotal:
    post_id: int
    views: int
    buffered: int  # the part still in Redis (counter and in-flight batches)
    degraded: bool = False  # Redis unreachable: PostgreSQL's part only


async def read_total(store: ViewStore, postgres: PostgresGateway, post_id: int) -> ViewTotal:
    for _ in range(MAX_ATTEMPTS):
        snap = await store.snapshot(post_id)
        synced, applied = await ledger.read_synced(
            postgres, post_id, list(snap.in_flight), snap.replayed
        )
        if await store.epoch(post_id) != snap.epoch:
            continue
        buffered = snap.counter + sum(
            views for batch, views in snap.in_flight.items() if batch not in applied
        )
        return ViewTotal(post_id, synced + buffered, buffered)
    raise TransientError(f"post {post_id}: view total kept racing the sync; try again")
