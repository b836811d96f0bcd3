"""``python -m kaleido.devstack``: a dev stack in the foreground until Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from kaleido.devstack.stack import dev_stack


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kaleido.devstack STATE_DIR [--conf redis.conf] [--fast] [--cluster]``: run
    until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kaleido.devstack", description=main.__doc__)
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--conf", type=Path, default=None, help="redis.conf to include")
    parser.add_argument("--fast", action="store_true", help="fsync off etc. (tests, benchmarks)")
    parser.add_argument(
        "--cluster", action="store_true", help="a Redis Cluster (3 masters, 3 replicas)"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    with dev_stack(args.state_dir, args.conf, fast=args.fast, cluster=args.cluster) as stack:
        print(f"KALEIDO_REDIS_URL={stack.redis_url}")
        print(f"KALEIDO_DATABASE_URL={stack.database_url}")
        if args.cluster:
            for view in stack.cluster.topology():
                role = "master" if view.is_master else f"replica of {view.master_id}"
                print(f"# node 127.0.0.1:{view.port} {view.node_id} {role}")
        print(f"# ready in {time.monotonic() - started:.2f}s; Ctrl-C stops both", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0
