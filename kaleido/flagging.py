"""Flagging posts: the one statement that moves a post to FLAGGED (never back).

A post is flagged when any of its media is unsafe. The post flagged is the one that owns the
media in `post_media`, never one an entry names. Two paths reach it: an unsafe moderation
result (`kaleido.streams.handlers`, which knows the media it found unsafe) and a post stored
or edited after its media's result arrived (`kaleido.posts`, which looks them up first). A
third flags a post itself: the ML aggregator's answer to the post's latest trigger saying it
is unsafe (`FLAG_POSTS`).
Clearing a flag is a human decision, not Kaleido's.
"""

from __future__ import annotations

from collections.abc import Sequence

from kaleido.gateways import Transaction

# $1: media ids known to be unsafe.
FLAG_POSTS_OF_MEDIA = """
UPDATE posts SET status = 'FLAGGED', updated_at = now()
WHERE post_id IN (SELECT post_id FROM post_media WHERE media_id = ANY($1::bigint[]))
  AND status <> 'FLAGGED'
"""

# $1: post ids whose post-level insights (the answer to their latest trigger) say unsafe.
FLAG_POSTS = """
UPDATE posts SET status = 'FLAGGED', updated_at = now()
WHERE post_id = ANY($1::bigint[]) AND status <> 'FLAGGED'
"""

_UNSAFE_AMONG = """
SELECT media_id FROM media_ai_insights WHERE media_id = ANY($1::bigint[]) AND is_safe = false
"""


async def flag_posts_of_unsafe_media(tx: Transaction, media_ids: Sequence[int]) -> None:
    """Flag the posts owning any of `media_ids` whose moderation result (stored already, maybe
    before the post was) says unsafe. One round trip unless one is unsafe."""
    unsafe = [row["media_id"] for row in await tx.fetch(_UNSAFE_AMONG, list(media_ids))]
    if unsafe:
        await tx.execute(FLAG_POSTS_OF_MEDIA, unsafe)
