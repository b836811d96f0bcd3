"""What the console keeps in Redis, shared by every worker: the sessions not signed out, and
each client address's sign-in attempts.

Keys (kaleido.keys, under KALEIDO_KEY_PREFIX): `ops:sessions` (hash session id → expiry),
`ops:signin:{client}:{minute}` (attempts in one minute), `ops:signin-failures:{client}`
(failed sign-ins, expiring FAILURE_WINDOW after the last one). Each call is one-key commands,
so it works on a Redis Cluster too. Redis unreachable: BackendError, and the console answers
503 (it signs nobody in without its records).
"""

from __future__ import annotations

import math

import attrs

from kaleido.gateways import RedisGateway
from kaleido.http.console.session import LIFETIME, Session
from kaleido.keys import KeyLayout

# Sign-in attempts (right or wrong) one client address may make per minute: beyond, it waits
# for the next minute (slowed).
ATTEMPTS_PER_MINUTE = 5
# Failed sign-ins after which a client address is locked out, and for how long after its last
# failure; failures are forgotten FAILURE_WINDOW after the last one, or on a success.
LOCK_AFTER = 20
LOCK_SECONDS = 15 * 60
FAILURE_WINDOW = 15 * 60


@attrs.frozen
class Refusal:
    """A sign-in attempt refused before its credential was looked at."""

    reason: str
    retry_after: int  # seconds


@attrs.frozen
class ConsoleStore:
    redis: RedisGateway
    keys: KeyLayout

    # -- sessions --------------------------------------------------------------------------

    async def add(self, session: Session, now: float) -> None:
        """Record a new session, and forget those that expired."""
        key = self.keys.console_sessions
        known = await self.redis.execute("HGETALL", key)
        expired = [sid for sid, expires in _pairs(known) if int(expires) <= now]
        commands: list[tuple[object, ...]] = [("HSET", key, session.sid, session.expires)]
        if expired:
            commands.append(("HDEL", key, *expired))
        # Every session ends within LIFETIME, so the hash can go LIFETIME after the newest.
        commands.append(("PEXPIRE", key, (LIFETIME + 60) * 1000))
        await self.redis.pipeline(commands)

    async def live(self, session: Session) -> bool:
        """The session was not signed out (its expiry is the cookie's to check)."""
        value = await self.redis.execute("HGET", self.keys.console_sessions, session.sid)
        return value is not None and int(value) == session.expires

    async def end(self, session: Session) -> None:
        await self.redis.execute("HDEL", self.keys.console_sessions, session.sid)

    async def end_all(self) -> int:
        """End every console session, in every worker; return how many there were."""
        key = self.keys.console_sessions
        count, _ = await self.redis.pipeline([("HLEN", key), ("DEL", key)], transaction=True)
        return int(count)

    # -- sign-in attempts ------------------------------------------------------------------

    async def attempt(self, client: str, now: float) -> Refusal | None:
        """Count a sign-in attempt of `client`; a Refusal when it is locked out or over its
        attempts of this minute."""
        minute = int(now // 60)
        attempts = self.keys.signin_attempts(client, minute)
        made, _, failed, ttl = await self.redis.pipeline(
            [("INCR", attempts), ("PEXPIRE", attempts, 120_000), *self._failures(client)]
        )
        if locked := _locked(failed, ttl):
            return locked
        if int(made) > ATTEMPTS_PER_MINUTE:
            wait = max(1, math.ceil((minute + 1) * 60 - now))
            return Refusal(f"more than {ATTEMPTS_PER_MINUTE} sign-in attempts this minute", wait)
        return None

    async def lockout(self, client: str) -> Refusal | None:
        """A Refusal when `client` is locked out (a request with a credential, not a sign-in:
        it is not counted as an attempt)."""
        failed, ttl = await self.redis.pipeline(self._failures(client))
        return _locked(failed, ttl)

    def _failures(self, client: str) -> list[tuple[object, ...]]:
        key = self.keys.signin_failures(client)
        return [("GET", key), ("TTL", key)]

    async def failed(self, client: str) -> int:
        """Count a failed sign-in of `client`; return its failures so far."""
        key = self.keys.signin_failures(client)
        count = int(await self.redis.execute("INCR", key))
        hold = LOCK_SECONDS if count >= LOCK_AFTER else FAILURE_WINDOW
        await self.redis.execute("PEXPIRE", key, hold * 1000)
        return count

    async def succeeded(self, client: str) -> None:
        await self.redis.execute("DEL", self.keys.signin_failures(client))


def _locked(failed: object, ttl: object) -> Refusal | None:
    if failed is not None and int(_text(failed)) >= LOCK_AFTER:
        return Refusal(f"locked after {LOCK_AFTER} failed sign-ins", max(1, int(_text(ttl))))
    return None


def _pairs(reply: object) -> list[tuple[str, str]]:
    """HGETALL's reply (a flat list or a dict, bytes or str) as (field, value) pairs."""
    if isinstance(reply, dict):
        items = list(reply.items())
    else:
        flat = list(reply or [])  # type: ignore[call-overload]
        items = list(zip(flat[::2], flat[1::2], strict=True))
    return [(_text(k), _text(v)) for k, v in items]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
