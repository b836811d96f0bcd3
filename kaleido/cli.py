"""The `kaleido` command line (also behind `python run.py`).

`kaleido run` (the default) starts the long-lived process on `KALEIDO_REDIS_URL` and
`KALEIDO_DATABASE_URL`. Without them it refuses, unless `--dev` asks for a private redis-server
(with the shipped redis.conf; with `--cluster`, a private Redis Cluster of 3 masters and 3
replicas) and a private PostgreSQL under the state folder, stopped on exit: throwaway data.

`sync`, `doctor`, `streams`, `dlq list|replay|purge` and `top` act on the deployment those two
URLs name (kaleido.commands); `redis-acl` prints the Redis ACL rule Kaleido's user needs, and
with `--setuser` and an admin URL (`KALEIDO_REDIS_ADMIN_URL`) installs that user and Kaleido's
function library (kaleido.redis_admin).
Exit status: 0 done, 1 a problem found or a backend error (one line on stderr), 2 bad
configuration or arguments.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from kaleido.dev_access import dev_redis_user, with_dev_urls, write_dev_urls
from kaleido.devstack import default_redis_conf, dev_stack
from kaleido.errors import ConfigError
from kaleido.exit_status import guarded
from kaleido.http.auth import ROLES, check_exposure, mint_token
from kaleido.logs import configure_logging, get_logger
from kaleido.messages import INBOUND_STREAMS
from kaleido.ops.doctor import DLQ_INTERVAL
from kaleido.ops.streams import is_entry_id
from kaleido.redis_admin import install_for, redis_acl_rule
from kaleido.redis_functions import library
from kaleido.secret_settings import read_secret
from kaleido.setting_values import check_redis_url
from kaleido.settings import Settings, add_arguments, load_settings
from kaleido.streams.dlq import REPLAY_LIMIT

log = get_logger("kaleido.cli")

# The admin's Redis URL for `kaleido redis-acl --setuser` (a secret: environment or file only).
ADMIN_URL_VARIABLE = "KALEIDO_REDIS_ADMIN_URL"

DEMO_HELP = "also run a stand-in ML service and simulated users (every stream and table fills)"
DEV_HELP = (
    "with no KALEIDO_REDIS_URL / KALEIDO_DATABASE_URL: start private throwaway servers "
    "(redis-server, PostgreSQL) under the state folder"
)
CLUSTER_HELP = "with --dev: a private Redis Cluster (3 masters, 3 replicas), not one redis-server"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaleido", description="Kaleido: view counting and ML stream core of Kaleidoscope."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the long-lived service (the default)")
    add_arguments(run)
    # SUPPRESS on the subcommand: `kaleido --demo run` keeps the main parser's value.
    run.add_argument("--demo", action="store_true", default=argparse.SUPPRESS, help=DEMO_HELP)
    run.add_argument("--dev", action="store_true", default=argparse.SUPPRESS, help=DEV_HELP)
    run.add_argument("--cluster", action="store_true", default=argparse.SUPPRESS, help=CLUSTER_HELP)
    sync = sub.add_parser("sync", help="sync buffered view counts to PostgreSQL now")
    add_arguments(sync)
    _add_ops_commands(sub)
    add_arguments(parser)
    parser.add_argument("--demo", action="store_true", help=DEMO_HELP)
    parser.add_argument("--dev", action="store_true", help=DEV_HELP)
    parser.add_argument("--cluster", action="store_true", help=CLUSTER_HELP)
    return parser


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
    """doctor, streams, dlq list|replay|purge, top: they act on KALEIDO_REDIS_URL/DATABASE_URL."""
    doctor = sub.add_parser("doctor", help="check Redis and PostgreSQL; exit 1 on a problem")
    doctor.add_argument(
        "--dlq-interval", type=_positive_seconds, default=DLQ_INTERVAL, metavar="SECONDS",
        help=f"DLQ sizes are read twice this far apart (default {DLQ_INTERVAL:g})",
    )  # fmt: skip
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")
    add_arguments(doctor)
    streams = sub.add_parser("streams", help="groups, lag, pending entries and DLQ sizes")
    streams.add_argument("--json", action="store_true", help="print JSON")
    add_arguments(streams)
    dlq = sub.add_parser("dlq", help="dead-letter queues: list, replay, purge")
    actions = dlq.add_subparsers(dest="dlq_action", metavar="ACTION", required=True)
    for action, text in [
        ("list", "show the oldest dead letters"),
        ("replay", "put dead letters back onto their stream"),
        ("purge", "delete every dead letter of the stream"),
    ]:
        parser = actions.add_parser(action, help=text)
        parser.add_argument("stream", metavar="STREAM", choices=INBOUND_STREAMS,
                            help=f"one of {', '.join(INBOUND_STREAMS)}")  # fmt: skip
        if action == "list":
            parser.add_argument("--count", type=_positive_count, default=100)
            parser.add_argument("--json", action="store_true", help="print JSON")
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
        add_arguments(parser)
    token = sub.add_parser("token", help="print a signed test JWT (from KALEIDO_JWT_SECRET)")
    token.add_argument("--user-id", type=_user_id, required=True, metavar="ID")
    token.add_argument("--role", choices=ROLES, default=ROLES[0])
    token.add_argument("--ttl", type=_positive_seconds, default=3600.0, metavar="SECONDS",
                       help="seconds until it expires (default 3600)")  # fmt: skip
    token.add_argument("--username", help="the sub claim (default user<ID>)")
    add_arguments(token)
    acl = sub.add_parser(
        "redis-acl",
        help="the least-privilege Redis ACL rule for the user in KALEIDO_REDIS_URL; with "
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
    add_arguments(acl)
    top = sub.add_parser("top", help="live dashboard (Ctrl-C to quit)")
    top.add_argument("--url", help="the running service's ops listener, e.g. http://127.0.0.1:9090")
    top.add_argument("--refresh", type=_positive_seconds, default=1.0, metavar="SECONDS")
    top.add_argument("--once", action="store_true", help="print one screen and exit")
    add_arguments(top)


def run_ops_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run one of the commands that act on a deployment (not `run`)."""
    from kaleido import commands

    settings = with_dev_urls(settings)  # `make run`'s servers, when no URL is set
    match args.command:
        case "token":
            print(mint_token(settings, args.user_id, args.role, ttl=int(args.ttl),
                             username=args.username))  # fmt: skip
            return 0
        case "redis-acl":
            if args.library:
                print(library(), end="")
                return 0
            admin_url = read_secret(os.environ, ADMIN_URL_VARIABLE) if args.setuser else None
            if admin_url is None:
                print(redis_acl_rule(settings, args.redis_version, setuser=args.setuser))
                return 0
            check_redis_url(admin_url, ADMIN_URL_VARIABLE)
            print("\n".join(trio.run(install_for, settings, admin_url).lines()))
            return 0
        case "sync":
            return trio.run(commands.sync_now, settings)
        case "doctor":
            return trio.run(commands.doctor, settings, args.dlq_interval, args.json)
        case "streams":
            return trio.run(commands.streams, settings, args.json)
        case "top":
            return trio.run(commands.top, settings, args.url, args.refresh, args.once)
    if args.dlq_action == "purge" and not args.yes:
        print(f"kaleido dlq purge: add --yes to delete the DLQ of {args.stream}", file=sys.stderr)
        return 2
    run = partial(
        commands.dlq_command,
        settings,
        args.dlq_action,
        args.stream,
        count=getattr(args, "count", 100),
        ids=getattr(args, "ids", None),
        as_json=getattr(args, "json", False),
        limit=getattr(args, "limit", REPLAY_LIMIT),
    )
    return trio.run(run)


