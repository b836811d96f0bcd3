"""Settings: one frozen object built from `KALEIDO_*` variables and the same options as flags.

Every value is validated here, once, at start-up. A bad value raises `ConfigError` whose message
is one line naming the variable and what is wrong; the command line turns it into exit status 2.
Secrets come from the environment or a file, never a flag (`kaleido.secret_settings`).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from kaleido import setting_values as v
from kaleido.errors import ConfigError
from kaleido.secret_settings import (
    ENV_PREFIX,
    add_file_flag,
    flag,
    flag_help,
    is_secret,
    redact_url,
    refuse_secret_flag,
    secret_value,
)

# A stored key is `prefix + "post:views:..."`; keep prefixes to a safe, greppable alphabet.
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:{}-]{0,64}$")
_INSTANCE_RE = re.compile(r"^[A-Za-z0-9_.-]{0,64}$")


@attrs.frozen(kw_only=True)
class Settings:
    """The whole configuration of one Kaleido process."""

    redis_url: str | None = attrs.field(default=None, repr=redact_url)
    database_url: str | None = attrs.field(default=None, repr=redact_url)
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    ops_host: str = "127.0.0.1"
    ops_port: int = 9090
    admin_token: str | None = attrs.field(default=None, repr=lambda v: "***" if v else "None")
    # base64 text of the key, as the Kaleidoscope backend's JWT_SECRET
    jwt_secret: str | None = attrs.field(default=None, repr=lambda v: "***" if v else "None")
    service_token: str | None = attrs.field(default=None, repr=lambda v: "***" if v else "None")
    auth: str = "on"  # "off": user routes without auth even on a non-loopback bind
    # Media URLs must start with one of these (none: any public https URL).
    media_url_prefixes: tuple[str, ...] = ()
    # Floats in the ML service's embeddings (its Google platform: 1408 and 1408; its
    # HuggingFace platform, its default: 512 for images, 1408 for faces).
    image_embedding_dim: int = 1408
    face_embedding_dim: int = 1408
    sync_interval: float = 300.0
    # How long a dead syncer's lock blocks the others; a live holder renews it every third.
    sync_lock_ttl: float = 30.0
    view_dedup_ttl: int = 86400
    view_partitions: int = 64
    stream_maxlen: int = 10000
    max_deliveries: int = 5
    key_prefix: str = ""
    instance: str = ""
    log_format: str = "json"
    state_dir: Path = Path(".state")
    shutdown_deadline: float = 10.0
    metrics_interval: float = 5.0
    workers: int = 1
    max_connections: int = 1000
    max_connections_per_client: int = 64  # the HTTP limits: docs/security.md
    http2: str = "off"
    trusted_proxies: tuple[str, ...] = ()  # normalised networks
    redis_scripts: str = "functions"  # or "eval", the weaker mode (docs/redis.md)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from `KALEIDO_*` variables (default: the process environment); raises
        ConfigError naming the variable that is wrong."""
        return load_settings(os.environ if environ is None else environ)

    @property
    def http_bind(self) -> str:
        return f"{self.http_host}:{self.http_port}"

    @property
    def embedded(self) -> bool:
        """True when Kaleido must start its own private Redis and PostgreSQL."""
        return self.redis_url is None or self.database_url is None

    def public_dict(self) -> dict[str, Any]:
        """The settings with secrets redacted, for logs and `kaleido doctor`."""
        out = attrs.asdict(self)
        out["redis_url"] = redact_url(self.redis_url)
        out["database_url"] = redact_url(self.database_url)
        for secret in ("admin_token", "jwt_secret", "service_token"):
            out[secret] = "***" if out[secret] else None
        out["state_dir"] = str(self.state_dir)
        return out


_OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "redis_url": (
        v.redis_url_text,
        "Redis URL (redis://, rediss://; redis+cluster://host:port[,host:port...] for a "
        "Redis Cluster); default: a private redis-server",
    ),
    "database_url": (v.database_url_text, "PostgreSQL URL; default: a private PostgreSQL"),
    "http_bind": (
        v.host_port,
        "HOST:PORT of the public listener, the /v1 user routes (127.0.0.1:8080)",
    ),
    "ops_bind": (
        v.host_port,
        "HOST:PORT of the ops listener: /metrics, admin routes (127.0.0.1:9090)",
    ),
    "admin_token": (v.admin_token_text, "bearer token for the admin routes (disabled when unset)"),
    "jwt_secret": (
        v.jwt_secret_text,
        "base64 HS256 key of the Kaleidoscope backend's JWTs (its JWT_SECRET); user routes then "
        "need a token",
    ),
    "service_token": (
        v.service_token_text,
        "bearer token (32+ characters) of trusted backends, acting for any user",
    ),
    "auth": (v.one_of("on", "off"), "off: user routes without auth even on a non-loopback bind"),
    "image_embedding_dim": (
        v.embedding_dim,
        "floats in an ML image embedding: 1408 (Google platform) or 512 (HuggingFace) (1408)",
    ),
    "face_embedding_dim": (v.embedding_dim, "floats in an ML face embedding (1408)"),
    "media_url_prefixes": (
        v.url_prefixes,
        "comma-separated https prefixes media URLs must start with (default: any public host)",
    ),
    "sync_interval": (v.positive_float, "seconds between view syncs (default 300)"),
    "sync_lock_ttl": (
        v.lock_ttl,
        "seconds the sync lock outlives a holder that died; at least 1 (default 30)",
    ),
    "view_dedup_ttl": (v.positive_int, "seconds a (user, post) view is deduplicated (86400)"),
    "view_partitions": (
        v.partition_count,
        "partitions of the view layout, fixed when it is created in Redis (64)",
    ),
    "stream_maxlen": (v.positive_int, "approximate MAXLEN of outbound streams (10000)"),
    "max_deliveries": (v.positive_int, "deliveries before an entry goes to the DLQ (5)"),
    "key_prefix": (
        v.matching(_PREFIX_RE, "up to 64 characters from A-Z a-z 0-9 _ . : { } -"),
        "prefix of every Redis key (default empty)",
    ),
    "instance": (
        v.matching(_INSTANCE_RE, "up to 64 characters from A-Z a-z 0-9 _ . -"),
        "instance name appended to consumer names (default empty)",
    ),
    "log_format": (v.one_of("json", "console"), "json (default) or console"),
    "state_dir": (Path, "folder for the private servers' data (default .state)"),
    "shutdown_deadline": (v.positive_float, "seconds a graceful shutdown may take (default 10)"),
    "metrics_interval": (v.positive_float, "seconds between metrics samples of Redis (default 5)"),
    "workers": (v.workers_count, "service processes sharing the HTTP port (default 1)"),
    "max_connections": (
        v.positive_int,
        "open connections per listener and process; past it new ones get a 503 (default 1000)",
    ),
    "max_connections_per_client": (v.positive_int, "connections from one address (default 64)"),
    "http2": (v.one_of("on", "off"), "on: serve cleartext HTTP/2 too (default off)"),
    "trusted_proxies": (v.networks, "proxies whose X-Forwarded-* headers count (CIDRs)"),
    "redis_scripts": (
        v.one_of("functions", "eval"),
        "functions (default: FCALL of the library an admin loads) or eval (EVALSHA; weaker: "
        "Kaleido's Redis user may then run any Lua)",
    ),
}


def add_arguments(parser: argparse.ArgumentParser, names: Collection[str] | None = None) -> None:
    """Add one `--flag` per setting (only those in `names`, when given: a command's help lists
    what it reads); values stay raw text so that one place validates them."""
    for name, (_, help_text) in _OPTIONS.items():
        if names is not None and name not in names:
            continue
        parser.add_argument(
            flag(name),
            dest=name,
            # SUPPRESS: an absent flag sets nothing, so a subcommand's parser cannot overwrite a
            # value given to the main parser, and the environment stays the fallback.
            default=argparse.SUPPRESS,
            metavar=name.upper(),
            help=flag_help(name, f"{help_text} [env {ENV_PREFIX}{name.upper()}]"),
        )
        add_file_flag(parser, name)


# Settings that are gone, and what replaced them: set, they stop start-up with one line.
_REPLACED = {
    "embedding_dim": "KALEIDO_IMAGE_EMBEDDING_DIM and KALEIDO_FACE_EMBEDDING_DIM (the ML "
    "service's HuggingFace platform sends 512-float image and 1408-float face embeddings)",
}


def load_settings(environ: Mapping[str, str], args: argparse.Namespace | None = None) -> Settings:
    """Build settings from flags (first) and `KALEIDO_*` variables; raise ConfigError if bad."""
    for name, replacement in _REPLACED.items():
        if environ.get(ENV_PREFIX + name.upper()) is not None:
            raise ConfigError(
                f"{ENV_PREFIX}{name.upper()} is no longer read: set {replacement} instead"
            )
    values: dict[str, Any] = {}
    for name, (parse, _) in _OPTIONS.items():
        variable = ENV_PREFIX + name.upper()
        raw = getattr(args, name, None) if args is not None else None
        source = flag(name)
        if raw is not None:
            refuse_secret_flag(name, raw)
        elif is_secret(name):
            raw, source = secret_value(name, args, environ)
        else:
            raw, source = environ.get(variable), variable
        if raw is None or (raw == "" and name not in ("key_prefix", "instance")):
            continue
        try:
            value = parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        if name in ("http_bind", "ops_bind"):
            side = name.removesuffix("_bind")
            values[f"{side}_host"], values[f"{side}_port"] = value
        else:
            values[name] = value
    return Settings(**values)


def setting_names() -> tuple[str, ...]:
    """Every setting's name as its flag and variable spell it (`http_bind`, not `http_host`)."""
    return tuple(_OPTIONS)


def settings_to_env(settings: Settings) -> dict[str, str]:
    """The `KALEIDO_*` variables that `load_settings` turns back into `settings` (how a worker
    process receives the supervisor's configuration, flags included)."""
    env: dict[str, str] = {}
    for name in _OPTIONS:
        if name in ("http_bind", "ops_bind"):
            side = name.removesuffix("_bind")
            host, port = getattr(settings, f"{side}_host"), getattr(settings, f"{side}_port")
            value: Any = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        else:
            value = getattr(settings, name)
        if isinstance(value, tuple):
            value = ",".join(value)
        if value is not None:
            env[ENV_PREFIX + name.upper()] = str(value)
    return env


def settings_from_argv(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Parse `argv` (flags only) on top of `environ`; a helper for tests and embedding."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    return load_settings(environ, parser.parse_args(list(argv)))
