"""The `kaleido` command line's arguments: one subparser per command, each offering only the
settings that command reads (its `--help` lists nothing else), plus `--json` on every command
that prints a result.

`kaleido` with no command is `kaleido run`, so the main parser takes run's flags too
(`python run.py --dev --workers 2`).
"""

from __future__ import annotations

import argparse
from typing import Any

from kaleido import __version__
from kaleido.http.auth import ROLES
from kaleido.messages import INBOUND_STREAMS
from kaleido.ops.doctor import DLQ_INTERVAL
from kaleido.ops.streams import is_entry_id
from kaleido.secret_settings import is_secret
from kaleido.settings import OPTIONS, add_arguments
from kaleido.streams.dlq import REPLAY_LIMIT

# The admin's Redis URL for `kaleido redis-acl --setuser` (a secret: environment or file only).
ADMIN_URL_VARIABLE = "KALEIDO_REDIS_ADMIN_URL"

# What a command that opens the deployment's Redis and PostgreSQL reads (`state_dir`: where
# `make run` leaves its URLs).
_CONNECT = (
    "redis_url",
    "database_url",
    "key_prefix",
    "redis_scripts",
    "view_partitions",
    "state_dir",
    "log_format",
)
# The settings each command reads; `run` reads them all (None).
COMMAND_SETTINGS: dict[str, tuple[str, ...] | None] = {
    "run": None,
    "sync": (*_CONNECT, "view_dedup_ttl", "sync_lock_ttl"),
    "doctor": (*_CONNECT, "sync_interval"),
    "streams": _CONNECT,
    "dlq": _CONNECT,
    "top": (*_CONNECT, "sync_interval"),
    "token": ("jwt_secret", "log_format"),
    "redis-acl": ("redis_url", "key_prefix", "redis_scripts", "state_dir", "log_format"),
    "completion": (),
}