def run_service(
    settings: Settings, *, demo: bool = False, dev: bool = False, cluster: bool = False
) -> int:
    """Run the service (in `settings.workers` processes). With `dev` and no URLs, on private
    throwaway servers (``cluster``: a private Redis Cluster instead of one redis-server)."""
    check_exposure(settings)  # before any server starts
    if not settings.embedded:
        if cluster:
            raise ConfigError("--cluster applies only with --dev and no KALEIDO_REDIS_URL")
        return _run(settings, demo)
    if not dev:
        urls = {"KALEIDO_REDIS_URL": settings.redis_url}
        urls["KALEIDO_DATABASE_URL"] = settings.database_url
        missing = [name for name, url in urls.items() if url is None]
        raise ConfigError(
            f"kaleido run: set {' and '.join(missing)}, or pass --dev to start private "
            "throwaway servers (`make run` does)"
        )
    state_dir = settings.state_dir.resolve()
    log.warning(
        "devstack.throwaway",
        detail="--dev: private servers under the state folder; their data is for development "
        "only, never for production",
        state_dir=str(state_dir),
        cluster=cluster,
    )
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)  # passwords inside (the dev stack adds the search bit postgres needs)
    with dev_stack(state_dir, default_redis_conf(), cluster=cluster) as stack:
        redis_url = settings.redis_url or trio.run(dev_redis_user, stack, settings)
        settings = attrs.evolve(
            settings,
            redis_url=redis_url,
            database_url=settings.database_url or stack.database_url,
        )
        found_by_commands = write_dev_urls(state_dir, settings)
        try:
            return _run(with_dev_admin_token(settings, state_dir), demo)
        finally:
            found_by_commands.unlink(missing_ok=True)


def with_dev_admin_token(settings: Settings, state_dir: Path) -> Settings:
    """With no admin credential set, a dev start makes a random admin token, so that the ops
    console and the admin routes work locally; it is written to `state_dir/admin-token` (mode
    0600), never to the logs."""
    if settings.admin_token is not None or settings.jwt_secret is not None:
        return settings
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "admin-token"
    token = secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(token + "\n")
    log.warning("devstack.admin_token", detail="the ops console's sign-in token", file=str(path))
    return attrs.evolve(settings, admin_token=token)


def _run(settings: Settings, demo: bool) -> int:
    if settings.workers > 1:
        from kaleido.workers import run_workers

        return run_workers(settings, demo=demo)
    from kaleido.app import run_forever

    return run_forever(settings, demo=demo)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(os.environ, args)
    except ConfigError as exc:
        print(f"kaleido: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)
    command = args.command or "run"
    if command == "run":
        run = partial(run_service, settings, demo=args.demo, dev=args.dev, cluster=args.cluster)
        return guarded(run)
    return guarded(partial(run_ops_command, settings, args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
