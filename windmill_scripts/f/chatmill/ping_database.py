"""Connectivity probe: open a connection to the Chatmill Postgres and report the server version.

Used as a smoke test after deploying the workspace (and to check a `postgresql` resource).
"""

from __future__ import annotations

from typing import TypedDict

from f.chatmill.lib.database import connect


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
    with connect(db, application_name="chatmill-ping-database") as conn:
        server_version = conn.execute("SHOW server_version").fetchone()
    return {"ok": True, "server_version": server_version["server_version"] if server_version else None}
