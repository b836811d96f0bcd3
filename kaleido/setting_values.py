"""The parsers of setting values: each takes a variable's text and returns the value, or raises
ValueError with the reason (`kaleido.settings` adds which variable it was)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from kaleido.errors import ConfigError
from kaleido.redis_url import is_cluster_url, parse_cluster_url
from kaleido.secret_settings import redact_url

# More processes than this on one machine is a typo, not a deployment.
MAX_WORKERS = 64


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive number of seconds, got {text!r}")
    return value


def positive_int(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text.strip()):
        raise ValueError(f"expected a positive whole number, got {text!r}")
    value = int(text)
    if value <= 0:
        raise ValueError(f"expected a positive whole number, got {text!r}")
    return value


def redis_url_text(text: str) -> str:
    if is_cluster_url(text):
        try:
            parse_cluster_url(text)
        except ValueError as exc:
            raise ValueError(f"{exc}: {redact_url(text)!r}") from None
        return text
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            "expected a redis://, rediss://, unix://, redis+cluster:// or rediss+cluster:// "
            f"URL, got {redact_url(text)!r}"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"the URL has no host: {redact_url(text)!r}")
    _check_port(parts, text)
    return text


def check_redis_url(text: str, variable: str) -> str:
    """`text` if it is a Redis URL the gateway can use, else ConfigError naming `variable`."""
    try:
        return redis_url_text(text)
    except ValueError as exc:
        raise ConfigError(f"{variable}: {exc}") from None


def database_url_text(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"expected a postgresql:// URL, got {redact_url(text)!r}")
    _check_port(parts, text)
    return text


def _check_port(parts: Any, text: str) -> None:
    try:
        parts.port  # noqa: B018 - urllib validates the port lazily
    except ValueError:
        raise ValueError(f"the URL has an invalid port: {redact_url(text)!r}") from None


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected a port from 0 to 65535, got {port!r}")
    return host, int(port)


def join_host_port(host: str, port: int) -> str:
    """HOST:PORT as `host_port` reads it back and hypercorn binds it (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def partition_count(text: str) -> int:
    value = positive_int(text)
    if value > 1024 or value & (value - 1):
        raise ValueError(f"expected a power of two from 1 to 1024, got {text!r}")
    return value


def workers_count(text: str) -> int:
    value = positive_int(text)
    if value > MAX_WORKERS:
        raise ValueError(f"expected from 1 to {MAX_WORKERS} workers, got {text!r}")
    return value


def lock_ttl(text: str) -> float:
    value = positive_float(text)
    if value < 1:
        raise ValueError(f"expected at least 1 second, got {text!r}")
    return value


def admin_token_text(text: str) -> str:
    if len(text) < 16:
        raise ValueError("the admin token must be at least 16 characters long")
    return text


def service_token_text(text: str) -> str:
    if len(text) < 32:
        raise ValueError("the service token must be at least 32 characters long")
    return text


def jwt_key(secret: str) -> bytes:
    """The HS256 key: `secret` base64-decoded, as the Kaleidoscope backend does; ValueError if
    it is not base64 or shorter than 256 bits (which that backend's JWT library refuses too)."""
    try:
        key = base64.b64decode(secret.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("expected the base64 text of the key (the backend's JWT_SECRET)") from None
    if len(key) < 32:
        raise ValueError(f"the key is {len(key) * 8} bits; HS256 needs at least 256")
    return key


def embedding_dim(text: str) -> int:
    value = positive_int(text)
    if value > 65536:
        raise ValueError(f"expected at most 65536 floats, got {text!r}")
    return value


def url_prefixes(text: str) -> tuple[str, ...]:
    from kaleido.posts import check_media_url

    prefixes = tuple(p.strip() for p in text.split(",") if p.strip())
    for prefix in prefixes:
        check_media_url(prefix, f"prefix {prefix!r}")
        if prefix.count("/") < 3:  # https://cdn.example.com would admit cdn.example.com.evil.org
            raise ValueError(f"prefix {prefix!r}: end the host with a path, e.g. {prefix}/")
    return prefixes


def jwt_secret_text(text: str) -> str:
    jwt_key(text)
    return text.strip()


def matching(regex: re.Pattern[str], what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not regex.fullmatch(text):
            raise ValueError(f"expected {what}, got {text!r}")
        return text

    return parse


def one_of(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {text!r}")
        return text

    return parse


# name (lower case, without prefix) → (parser, settings field(s), help)


def networks(text: str) -> tuple[str, ...]:
    """KALEIDO_TRUSTED_PROXIES: comma-separated addresses or networks (`10.0.0.5`,
    `10.0.0.0/8`, `::1`), normalised; ValueError naming the first bad one."""
    out = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"expected IP addresses or CIDR networks, got {item[:60]!r}") from None
    return tuple(out)
