"""The only modules that touch asyncio, trio-asyncio, redis.asyncio and asyncpg.

Everything outside this package is plain trio and sees only the project's own exceptions.
"""

from kaleido.gateways.backends import Backends, open_backends
from kaleido.gateways.postgres import PostgresGateway, Transaction
from kaleido.gateways.redis import RedisGateway, Script

__all__ = [
    "Backends",
    "PostgresGateway",
    "RedisGateway",
    "Script",
    "Transaction",
    "open_backends",
]
