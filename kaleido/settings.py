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
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from kaleido import setting_values as v
from kaleido.errors import ConfigError, SettingError
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


def _checked(
    check: Callable[[Any], object], *, optional: bool = False
) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator running `check`; its ValueError becomes SettingError naming the
    field. `optional`: None is accepted (the setting is unset)."""

    def validate(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and optional:
            return
        try:
            check(value)
        except ValueError as exc:
            raise SettingError(attribute.name, str(exc)) from None

    return validate


def _normal_networks(value: Any) -> tuple[str, ...]:
    try:
        return v.networks(value)
    except ValueError as exc:
        raise SettingError("trusted_proxies", str(exc)) from None


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _secret_repr(value: str | None) -> str:
    return "***" if value else "None"


_SECONDS = _checked(v.positive_seconds)
_WHOLE = _checked(v.positive_whole)


@attrs.frozen(kw_only=True)
class Settings:
    """The whole configuration of one Kaleido process, checked on construction: a bad value
    raises SettingError (a ConfigError) naming the field, e.g. `Settings(sync_interval=-1)`."""

    redis_url: str | None = attrs.field(
        default=None, repr=redact_url, validator=_checked(v.redis_url, optional=True)
    )
    database_url: str | None = attrs.field(
        default=None, repr=redact_url, validator=_checked(v.database_url, optional=True)
    )
    http_host: str = attrs.field(default="127.0.0.1", validator=_checked(v.host))
    http_port: int = attrs.field(default=8080, validator=_checked(v.port))
    ops_host: str = attrs.field(default="127.0.0.1", validator=_checked(v.host))
    ops_port: int = attrs.field(default=9090, validator=_checked(v.port))
    admin_token: str | None = attrs.field(
        default=None, repr=_secret_repr, validator=_checked(v.admin_token, optional=True)
    )
    # base64 text of the key, as the Kaleidoscope backend's JWT_SECRET
    jwt_secret: str | None = attrs.field(
        default=None, repr=_secret_repr, validator=_checked(v.jwt_secret, optional=True)
    )
    service_token: str | None = attrs.field(
        default=None, repr=_secret_repr, validator=_checked(v.service_token, optional=True)
    )
    # "off": user routes without auth even on a non-loopback bind
    auth: str = attrs.field(default="on", validator=_checked(v.one_of("on", "off")))
    # Media URLs must start with one of these (none: any public https URL).
    media_url_prefixes: tuple[str, ...] = attrs.field(
        default=(), converter=_tuple, validator=_checked(v.url_prefixes)
    )
    # Floats in the ML service's embeddings (its Google platform: 1408 and 1408; its
    # HuggingFace platform, its default: 512 for images, 1408 for faces).
    image_embedding_dim: int = attrs.field(default=1408, validator=_checked(v.embedding_dim))
    face_embedding_dim: int = attrs.field(default=1408, validator=_checked(v.embedding_dim))
    sync_interval: float = attrs.field(default=300.0, validator=_SECONDS)
    # How long a dead syncer's lock blocks the others; a live holder renews it every third.
    sync_lock_ttl: float = attrs.field(default=30.0, validator=_checked(v.lock_ttl))
    view_dedup_ttl: int = attrs.field(default=86400, validator=_WHOLE)
    view_partitions: int = attrs.field(default=64, validator=_checked(v.partition_count))
    stream_maxlen: int = attrs.field(default=10000, validator=_WHOLE)
    max_deliveries: int = attrs.field(default=5, validator=_WHOLE)
    key_prefix: str = attrs.field(
        default="",
        validator=_checked(
            v.matching(_PREFIX_RE, "up to 64 characters from A-Z a-z 0-9 _ . : { } -")
        ),
    )
    instance: str = attrs.field(
        default="",
        validator=_checked(v.matching(_INSTANCE_RE, "up to 64 characters from A-Z a-z 0-9 _ . -")),
    )
    log_format: str = attrs.field(default="json", validator=_checked(v.one_of("json", "console")))
    state_dir: Path = attrs.field(default=Path(".state"), converter=Path)
    shutdown_deadline: float = attrs.field(default=10.0, validator=_SECONDS)
    metrics_interval: float = attrs.field(default=5.0, validator=_SECONDS)
    workers: int = attrs.field(default=1, validator=_checked(v.workers_count))
    max_connections: int = attrs.field(default=1000, validator=_WHOLE)
    # the HTTP limits: docs/security.md
    max_connections_per_client: int = attrs.field(default=64, validator=_WHOLE)
    http2: str = attrs.field(default="off", validator=_checked(v.one_of("on", "off")))
    # normalised networks
    trusted_proxies: tuple[str, ...] = attrs.field(default=(), converter=_normal_networks)
    # or "eval", the weaker mode (docs/redis.md)
    redis_scripts: str = attrs.field(
        default="functions", validator=_checked(v.one_of("functions", "eval"))
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


# Each setting's text converter (the checks are the fields' validators) and help text.
_OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "redis_url": (
        str,
        "Redis URL (redis://, rediss://; redis+cluster://host:port[,host:port...] for a "
        "Redis Cluster); default: a private redis-server",
    ),
    "database_url": (str, "PostgreSQL URL; default: a private PostgreSQL"),
    "http_bind": (
        v.host_port,
        "HOST:PORT of the public listener, the /v1 user routes (127.0.0.1:8080)",
    ),
    "ops_bind": (
        v.host_port,
        "HOST:PORT of the ops listener: /metrics, admin routes (127.0.0.1:9090)",
    ),
    "admin_token": (str, "bearer token for the admin routes (disabled when unset)"),
    "jwt_secret": (
        str.strip,
        "base64 HS256 key of the Kaleidoscope backend's JWTs (its JWT_SECRET); user routes then "
        "need a token",
    ),
    "service_token": (
        str,
        "bearer token (32+ characters) of trusted backends, acting for any user",
    ),
    "auth": (str, "off: user routes without auth even on a non-loopback bind"),
    "image_embedding_dim": (
        v.whole_text,
        "floats in an ML image embedding: 1408 (Google platform) or 512 (HuggingFace) (1408)",
    ),
    "face_embedding_dim": (v.whole_text, "floats in an ML face embedding (1408)"),
    "media_url_prefixes": (
        v.comma_list,
        "comma-separated https prefixes media URLs must start with (default: any public host)",
    ),
    "sync_interval": (v.seconds_text, "seconds between view syncs (default 300)"),
    "sync_lock_ttl": (
        v.seconds_text,
        "seconds the sync lock outlives a holder that died; at least 1 (default 30)",
    ),
    "view_dedup_ttl": (v.whole_text, "seconds a (user, post) view is deduplicated (86400)"),
    "view_partitions": (
        v.whole_text,
        "partitions of the view layout, fixed when it is created in Redis (64)",
    ),
    "stream_maxlen": (v.whole_text, "approximate MAXLEN of outbound streams (10000)"),
    "max_deliveries": (v.whole_text, "deliveries before an entry goes to the DLQ (5)"),
    "key_prefix": (
        str,
        "prefix of every Redis key (default empty)",
    ),
    "instance": (
        str,
        "instance name appended to consumer names (default empty)",
    ),
    "log_format": (str, "json (default) or console"),
    "state_dir": (Path, "folder for the private servers' data (default .state)"),
    "shutdown_deadline": (v.seconds_text, "seconds a graceful shutdown may take (default 10)"),
    "metrics_interval": (v.seconds_text, "seconds between metrics samples of Redis (default 5)"),
    "workers": (v.whole_text, "service processes sharing the HTTP port (default 1)"),
    "max_connections": (
        v.whole_text,
        "open connections per listener and process; past it new ones get a 503 (default 1000)",
    ),
    "max_connections_per_client": (v.whole_text, "connections from one address (default 64)"),
    "http2": (str, "on: serve cleartext HTTP/2 too (default off)"),
    "trusted_proxies": (v.comma_list, "proxies whose X-Forwarded-* headers count (CIDRs)"),
    "redis_scripts": (
        str,
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
    sources: dict[str, str] = {}  # field -> the variable or flag it came from
    for name, (convert, _) in _OPTIONS.items():
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
            value = convert(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        if name in ("http_bind", "ops_bind"):
            side = name.removesuffix("_bind")
            values[f"{side}_host"], values[f"{side}_port"] = value
            sources[f"{side}_host"] = sources[f"{side}_port"] = source
        else:
            values[name] = value
            sources[name] = source
    try:
        return Settings(**values)
    except SettingError as exc:
        raise ConfigError(f"{sources.get(exc.field, exc.field)}: {exc.reason}") from None


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
            value: Any = v.join_host_port(host, port)
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
