"""The long-lived clients an app holds: the PostgreSQL pool, Redis and an httpx client.

Opened by an app's lifespan (``open_resources``) and handed to handlers through ``request.state``.
Opening never waits for the database: an app starts while PostgreSQL or Redis is down and reports
it on ``/health/ready`` (and with 503s) until they are back.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from chatmill.settings import Settings

POOL_TIMEOUT_SECONDS = 5.0

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]


@dataclass
class Resources:
    settings: Settings
    pool: Pool
    redis: Redis
    http: httpx.AsyncClient


def create_pool(settings: Settings, *, name: str, autocommit: bool = False) -> Pool:
    if settings.database_url is None:
        raise RuntimeError("DATABASE_URL is not resolved; start the embedded services first")
    return AsyncConnectionPool(
        settings.database_url,
        connection_class=AsyncConnection[DictRow],
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        timeout=POOL_TIMEOUT_SECONDS,
        name=name,
        open=False,
        # autocommit (the ingress): a single statement is its own transaction, with no BEGIN/COMMIT
        # round trips; multi-statement writes must then use ``conn.transaction()``. Without it, the
        # pool commits when a connection is returned.
        kwargs={"row_factory": dict_row, "application_name": f"chatmill-{name}", "autocommit": autocommit},
    )


def create_redis(settings: Settings) -> Redis:
    if settings.redis_url is None:
        raise RuntimeError("REDIS_URL is not resolved; start the embedded services first")
    return Redis.from_url(settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)


@contextlib.asynccontextmanager
async def open_resources(
    settings: Settings,
    *,
    name: str,
    transport: httpx.AsyncBaseTransport | None = None,
    autocommit: bool = False,
) -> AsyncIterator[Resources]:
    """Open the pool, Redis and httpx; ``transport`` lets tests answer outbound HTTP locally."""
    pool = create_pool(settings, name=name, autocommit=autocommit)
    await pool.open(wait=False)
    redis = create_redis(settings)
    http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(10.0, connect=5.0))
    try:
        yield Resources(settings=settings, pool=pool, redis=redis, http=http)
    finally:
        await http.aclose()
        await redis.aclose()
        await pool.close()
