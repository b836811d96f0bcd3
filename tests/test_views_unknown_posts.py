"""The per-user budget for views of posts that do not exist (kaleido.views.unknown_posts),
against fakes of PostgreSQL and Redis: what is admitted, what is refused, and what happens
while either backend does not answer."""

from __future__ import annotations

from typing import Any

import attrs

from kaleido.errors import TransientError
from kaleido.keys import KeyLayout
from kaleido.views.unknown_posts import KnownPosts, UnknownPostBudget

HOUR = 3600.0 * 500_000  # a clock hour's start


@attrs.define
class FakePostgres:
    existing: set[int]
    down: bool = False
    queries: int = 0

    async def fetch(self, query: str, ids: list[int]) -> list[dict[str, int]]:
        self.queries += 1
        if self.down:
            raise TransientError("postgres down")
        return [{"post_id": p} for p in ids if p in self.existing]


@attrs.define
class FakeRedis:
    counts: dict[tuple[str, int], int] = attrs.Factory(dict)
    down: bool = False

    async def pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if self.down:
            raise TransientError("redis down")
        (_, key, user, n), _ = commands
        self.counts[key, user] = self.counts.get((key, user), 0) + n
        return [self.counts[key, user], 1]


def budget(postgres: FakePostgres, redis: FakeRedis, per_hour: int = 3) -> UnknownPostBudget:
    return UnknownPostBudget(postgres, redis, KeyLayout(), per_hour)  # type: ignore[arg-type]


async def test_views_of_existing_posts_pass_and_are_remembered() -> None:
    postgres = FakePostgres({1, 2})
    b = budget(postgres, FakeRedis())
    assert (await b.admit(7, [(7, 1), (7, 2)], HOUR)).views == [(7, 1), (7, 2)]
    assert (await b.admit(7, [(7, 1), (7, 2)], HOUR)).views == [(7, 1), (7, 2)]
    assert postgres.queries == 1  # the second time, no I/O


async def test_views_of_unknown_posts_are_held_to_the_hourly_budget() -> None:
    b = budget(FakePostgres({1}), FakeRedis(), per_hour=3)
    first = await b.admit(7, [(7, 1), (7, 100), (7, 101)], HOUR + 600)
    assert first.views == [(7, 1), (7, 100), (7, 101)] and first.refused == 0
    second = await b.admit(7, [(7, 102), (7, 103), (7, 1)], HOUR + 600)
    assert second.views == [(7, 102), (7, 1)] and second.refused == 1
    assert second.retry_after == 3000  # the end of the hour
    assert (await b.admit(8, [(8, 100)], HOUR + 600)).refused == 0  # another user's own budget
    assert (await b.admit(7, [(7, 104)], HOUR + 3600)).refused == 0  # the next hour


async def test_without_a_backend_unknown_posts_are_refused_as_unchecked() -> None:
    postgres, redis = FakePostgres({1}), FakeRedis()
    b = budget(postgres, redis)
    assert (await b.admit(7, [(7, 1)], HOUR)).views == [(7, 1)]  # now known
    postgres.down = True
    down = await b.admit(7, [(7, 1), (7, 100)], HOUR)
    assert down.views == [(7, 1)] and down.refused == 1 and down.unchecked
    postgres.down, redis.down = False, True
    down = await b.admit(7, [(7, 100)], HOUR)
    assert down.views == [] and down.refused == 1 and down.unchecked


def test_known_posts_stay_bounded() -> None:
    known = KnownPosts(size=3)
    known.add([1, 2, 3])
    known.add([4])
    assert known.missing([1, 4]) == {1}
