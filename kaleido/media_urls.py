"""Media URLs the ML service may fetch: `check_media_url`, the SSRF rules (pure, no I/O).

A leaf: the settings (KALEIDO_MEDIA_URL_PREFIXES), the posts model and the HTTP routes all
check URLs here, and it imports nothing of Kaleido's.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

import idna

# Longer URLs are refused by common browsers and CDNs; the ML service must fetch this one.
MAX_URL_CHARS = 2048


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
    try:
        return media_url(value, prefixes)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def media_url(value: object, prefixes: Sequence[str] = ()) -> str:
    """`value` checked as `check_media_url` checks it; ValueError saying why (without a field
    name: the caller's path names it)."""
    if not isinstance(value, str):
        raise ValueError(f"expected an https URL, got {value!r:.80}")
    if len(value) > MAX_URL_CHARS:
        raise ValueError(f"{len(value)} characters, limit {MAX_URL_CHARS}")
    # Whitespace, control characters or lone surrogates would reach the fetch (or PostgreSQL).
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF
           for c in value):  # fmt: skip
        raise ValueError("whitespace or control characters in the URL")
    try:
        parts = urlsplit(value)
        raw_host = parts.hostname
        port = parts.port
    except ValueError:
        raise ValueError(f"not a valid URL: {value!r:.80}") from None
    if parts.scheme != "https":
        raise ValueError(f"expected an https URL, got {value!r:.80}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a URL with user:password@ is not accepted")
    if not raw_host:
        raise ValueError("the URL has no host")
    host = ascii_host(raw_host)
    if host != raw_host:
        netloc = host if port is None else f"{host}:{port}"
        value = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    host = host.rstrip(".")
    if _is_ip_literal(host):
        raise ValueError(f"an IP address as host is not accepted ({host})")
    if host == "localhost" or host.endswith(".localhost") or "." not in host:
        raise ValueError(f"{host!r} is not a public host name")
    if prefixes and not any(value.startswith(prefix) for prefix in prefixes):
        raise ValueError(f"must start with one of {', '.join(prefixes)}")
    return value


# A DNS label as fetchers send it: letters, digits, hyphens (and underscores, which some
# storage hosts use).
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def ascii_host(host: str) -> str:
    """`host` (lower case, as urlsplit gives it) as resolvers see it: UTS 46 mapping and IDNA
    for a Unicode host, every label checked; ValueError saying why when it does not
    convert. An IPv6 literal (it holds `:`) is returned as it is: the IP rule refuses it."""
    if "%" in host:
        raise ValueError(f"a '%' in the host is not accepted ({host[:80]!r})")
    if host.isascii() and ":" in host:
        return host
    converted = host
    if not host.isascii():
        try:
            converted = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise ValueError(
                f"the host {host[:80]!r} is not a valid international domain name ({str(exc)[:80]})"
            ) from None
    for label in converted.removesuffix(".").split("."):
        if not _LABEL.fullmatch(label) or (label.startswith("xn--") and not _valid_a_label(label)):
            raise ValueError(f"the host {host[:80]!r} is not a valid host name")
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
