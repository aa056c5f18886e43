"""The one migration runner: used by ``chatmill migrate``, ``chatmill dev``, the test harness, CI and
container start-up.

Migrations are plain SQL files ``sql/migrations/NNNN_name.sql``. Each is applied in its own
transaction together with its row in ``schema_migrations``, so a failing migration leaves nothing
half-applied and the error names the file, the line and PostgreSQL's message. Applied migrations are
recorded with a SHA-256 checksum; editing one after it was applied is an error rather than a silent
divergence. A session advisory lock serialises concurrent runners (several containers starting at
once). Applying again is a no-op.

Migration files must not use statements that cannot run in a transaction block
(``CREATE INDEX CONCURRENTLY``, ``VACUUM``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql" / "migrations"

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x43_48_41_54  # "CHAT": any constant shared by every runner

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_SELECT_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
_INSERT_APPLIED = (
    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%(version)s, %(name)s, %(checksum)s)"
)


class MigrationError(RuntimeError):
    """A migration could not be applied, or the migrations on disk disagree with the database."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return self.path.name


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migrations in ``directory``, ordered by version; refuses misnamed or duplicate files."""
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_lower_snake_name.sql")
        version = int(match["version"])
        if version in migrations:
            raise MigrationError(
                f"{path.name}: version {version} is also used by {migrations[version].filename}"
            )
        migrations[version] = Migration(version, match["name"], path, path.read_text(encoding="utf-8"))
    return [migrations[version] for version in sorted(migrations)]


def applied_versions(conn: psycopg.Connection) -> dict[int, tuple[str, str]]:
    rows = conn.execute(_SELECT_APPLIED).fetchall()
    return {int(version): (str(name), str(checksum)) for version, name, checksum in rows}


def apply_migrations(conninfo: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply every pending migration in order; return the ones applied now (empty when up to date)."""
    migrations = discover(directory)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(_CREATE_LEDGER)
            return _apply_pending(conn, migrations)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _apply_pending(conn: psycopg.Connection, migrations: list[Migration]) -> list[Migration]:
    applied = applied_versions(conn)
    known = {migration.version for migration in migrations}
    unknown = sorted(set(applied) - known)
    if unknown:
        raise MigrationError(
            f"the database has migrations this code does not know: {unknown}; deploy the newer code"
        )
    done: list[Migration] = []
    for migration in migrations:
        if migration.version in applied:
            _, checksum = applied[migration.version]
            if checksum != migration.checksum:
                raise MigrationError(
                    f"{migration.filename} was changed after it was applied; "
                    "add a new migration instead of editing an applied one"
                )
            continue
        try:
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    _INSERT_APPLIED,
                    {"version": migration.version, "name": migration.name, "checksum": migration.checksum},
                )
        except psycopg.Error as exc:
            raise MigrationError(_describe_failure(migration, exc)) from exc
        done.append(migration)
    return done


def _describe_failure(migration: Migration, exc: psycopg.Error) -> str:
    diag = exc.diag
    message = diag.message_primary or str(exc).strip()
    where = ""
    if diag.statement_position:
        position = int(diag.statement_position)
        line = migration.sql[: position - 1].count("\n") + 1  # PostgreSQL counts characters from 1
        where = f" at line {line}"
    detail = f" ({diag.message_detail})" if diag.message_detail else ""
    return f"migration {migration.filename} failed{where}: {message}{detail}; nothing of it was applied"
