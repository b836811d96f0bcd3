"""What a post is: its values (:class:`NewPost`, :class:`PostRecord`, ...), the errors storing one
raises, and the checks of its media list and URLs (pure, no I/O)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import attrs
import idna

from kaleido.errors import KaleidoError

# A post carries a handful of images; 50 bounds one request's fan-out to the ML service.
MAX_MEDIA = 50
# Longer URLs are refused by common browsers and CDNs; the ML service must fetch this one.
MAX_URL_CHARS = 2048


class PostExists(KaleidoError):
    """A post with this id is already stored."""


class PostNotFound(KaleidoError):
    """No post with this id is stored."""


class MediaTaken(KaleidoError):
    """A mediaId already belongs to another post."""


# --------------------------------------------------------------------------- values


@attrs.frozen
class MediaItem:
    media_id: int
    media_url: str


@attrs.frozen
class NewPost:
    post_id: int
    user_id: int
    media: tuple[MediaItem, ...]


@attrs.frozen
class Stored:
    """What storing a post or its new media list did: committed, with `announced` outbound
    entries in the outbox (published to the ML service right after, kaleido.outbox)."""

    post_id: int
    media: int
    announced: int
    removed: int = 0  # media no longer in the list
    added: int = 0  # media new to the post


@attrs.frozen
class Insights:
    """A media's `media_ai_insights` row; the embedding is summarised by its length."""

    status: str
    is_safe: bool | None
    moderation_confidence: float | None
    caption: str | None
    tags: tuple[str, ...] | None
    scenes: tuple[str, ...] | None
    embedding_length: int | None
    services_completed: tuple[str, ...]
    correlation_id: str | None
    updated_at: datetime


@attrs.frozen
class Face:
    """A `media_detected_faces` row without its embedding."""

    face_id: str
    bbox: tuple[int, ...] | None
    confidence: float | None
    status: str
    suggested_user_id: int | None
    suggestion_confidence: float | None
    matched_username: str | None
    updated_at: datetime


@attrs.frozen
class MediaRecord:
    media_id: int
    media_url: str
    position: int
    insights: Insights | None
    faces: tuple[Face, ...]


@attrs.frozen
class PostInsights:
    """A post's `post_insights` row: the ML aggregator's answer to its latest trigger."""

    media_count: int
    all_ai_tags: tuple[str, ...]
    all_ai_scenes: tuple[str, ...]
    aggregated_tags: tuple[str, ...]
    aggregated_scenes: tuple[str, ...]
    total_faces: int
    is_safe: bool
    moderation_confidence: float
    inferred_event_type: str
    combined_caption: str
    has_multiple_images: bool
    correlation_id: str
    aggregated_at: datetime | None
    updated_at: datetime


@attrs.frozen
class PostRecord:
    """A stored post as `GET /v1/posts/{id}` shows it (without views: they are not all here)."""

    post_id: int
    user_id: int
    status: str
    created_at: datetime
    updated_at: datetime
    media: tuple[MediaRecord, ...]
    insights: PostInsights | None = None


# --------------------------------------------------------------------------- validation


def check_media_url(value: object, name: str, prefixes: Sequence[str] = ()) -> str:
    """Return `value` (with its host in ASCII) if the ML service may fetch it; otherwise raise
    ValueError naming `name` and the rule it breaks.

    The ML service fetches these URLs from inside the network, so a URL must not be able to
    point there (SSRF). The host is first converted as resolvers convert it (IDNA with UTS 46
    mapping, so `１２７．０．０．１` and `①②⑦.0.0.1` are `127.0.0.1`); a host that does not
    convert, or holds a `%`, is refused. Then: https only, no user:password@, no IP literal, no
    `localhost` and no single-label host (`http://redis/`), at most MAX_URL_CHARS, no
    whitespace or control characters. With `prefixes` (KALEIDO_MEDIA_URL_PREFIXES, e.g. a CDN
    bucket) it must also start with one of them. A URL whose host had to be converted is
    returned with the ASCII host, so the ML service fetches exactly what was checked.
    """
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected an https URL, got {value!r:.80}")
    if len(value) > MAX_URL_CHARS:
        raise ValueError(f"{name}: {len(value)} characters, limit {MAX_URL_CHARS}")
    # Whitespace, control characters or lone surrogates would reach the fetch (or PostgreSQL).
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF
           for c in value):  # fmt: skip
        raise ValueError(f"{name}: whitespace or control characters in the URL")
    try:
        parts = urlsplit(value)
        raw_host = parts.hostname
        port = parts.port
    except ValueError:
        raise ValueError(f"{name}: not a valid URL: {value!r:.80}") from None
    if parts.scheme != "https":
        raise ValueError(f"{name}: expected an https URL, got {value!r:.80}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{name}: a URL with user:password@ is not accepted")
    if not raw_host:
        raise ValueError(f"{name}: the URL has no host")
    host = ascii_host(raw_host, name)
    if host != raw_host:
        netloc = host if port is None else f"{host}:{port}"
        value = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    host = host.rstrip(".")
    if _is_ip_literal(host):
        raise ValueError(f"{name}: an IP address as host is not accepted ({host})")
    if host == "localhost" or host.endswith(".localhost") or "." not in host:
        raise ValueError(f"{name}: {host!r} is not a public host name")
    if prefixes and not any(value.startswith(prefix) for prefix in prefixes):
        raise ValueError(f"{name}: must start with one of {', '.join(prefixes)}")
    return value


# A DNS label as fetchers send it: letters, digits, hyphens (and underscores, which some
# storage hosts use).
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def ascii_host(host: str, name: str) -> str:
    """`host` (lower case, as urlsplit gives it) as resolvers see it: UTS 46 mapping and IDNA
    for a Unicode host, every label checked; ValueError naming `name` when it does not
    convert. An IPv6 literal (it holds `:`) is returned as it is: the IP rule refuses it."""
    if "%" in host:
        raise ValueError(f"{name}: a '%' in the host is not accepted ({host[:80]!r})")
    if host.isascii() and ":" in host:
        return host
    converted = host
    if not host.isascii():
        try:
            converted = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise ValueError(
                f"{name}: the host {host[:80]!r} is not a valid international domain name "
                f"({str(exc)[:80]})"
            ) from None
    for label in converted.removesuffix(".").split("."):
        if not _LABEL.fullmatch(label) or (label.startswith("xn--") and not _valid_a_label(label)):
            raise ValueError(f"{name}: the host {host[:80]!r} is not a valid host name")
    return converted


def _valid_a_label(label: str) -> bool:
    try:
        idna.decode(label)
    except (idna.IDNAError, UnicodeError):
        return False
    return True


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # Forms browsers and fetchers also read as IPv4: 0x7f.1, 017700000001, 127.1.
        labels = host.split(".")
        return all(re.fullmatch(r"(0x[0-9a-f]+|[0-9]+)", label) for label in labels)
    return True


def check_media(media: Sequence[MediaItem]) -> None:
    """A media list a post may hold: at most MAX_MEDIA items, unique ids, valid URLs.
    Raises ValueError naming the bad item (`media[1].mediaId: ...`)."""
    if len(media) > MAX_MEDIA:
        raise ValueError(f"media: {len(media)} items, limit {MAX_MEDIA}")
    seen: dict[int, int] = {}
    for index, item in enumerate(media):
        if item.media_id in seen:
            raise ValueError(
                f"media[{index}].mediaId: {item.media_id} repeats media[{seen[item.media_id]}]"
            )
        seen[item.media_id] = index
        check_media_url(item.media_url, f"media[{index}].mediaUrl")
