"""The `kaleido` command line (also behind `python run.py`).

`kaleido run` (the default) starts the long-lived process. Without `KALEIDO_REDIS_URL` and
`KALEIDO_DATABASE_URL` it starts a private redis-server (with the repo's redis.conf) and a
private PostgreSQL under the state folder, and stops them on exit.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs
import trio

from kaleido.errors import ConfigError, KaleidoError
from kaleido.logs import configure_logging, get_logger
from kaleido.settings import Settings, add_arguments, load_settings

log = get_logger("kaleido.cli")

# The repo's redis.conf sits beside run.py; an installed package falls back to its own copy.
_REPO_ROOT = Path(__file__).resolve().parent.parent


def default_redis_conf() -> Path | None:
    candidate = _REPO_ROOT / "redis.conf"
    return candidate if candidate.is_file() else None


DEMO_HELP = "also run a stand-in ML service and simulated users (every stream and table fills)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaleido", description="Kaleido: view counting and ML stream core of Kaleidoscope."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the long-lived service (the default)")
    add_arguments(run)
    # SUPPRESS on the subcommand: `kaleido --demo run` keeps the main parser's value.
    run.add_argument("--demo", action="store_true", default=argparse.SUPPRESS, help=DEMO_HELP)
    sync = sub.add_parser("sync", help="sync buffered view counts to PostgreSQL now")
    add_arguments(sync)
    add_arguments(parser)
    parser.add_argument("--demo", action="store_true", help=DEMO_HELP)
    return parser


def run_service(settings: Settings, *, demo: bool = False) -> int:
    """Run the service, with a private Redis and PostgreSQL when no URLs are configured."""
    from kaleido.app import run_forever

    if not settings.embedded:
        run_forever(settings, demo=demo)
        return 0
    from kaleido.devstack import dev_stack

    state_dir = settings.state_dir.resolve()
    log.info("devstack.starting", state_dir=str(state_dir))
    with dev_stack(state_dir, default_redis_conf()) as stack:
        settings = attrs.evolve(
            settings,
            redis_url=settings.redis_url or stack.redis_url,
            database_url=settings.database_url or stack.database_url,
        )
        run_forever(settings, demo=demo)
    return 0


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
    try:
        if command == "sync":
            from kaleido.commands import sync_now

            return trio.run(sync_now, settings)
        return run_service(settings, demo=args.demo)
    except KeyboardInterrupt:
        return 0
    except ConfigError as exc:
        print(f"kaleido: configuration error: {exc}", file=sys.stderr)
        return 2
    except KaleidoError as exc:
        log.error("kaleido.failed", error=str(exc))
        print(f"kaleido: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
