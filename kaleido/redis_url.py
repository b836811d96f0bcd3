"""Redis Cluster URLs: `redis+cluster://[user:password@]host:port[,host:port…]` (and
`rediss+cluster://` for TLS) name a cluster's seed nodes. Pure parsing, shared by the settings
(which validate) and the Redis gateway (which connects)."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import attrs

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@attrs.frozen
class ClusterURL:
    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    tls: bool = False
    # `?ssl_ca_certs=/path/ca.pem`: the CA file that signs the nodes' certificates
    ca_certs: str | None = None


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterURL:
    """Split a cluster URL into its seed nodes and credentials; ValueError says what is wrong
    (never quoting the password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"expected {' or '.join(s + '://' for s in CLUSTER_SCHEMES)}")
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    query = parse_qs(rest.partition("?")[2])
    unknown = sorted(set(query) - {"ssl_ca_certs"})
    if unknown:
        raise ValueError(f"unknown query parameter {unknown[0]!r}; only ssl_ca_certs is read")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes: list[tuple[str, int]] = []
    for node in hosts.split(","):
        host, colon, port = node.strip().rpartition(":")
        host = host.strip("[]")
        if not colon or not host:
            raise ValueError(f"expected HOST:PORT for each seed node, got {node!r}")
        if not port.isdigit() or not 0 < int(port) <= 65535:
            raise ValueError(f"expected a port from 1 to 65535, got {port!r} in {node!r}")
        nodes.append((host, int(port)))
    ca_certs = query.get("ssl_ca_certs", [None])[-1]
    return ClusterURL(
        tuple(nodes), username, password, tls=scheme == "rediss+cluster", ca_certs=ca_certs
    )


def redact_cluster_url(url: str) -> str:
    """The URL with its password replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{hosts}{slash}{path}"


def redis_credentials(url: str) -> tuple[str, str | None]:
    """The user (Redis's `default` when the URL names none) and password a URL carries."""
    if is_cluster_url(url):
        parsed = parse_cluster_url(url)
        return parsed.username or "default", parsed.password
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username else "default"
    return user, unquote(parts.password) if parts.password is not None else None
