"""deployment/backup/backup.sh and restore.sh, and the postgres init script.

Two layers:

* Always: the scripts' own logic with stand-in ``pg_dump``/``pg_restore``/``psql``/``aws``
  executables (PG_BIN_DIR and PATH point at them): file naming, checksum file, retention, no
  partial file after a failed dump, S3 upload arguments, usage errors, and that restore refuses a
  corrupt or unverifiable file before any PostgreSQL tool runs.
* With a real server (``CHATMILL_BACKUP_TEST_DATABASE_URL``, a URL or conninfo of a PostgreSQL
  server the test may CREATE DATABASE on; skipped without it): a table with rows is backed up,
  restored into a fresh database and compared row by row; a corrupted copy is refused and leaves
  its target empty; the init script creates the app role and databases as the compose file
  expects. The client tools come from PG_BIN_DIR, else PATH, else the ``pgserver`` package's
  bundled binaries: the first whose pg_dump is at least the server's major version.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKUP_SH = REPO_ROOT / "deployment" / "backup" / "backup.sh"
RESTORE_SH = REPO_ROOT / "deployment" / "backup" / "restore.sh"
INIT_SH = REPO_ROOT / "deployment" / "postgres" / "init" / "10-chatmill.sh"
SERVER_URL_ENV = "CHATMILL_BACKUP_TEST_DATABASE_URL"
SCRIPT_TIMEOUT_S = 300
_BACKUP_NAME = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)-\d{8}T\d{6}Z\.dump\.gz$")


def _clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without anything that would steer the scripts elsewhere."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BACKUP_", "AWS_", "PG")) and key != "DATABASE_URL"
    }
    env.update(extra)
    return env


def _run(script: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_tool(directory: Path, name: str, body: str) -> None:
    tool = directory / name
    tool.write_text("#!/usr/bin/env bash\n" + body)
    tool.chmod(0o755)


# ---------------------------------------------------------------- stand-in tools (always run)


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """pg_dump that emits a fixed archive (or fails), and pg_restore/psql/aws that log their calls."""
    directory = tmp_path / "fake-bin"
    directory.mkdir()
    calls = tmp_path / "calls.log"
    _write_tool(
        directory,
        "pg_dump",
        'printf "PGDMP-fake-archive %s\\n" "$*"\n'
        'if [[ -n "${FAKE_PG_DUMP_FAIL:-}" ]]; then echo "pg_dump: connection refused" >&2; exit 1; fi\n',
    )
    for tool in ("pg_restore", "psql", "aws"):
        _write_tool(
            directory, tool, f'echo "{tool} $*" >> "{calls}"\n' + ("exit 1\n" if tool != "aws" else "")
        )
    return directory


def _calls(tmp_path: Path) -> str:
    path = tmp_path / "calls.log"
    return path.read_text() if path.exists() else ""


def _fake_backup(fake_bin: Path, out: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _run(
        BACKUP_SH,
        "--database-url",
        "postgresql://u:secret-password@db.invalid/chatmill",
        "--output-dir",
        str(out),
        *args,
        env=_clean_env(PG_BIN_DIR=str(fake_bin), **env),
    )


def test_backup_writes_gzip_dump_and_checksum(fake_bin: Path, tmp_path: Path) -> None:
    out = tmp_path / "backups"
    result = _fake_backup(fake_bin, out, "--name", "chatmill")
    assert result.returncode == 0, result.stderr
    dump = Path(result.stdout.strip())
    assert dump.parent == out
    assert _BACKUP_NAME.match(dump.name)
    assert subprocess.run(["gzip", "-dc", str(dump)], capture_output=True, check=True).stdout.startswith(
        b"PGDMP-fake-archive --format=custom"
    )
    assert (out / f"{dump.name}.sha256").read_text() == f"{_sha256(dump)}  {dump.name}\n"
    assert sorted(p.name for p in out.iterdir()) == [dump.name, f"{dump.name}.sha256"]
    assert (dump.stat().st_mode & 0o077) == 0, "backups must not be readable by other users"
    assert "secret-password" not in result.stdout + result.stderr


def test_failed_dump_leaves_nothing_behind(fake_bin: Path, tmp_path: Path) -> None:
    out = tmp_path / "backups"
    result = _fake_backup(fake_bin, out, FAKE_PG_DUMP_FAIL="1")
    assert result.returncode != 0
    assert "connection refused" in result.stderr
    assert list(out.iterdir()) == []


def test_retention_deletes_only_old_files_of_the_same_set(fake_bin: Path, tmp_path: Path) -> None:
    out = tmp_path / "backups"
    out.mkdir()
    month_ago = time.time() - 30 * 86400
    old = [out / "chatmill-20200101T000000Z.dump.gz", out / "chatmill-20200101T000000Z.dump.gz.sha256"]
    other_set = out / "windmill-20200101T000000Z.dump.gz"
    recent = out / "chatmill-20990101T000000Z.dump.gz"
    for path in (*old, other_set, recent):
        path.write_bytes(b"x")
    for path in (*old, other_set):
        os.utime(path, (month_ago, month_ago))
    result = _fake_backup(fake_bin, out, "--name", "chatmill", "--retention-days", "7")
    assert result.returncode == 0, result.stderr
    remaining = {path.name for path in out.iterdir()}
    assert not {path.name for path in old} & remaining
    assert {other_set.name, recent.name, Path(result.stdout.strip()).name} <= remaining

    result = _fake_backup(fake_bin, out, "--name", "windmill", "--retention-days", "0")
    assert result.returncode == 0, result.stderr
    assert other_set.exists(), "--retention-days 0 keeps everything"


def test_backup_uploads_both_files_when_s3_is_configured(fake_bin: Path, tmp_path: Path) -> None:
    out = tmp_path / "backups"
    result = _run(
        BACKUP_SH,
        "-d",
        "postgresql://db.invalid/chatmill",
        "-o",
        str(out),
        env=_clean_env(
            PG_BIN_DIR=str(fake_bin),
            PATH=f"{fake_bin}:{os.environ['PATH']}",
            BACKUP_S3_URI="s3://bucket/chatmill/",
            BACKUP_S3_ENDPOINT_URL="https://s3.example.test",
        ),
    )
    assert result.returncode == 0, result.stderr
    name = Path(result.stdout.strip()).name
    lines = _calls(tmp_path).splitlines()
    assert lines == [
        f"aws --endpoint-url https://s3.example.test s3 cp --only-show-errors {out / name} "
        f"s3://bucket/chatmill/{name}",
        f"aws --endpoint-url https://s3.example.test s3 cp --only-show-errors {out / name}.sha256 "
        f"s3://bucket/chatmill/{name}.sha256",
    ]


def test_backup_without_aws_cli_warns_and_keeps_local_copy(fake_bin: Path, tmp_path: Path) -> None:
    # A PATH holding exactly the tools backup.sh uses, and no aws.
    path_dir = tmp_path / "path-without-aws"
    path_dir.mkdir()
    for tool in ("bash", "env", "gzip", "sha256sum", "find", "date", "mkdir", "mv", "rm", "dirname", "wc"):
        found = shutil.which(tool)
        assert found, tool
        (path_dir / tool).symlink_to(found)
    out = tmp_path / "backups"
    result = _fake_backup(fake_bin, out, PATH=str(path_dir), BACKUP_S3_URI="s3://bucket/chatmill")
    assert result.returncode == 0, result.stderr
    assert "aws CLI is not installed" in result.stderr
    assert Path(result.stdout.strip()).exists()


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        (BACKUP_SH, [], "no database"),
        (BACKUP_SH, ["-d", "postgresql://x/y", "--retention-days", "soon"], "whole number"),
        (BACKUP_SH, ["-d", "postgresql://x/y", "--name", "../etc"], "--name"),
        (BACKUP_SH, ["--bogus"], "unknown argument"),
        (RESTORE_SH, [], "missing BACKUP_FILE"),
        (RESTORE_SH, ["a.dump.gz"], "no target database"),
        (RESTORE_SH, ["-d", "postgresql://x/y", "a.dump.gz", "b.dump.gz"], "exactly one"),
    ],
)
def test_usage_errors_exit_2_with_a_hint(script: Path, args: list[str], message: str) -> None:
    result = _run(script, *args, env=_clean_env())
    assert result.returncode == 2
    assert message in result.stderr
    assert "--help" in result.stderr


@pytest.mark.parametrize("script", [BACKUP_SH, RESTORE_SH], ids=["backup", "restore"])
def test_help(script: Path) -> None:
    result = _run(script, "--help", env=_clean_env())
    assert result.returncode == 0
    assert result.stdout.startswith(f"Usage: {script.name}")


@pytest.fixture
def fake_backup_file(fake_bin: Path, tmp_path: Path) -> Path:
    result = _fake_backup(fake_bin, tmp_path / "backups")
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def _restore_fake(fake_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(
        RESTORE_SH, "-d", "postgresql://db.invalid/target", *args, env=_clean_env(PG_BIN_DIR=str(fake_bin))
    )


def test_restore_refuses_a_modified_file_before_touching_the_database(
    fake_bin: Path, fake_backup_file: Path, tmp_path: Path
) -> None:
    data = bytearray(fake_backup_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    fake_backup_file.write_bytes(bytes(data))
    result = _restore_fake(fake_bin, str(fake_backup_file))
    assert result.returncode == 3
    assert "REFUSED: checksum mismatch" in result.stderr
    assert _calls(tmp_path) == "", "no PostgreSQL tool may run before the checksum matched"


def test_restore_refuses_without_a_usable_checksum(
    fake_bin: Path, fake_backup_file: Path, tmp_path: Path
) -> None:
    checksum = Path(f"{fake_backup_file}.sha256")
    checksum.write_text("not a checksum\n")
    result = _restore_fake(fake_bin, str(fake_backup_file))
    assert result.returncode == 3
    assert "does not hold a SHA-256" in result.stderr
    checksum.unlink()
    result = _restore_fake(fake_bin, str(fake_backup_file))
    assert result.returncode == 3
    assert "checksum file not found" in result.stderr
    assert _calls(tmp_path) == ""


def test_restore_accepts_an_explicit_checksum_file(
    fake_bin: Path, fake_backup_file: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "checksums" / "backup.sha256"
    elsewhere.parent.mkdir()
    Path(f"{fake_backup_file}.sha256").rename(elsewhere)
    result = _restore_fake(fake_bin, "--checksum", str(elsewhere), str(fake_backup_file))
    assert "checksum OK" in result.stderr
    # The stand-in pg_restore cannot read the archive: refused at the second check, exit 1.
    assert result.returncode == 1
    assert "not a pg_dump custom-format archive" in result.stderr


# ---------------------------------------------------------------- against a real PostgreSQL server


@pytest.fixture(scope="module")
def server_url_for_backups(server_url: str) -> str:
    """``CHATMILL_BACKUP_TEST_DATABASE_URL`` if set, else the suite's server (embedded by default)."""
    return os.environ.get(SERVER_URL_ENV) or server_url


