"""What the worker supervisor and its worker processes agree on: the variables a worker reads,
its stable instance name, and the SO_REUSEPORT sockets both open on the same ports."""

from __future__ import annotations

import socket

# Internal variables a worker process reads (beside the KALEIDO_* settings).
WORKER_INDEX_ENV = "KALEIDO_WORKER_INDEX"
WORKER_DEMO_ENV = "KALEIDO_WORKER_DEMO"
WORKER_PARENT_ENV = "KALEIDO_WORKER_PARENT"

LISTEN_BACKLOG = 1024


def worker_instance(instance: str, index: int) -> str:
    """The instance name of worker `index`: stable, so its consumer names are too."""
    return f"{instance}-w{index}" if instance else f"w{index}"


def bind_shared(host: str, port: int, *, listen: bool) -> socket.socket:
    """A socket on (host, port) that other SO_REUSEPORT sockets of this user may share. Only
    listening ones receive connections: the supervisor's, bound only, just holds the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock
