"""Posts and their media: stored in PostgreSQL first, then announced to the ML service.

The SQL functions (``sql``) own the `posts` / `post_media` rows (docs/CONTRACT.md section 3);
`Posts` is the facade the HTTP routes and the demo traffic share: store, then publish one event
per media item. Store-then-publish means a publish failure leaves the post stored and raises
`PublishFailed`, which says so; it is never reported as a success.

Modules: ``model`` (values, errors, validation), ``sql`` (the rows), ``facade`` (`Posts`).
"""

from kaleido.posts.facade import Posts
from kaleido.posts.model import (
    MAX_MEDIA,
    MAX_URL_CHARS,
    Face,
    Insights,
    MediaItem,
    MediaRecord,
    MediaTaken,
    NewPost,
    PostExists,
    PostNotFound,
    PostRecord,
    Published,
    PublishFailed,
    check_media,
    check_media_url,
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
    "PostNotFound",
    "PostRecord",
    "Posts",
    "PublishFailed",
    "Published",
    "check_media",
    "check_media_url",
    "insert_post",
    "read_post",
    "replace_media",
]
