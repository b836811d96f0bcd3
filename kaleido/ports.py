"""Whether the two listeners' addresses can be bound, checked before anything starts: a port in
use is one line naming the setting to change, not a traceback after the servers came up."""

from __future__ import annotations

import errno
import socket

from kaleido.errors import ConfigError
from kaleido.settings import Settings

# The setting behind each listener, as its variable and flag spell it.
_LISTENERS = (
    ("KALEIDO_HTTP_BIND", "--http-bind", "public"),
    ("KALEIDO_OPS_BIND", "--ops-bind", "ops"),
)


def check_listen_addresses(settings: Settings) -> None:
    """Raise ConfigError naming the setting when a listener's address cannot be bound."""
    addresses = ((settings.http_host, settings.http_port), (settings.ops_host, settings.ops_port))
    # `--workers N` binds SO_REUSEPORT sockets (kaleido.workers.shared): the probe binds as they
    # will, so the workers a killed supervisor left behind, still draining, block no restart.
    shared = settings.workers > 1
    for (variable, flag, side), (host, port) in zip(_LISTENERS, addresses, strict=True):
        if port == 0:  # any free port: nothing to check
            continue
        problem = bind_problem(host, port, shared=shared)
        if problem is not None:
            raise ConfigError(
                f"{variable} ({flag}): the {side} listener's {_show(host, port)} {problem}; "
                f"set {variable} to a free HOST:PORT"
            )


def bind_problem(host: str, port: int, *, shared: bool = False) -> str | None:
    """Why (host, port) cannot be bound, in a few words; None when it can. Bound and closed at
    once (SO_REUSEADDR: a port in TIME_WAIT is free; `shared`: SO_REUSEPORT too, as the
    workers' sockets, which other SO_REUSEPORT sockets of this user may share)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return describe_bind_error(exc)
    return None


def describe_bind_error(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "is in use (another Kaleido, or a second `make run`?)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "is not an address of this machine"
    if exc.errno == errno.EACCES:
        return "needs privileges (ports below 1024)"
    return f"cannot be bound ({exc.strerror or exc})"


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
