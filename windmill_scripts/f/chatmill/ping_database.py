"""Connectivity probe: open a connection to the Chatmill Postgres and report the server version.

Used as a smoke test after deploying the workspace (and to check a `postgresql` resource).
"""

from __future__ import annotations

from typing import TypedDict

import psycopg


# Windmill infers the `resource-postgresql` input from this lowercase class name: keep it.
class postgresql(TypedDict, total=False):
    """Windmill `postgresql` resource, passed in by Windmill as a typed argument."""

    host: str
    port: int
    user: str
    dbname: str
    sslmode: str
    password: str


def main(db: postgresql) -> dict[str, object]:
    """Connect with the given resource and return the server version."""
    with psycopg.connect(
        host=db.get("host"),
        port=db.get("port"),
        user=db.get("user"),
        dbname=db.get("dbname"),
        sslmode=db.get("sslmode"),
        password=db.get("password"),
        connect_timeout=10,
        application_name="chatmill-ping-database",
    ) as conn:
        server_version = conn.execute("SHOW server_version").fetchone()
    return {"ok": True, "server_version": server_version[0] if server_version else None}
