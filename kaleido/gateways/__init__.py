"""The only modules that touch asyncio, trio-asyncio, redis.asyncio and asyncpg.

Everything outside this package is plain trio and sees only the project's own exceptions.
"""

from kaleido.gateways.backends import Backends, open_backends
from kaleido.gateways.postgres import PostgresGateway, Transaction
from kaleido.gateways.redis import RedisGateway, open_redis
from kaleido.gateways.redis_scripts import EVAL, FUNCTIONS, SCRIPT_MODES, Script

__all__ = [
    "EVAL",
    "FUNCTIONS",
    "SCRIPT_MODES",
    "Backends",
    "PostgresGateway",
    "RedisGateway",
    "Script",
    "Transaction",
    "open_backends",
    "open_redis",
]
