"""A budget for each user's views of posts that do not exist.

Views of a post with no row wait in `post_view_backlog`, which keeps at most BACKLOG_MAX_POSTS
posts (kaleido.views.sync): past it the oldest rows go. Without a bound per caller, one user
token could send views of a hundred thousand made-up post ids and push every other post's
waiting views out. So each user may send at most UNKNOWN_POST_VIEWS_PER_HOUR (100) views of
posts that have no row per clock hour (a week of it is under a sixth of the backlog), counted in
Redis so that every worker shares the count. Views past it are refused and counted
(`kaleido_views_total{outcome="refused_unknown_post"}`); views of posts that exist are never
affected.

Whether a post exists: a per-process set of the posts seen to exist (posts are never deleted,
so it is never wrong), then one PostgreSQL query for the others. With PostgreSQL or Redis
unreachable, the posts not known to exist are refused (the caller may send them again), never
recorded unchecked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import attrs

from kaleido.errors import BackendError
from kaleido.gateways import PostgresGateway, RedisGateway
from kaleido.keys import KeyLayout

# Posts remembered as existing, per process (8 bytes of id and a set slot each, ~6 MB).
KNOWN_POSTS = 100_000
UNKNOWN_POST_VIEWS_PER_HOUR = 100
_HOUR = 3600


@attrs.define
class KnownPosts:
    """Post ids seen to exist; past `size` ids it starts afresh (a miss costs one query)."""

    size: int = KNOWN_POSTS
    ids: set[int] = attrs.Factory(set)

    def missing(self, post_ids: Iterable[int]) -> set[int]:
        return {p for p in post_ids if p not in self.ids}

    def add(self, post_ids: Iterable[int]) -> None:
        if len(self.ids) >= self.size:
            self.ids.clear()
        self.ids.update(post_ids)


@attrs.frozen
class Admitted:
    """A request's views after the budget: those to record, and how many were refused."""

    views: list[tuple[int, int]]
    refused: int = 0
    retry_after: int = 0  # seconds until the budget renews, when some were refused
    unchecked: bool = False  # refused because a backend did not answer, not for the budget


@attrs.define
class UnknownPostBudget:
    postgres: PostgresGateway
    redis: RedisGateway
    keys: KeyLayout
    per_hour: int = attrs.field(factory=lambda: UNKNOWN_POST_VIEWS_PER_HOUR)
    known: KnownPosts = attrs.Factory(KnownPosts)

    async def admit(
        self, user_id: int, views: Sequence[tuple[int, int]], now: float | None = None
    ) -> Admitted:
        """The views of `user_id` that may be recorded: all those of existing posts, and those
        of other posts while the user's budget of this hour lasts (in the request's order)."""
        unchecked = self.known.missing(post for _, post in views)
        if not unchecked:
            return Admitted(list(views))  # the common case: no I/O at all
        unknown, checked = await self._unknown(unchecked)
        if not unknown:
            return Admitted(list(views))
        asked = sum(1 for _, post in views if post in unknown)
        at = time.time() if now is None else now
        allowed = await self._take(user_id, asked, at) if checked else None
        if allowed is None:
            return Admitted([v for v in views if v[1] not in unknown], asked, 5, unchecked=True)
        admitted: list[tuple[int, int]] = []
        left = allowed
        for view in views:
            if view[1] not in unknown:
                admitted.append(view)
            elif left > 0:
                admitted.append(view)
                left -= 1
        refused = asked - allowed
        retry = math.ceil((math.floor(at / _HOUR) + 1) * _HOUR - at) if refused else 0
        return Admitted(admitted, refused, retry)

    async def _unknown(self, post_ids: set[int]) -> tuple[set[int], bool]:
        """Those of `post_ids` with no row, and whether PostgreSQL said so (else: all)."""
        try:
            rows = await self.postgres.fetch(
                "SELECT post_id FROM posts WHERE post_id = ANY($1::bigint[])", sorted(post_ids)
            )
        except BackendError:
            return post_ids, False
        found = {int(row["post_id"]) for row in rows}
        self.known.add(found)
        return post_ids - found, True

    async def _take(self, user_id: int, wanted: int, now: float) -> int | None:
        """Take up to `wanted` from the user's budget of this hour; how many it gave (None
        while Redis does not answer)."""
        key = self.keys.unknown_post_views(int(now // _HOUR))
        # Ambiguous call: run again after a lost reply, the budget is charged twice. Views
        # past it are refused, not answered 202 (the caller may send them again): a budget
        # spent early loses no acknowledged view.
        try:
            total, _ = await self.redis.pipeline(
                [("HINCRBY", key, user_id, wanted), ("PEXPIRE", key, 2 * _HOUR * 1000)]
            )
        except BackendError:
            return None
        used_before = int(total) - wanted
        return max(0, min(wanted, self.per_hour - used_before))