DEMO_HELP = "also run a stand-in ML service and simulated users (every stream and table fills)"
DEV_HELP = (
    "start private throwaway servers (redis-server, PostgreSQL) under the state folder; "
    "refused when KALEIDO_REDIS_URL or KALEIDO_DATABASE_URL is set"
)
CLUSTER_HELP = "with --dev: a private Redis Cluster (3 masters, 3 replicas), not one redis-server"
JSON_HELP = "print one JSON object (keys: command, stack, then the result's own; docs/cli.md)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaleido",
        description="Kaleido: view counting and ML stream core of Kaleidoscope. With no "
        "COMMAND: run.",
        epilog="`kaleido COMMAND --help` lists the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"kaleido {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the long-lived service (the default)")
    add_arguments(run)
    # SUPPRESS on the subcommand: `kaleido --demo run` keeps the main parser's value.
    run.add_argument("--demo", action="store_true", default=argparse.SUPPRESS, help=DEMO_HELP)
    run.add_argument("--dev", action="store_true", default=argparse.SUPPRESS, help=DEV_HELP)
    run.add_argument("--cluster", action="store_true", default=argparse.SUPPRESS, help=CLUSTER_HELP)
    sync = _command(sub, "sync", "sync buffered view counts to PostgreSQL now")
    _add_json(sync)
    _add_ops_commands(sub)
    completion = _command(sub, "completion", "print the shell completion script")
    completion.add_argument("shell", choices=("bash",), help="the shell (zsh: bashcompinit)")
    # `kaleido` alone is `kaleido run`: it takes run's flags, which `kaleido run --help` lists.
    first = len(parser._actions)
    add_arguments(parser)
    for action in parser._actions[first:]:
        action.help = argparse.SUPPRESS
    parser.add_argument("--demo", action="store_true", help=DEMO_HELP)
    parser.add_argument("--dev", action="store_true", help=DEV_HELP)
    parser.add_argument("--cluster", action="store_true", help=CLUSTER_HELP)
    return parser


def _command(sub: Any, name: str, text: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A command's parser with the settings it reads (COMMAND_SETTINGS) as flags."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text, **kwargs)
    _settings_flags(parser, name)
    return parser


def _settings_flags(parser: argparse.ArgumentParser, command: str) -> None:
    names = COMMAND_SETTINGS[command]
    add_arguments(parser, names)
    # A secret flag a command does not read is still refused by name, in one line: argparse's
    # "unrecognized arguments" would print the secret.
    for name, option in OPTIONS.items():
        if is_secret(name) and names is not None and name not in names:
            parser.add_argument(option.flag, dest=name, default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS)  # fmt: skip


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 3600), got {text!r}")
    return value


def _positive_count(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 100_000:
        raise argparse.ArgumentTypeError(f"expected a count from 1 to 100000, got {text!r}")
    return int(text)


def _user_id(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise argparse.ArgumentTypeError(f"expected a positive 64-bit user id, got {text!r}")
    return int(text)


def _entry_id(text: str) -> str:
    if not is_entry_id(text):
        raise argparse.ArgumentTypeError(
            f"expected a stream entry id like 1700000000000-0, got {text!r}"
        )
    return text


def _add_ops_commands(sub: Any) -> None:
    """doctor, streams, dlq list|replay|purge, token, redis-acl, top."""
    doctor = _command(sub, "doctor", "check Redis and PostgreSQL; exit 1 on a problem")
    doctor.add_argument(
        "--dlq-interval", type=_positive_seconds, default=DLQ_INTERVAL, metavar="SECONDS",
        help=f"DLQ sizes are read twice this far apart (default {DLQ_INTERVAL:g})",
    )  # fmt: skip
    _add_json(doctor)
    streams = _command(sub, "streams", "groups, lag, pending entries and DLQ sizes")
    _add_json(streams)
    dlq = sub.add_parser("dlq", help="dead-letter queues: list, replay, purge")
    actions = dlq.add_subparsers(dest="dlq_action", metavar="ACTION", required=True)
    for action, text in [
        ("list", "show the oldest dead letters"),
        ("replay", "put dead letters back onto their stream"),
        ("purge", "delete every dead letter of the stream"),
    ]:
        parser = actions.add_parser(action, help=text, description=text)
        _settings_flags(parser, "dlq")
        parser.add_argument("stream", metavar="STREAM", choices=INBOUND_STREAMS,
                            help=f"one of {', '.join(INBOUND_STREAMS)}")  # fmt: skip
        if action == "list":
            parser.add_argument("--count", type=_positive_count, default=100)
        elif action == "replay":
            parser.add_argument(
                "--id", dest="ids", action="append", type=_entry_id, metavar="DLQ_ID",
                help="replay only this dead letter (repeatable; default: the oldest ones, up "
                "to --limit)",
            )  # fmt: skip
            parser.add_argument(
                "--limit", type=_positive_count, default=REPLAY_LIMIT, metavar="N",
                help=f"without --id: replay at most N (default {REPLAY_LIMIT}) of the dead "
                "letters there now; run again for more",
            )  # fmt: skip
        else:
            parser.add_argument("--yes", action="store_true", help="really delete them")
        _add_json(parser)
    token = _command(sub, "token", "print a signed test JWT (from KALEIDO_JWT_SECRET)")
    token.add_argument("--user-id", type=_user_id, required=True, metavar="ID")
    token.add_argument("--role", choices=ROLES, default=ROLES[0])
    token.add_argument("--ttl", type=_positive_seconds, default=3600.0, metavar="SECONDS",
                       help="seconds until it expires (default 3600)")  # fmt: skip
    token.add_argument("--username", help="the sub claim (default user<ID>)")
    _add_json(token)
    acl = _command(
        sub,
        "redis-acl",
        "the least-privilege Redis ACL rule for the user in KALEIDO_REDIS_URL; with "
        f"--setuser and {ADMIN_URL_VARIABLE}, install it and Kaleido's function library",
    )
    acl.add_argument(
        "--redis-version", choices=("7.0", "7.2"), default="7.0",
        help="the Redis the printed rule is for: 7.2 and later also allow CLIENT SETINFO",
    )  # fmt: skip
    acl.add_argument(
        "--setuser", action="store_true",
        help=f"with {ADMIN_URL_VARIABLE} (or {ADMIN_URL_VARIABLE}_FILE) set: set the user on "
        "every node and load the function library on every master; without: print an ACL "
        "SETUSER command for redis-cli",
    )  # fmt: skip
    acl.add_argument(
        "--library", action="store_true",
        help="print the function library (for redis-cli -x FUNCTION LOAD REPLACE)",
    )  # fmt: skip
    top = _command(sub, "top", "live dashboard (Ctrl-C to quit)")
    top.add_argument(
        "--url",
        help="the running service's ops listener, for its metrics (default: the dev stack's)",
    )
    top.add_argument("--refresh", type=_positive_seconds, default=1.0, metavar="SECONDS")
    top.add_argument("--once", action="store_true", help="print one screen and exit")
