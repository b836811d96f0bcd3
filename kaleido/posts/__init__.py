"""Posts and their media: stored in PostgreSQL and announced to the ML service together.

The SQL functions (``sql``) own the `posts` / `post_media` rows (docs/CONTRACT.md section 3);
`Posts` is the facade the HTTP routes, the demo traffic and embedding programs share: store
the change and write its announcements to the outbox in one transaction (kaleido.outbox).

Modules: ``model`` (values, errors, validation), ``sql`` (the rows), ``facade`` (`Posts`).
"""

from kaleido.media_urls import MAX_URL_CHARS, check_media_url
from kaleido.posts.facade import Posts
from kaleido.posts.model import (
    MAX_MEDIA,
    Face,
    Insights,
    MediaItem,
    MediaRecord,
    MediaTaken,
    NewPost,
    PostExists,
    PostInsights,
    PostNotFound,
    PostRecord,
    Stored,
    check_media,
)
from kaleido.posts.sql import insert_post, read_post, replace_media

__all__ = [
    "MAX_MEDIA",
    "MAX_URL_CHARS",
    "Face",
    "Insights",
    "MediaItem",
    "MediaRecord",
    "MediaTaken",
    "NewPost",
    "PostExists",
    "PostInsights",
    "PostNotFound",
    "PostRecord",
    "Posts",
    "Stored",
    "check_media",
    "check_media_url",
    "insert_post",
    "read_post",
    "replace_media",
]
