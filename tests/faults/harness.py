"""The fault suite's harness: Kaleido as a real process (`run.py`) against private servers, a
workload that keeps a ground-truth model, and the tally of what a fault cost."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import attrs
import httpx
import redis as sync_redis
import trio
from redis.typing import EncodableT, FieldT

from kaleido.gateways import PostgresGateway, open_backends
from kaleido.messages import CONSUMER_GROUP, INSIGHTS_STREAM
from kaleido.redis_url import is_cluster_url, parse_cluster_url
from kaleido.settings import Settings

from ..processes import free_port, kaleido_env, start_kaleido, wait_exit, wait_ready
from ..views_helpers import synced_views

ADMIN_TOKEN = "fault-suite-admin-token"
# Requests carry a few views each: realistic for a feed page, and enough load to matter.
VIEWS_PER_REQUEST = 10


@attrs.define
class ServiceProcess:
    """`python run.py` pointed at given servers; restartable, killable."""

    redis_url: str
    database_url: str
    sync_interval: float = 0.5
    # A killed syncer's lock holds off every sync for this long (30 s by default); a holder
    # that stalls past it is fenced by the batch ids, which these faults check too.
    sync_lock_ttl: float = 5.0
    port: int = attrs.Factory(free_port)
    ops_port: int = attrs.Factory(free_port)
    proc: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = attrs.Factory(dict)
    log_path: Path | None = None  # its stderr (JSON logs), appended across restarts
    args: list[str] = attrs.Factory(list)  # e.g. ["--workers", "2"]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    async def start(self, timeout: float = 30) -> float:
        env = kaleido_env(
            KALEIDO_REDIS_URL=self.redis_url,
            KALEIDO_DATABASE_URL=self.database_url,
            KALEIDO_HTTP_BIND=f"127.0.0.1:{self.port}",
            KALEIDO_OPS_BIND=f"127.0.0.1:{self.ops_port}",
            KALEIDO_SYNC_INTERVAL=str(self.sync_interval),
            KALEIDO_SYNC_LOCK_TTL=str(self.sync_lock_ttl),
            KALEIDO_ADMIN_TOKEN=ADMIN_TOKEN,
            KALEIDO_SHUTDOWN_DEADLINE="8",
            **self.extra_env,
        )
        if self.log_path is None:
            self.proc = start_kaleido(self.args, env)
        else:
            with self.log_path.open("ab") as log:
                self.proc = start_kaleido(self.args, env, log)
        return await wait_ready(self.port, self.proc, timeout, self.log_path)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    async def terminate(self, timeout: float = 10) -> tuple[int, float]:
        """SIGTERM; return (exit status, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        status = await wait_exit(self.proc, timeout)
        return status, time.monotonic() - started

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@attrs.define
class ViewWorkload:
    """POSTs views and keeps the truth: a view is in the model once a 202 acknowledged it.

    A request whose outcome is unknown (connection dropped, 5xx) is retried until acknowledged:
    Redis' dedup makes a retry of an applied view harmless, as it is for a real client.
    """

    base_url: str
    users: int = 400
    posts: int = 40
    seed: int = 1
    acknowledged: set[tuple[int, int]] = attrs.Factory(set)
    # Pairs acknowledged in each phase of a scenario (a phase starts at a fault).
    by_phase: dict[int, set[tuple[int, int]]] = attrs.Factory(dict)
    phase: int = 0
    unknown: list[list[tuple[int, int]]] = attrs.Factory(list)
    failures: int = 0
    _rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _next_views(self) -> list[tuple[int, int]]:
        views = []
        for _ in range(VIEWS_PER_REQUEST):
            if self.acknowledged and self._rng.random() < 0.15:  # a repeat view: a duplicate
                views.append(self._rng.choice(sorted(self.acknowledged)))
            else:
                views.append((self._rng.randint(1, self.users), self._rng.randint(1, self.posts)))
        return views

    async def _send(self, http: httpx.AsyncClient, views: list[tuple[int, int]]) -> bool:
        body = [{"userId": u, "postId": p} for u, p in views]
        try:
            response = await http.post("/v1/views", json=body)
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code == 202:
            self.acknowledged.update(views)
            self.by_phase.setdefault(self.phase, set()).update(views)
            return True
        self.failures += 1
        return False

    async def run(self, stop: trio.Event, pause: float = 0.002) -> None:
        """Send requests until `stop`; failed ones are queued for `settle`."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as http:
            while not stop.is_set():
                views = self._next_views()
                if not await self._send(http, views):
                    self.unknown.append(views)
                    await trio.sleep(0.05)  # the service is down or degraded: do not spin
                else:
                    await trio.sleep(pause)

    async def settle(self, timeout: float = 60) -> None:
        """Retry every request whose outcome was unknown until it is acknowledged."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as http:
            with trio.fail_after(timeout):
                while self.unknown:
                    if await self._send(http, self.unknown[0]):
                        self.unknown.pop(0)
                    else:
                        await trio.sleep(0.1)

    def expected_counts(self) -> Counter[int]:
        return Counter(post for _, post in self.acknowledged)

    def acknowledged_since(self, phase: int) -> set[tuple[int, int]]:
        since: set[tuple[int, int]] = set()
        for p, pairs in self.by_phase.items():
            if p >= phase:
                since |= pairs
        return since


@attrs.frozen
class Tally:
    lost: int
    doubled: int

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.doubled == 0


async def sync_now(ops_url: str) -> None:
    async with httpx.AsyncClient(base_url=ops_url, timeout=30) as http:
        with trio.fail_after(60):
            while True:
                r = await http.post(
                    "/v1/admin/sync", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                )
                if r.status_code == 200:
                    return
                await trio.sleep(0.2)


async def synced_counts(settings: Settings) -> Counter[int]:
    """Views per post in PostgreSQL; asserts a final sync left nothing in Redis."""
    async with open_backends(settings) as backends:
        actual, left = await synced_views(backends)
    assert not left, "a final sync must leave no counters and no batches in Redis"
    return actual


def tally(expected: Counter[int], actual: Counter[int]) -> Tally:
    return Tally(lost=sum((expected - actual).values()), doubled=sum((actual - expected).values()))


async def stuck_entries(settings: Settings) -> int:
    """Inbound entries still pending in the group or dead-lettered: a fault's leftovers."""
    async with open_backends(settings) as backends:
        stream = backends.keys.stream(INSIGHTS_STREAM)
        pending = await backends.redis.execute("XPENDING", stream, CONSUMER_GROUP)
        dlq = backends.keys.dlq(INSIGHTS_STREAM)
        dead = await backends.redis.execute("XLEN", dlq)
    return int(pending["pending"] if isinstance(pending, dict) else pending[0]) + int(dead)


def sync_client(url: str) -> sync_redis.Redis | sync_redis.RedisCluster:
    """A blocking client of a single Redis or (a `redis+cluster://` URL) a Redis Cluster."""
    if not is_cluster_url(url):
        return sync_redis.Redis.from_url(url, socket_timeout=2)
    parsed = parse_cluster_url(url)
    host, port = parsed.nodes[0]
    return sync_redis.RedisCluster(
        host=host,
        port=port,
        username=parsed.username,
        password=parsed.password,
        socket_timeout=2,
    )


@attrs.define
class EntryWorkload:
    """Writes `ml-insights-results` entries as the ML service would (one media id each) and
    checks afterwards that each one's effect is in PostgreSQL exactly once."""

    redis_url: str
    next_media: int = 1_000_000
    added: list[int] = attrs.Factory(list)

    async def run(self, stop: trio.Event, pause: float = 0.01) -> None:
        client = sync_client(self.redis_url)
        try:
            while not stop.is_set():
                media = self.next_media
                fields: dict[FieldT, EncodableT] = {
                    "mediaId": str(media),
                    "postId": str(media % 40 + 1),
                    "service": "tagging",
                    "tags": json.dumps(["fault", str(media)]),
                    "correlationId": f"fault-{media}",
                    "timestamp": "2026-05-04T10:15:30.123456Z",
                    "version": "1",
                }
                try:
                    await trio.to_thread.run_sync(client.xadd, INSIGHTS_STREAM, fields)
                except sync_redis.RedisError:
                    await trio.sleep(0.05)  # Redis is down: the ML service would retry too
                    continue
                self.added.append(media)
                self.next_media += 1
                await trio.sleep(pause)
        finally:
            client.close()

    async def applied(self, postgres: PostgresGateway) -> set[int]:
        if not self.added:
            return set()
        rows = await postgres.fetch(
            "SELECT media_id FROM media_ai_insights WHERE media_id = ANY($1::bigint[]) "
            "AND 'tagging' = ANY(services_completed)",
            self.added,
        )
        return {r["media_id"] for r in rows}

    async def wait_all_applied(self, settings: Settings, timeout: float = 30) -> int:
        """Wait until every added entry has its effect; return how many are missing at the end."""
        missing = len(self.added)
        async with open_backends(settings) as backends:
            with trio.move_on_after(timeout):
                while True:
                    missing = len(self.added) - len(await self.applied(backends.postgres))
                    if missing == 0:
                        return 0
                    await trio.sleep(0.2)
        return missing
