"""The nemesis: runs a schedule of faults against the service, the embedding program, the
backends and the network, each at its moment, overlapping (one at a time per resource), each
undone at its end (a killed process is started again, a stalled one continued, a proxy made
transparent)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import attrs
import trio

from .schedule import Fault
from .service import Embedded, Service
from .stack import Stack
from .traffic import EPOCHS, HttpViews


@attrs.frozen
class Injected:
    fault: Fault
    started: float  # trio time
    ended: float
    detail: str
    error: str = ""


@attrs.define
class Nemesis:
    stack: Stack
    service: Service
    embedded: Embedded | None
    nursery: trio.Nursery  # where a restarted embedding program's reader runs
    injected: list[Injected] = attrs.Factory(list)
    locks: dict[str, trio.Lock] = attrs.Factory(dict)
    verbose: bool = True
    views: HttpViews | None = None  # for the documented windows' epochs

    def busy(self, resource: str) -> bool:
        lock = self.locks.get(resource)
        return lock is not None and lock.locked()

    async def run(self, schedule: list[Fault], start: float) -> None:
        async with trio.open_nursery() as nursery:
            for fault in schedule:
                nursery.start_soon(self._run, fault, start)

    async def _run(self, fault: Fault, start: float) -> None:
        await trio.sleep_until(start + fault.at)
        lock = self.locks.setdefault(fault.resource, trio.Lock())
        async with lock:
            began = trio.current_time()
            try:
                detail, error = await self._inject(fault), ""
            except Exception as exc:  # a fault that could not be injected is reported
                detail, error = "", f"{type(exc).__name__}: {exc}"
            done = Injected(fault, began, trio.current_time(), detail, error)
            self.injected.append(done)
            if self.verbose:
                print(
                    f"  {fault.describe()} -> {detail}{' ERROR ' + error if error else ''}",
                    flush=True,
                )

    async def _inject(self, fault: Fault) -> str:
        stack, service = self.stack, self.service
        match fault.kind:
            case "kill-service" | "kill-supervisor":
                killed = service.kill_all() if fault.kind == "kill-service" else service.kill()
                await trio.sleep(fault.duration)
                service.spawn()
                return f"{killed} killed, down {fault.duration:.1f} s"
            case "kill-worker":
                return service.kill_worker(fault.pick)
            case "kill-embedded":
                assert self.embedded is not None
                self.embedded.kill()
                await trio.sleep(fault.duration)
                await self.embedded.run(self.nursery)
                return f"down {fault.duration:.1f} s"
            case "stall-redis":
                return await stack.stall_redis(fault.duration, fault.pick)
            case "stall-postgres":
                return await stack.stall_postgres(fault.duration)
            case "drop-redis-clients":
                return await stack.drop_redis_clients(fault.flag, fault.pick)
            case "drop-postgres-sessions":
                return await stack.drop_postgres_sessions()
            case "restart-redis" if not stack.aof:
                return await self._window(fault, stack.restart_redis(fault.duration, fault.pick))
            case "restart-redis":
                return await stack.restart_redis(fault.duration, fault.pick)
            case "flushall":
                return await self._window(fault, stack.flushall())
            case "maxmemory":
                return await self._window(fault, stack.fill_redis(fault.duration), after=True)
            case "restart-postgres":
                return await stack.restart_postgres(fault.duration, fault.flag)
        return await self._network(fault)

    async def _window(
        self, fault: Fault, inject: Coroutine[Any, Any, str], after: bool = False
    ) -> str:
        """A documented window: the views sent so far go to posts counted apart (a new epoch
        starts, and the window waits for the answers of the requests already sent); with
        `after`, so do those sent during the window."""
        assert self.views is not None
        model = self.views.model
        if model.epoch + 2 >= EPOCHS:
            inject.close()
            raise RuntimeError("no epoch left for another documented window")
        await self.views.answered(model.new_epoch(fault.kind))
        detail = await inject
        if after:
            model.new_epoch(fault.kind)
        return f"{detail}; epoch {model.epoch} from now on"

    async def _network(self, fault: Fault) -> str:
        proxies = self.stack.proxies[fault.target]
        proxy = proxies[int(fault.pick * len(proxies))]
        faults = proxy.faults
        detail = f"{fault.target} :{proxy.upstream_port}"
        try:
            match fault.kind:
                case "net-latency":
                    faults.delay = fault.level
                    detail += f", {fault.level * 1000:.0f} ms"
                case "net-jitter":
                    faults.jitter = fault.level
                    detail += f", 0-{fault.level * 1000:.0f} ms"
                case "net-black-hole":
                    proxy.open_hole()
                case "net-reset":
                    faults.reset_reply = fault.level
                    detail += f", p={fault.level:.2f} per reply chunk"
                case "net-drop-reply":
                    faults.drop_reply = fault.level
                    detail += f", p={fault.level:.2f} per reply chunk"
                case "net-half-open":
                    detail += f", {proxy.half_open(fault.level)} connections"
                case _:
                    raise ValueError(f"unknown fault kind {fault.kind}")
            await trio.sleep(fault.duration)
        finally:
            faults.delay = faults.jitter = faults.reset_reply = faults.drop_reply = 0.0
            if faults.black_hole:
                proxy.close_hole()
        return detail
