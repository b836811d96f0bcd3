"""A Redis lock with an owner: a random token, a PX TTL, renewal, compare-and-delete release.

The lock is for efficiency (one syncer works at a time); correctness never depends on it: a
holder that stalls past its TTL and loses the lock is fenced by the sync protocol's batch ids.

The sync protocol in full: docs/views.md "Syncing".
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from kaleido.errors import KaleidoError, TransientError
from kaleido.gateways import RedisGateway, Script
from kaleido.logs import get_logger

log = get_logger("kaleido.lock")

# KEYS: the lock; ARGV: the owner's token, the TTL in ms. Returns 1 if the owner holds it now.
# Ambiguous call: when the reply to a SET NX was lost after it ran, redis-py sends it again and
# the lock is taken, by this owner; a plain SET NX would answer "busy" and the lock would sit
# unrenewed until its TTL ran out. Held already by the same token, acquiring renews it.
_ACQUIRE = Script(
    "lock_acquire",
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end "
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
)
# KEYS: the lock; ARGV: the owner's token, the TTL in ms. Both scripts run even past
# maxmemory (they add nothing), so a full Redis does not cost the syncer its lock. Run twice
# (a lost reply), each leaves the same state as once.
_RENEW = Script(
    "lock_renew",
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
    allow_oom=True,
)
# KEYS: the lock; ARGV: the owner's token.
_RELEASE = Script(
    "lock_release",
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('DEL', KEYS[1]) else return 0 end",
    allow_oom=True,
)


class LockBusy(KaleidoError):
    """Another owner holds the lock."""


class LockLost(KaleidoError):
    """The lock expired or was taken over while its holder was still working."""


@attrs.define
class RedisLock:
    redis: RedisGateway
    key: str
    ttl: float = 30.0
    token: str = attrs.field(factory=lambda: secrets.token_hex(16))

    async def acquire(self) -> bool:
        """Take the lock unless another owner holds it (safe to run again: _ACQUIRE)."""
        reply = await self.redis.run_script(
            _ACQUIRE, [self.key], [self.token, int(self.ttl * 1000)]
        )
        return bool(reply)

    async def renew(self) -> bool:
        reply = await self.redis.run_script(_RENEW, [self.key], [self.token, int(self.ttl * 1000)])
        return bool(reply)

    async def release(self) -> bool:
        """Delete the lock only if this owner still holds it."""
        reply = await self.redis.run_script(_RELEASE, [self.key], [self.token])
        return bool(reply)

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Hold the lock for the block, renewing it every TTL/3.

        Raises LockBusy if another owner holds it. If renewal finds the lock gone, the block
        is cancelled and LockLost raised: the caller's protocol must tolerate a stop anywhere.
        """
        if not await self.acquire():
            raise LockBusy(f"{self.key} is held by another owner")
        lost = False
        try:
            async with trio.open_nursery() as nursery:

                async def keep_renewed() -> None:
                    nonlocal lost
                    while True:
                        await trio.sleep(self.ttl / 3)
                        try:
                            still_mine = await self.renew()
                        except TransientError as exc:
                            log.warning("lock.renew_failed", key=self.key, error=str(exc))
                            continue  # the TTL still covers us until the next attempt
                        if not still_mine:
                            lost = True
                            nursery.cancel_scope.cancel()
                            return

                nursery.start_soon(keep_renewed)
                try:
                    yield
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                try:
                    await self.release()
                except TransientError as exc:
                    log.warning("lock.release_failed", key=self.key, error=str(exc))
        if lost:
            raise LockLost(f"{self.key} expired or was taken over during the work")
