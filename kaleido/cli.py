"""The `kaleido` command line (also behind `python -m kaleido` and `python run.py`).

`kaleido run` (the default) starts the long-lived process on `KALEIDO_REDIS_URL` and
`KALEIDO_DATABASE_URL`. Without them it refuses, unless `--dev` asks for a private redis-server
(with the shipped redis.conf; with `--cluster`, a private Redis Cluster of 3 masters and 3
replicas) and a private PostgreSQL under the state folder, stopped on exit: throwaway data
(kaleido.dev_run).

`sync`, `doctor`, `streams`, `dlq list|replay|purge` and `top` act on the deployment those two
URLs name, or with neither set on the dev stack `make run` started from the same state folder
(kaleido.commands); each says on stderr which one. `redis-acl` prints the Redis ACL rule
Kaleido's user needs, and with `--setuser` and an admin URL (`KALEIDO_REDIS_ADMIN_URL`) installs
that user and Kaleido's function library (kaleido.redis_admin). `completion bash` prints a
completion script. The arguments: kaleido.cli_parser; the conventions: docs/cli.md.
Exit status: 0 done, 1 a problem found or a backend error (one line on stderr), 2 bad
configuration or arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from functools import partial

import attrs
import trio

from kaleido.cli_output import Stack, announce, print_json
from kaleido.cli_parser import ADMIN_URL_VARIABLE, build_parser
from kaleido.completion import bash_completion
from kaleido.dev_access import with_dev_urls
from kaleido.dev_run import run_dev
from kaleido.errors import ConfigError
from kaleido.exit_status import guarded
from kaleido.http.auth import check_exposure, mint_token
from kaleido.logs import configure_logging, get_logger
from kaleido.ports import check_listen_addresses
from kaleido.redis_admin import install_for, redis_acl_rule
from kaleido.redis_functions import library
from kaleido.secret_settings import read_secret
from kaleido.setting_values import check_redis_url
from kaleido.settings import Settings, load_settings
from kaleido.streams.dlq import REPLAY_LIMIT

log = get_logger("kaleido.cli")

# The commands that act on a deployment: each says which one on stderr.
_ON_A_STACK = ("sync", "doctor", "streams", "dlq", "top")


def run_ops_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run one of the commands that act on a deployment (not `run`)."""
    from kaleido import commands

    command: str = args.command
    as_json: bool = getattr(args, "json", False)
    settings, found = with_dev_urls(settings)  # `make run`'s servers, when no URL is set
    stack = Stack(settings, found)
    if command in _ON_A_STACK and not settings.embedded:
        announce(command if command != "dlq" else f"dlq {args.dlq_action}", stack)
    match command:
        case "token":
            token = mint_token(settings, args.user_id, args.role, ttl=int(args.ttl),
                               username=args.username)  # fmt: skip
            if as_json:
                print_json("token", None, {"token": token, "userId": args.user_id,
                                           "role": args.role})  # fmt: skip
            else:
                print(token)
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
            return trio.run(commands.sync_now, stack, as_json)
        case "doctor":
            return trio.run(commands.doctor, stack, args.dlq_interval, as_json)
        case "streams":
            return trio.run(commands.streams, stack, as_json)
        case "top":
            url = args.url or (found.ops_url if found else None)
            return trio.run(commands.top, settings, url, args.refresh, args.once)
    if args.dlq_action == "purge" and not args.yes:
        print(f"kaleido dlq purge: add --yes to delete the DLQ of {args.stream}", file=sys.stderr)
        return 2
    run = partial(
        commands.dlq_command,
        stack,
        args.dlq_action,
        args.stream,
        count=getattr(args, "count", 100),
        ids=getattr(args, "ids", None),
        as_json=as_json,
        limit=getattr(args, "limit", REPLAY_LIMIT),
    )
    return trio.run(run)


def run_service(
    settings: Settings, *, demo: bool = False, dev: bool = False, cluster: bool = False
) -> int:
    """Run the service (in `settings.workers` processes). With `dev`, on private throwaway
    servers (``cluster``: a private Redis Cluster instead of one redis-server)."""
    check_exposure(settings)  # before any server starts
    if dev:
        return run_dev(settings, partial(_run, demo=demo), cluster=cluster)
    if cluster:
        raise ConfigError("--cluster applies only with --dev")
    if settings.embedded:
        urls = {"KALEIDO_REDIS_URL": settings.redis_url}
        urls["KALEIDO_DATABASE_URL"] = settings.database_url
        missing = [name for name, url in urls.items() if url is None]
        raise ConfigError(
            f"kaleido run: set {' and '.join(missing)}, or pass --dev to start private "
            "throwaway servers (`make run` does)"
        )
    check_listen_addresses(settings)
    return _run(settings, lambda: None, demo=demo)


def _run(settings: Settings, ready: Callable[[], None], *, demo: bool) -> int:
    """Serve; `ready` is called once the listeners are bound (a supervisor of several workers:
    once the ports are reserved, before the workers start)."""
    if settings.workers > 1:
        from kaleido.workers import run_workers

        ready()
        return run_workers(settings, demo=demo)
    from kaleido.app import _serve

    async def serve_then_report() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(_serve, settings, handle_signals=True, demo=demo))
            ready()

    trio.run(serve_then_report)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "run"
    if command == "completion":
        print(bash_completion(parser), end="")
        return 0
    try:
        settings = load_settings(os.environ, args)
    except ConfigError as exc:
        print(f"kaleido: configuration error: {exc}", file=sys.stderr)
        return 2
    if command == "run" and args.dev and not _log_format_given(args):
        settings = attrs.evolve(settings, log_format="console")  # a person reads `make run`
    configure_logging(settings.log_format)
    if command == "run":
        run = partial(run_service, settings, demo=args.demo, dev=args.dev, cluster=args.cluster)
        return guarded(run)
    return guarded(partial(run_ops_command, settings, args))


def _log_format_given(args: argparse.Namespace) -> bool:
    return "log_format" in vars(args) or "KALEIDO_LOG_FORMAT" in os.environ


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
