from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from chatmill.migrations import MIGRATIONS_DIR, MigrationError, apply_migrations, discover

# Tables that belong to the platform rather than to one organization.
PLATFORM_TABLES = {
    "schema_migrations",
    "billing_tiers",
    "integrations",
    "embedding_models",
    "organizations",
    "runner_runs",
    "runner_steps",
    "runner_schedules",
}


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_applying_twice_is_a_no_op(scratch_database: str) -> None:
    first = apply_migrations(scratch_database)
    assert [m.filename for m in first] == [m.filename for m in discover()]
    tables = _tables(scratch_database)
    assert apply_migrations(scratch_database) == []
    assert _tables(scratch_database) == tables


def test_concurrent_runners_apply_each_migration_once(scratch_database: str) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(len(apply_migrations(scratch_database)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(results) == [0, 0, len(discover())]


def _copy_with(tmp_path: Path, name: str, sql: str) -> Path:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    (directory / name).write_text(sql)
    return directory


def test_a_failing_migration_leaves_nothing_and_names_file_line_and_cause(
    scratch_database: str, tmp_path: Path
) -> None:
    directory = _copy_with(
        tmp_path,
        "0900_broken.sql",
        "CREATE TABLE half_done (id int);\nINSERT INTO half_done VALUES (1);\nSELECT no_such_function();\n",
    )
    with pytest.raises(MigrationError) as caught:
        apply_migrations(scratch_database, directory)
    message = str(caught.value)
    assert "0900_broken.sql" in message
    assert "line 3" in message
    assert "no_such_function" in message
    assert "half_done" not in _tables(scratch_database)
    with psycopg.connect(scratch_database) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]
    assert 900 not in versions
    assert len(versions) == len(discover())  # the good ones before it stay applied


def test_an_edited_applied_migration_is_refused(scratch_database: str, tmp_path: Path) -> None:
    apply_migrations(scratch_database)
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    first = sorted(directory.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="was changed after it was applied"):
        apply_migrations(scratch_database, directory)


def test_misnamed_migration_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_oops.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_lower_snake_name\.sql"):
        discover(tmp_path)


def test_every_tenant_table_carries_organization_id(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """
            SELECT t.tablename, c.is_nullable
            FROM pg_tables t
            LEFT JOIN information_schema.columns c
              ON c.table_name = t.tablename AND c.column_name = 'organization_id' AND c.table_schema = 'public'
            WHERE t.schemaname = 'public'
            """
        ).fetchall()
    missing = sorted(table for table, nullable in rows if table not in PLATFORM_TABLES and nullable != "NO")
    assert missing == []


def test_pgvector_and_the_tables_queries_need_exist(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        indexes = {
            row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
        }
    for index in [
        "messages_channel_wamid_key",
        "messages_conversation_keyset_idx",
        "messages_chatbot_keyset_idx",
        "messages_unanswered_idx",
        "inbound_outbox_due_idx",
        "whatsapp_channels_phone_number_key",
        "knowledge_chunks_tsv_idx",
        "users_email_key",
    ]:
        assert index in indexes
