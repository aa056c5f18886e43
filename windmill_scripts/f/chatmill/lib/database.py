"""Connections for Windmill scripts, from the ``postgresql`` resource Windmill passes in.

Each script still declares its own ``class postgresql(TypedDict)``: Windmill derives the input's
resource type from the annotation in the script itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.Connection[dict[str, Any]]


@contextmanager
def connect(db: Mapping[str, Any], *, application_name: str = "chatmill-flow") -> Iterator[Conn]:
    """An autocommit connection, rows as dicts (multi-statement writes use ``conn.transaction()``)."""
    with psycopg.connect(
        host=db.get("host"),
        port=db.get("port"),
        user=db.get("user"),
        dbname=db.get("dbname"),
        sslmode=db.get("sslmode") or "prefer",
        password=db.get("password") or None,
        connect_timeout=10,
        autocommit=True,
        row_factory=dict_row,
        application_name=application_name,
    ) as conn:
        yield conn
