"""The embedded PostgreSQL and Redis: real servers, data kept across restarts, nothing left running."""

from __future__ import annotations

from pathlib import Path

import psutil
import psycopg
from redis import Redis

from chatmill.embedded import EmbeddedRedis, embedded_services


def _alive(pid: int | None) -> bool:
    if pid is None or not psutil.pid_exists(pid):
        return False
    return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def test_restarted_services_keep_their_data_and_stop_cleanly(services_dir: Path) -> None:
    data_dir = services_dir / ".chatmill"
    with embedded_services(data_dir, database_url=None, redis_url=None) as urls:
        with psycopg.connect(urls.database_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (value text)")
            conn.execute("INSERT INTO kept VALUES ('still here')")
            server_version = conn.execute("SHOW server_version").fetchone()
            postgres_pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        with Redis.from_url(urls.redis_url) as client:
            client.set("kept", "also here")
            redis_pid = int(client.info("server")["process_id"])
    assert server_version is not None
    assert server_version[0].startswith("16.")
    assert postgres_pid is not None
    assert not _alive(redis_pid)
    assert not (data_dir / "postgres" / "postmaster.pid").exists()

    with embedded_services(data_dir, database_url=None, redis_url=None) as urls:
        with psycopg.connect(urls.database_url) as conn:
            assert conn.execute("SELECT value FROM kept").fetchone() == ("still here",)
        with Redis.from_url(urls.redis_url) as client:
            assert client.get("kept") == b"also here"


def test_a_second_user_attaches_and_only_the_starter_stops_redis(services_dir: Path) -> None:
    owner = EmbeddedRedis(services_dir / "redis")
    url = owner.start()
    try:
        guest = EmbeddedRedis(services_dir / "redis")
        assert guest.start() == url
        guest.stop()
        with Redis.from_url(url) as client:
            assert client.ping()
    finally:
        owner.stop()
    assert not _alive(owner.pid)


def test_a_stale_state_file_does_not_block_the_next_start(services_dir: Path) -> None:
    directory = services_dir / "redis"
    directory.mkdir()
    (directory / "redis.json").write_text('{"pid": 999999, "socket": "/nonexistent/redis.sock"}')
    redis = EmbeddedRedis(directory)
    url = redis.start()
    try:
        with Redis.from_url(url) as client:
            assert client.ping()
    finally:
        redis.stop()


def test_a_deep_data_directory_still_gets_a_usable_socket(services_dir: Path) -> None:
    deep = services_dir.joinpath(*(["a-rather-long-directory-name"] * 5))
    redis = EmbeddedRedis(deep)
    url = redis.start()
    try:
        with Redis.from_url(url) as client:
            assert client.ping()
    finally:
        redis.stop()
