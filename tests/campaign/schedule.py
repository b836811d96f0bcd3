"""Fault schedules: what the nemesis injects, when, for how long, drawn from a seed.

A schedule is a list of `Fault`s, each with every random choice it needs already drawn (which
master, which worker, crash or clean stop), so that a seed always means the same schedule and
a subset of it (`only`) replays those faults at the same moments.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

import attrs

# kind → (resource it locks, category of the report). Faults of one resource run one at a time
# (a stall and a restart of one Redis would step on each other); the others overlap freely.
KINDS: dict[str, tuple[str, str]] = {
    "kill-service": ("service", "SIGKILL"),
    "kill-worker": ("service", "SIGKILL"),
    "kill-supervisor": ("service", "SIGKILL"),
    "kill-embedded": ("embedded", "SIGKILL"),
    "stall-redis": ("redis", "stall"),
    "stall-postgres": ("postgres", "stall"),
    "drop-redis-clients": ("redis", "dropped connections"),
    "drop-postgres-sessions": ("postgres", "dropped connections"),
    "restart-redis": ("redis", "restart"),
    "restart-postgres": ("postgres", "restart"),
    "net-latency": ("net", "network"),
    "net-jitter": ("net", "network"),
    "net-black-hole": ("net", "network"),
    "net-reset": ("net", "network"),
    "net-half-open": ("net", "network"),
    "net-drop-reply": ("net", "network"),
    # The windows docs/resilience.md documents, only in the scenario that names them (with a
    # restart of a Redis without persistence): FLUSHALL, Redis past maxmemory.
    "flushall": ("redis", "documented window"),
    "maxmemory": ("redis", "documented window"),
}
WINDOWS = ("flushall", "maxmemory")
NETWORK = tuple(k for k, (_, category) in KINDS.items() if category == "network")
STALL = (0.5, 20.0)  # seconds a backend is SIGSTOPped, drawn log-uniformly
NET = (1.0, 8.0)  # seconds a network fault lasts
DOWN = (0.0, 2.0)  # seconds a killed process or restarted server stays down


@attrs.frozen
class Fault:
    index: int
    kind: str
    at: float  # seconds after the traffic started
    duration: float = 0.0  # stalls, network faults, downtime of restarts and kills
    target: str = ""  # "redis" or "postgres" for network faults
    pick: float = 0.0  # which master / worker / client, as a fraction of the candidates
    level: float = 0.0  # delay, jitter, probability or share, per kind
    flag: bool = False  # crash (not clean stop) for PostgreSQL; by address for CLIENT KILL

    @property
    def resource(self) -> str:
        resource = KINDS[self.kind][0]
        return f"net-{self.target}" if resource == "net" else resource

    @property
    def category(self) -> str:
        return KINDS[self.kind][1]

    def describe(self) -> str:
        what = self.kind + (f" {self.target}" if self.target else "")
        return f"#{self.index} {what} at {self.at:.2f} s for {self.duration:.2f} s"


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def draw_fault(
    rng: random.Random,
    index: int,
    kind: str,
    at: float,
    stall: tuple[float, float] = STALL,
    net: tuple[float, float] = NET,
) -> Fault:
    duration, target, level, flag = 0.0, "", 0.0, False
    if kind.startswith("stall-"):
        duration = _log_uniform(rng, *stall)
    elif kind.startswith("net-"):
        duration = rng.uniform(*net)
        target = rng.choice(("redis", "postgres"))
        level = {
            "net-latency": rng.uniform(0.005, 0.1),
            "net-jitter": rng.uniform(0.01, 0.2),
            "net-reset": rng.uniform(0.02, 0.2),
            "net-drop-reply": rng.uniform(0.02, 0.2),
            "net-half-open": rng.uniform(0.3, 1.0),
        }.get(kind, 0.0)
    elif kind.startswith(("kill-", "restart-")):
        duration = rng.uniform(*DOWN)
        flag = rng.random() < 0.5
    elif kind == "maxmemory":
        duration = rng.uniform(1.0, 4.0)
    elif kind == "drop-redis-clients":
        flag = rng.random() < 0.3
    return Fault(index, kind, round(at, 3), round(duration, 3), target, rng.random(), level, flag)


def draw_schedule(seed: int, kinds: Sequence[str], seconds: float, rate: float) -> list[Fault]:
    """Faults at the arrivals of a Poisson process of `rate` per second over `seconds`, each
    of a kind drawn uniformly from `kinds`."""
    rng = random.Random(f"schedule-{seed}")
    faults: list[Fault] = []
    at = rng.expovariate(rate)
    while at < seconds:
        faults.append(draw_fault(rng, len(faults), rng.choice(kinds), at))
        at += rng.expovariate(rate)
    return faults


def draw_cover(
    seed: int,
    kinds: Sequence[str],
    seconds: float,
    stall: tuple[float, float] = STALL,
    net: tuple[float, float] = NET,
) -> list[Fault]:
    """Each of `kinds` once, at a uniformly drawn moment of the first `seconds`, with network
    faults on each backend (the short form: every kind in little time)."""
    rng = random.Random(f"cover-{seed}")
    plan = [(rng.uniform(0, seconds), kind) for kind in kinds]
    faults: list[Fault] = []
    for at, kind in sorted(plan):
        fault = draw_fault(rng, len(faults), kind, at, stall, net)
        faults.append(fault)
        if kind.startswith("net-"):
            other = "postgres" if fault.target == "redis" else "redis"
            twin = draw_fault(rng, len(faults), kind, rng.uniform(0, seconds), stall, net)
            faults.append(attrs.evolve(twin, target=other))
    return sorted(faults, key=lambda f: f.at)


def periodic(kind: str, every: float, seconds: float) -> list[Fault]:
    """`kind` every `every` seconds from `every` to `seconds` (inclusive)."""
    count = int(seconds // every)
    return [Fault(i, kind, round(every * (i + 1), 3)) for i in range(count)]


def only(faults: Sequence[Fault], indexes: Iterable[int] | None) -> list[Fault]:
    if indexes is None:
        return list(faults)
    keep = set(indexes)
    return [f for f in faults if f.index in keep]
