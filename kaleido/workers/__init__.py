"""`kaleido run --workers N`: one supervisor process binds the public port and keeps N service
processes serving on it.

- Every worker listens on the public and the ops port with SO_REUSEPORT, so the kernel spreads
  connections evenly over the workers' own accept queues (one shared socket would let whichever
  worker wakes first take most of a client's keep-alive connections). The supervisor binds both
  ports first without listening: it picks a port when 0 is asked and holds it across restarts.
- Worker i runs every actor under the instance name `{instance}-w{i}` (`w{i}` with none set): its
  consumer names survive a restart, so a restarted worker finds its own pending entries (the
  others reclaim them meanwhile). The sync lock keeps one sync at a time across all of them.
- A worker that exits is restarted after a backoff, which resets once it has run a while. Exit
  status 2 (bad configuration) stops them all instead: a restart cannot fix it.
- SIGTERM/SIGINT: every worker gets SIGTERM and drains under the shutdown deadline; one still
  running after that (and a margin) is killed. A worker stops when its supervisor dies.
- Metrics: prometheus-client's multiprocess mode in a fresh folder, so whichever worker answers
  `/metrics` reports the whole service.

Modules: ``shared`` (what the supervisor and its workers agree on: variables, instance names,
shared sockets), ``pool`` (the supervisor process), ``worker`` (a worker process, run as
``python -m kaleido.workers.worker``).
"""

from kaleido.workers.pool import WorkerPool, run_workers
from kaleido.workers.shared import bind_shared, worker_instance

__all__ = ["WorkerPool", "bind_shared", "run_workers", "worker_instance"]
