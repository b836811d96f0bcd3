"""Simulated users for `run.py --demo`: posts with media, views, media edits, new avatars.

It goes through the same library code as the HTTP routes (`Posts`, `Profiles`, the view
tracker), not through HTTP, at a bounded rate. Views follow a Zipf-like popularity with many
repeats (so deduplication shows). A failed operation is logged and retried later, never fatal:
the demo keeps running through a Redis or PostgreSQL outage, which is part of what it shows.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs
import trio

from kaleido.errors import KaleidoError
from kaleido.logs import correlation, get_logger
from kaleido.posts import (
    MediaItem,
    MediaTaken,
    NewPost,
    PostExists,
    PostNotFound,
    Posts,
)
from kaleido.profiles import ProfilePicture, Profiles

log = get_logger("kaleido.demo.traffic")

# Rates: enough to fill every stream and table within a minute, light on a laptop.
VIEWS_PER_SECOND = 50.0
POST_EVERY = 2.0
MEDIA_EDIT_EVERY = 15.0
PROFILE_PICTURE_EVERY = 10.0
# Views are recorded in small bursts rather than one timer per view.
VIEW_TICK = 0.1
USERS = 2000
# Simulated users' names and departments, as a profile picture request carries them.
USERNAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
DEPARTMENTS = ("design", "sales", "research", "support", "finance")
# Only the most recent posts get views: keeps the popularity list small.
MAX_TRACKED_POSTS = 2000
# After a failure, wait this long before that loop tries again.
FAILURE_PAUSE = 5.0
# Profile pictures changed at start, so that faces in the first posts can be recognised.
FIRST_AVATARS = 3


class ViewRecorder(Protocol):
    def record(self, user_id: int, post_id: int) -> bool: ...


def media_url(media_id: int) -> str:
    return f"https://picsum.photos/seed/kaleido-{media_id}/1080/1080"


@attrs.define
class TrafficStats:
    posts: int = 0
    media_edits: int = 0
    views: int = 0
    views_rejected: int = 0
    profile_pictures: int = 0
    failures: int = 0


@attrs.define
class Traffic:
    posts: Posts
    profiles: Profiles
    views: ViewRecorder
    stopping: trio.Event
    seed: int | None = None
    views_per_second: float = VIEWS_PER_SECOND
    post_every: float = POST_EVERY
    media_edit_every: float = MEDIA_EDIT_EVERY
    profile_picture_every: float = PROFILE_PICTURE_EVERY
    stats: TrafficStats = attrs.Factory(TrafficStats)
    # Post ids by popularity rank (index 0 is the most viewed); new posts land anywhere.
    popular: list[int] = attrs.Factory(list)
    _own: dict[int, list[int]] = attrs.Factory(dict)  # post → media ids, for media edits
    _rng: random.Random = attrs.field(init=False)
    _next_post: int = 1
    _next_media: int = 1

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the existing posts, then run every simulated activity until stopping."""
        await self._load()
        task_status.started()
        for _ in range(FIRST_AVATARS):
            try:
                await self.change_avatar()
            except KaleidoError as exc:
                log.warning("traffic.failed", action="change_avatar", error=str(exc))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._every, VIEW_TICK, self._view_burst)
            nursery.start_soon(self._every, self.post_every, self.create_post)
            nursery.start_soon(self._every, self.media_edit_every, self.edit_media)
            nursery.start_soon(self._every, self.profile_picture_every, self.change_avatar)

    async def _load(self) -> None:
        """Continue after the highest stored ids (a restarted demo reuses its database)."""
        row = await self.posts.postgres.fetchrow(
            "SELECT (SELECT coalesce(max(post_id), 0) FROM posts) AS post,"
            " (SELECT coalesce(max(media_id), 0) FROM post_media) AS media,"
            " (SELECT coalesce(array_agg(post_id), '{}') FROM"
            "   (SELECT post_id FROM posts ORDER BY post_id DESC LIMIT $1) AS p) AS recent",
            MAX_TRACKED_POSTS,
        )
        self._next_post, self._next_media = row["post"] + 1, row["media"] + 1
        if not self.popular:
            self.popular = list(row["recent"])
            self._rng.shuffle(self.popular)

    async def _every(self, period: float, action: Callable[[], Awaitable[None]]) -> None:
        """Run `action` every `period` seconds (jittered) until stopping; pause after a
        failure instead of hammering a backend that is down."""
        while not self.stopping.is_set():
            pause = period * self._rng.uniform(0.5, 1.5) if period > VIEW_TICK else period
            with trio.move_on_after(pause):
                await self.stopping.wait()
            if self.stopping.is_set():
                return
            try:
                await action()
            except KaleidoError as exc:
                self.stats.failures += 1
                log.warning("traffic.failed", action=action.__name__, error=str(exc))
                with trio.move_on_after(FAILURE_PAUSE):
                    await self.stopping.wait()

    # ----------------------------------------------------------------------- activities

    def pick_post(self) -> int | None:
        """A post by Zipf-like popularity: rank 0 about half the time, a long tail after."""
        if not self.popular:
            return None
        rank = int(self._rng.paretovariate(1.2)) - 1
        return self.popular[min(rank, len(self.popular) - 1)]

    async def _view_burst(self) -> None:
        for _ in range(max(1, round(self.views_per_second * VIEW_TICK))):
            post_id = self.pick_post()
            if post_id is None:
                return
            if self.views.record(self._rng.randint(1, USERS), post_id):
                self.stats.views += 1
            else:
                self.stats.views_rejected += 1

    def _new_media(self, count: int) -> tuple[MediaItem, ...]:
        first, self._next_media = self._next_media, self._next_media + count
        return tuple(MediaItem(m, media_url(m)) for m in range(first, first + count))

    async def create_post(self) -> None:
        post = NewPost(self._next_post, self._rng.randint(1, USERS), self._new_media(
            self._rng.choices((1, 2, 3, 4), weights=(5, 3, 1, 1))[0]
        ))  # fmt: skip
        self._next_post += 1
        with correlation(None):
            try:
                await self.posts.create(post)
            except (PostExists, MediaTaken):
                await self._load()  # someone else (the HTTP API) took the ids: skip past them
                return
        self._track(post)
        self.stats.posts += 1

    def _track(self, post: NewPost) -> None:
        self.popular.insert(self._rng.randrange(len(self.popular) + 1), post.post_id)
        self._own[post.post_id] = [m.media_id for m in post.media]
        if len(self.popular) > MAX_TRACKED_POSTS:
            dropped = self.popular.pop()
            self._own.pop(dropped, None)

    async def edit_media(self) -> None:
        """Replace one of our posts' media list: keep the first item, add a new one."""
        if not self._own:
            return
        post_id = self._rng.choice(list(self._own))
        kept = [MediaItem(m, media_url(m)) for m in self._own[post_id][:1]]
        media = (*kept, *self._new_media(1))
        with correlation(None):
            try:
                await self.posts.replace_media(post_id, media)
            except PostNotFound:
                self._own.pop(post_id, None)
                return
            except MediaTaken:
                await self._load()  # the HTTP API took the new id: skip past it
                return
        self._own[post_id] = [m.media_id for m in media]
        self.stats.media_edits += 1

    async def change_avatar(self) -> None:
        user_id = self._rng.randint(1, USERS)
        picture = ProfilePicture(
            user_id,
            f"https://i.pravatar.cc/512?u={user_id}",
            username=demo_username(user_id),
            department=DEPARTMENTS[user_id % len(DEPARTMENTS)],
        )
        with correlation(None):
            await self.profiles.change_picture(picture)
        self.stats.profile_pictures += 1


def demo_username(user_id: int) -> str:
    return f"{USERNAMES[user_id % len(USERNAMES)]}{user_id}"
