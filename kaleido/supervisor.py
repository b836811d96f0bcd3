"""The supervisor: runs actors in one nursery, restarts them, and stops them gracefully.

- `await supervisor.start(name, run)` returns once the actor called `task_status.started()`,
  or once its first attempt failed (it then keeps retrying in the background and `/readyz`
  reports it), so a backend that is down at start-up never hangs start-up.
- A transient failure (`TransientError`: connection lost, timeout) restarts the actor after a
  jittered exponential backoff. Any other exception is a bug: it is logged with its traceback
  and the actor restarts too; after `max_crashes` failures within `crash_window` seconds the
  supervisor raises `SupervisorGaveUp`, which ends the process with a non-zero status.
- An actor that returns has finished (it only returns once shutdown was requested).
- `stopping` is set when shutdown starts: actors finish their current unit of work and return.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import trio

from kaleido.backoff import Backoff
from kaleido.concurrency import leaves
from kaleido.errors import KaleidoError, TransientError
from kaleido.logs import get_logger

log = get_logger("kaleido.supervisor")

# Restart delays: quick first retry, capped so a long outage is probed every few seconds.
BACKOFF_BASE = 0.2
BACKOFF_CAP = 10.0
MAX_CRASHES = 5
CRASH_WINDOW = 60.0


class ActorRun(Protocol):
    def __call__(self, *, task_status: trio.TaskStatus[Any] = ...) -> Awaitable[None]: ...


class SupervisorGaveUp(KaleidoError):
    """An actor failed too often within the crash window."""


@attrs.define
class ActorState:
    name: str
    running: bool = False
    restarts: int = 0
    transient_failures: int = 0
    crashes: int = 0
    last_error: str | None = None
    done: trio.Event = attrs.Factory(trio.Event)

    @property
    def finished(self) -> bool:
        return self.done.is_set()


@attrs.define
class Supervisor:
    """Starts and watches actors inside `nursery`."""

    nursery: trio.Nursery
    max_crashes: int = MAX_CRASHES
    crash_window: float = CRASH_WINDOW
    backoff_base: float = BACKOFF_BASE
    backoff_cap: float = BACKOFF_CAP
    on_restart: Callable[[str, str], None] | None = None
    stopping: trio.Event = attrs.Factory(trio.Event)
    actors: dict[str, ActorState] = attrs.Factory(dict)
    _crash_times: deque[float] = attrs.Factory(deque)

    async def start(self, name: str, run: ActorRun) -> None:
        """Start `run` under supervision; return when it is ready or has failed once."""
        if name in self.actors:
            raise ValueError(f"an actor named {name!r} is already supervised")
        self.actors[name] = ActorState(name)
        await self.nursery.start(self._supervise, name, run)

    async def wait_finished(self) -> None:
        """Wait until every actor has returned (after `stopping` was set)."""
        for state in list(self.actors.values()):
            await state.done.wait()

    @property
    def all_running(self) -> bool:
        return all(a.running or a.finished for a in self.actors.values())

    async def _supervise(
        self, name: str, run: ActorRun, *, task_status: trio.TaskStatus[None]
    ) -> None:
        state = self.actors[name]
        reported = False
        backoff = Backoff(self.backoff_base, self.backoff_cap, jitter=0.5)
        while True:
            try:
                async with trio.open_nursery() as inner:
                    await inner.start(run)
                    state.running = True
                    backoff.reset()
                    if not reported:
                        reported = True
                        task_status.started()
                state.running = False
                state.done.set()
                return
            except BaseException as exc:  # classified below; re-raised if not an Exception
                state.running = False
                errors = leaves(exc)
                if any(not isinstance(leaf, Exception) for leaf in errors):
                    raise  # cancellation, KeyboardInterrupt: not ours to handle
                self._record_failure(state, errors)
            if not reported:
                reported = True
                task_status.started()
            with trio.move_on_after(backoff.next()):
                await self.stopping.wait()
            if self.stopping.is_set():
                state.done.set()
                return
            state.restarts += 1

    def _record_failure(self, state: ActorState, errors: list[BaseException]) -> None:
        first = errors[0]
        state.last_error = f"{type(first).__name__}: {first}"
        if all(isinstance(leaf, TransientError) for leaf in errors):
            state.transient_failures += 1
            log.warning("actor.transient_failure", actor=state.name, error=state.last_error)
            kind = "transient"
        else:
            state.crashes += 1
            log.error("actor.crashed", actor=state.name, error=state.last_error, exc_info=first)
            kind = "crash"
            now = trio.current_time()
            self._crash_times.append(now)
            while self._crash_times and self._crash_times[0] < now - self.crash_window:
                self._crash_times.popleft()
            if len(self._crash_times) > self.max_crashes:
                raise SupervisorGaveUp(
                    f"actor {state.name!r} crashed {len(self._crash_times)} times within "
                    f"{self.crash_window:g} s; last error: {state.last_error}"
                ) from first
        if self.on_restart is not None:
            self.on_restart(state.name, kind)
