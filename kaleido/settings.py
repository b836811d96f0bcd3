"""Settings: one frozen object built from `KALEIDO_*` variables and the same options as flags.

`Settings` checks every value on construction (attrs validators): a bad one raises SettingError
naming the field. The environment layer (`load_settings`) only converts text, and reports a bad
value under the variable or flag it came from: one line; the command line exits 2.
Secrets come from the environment or a file, never a flag (`kaleido.secret_settings`).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from kaleido import setting_values as v
from kaleido.errors import ConfigError, SettingError
from kaleido.secret_settings import (
    ENV_PREFIX,
    add_file_flag,
    flag_help,
    is_secret,
    redact_url,
    refuse_secret_flag,
    secret_value,
)
from kaleido.setting_fields import Option, about, checked, options

# A stored key is `prefix + "post:views:..."`; keep prefixes to a safe, greppable alphabet.
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:{}-]{0,64}$")
_INSTANCE_RE = re.compile(r"^[A-Za-z0-9_.-]{0,64}$")


def _normal_networks(value: Any) -> tuple[str, ...]:
    try:
        return v.networks(value)
    except ValueError as exc:
        raise SettingError("trusted_proxies", str(exc)) from None


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _secret_repr(value: str | None) -> str:
    return "***" if value else "None"


def _bind_text(host_port: tuple[str, int]) -> str:
    return v.join_host_port(*host_port)


_SECONDS = checked(v.positive_seconds)
_WHOLE = checked(v.positive_whole)


@attrs.frozen(kw_only=True)
class Settings:
    """The whole configuration of one Kaleido process, checked on construction: a bad value
    raises SettingError (a ConfigError) naming the field, e.g. `Settings(sync_interval=-1)`.

    Each field declares its setting once: its default and check, and in `about` its text
    parser and help; its variable and flag are its name (KALEIDO_SYNC_INTERVAL,
    --sync-interval). The flags, the environment layer and docs/configuration.md's table are
    made from them (`kaleido.setting_fields`)."""

    redis_url: str | None = attrs.field(
        default=None,
        repr=redact_url,
        validator=checked(v.redis_url, optional=True),
        metadata=about(
            str,
            "Redis URL (redis://, rediss://; redis+cluster://host:port[,host:port...] for "
            "a Redis Cluster); default: a private redis-server",
        ),
    )
    database_url: str | None = attrs.field(
        default=None,
        repr=redact_url,
        validator=checked(v.database_url, optional=True),
        metadata=about(str, "PostgreSQL URL; default: a private PostgreSQL"),
    )
    http_host: str = attrs.field(
        default="127.0.0.1",
        validator=checked(v.host),
        metadata=about(
            v.host_port,
            "HOST:PORT of the public listener, the /v1 user routes (127.0.0.1:8080)",
            name="http_bind",
            sets=("http_host", "http_port"),
            text=_bind_text,
        ),
    )
    http_port: int = attrs.field(default=8080, validator=checked(v.port))  # KALEIDO_HTTP_BIND
    ops_host: str = attrs.field(
        default="127.0.0.1",
        validator=checked(v.host),
        metadata=about(
            v.host_port,
            "HOST:PORT of the ops listener: /metrics, admin routes (127.0.0.1:9090)",
            name="ops_bind",
            sets=("ops_host", "ops_port"),
            text=_bind_text,
        ),
    )
    ops_port: int = attrs.field(default=9090, validator=checked(v.port))  # KALEIDO_OPS_BIND
    admin_token: str | None = attrs.field(
        default=None,
        repr=_secret_repr,
        validator=checked(v.admin_token, optional=True),
        metadata=about(str, "bearer token for the admin routes (disabled when unset)"),
    )
    # base64 text of the key, as the Kaleidoscope backend's JWT_SECRET
    jwt_secret: str | None = attrs.field(
        default=None,
        repr=_secret_repr,
        validator=checked(v.jwt_secret, optional=True),
        metadata=about(
            str.strip,
            "base64 HS256 key of the Kaleidoscope backend's JWTs (its JWT_SECRET); user "
            "routes then need a token",
        ),
    )
    service_token: str | None = attrs.field(
        default=None,
        repr=_secret_repr,
        validator=checked(v.service_token, optional=True),
        metadata=about(
            str, "bearer token (32+ characters) of trusted backends, acting for any user"
        ),
    )
    auth: str = attrs.field(
        default="on",
        validator=checked(v.one_of("on", "off")),
        metadata=about(str, "off: user routes without auth even on a non-loopback bind"),
    )
    # Floats in the ML service's embeddings (its Google platform: 1408 and 1408; its
    # HuggingFace platform, its default: 512 for images, 1408 for faces).
    image_embedding_dim: int = attrs.field(
        default=1408,
        validator=checked(v.embedding_dim),
        metadata=about(
            v.whole_text,
            "floats in an ML image embedding: 1408 (Google platform) or 512 (HuggingFace) (1408)",
        ),
    )
    face_embedding_dim: int = attrs.field(
        default=1408,
        validator=checked(v.embedding_dim),
        metadata=about(v.whole_text, "floats in an ML face embedding (1408)"),
    )
    # Media URLs must start with one of these (none: any public https URL).
    media_url_prefixes: tuple[str, ...] = attrs.field(
        default=(),
        converter=_tuple,
        validator=checked(v.url_prefixes),
        metadata=about(
            v.comma_list,
            "comma-separated https prefixes media URLs must start with (default: any public host)",
        ),
    )
    sync_interval: float = attrs.field(
        default=300.0,
        validator=_SECONDS,
        metadata=about(v.seconds_text, "seconds between view syncs (default 300)"),
    )
    # How long a dead syncer's lock blocks the others; a live holder renews it every third.
    sync_lock_ttl: float = attrs.field(
        default=30.0,
        validator=checked(v.lock_ttl),
        metadata=about(
            v.seconds_text,
            "seconds the sync lock outlives a holder that died; at least 1 (default 30)",
        ),
    )
    view_dedup_ttl: int = attrs.field(
        default=86400,
        validator=_WHOLE,
        metadata=about(v.whole_text, "seconds a (user, post) view is deduplicated (86400)"),
    )
    view_partitions: int = attrs.field(
        default=64,
        validator=checked(v.partition_count),
        metadata=about(
            v.whole_text, "partitions of the view layout, fixed when it is created in Redis (64)"
        ),
    )
    stream_maxlen: int = attrs.field(
        default=10000,
        validator=_WHOLE,
        metadata=about(v.whole_text, "approximate MAXLEN of outbound streams (10000)"),
    )
    max_deliveries: int = attrs.field(
        default=5,
        validator=_WHOLE,
        metadata=about(v.whole_text, "deliveries before an entry goes to the DLQ (5)"),
    )
    key_prefix: str = attrs.field(
        default="",
        validator=checked(
            v.matching(_PREFIX_RE, "up to 64 characters from A-Z a-z 0-9 _ . : { } -")
        ),
        metadata=about(str, "prefix of every Redis key (default empty)", empty=True),
    )
    instance: str = attrs.field(
        default="",
        validator=checked(v.matching(_INSTANCE_RE, "up to 64 characters from A-Z a-z 0-9 _ . -")),
        metadata=about(str, "instance name appended to consumer names (default empty)", empty=True),
    )
    log_format: str = attrs.field(
        default="json",
        validator=checked(v.one_of("json", "console")),
        metadata=about(str, "json (default) or console"),
    )
    state_dir: Path = attrs.field(
        default=Path(".state"),
        converter=Path,
        metadata=about(Path, "folder for the private servers' data (default .state)"),
    )
    shutdown_deadline: float = attrs.field(
        default=10.0,
        validator=_SECONDS,
        metadata=about(v.seconds_text, "seconds a graceful shutdown may take (default 10)"),
    )
    metrics_interval: float = attrs.field(
        default=5.0,
        validator=_SECONDS,
        metadata=about(v.seconds_text, "seconds between metrics samples of Redis (default 5)"),
    )
    workers: int = attrs.field(
        default=1,
        validator=checked(v.workers_count),
        metadata=about(v.whole_text, "service processes sharing the HTTP port (default 1)"),
    )
    max_connections: int = attrs.field(
        default=1000,
        validator=_WHOLE,
        metadata=about(
            v.whole_text,
            "open connections per listener and process; past it new ones get a 503 (default 1000)",
        ),
    )
    # the HTTP limits: docs/security.md
    max_in_flight: int = attrs.field(
        default=32,
        validator=_WHOLE,
        metadata=about(
            v.whole_text,
            "requests handled at once per listener and process; past it a quick 503 (default 32)",
        ),
    )
    max_connections_per_client: int = attrs.field(
        default=64,
        validator=_WHOLE,
        metadata=about(v.whole_text, "connections from one address (default 64)"),
    )
    http2: str = attrs.field(
        default="off",
        validator=checked(v.one_of("on", "off")),
        metadata=about(str, "on: serve cleartext HTTP/2 too (default off)"),
    )
    # normalised networks
    trusted_proxies: tuple[str, ...] = attrs.field(
        default=(),
        converter=_normal_networks,
        metadata=about(v.comma_list, "proxies whose X-Forwarded-* headers count (CIDRs)"),
    )
    # or "eval", the weaker mode (docs/redis.md)
    redis_scripts: str = attrs.field(
        default="functions",
        validator=checked(v.one_of("functions", "eval")),
        metadata=about(
            str,
            "functions (default: FCALL of the library an admin loads) or eval (EVALSHA; "
            "weaker: Kaleido's Redis user may then run any Lua)",
        ),
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from `KALEIDO_*` variables (default: the process environment); raises
        ConfigError naming the variable that is wrong."""
        return load_settings(os.environ if environ is None else environ)

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


