"""Small typed helpers over the app's psycopg pool (rows are dicts: the pool uses ``dict_row``).

Every query in this package filters by the caller's ``organization_id``; these helpers only run
what they are given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

from psycopg import AsyncConnection, sql

from chatmill.resources import Resources

Row = dict[str, Any]
Params = Mapping[str, Any]
Conn = AsyncConnection[Any]
Query = str | bytes | sql.SQL | sql.Composed


@asynccontextmanager
async def connection(resources: Resources) -> AsyncIterator[Conn]:
    """A pooled connection; the block commits on success and rolls back on an exception."""
    async with resources.pool.connection() as conn:
        yield cast(Conn, conn)


async def one(conn: Conn, query: Query, params: Params | None = None) -> Row | None:
    cursor = await conn.execute(query, params)
    return cast(Row | None, await cursor.fetchone())


async def all_rows(conn: Conn, query: Query, params: Params | None = None) -> list[Row]:
    cursor = await conn.execute(query, params)
    return cast(list[Row], await cursor.fetchall())


async def fetch_one(resources: Resources, query: Query, params: Params | None = None) -> Row | None:
    async with connection(resources) as conn:
        return await one(conn, query, params)


async def fetch_all(resources: Resources, query: Query, params: Params | None = None) -> list[Row]:
    async with connection(resources) as conn:
        return await all_rows(conn, query, params)