def _major_version(binary: Path) -> int:
    output = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"\)\s*(\d+)", output)  # "pg_dump (PostgreSQL) 16.2"
    assert match, output
    return int(match[1])


@pytest.fixture(scope="module")
def pg_bin_dir(server_url_for_backups: str) -> Path:
    with psycopg.connect(server_url_for_backups) as conn:
        server_major = conn.info.server_version // 10000
    if os.environ.get("PG_BIN_DIR"):
        candidates = [Path(os.environ["PG_BIN_DIR"])]
    else:
        candidates = []
        on_path = shutil.which("pg_dump")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
        spec = importlib.util.find_spec("pgserver")
        if spec is not None and spec.origin is not None:
            candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    found = []
    for directory in candidates:
        if all((directory / tool).exists() for tool in ("pg_dump", "pg_restore", "psql")):
            major = _major_version(directory / "pg_dump")
            found.append(f"{directory} (pg_dump {major})")
            if major >= server_major:
                return directory
    pytest.fail(
        f"no pg_dump >= {server_major} (the server's major version) among: {found or candidates}; "
        "set PG_BIN_DIR to a folder with pg_dump, pg_restore and psql"
    )


@pytest.fixture
def make_database(server_url_for_backups: str) -> Iterator[Callable[[], str]]:
    created: list[str] = []

    def make() -> str:
        name = f"chatmill_backup_test_{secrets.token_hex(4)}"
        with psycopg.connect(server_url_for_backups, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return make_conninfo(server_url_for_backups, dbname=name)

    yield make
    with psycopg.connect(server_url_for_backups, autocommit=True) as conn:
        for name in created:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


_SOURCE_SCHEMA = """
CREATE TABLE items (
    id       bigserial PRIMARY KEY,
    name     text NOT NULL,
    payload  jsonb,
    created  timestamptz NOT NULL DEFAULT '2025-01-02T03:04:05Z',
    blob     bytea
);
CREATE INDEX items_name_idx ON items (name);
INSERT INTO items (name, payload, blob)
SELECT 'row ' || g || ' — ñ ✓', jsonb_build_object('n', g, 'tags', jsonb_build_array('a', g % 3)),
       CASE WHEN g % 5 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END
FROM generate_series(1, 500) AS g;
"""


def _snapshot(url: str) -> tuple[list[str], int, list[str]]:
    with psycopg.connect(url) as conn:
        rows = [row[0] for row in conn.execute("SELECT row_to_json(t)::text FROM items AS t ORDER BY id")]
        last_value = conn.execute("SELECT last_value FROM items_id_seq").fetchone()
        indexes = [
            row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'items'")
        ]
    assert last_value is not None
    return rows, int(last_value[0]), sorted(indexes)


def _table_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_backup_restore_round_trip(
    server_url_for_backups: str, pg_bin_dir: Path, make_database: Callable[[], str], tmp_path: Path
) -> None:
    source, target, untouched = make_database(), make_database(), make_database()
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(_SOURCE_SCHEMA)
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error:
            has_vector = False
        else:
            has_vector = True
            conn.execute("ALTER TABLE items ADD COLUMN embedding vector(3)")
            conn.execute("UPDATE items SET embedding = ARRAY[id, id / 2.0, -id]::real[]::vector")
    env = _clean_env(PG_BIN_DIR=str(pg_bin_dir))

    backup = _run(BACKUP_SH, "-d", source, "-o", str(tmp_path / "backups"), "-n", "roundtrip", env=env)
    assert backup.returncode == 0, backup.stderr
    dump = Path(backup.stdout.strip())
    assert Path(f"{dump}.sha256").read_text().split()[0] == _sha256(dump)

    restore = _run(RESTORE_SH, "-d", target, str(dump), env=env)
    assert restore.returncode == 0, restore.stderr
    expected = _snapshot(source)
    assert len(expected[0]) == 500
    assert _snapshot(target) == expected
    if has_vector:
        with psycopg.connect(target) as conn:
            row = conn.execute("SELECT embedding::text FROM items WHERE id = 4").fetchone()
        assert row == ("[4,2,-4]",)

    again = _run(RESTORE_SH, "-d", target, str(dump), env=env)
    assert again.returncode == 1
    assert "already has" in again.stderr
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("DELETE FROM items WHERE id > 10")
    clean = _run(RESTORE_SH, "--clean", "-d", target, str(dump), env=env)
    assert clean.returncode == 0, clean.stderr
    assert _snapshot(target) == expected

    corrupt = tmp_path / "corrupt" / dump.name
    corrupt.parent.mkdir()
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    corrupt.write_bytes(bytes(data))
    shutil.copy(f"{dump}.sha256", f"{corrupt}.sha256")
    refused = _run(RESTORE_SH, "-d", untouched, str(corrupt), env=env)
    assert refused.returncode == 3
    assert "checksum mismatch" in refused.stderr
    assert _table_count(untouched) == 0


def test_postgres_init_script_creates_app_role_and_databases(
    server_url_for_backups: str, pg_bin_dir: Path, tmp_path: Path
) -> None:
    with psycopg.connect(server_url_for_backups) as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        vector = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    if not (row and row[0]) or vector is None:
        pytest.skip("the init script needs a superuser and the pgvector extension on the server")
    params = conninfo_to_dict(server_url_for_backups)
    suffix = secrets.token_hex(4)
    app_db, app_user, windmill_db = (
        f"chatmill_init_{suffix}",
        f"chatmill_init_{suffix}",
        f"windmill_init_{suffix}",
    )
    password = "pw-" + secrets.token_hex(8) + "'quote"
    pg_env = {
        "PGHOST": str(params.get("host", "")),
        "PGPORT": str(params.get("port", "")),
        "PGPASSWORD": str(params.get("password", "")),
        "PGSSLMODE": str(params.get("sslmode", "")),
    }
    env = _clean_env(
        PATH=f"{pg_bin_dir}:{os.environ['PATH']}",
        POSTGRES_USER=str(params.get("user", "postgres")),
        POSTGRES_DB=str(params.get("dbname", "postgres")),
        CHATMILL_DB_NAME=app_db,
        CHATMILL_DB_USER=app_user,
        CHATMILL_DB_PASSWORD=password,
        WINDMILL_DB_NAME=windmill_db,
        **{key: value for key, value in pg_env.items() if value},
    )
    try:
        for _ in range(2):  # safe to run again
            result = _run(INIT_SH, env=env)
            assert result.returncode == 0, result.stderr
        app_url = make_conninfo(server_url_for_backups, dbname=app_db, user=app_user, password=password)
        with psycopg.connect(app_url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (app_user,)
            assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'vector'").fetchone()
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")  # what migrations do: a no-op
            conn.execute("CREATE TABLE owned_by_app (id int)")
        windmill_url = make_conninfo(
            server_url_for_backups, dbname=windmill_db, user=app_user, password=password
        )
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            psycopg.connect(windmill_url).close()
    finally:
        with psycopg.connect(server_url_for_backups, autocommit=True) as conn:
            for name in (app_db, windmill_db):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(app_user)))