# Every setting as text, by the name its variable and flag spell, from the fields' `about`.
OPTIONS: Mapping[str, Option] = options(Settings)


def add_arguments(parser: argparse.ArgumentParser, names: Collection[str] | None = None) -> None:
    """Add one `--flag` per setting (only those in `names`, when given: a command's help lists
    what it reads); values stay raw text so that one place validates them."""
    for name, option in OPTIONS.items():
        if names is not None and name not in names:
            continue
        parser.add_argument(
            option.flag,
            dest=name,
            # SUPPRESS: an absent flag sets nothing, so a subcommand's parser cannot overwrite a
            # value given to the main parser, and the environment stays the fallback.
            default=argparse.SUPPRESS,
            metavar=name.upper(),
            help=flag_help(name, f"{option.help} [env {option.env}]"),
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
    sources: dict[str, str] = {}  # field -> the variable or flag it came from
    for name, option in OPTIONS.items():
        raw = getattr(args, name, None) if args is not None else None
        source = option.flag
        if raw is not None:
            refuse_secret_flag(name, raw)
        elif is_secret(name):
            raw, source = secret_value(name, args, environ)
        else:
            raw, source = environ.get(option.env), option.env
        if raw is None or (raw == "" and not option.empty):
            continue
        try:
            parsed = option.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        for field, value in option.assign(parsed).items():
            values[field] = value
            sources[field] = source
    try:
        return Settings(**values)
    except SettingError as exc:
        raise ConfigError(f"{sources.get(exc.field, exc.field)}: {exc.reason}") from None


def setting_names() -> tuple[str, ...]:
    """Every setting's name as its flag and variable spell it (`http_bind`, not `http_host`)."""
    return tuple(OPTIONS)


def settings_to_env(settings: Settings) -> dict[str, str]:
    """The `KALEIDO_*` variables that `load_settings` turns back into `settings` (how a worker
    process receives the supervisor's configuration, flags included)."""
    env: dict[str, str] = {}
    for option in OPTIONS.values():
        value = option.value(lambda field: getattr(settings, field))
        if value is not None:
            env[option.env] = option.text(value)
    return env


def settings_from_argv(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Parse `argv` (flags only) on top of `environ`; a helper for tests and embedding."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    return load_settings(environ, parser.parse_args(list(argv)))
