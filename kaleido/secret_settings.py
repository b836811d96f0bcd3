"""The settings that hold a secret: where they may come from, and how they are never shown.

A secret (the tokens, the JWT secret, a password inside a URL) comes from the environment or
from a file named by `KALEIDO_<NAME>_FILE` (or the flag `--<name>-file`), never from a flag:
every local user can read a process's arguments (`ps`). A secret given as a flag is refused
with one line naming the variable to use. A file's content loses its trailing newline; a file
that cannot be read, or is empty, is one clear line too. `redact_url` hides a URL's password
wherever a URL is printed or logged.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from kaleido.errors import ConfigError
from kaleido.redis_url import is_cluster_url, parse_cluster_url, redact_cluster_url

ENV_PREFIX = "KALEIDO_"
FILE_SUFFIX = "_FILE"
# Settings that are secrets: never flags. URLs: flags only while they carry no password.
SECRETS = ("admin_token", "jwt_secret", "service_token")
SECRET_URLS = ("redis_url", "database_url")

# Query parameters that carry a secret in Redis and PostgreSQL URLs (`?password=`, libpq's
# `sslpassword`, ...).
_SECRET_PARAMS = {"password", "pass", "pwd", "secret", "token", "sslpassword", "passfile"}


def redact_url(url: str | None) -> str:
    """Return the URL with any password (in user:password@ or in the query) replaced by
    `***`, safe to print or log."""
    if not url:
        return ""
    if is_cluster_url(url):
        return redact_cluster_url(url)
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        netloc = f"{parts.username or ''}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() in _SECRET_PARAMS for key, _ in pairs):
            pairs = [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs]
            query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def url_has_secret(url: str) -> bool:
    """Whether a Redis or PostgreSQL URL carries a password (in user:password@ or the query)."""
    if is_cluster_url(url):
        try:
            return parse_cluster_url(url).password is not None
        except ValueError:
            return "@" in url  # malformed: refused as a flag rather than echoed
    parts = urlsplit(url)
    try:
        password = parts.password
    except ValueError:
        return "@" in url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    return password is not None or any(key.lower() in _SECRET_PARAMS for key, _ in pairs)


def is_secret(name: str) -> bool:
    """Whether the setting `name` is, or may carry, a secret."""
    return name in SECRETS or name in SECRET_URLS


def flag_help(name: str, text: str) -> str:
    """The help of a setting's flag: hidden for a secret, whose flag is only refused."""
    if name in SECRETS:
        return argparse.SUPPRESS
    if name in SECRET_URLS:
        variable = ENV_PREFIX + name.upper()
        return f"{text}; with a password only as {variable} or {variable}{FILE_SUFFIX}"
    return text


def add_file_flag(parser: argparse.ArgumentParser, name: str) -> None:
    """For a secret setting, `--NAME-file PATH`: a file that holds it (a path is no secret)."""
    if not is_secret(name):
        return
    variable = ENV_PREFIX + name.upper()
    parser.add_argument(
        flag(name) + "-file",
        dest=name + "_file",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help=f"a file holding the {name.replace('_', ' ')} "
        f"[env {variable}{FILE_SUFFIX}; or {variable}]",
    )


def secret_value(
    name: str, args: argparse.Namespace | None, environ: Mapping[str, str]
) -> tuple[str | None, str]:
    """A secret setting's raw value and where it came from: the file of `--NAME-file`, else
    the environment (`secret_from_environment`)."""
    path = getattr(args, name + "_file", None) if args is not None else None
    if path is not None:
        return read_secret_file(path, flag(name) + "-file"), flag(name) + "-file"
    return secret_from_environment(environ, ENV_PREFIX + name.upper())


def refuse_secret_flag(name: str, raw: str) -> None:
    """ConfigError if the setting `name`, given as a flag with the value `raw`, is a secret."""
    if name in SECRETS or (name in SECRET_URLS and url_has_secret(raw)):
        variable = ENV_PREFIX + name.upper()
        what = "a URL with a password" if name in SECRET_URLS else "a secret"
        raise ConfigError(
            f"{flag(name)}: {what} is not accepted as a flag (every local user can read a "
            f"process's arguments); set {variable} or {variable}{FILE_SUFFIX}"
        )


def flag(name: str) -> str:
    """The flag of the setting `name`."""
    return "--" + name.replace("_", "-")


def secret_from_environment(environ: Mapping[str, str], variable: str) -> tuple[str | None, str]:
    """The secret in `variable`, or in the file `variable_FILE` names, and where it came from;
    ConfigError when both are set."""
    file_variable = variable + FILE_SUFFIX
    value, path = environ.get(variable) or None, environ.get(file_variable) or None
    if path is None:
        return value, variable
    if value is not None:
        raise ConfigError(f"{file_variable}: {variable} is set too; set only one of them")
    return read_secret_file(path, file_variable), file_variable


def read_secret(environ: Mapping[str, str], variable: str) -> str | None:
    """A secret that is no setting (an admin URL), from `variable` or `variable_FILE`."""
    return secret_from_environment(environ, variable)[0]


def read_secret_file(path: str, source: str) -> str:
    """The secret in the file at `path`, without its trailing newline; ConfigError (naming
    `source`, the variable or flag that named the file) if unreadable or empty."""
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: {path} is not UTF-8 text") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise ConfigError(f"{source}: {path} is empty")
    return secret
