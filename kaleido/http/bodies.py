"""The JSON bodies of the HTTP API on the one converter (kaleido.messages.converter): what each
request body may be, and how each answer's records are written, camelCase by
`override(rename=…)`.

A request body is structured by the converter; its first bad field becomes a 400 naming it,
`media[1].mediaUrl: expected an https URL, got None`, in the words of the check that refused it
(`positive_id`, `media_url`). Fields absent from the body read as null, so a missing id says
`got None` like a null one. Checks that need the request (URL prefixes, the caller) run after.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, NewType, TypeVar

import attrs
import cattrs
from cattrs.gen import override
from cattrs.gen._consts import AttributeOverride

from kaleido.errors import Invalid
from kaleido.http.errors import BadRequest
from kaleido.media_urls import media_url
from kaleido.messages import utc_timestamp
from kaleido.messages.converter import (
    converter,
    failures,
    path_text,
    reason,
    register_answer,
    structure_fn,
    wire_field,
)
from kaleido.ops.streams import is_entry_id
from kaleido.posts import (
    MAX_MEDIA,
    Face,
    Insights,
    MediaItem,
    MediaRecord,
    NewPost,
    PostInsights,
    PostRecord,
)
from kaleido.streams.dlq import REPLAY_LIMIT
from kaleido.views.model import positive_id

_T = TypeVar("_T")

# One request may carry many views; beyond this, split the list.
MAX_VIEWS_PER_REQUEST: Final = 10_000
# Ids per replay request, as many as a replay without ids puts back (each is one round trip:
# 10,000 took longer than a client waits); a whole DLQ is replayed by sending no ids.
MAX_REPLAY_IDS: Final = REPLAY_LIMIT


# --------------------------------------------------------------------------- request bodies


@attrs.frozen
class View:
    """One item of `POST /v1/views`."""

    user_id: int
    post_id: int


@attrs.frozen
class MediaList:
    """The body of `PUT /v1/posts/{postId}/media`."""

    media: tuple[MediaItem, ...]


@attrs.frozen
class PictureChange:
    """The body of `POST /v1/users/{userId}/profile-picture` (the labels are checked by
    `ProfilePicture`)."""

    image_url: str
    username: object = None
    department: object = None


@attrs.frozen
class ReplayIds:
    """The body of `POST /v1/admin/dlq/{stream}/replay`."""

    ids: tuple[str, ...]


EntryId = NewType("EntryId", str)


def _object(cls: type, expected: str, **fields: AttributeOverride) -> None:
    """Register `cls` as a JSON object of `fields`; any other JSON value is refused saying
    what was `expected`, and an absent field reads as null."""
    structure = structure_fn(cls, dict.fromkeys(_wire_names(fields)), **fields)

    def hook(value: Any, cl: Any) -> Any:
        if not isinstance(value, dict):
            raise Invalid(f"expected {expected}")
        return structure(value, cl)

    converter.register_structure_hook(cls, hook)


def _wire_names(fields: Mapping[str, AttributeOverride]) -> list[str]:
    return [spec.rename for spec in fields.values() if spec.rename is not None]


def _as_is(value: object) -> object:
    return value


def _list(limit: int, item: type, describe: str, over: Callable[[int], str]) -> Any:
    """A JSON list of at most `limit` items (counted before any item is looked at)."""

    def check(value: object) -> Any:
        if not isinstance(value, list):
            raise Invalid(f"expected a list of {describe}")
        if len(value) > limit:
            raise Invalid(over(len(value)))
        return converter.structure(value, tuple[item, ...])  # type: ignore[valid-type]

    return check


def _entry_id(value: object, _: object) -> str:
    if not isinstance(value, str) or not is_entry_id(value):
        raise Invalid("expected a stream entry id like '1700000000000-0'")
    return value


def _over_media(count: int) -> str:
    return f"{count} items, limit {MAX_MEDIA}"


def _over_ids(count: int) -> str:
    return f"{count} ids, limit {MAX_REPLAY_IDS}; send no body to replay all"


_MEDIA: Final = wire_field(
    "media", _list(MAX_MEDIA, MediaItem, "{mediaId, mediaUrl} objects", _over_media)
)
_object(
    View,
    "an object with userId and postId",
    user_id=wire_field("userId", positive_id),
    post_id=wire_field("postId", positive_id),
)
_object(
    MediaItem,
    "an object with mediaId and mediaUrl",
    media_id=wire_field("mediaId", positive_id),
    media_url=wire_field("mediaUrl", media_url),
)
_object(
    NewPost,
    "an object with postId, userId and media",
    post_id=wire_field("postId", positive_id),
    user_id=wire_field("userId", positive_id),
    media=_MEDIA,
)
_object(MediaList, "an object with media", media=_MEDIA)
_object(
    PictureChange,
    "an object with imageUrl (and username, department)",
    image_url=wire_field("imageUrl", media_url),
    username=wire_field("username", _as_is),
    department=wire_field("department", _as_is),
)
converter.register_structure_hook(EntryId, _entry_id)
_object(
    ReplayIds,
    '{"ids": ["<dlq entry id>", ...]} or no body',
    ids=wire_field("ids", _list(MAX_REPLAY_IDS, EntryId, "stream entry ids", _over_ids)),
)


def structure_body(payload: Any, cls: type[_T], root: str = "") -> _T:
    """`payload` (parsed JSON) as a `cls`, or a 400 naming the first bad field: its path from
    `root` (`body[1].userId`), or `root` (else `body`) for the body itself."""
    try:
        return converter.structure(payload, cls)
    except (cattrs.BaseValidationError, Invalid) as exc:
        path, leaf = failures(exc)[0]
        raise BadRequest(f"{path_text(path, root) or 'body'}: {reason(leaf)}") from None


# --------------------------------------------------------------------------- answers


converter.register_unstructure_hook(datetime, utc_timestamp)
register_answer(Insights, embedding_length=override(rename="imageEmbeddingLength"))
register_answer(Face)
register_answer(PostInsights)
# Faces are rendered by the route: who sees a suggestion depends on the caller.
register_answer(MediaRecord, faces=override(omit=True))
register_answer(PostRecord, media=override(omit=True))


def render(record: object) -> Any:
    """A record as its JSON answer (dicts, lists and scalars)."""
    return converter.unstructure(record)
