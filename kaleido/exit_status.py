"""`guarded`: what a command raises, as an exit status and one line on standard error.

A leaf: the command line and the worker processes of `kaleido run --workers N` both end
through it (0 done or Ctrl-C, 1 a Kaleido error, 2 bad configuration).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

from kaleido.concurrency import unwrap
from kaleido.errors import ConfigError, KaleidoError
from kaleido.logs import get_logger

log = get_logger("kaleido.cli")

CONFIG_ERROR_STATUS = 2


def guarded(run: Callable[[], int]) -> int:
    """Run a command; turn what it raises into an exit status and one line on stderr (a
    configuration error: 2; another Kaleido error: 1; Ctrl-C: 0)."""
    try:
        return run()
    except BaseException as raised:
        error = unwrap(raised)
        if isinstance(error, KeyboardInterrupt):
            return 0
        if isinstance(error, BrokenPipeError):  # `kaleido streams --json | head`: reader gone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        if isinstance(error, ConfigError):
            print(f"kaleido: configuration error: {error}", file=sys.stderr)
            return CONFIG_ERROR_STATUS
        if isinstance(error, KaleidoError):
            log.error("kaleido.failed", error=str(error))
            print(f"kaleido: {error}", file=sys.stderr)
            return 1
        if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
            # A listener lost the race for its port after the check before start-up.
            print("kaleido: a listener's address is in use: set KALEIDO_HTTP_BIND / "
                  "KALEIDO_OPS_BIND to free ones", file=sys.stderr)  # fmt: skip
            return CONFIG_ERROR_STATUS
        raise
