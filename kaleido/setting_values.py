"""Setting values: the text converters of the environment layer (a variable's text to a
number, a list, ...) and the checks `Settings` runs on construction (its attrs validators).

Each raises ValueError with the reason only: `Settings` adds the field's name (SettingError),
the environment layer the variable's or the flag's."""

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
from kaleido.media_urls import check_media_url
from kaleido.redis_url import is_cluster_url, parse_cluster_url
from kaleido.secret_settings import redact_url

# More processes than this on one machine is a typo, not a deployment.
MAX_WORKERS = 64


def seconds_text(text: str) -> float:
    """A number of seconds (text to float; the check is `positive_seconds`)."""
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None


def whole_text(text: str) -> int:
    """A whole number of decimal digits (text to int; the checks say what range)."""
    if not re.fullmatch(r"[0-9]+", text.strip()):
        raise ValueError(f"expected a positive whole number, got {text!r}")
    return int(text)


def comma_list(text: str) -> tuple[str, ...]:
    """`a, b,,c` as ("a", "b", "c")."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number of seconds, got {value!r:.80}")
    return float(value)


def positive_seconds(value: object) -> None:
    if not math.isfinite(_number(value)) or _number(value) <= 0:
        raise ValueError(f"expected a positive number of seconds, got {value!r}")


def positive_whole(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"expected a positive whole number, got {value!r:.80}")


def port(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError(f"expected a port from 0 to 65535, got {value!r:.80}")


def host(value: object) -> None:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ValueError(f"expected a host name or address, got {value!r:.80}")


def redis_url(text: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"expected a Redis URL, got {text!r:.80}")
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
        return redis_url(text)
    except ValueError as exc:
        raise ConfigError(f"{variable}: {exc}") from None


def database_url(text: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"expected a postgresql:// URL, got {text!r:.80}")
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


def partition_count(value: int) -> None:
    positive_whole(value)
    if value > 1024 or value & (value - 1):
        raise ValueError(f"expected a power of two from 1 to 1024, got {value!r}")


def workers_count(value: int) -> None:
    positive_whole(value)
    if value > MAX_WORKERS:
        raise ValueError(f"expected from 1 to {MAX_WORKERS} workers, got {value!r}")


def lock_ttl(value: float) -> None:
    positive_seconds(value)
    if value < 1:
        raise ValueError(f"expected at least 1 second, got {value!r}")


def admin_token(text: str) -> None:
    if not isinstance(text, str) or len(text) < 16:
        raise ValueError("the admin token must be at least 16 characters long")


def service_token(text: str) -> None:
    if not isinstance(text, str) or len(text) < 32:
        raise ValueError("the service token must be at least 32 characters long")


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


def embedding_dim(value: int) -> None:
    positive_whole(value)
    if value > 65536:
        raise ValueError(f"expected at most 65536 floats, got {value!r}")


def url_prefixes(prefixes: tuple[str, ...]) -> None:
    for prefix in prefixes:
        check_media_url(prefix, f"prefix {prefix!r}")
        if prefix.count("/") < 3:  # https://cdn.example.com would admit cdn.example.com.evil.org
            raise ValueError(f"prefix {prefix!r}: end the host with a path, e.g. {prefix}/")


def jwt_secret(text: str) -> None:
    if not isinstance(text, str):
        raise ValueError("expected the base64 text of the key (the backend's JWT_SECRET)")
    jwt_key(text)


def matching(regex: re.Pattern[str], what: str) -> Callable[[str], None]:
    def check(text: str) -> None:
        if not isinstance(text, str) or not regex.fullmatch(text):
            raise ValueError(f"expected {what}, got {text!r:.80}")

    return check


def one_of(*options: str) -> Callable[[str], None]:
    def check(text: str) -> None:
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {text!r:.80}")

    return check


def networks(items: object) -> tuple[str, ...]:
    """KALEIDO_TRUSTED_PROXIES: addresses or networks (`10.0.0.5`, `10.0.0.0/8`, `::1`),
    normalised (a converter: `Settings` stores the normal form); ValueError naming the first
    bad one."""
    if isinstance(items, str):
        items = comma_list(items)
    if not isinstance(items, tuple | list):
        raise ValueError(f"expected IP addresses or CIDR networks, got {items!r:.80}")
    out = []
    for item in items:
        if not isinstance(item, str) or not item:
            raise ValueError(f"expected IP addresses or CIDR networks, got {item!r:.60}")
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"expected IP addresses or CIDR networks, got {item[:60]!r}") from None
    return tuple(out)
