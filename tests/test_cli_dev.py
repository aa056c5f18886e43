"""``chatmill dev`` from the outside: it comes up ready, and a signal stops everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.servers import free_port

STARTUP_DEADLINE = 60.0


def _dev_environment(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "TEST_"))}
    env |= {
        "CHATMILL_ENV": "development",
        "CHATMILL_DATA_DIR": str(data_dir),
        "INGRESS_PORT": str(free_port()),
        "API_PORT": str(free_port()),
        "SANDBOX_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    return env


def _wait_ready(process: subprocess.Popen[str], ports: list[str]) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE
    pending = set(ports)
    while pending:
        assert process.poll() is None, f"chatmill dev exited early with {process.returncode}"
        assert time.monotonic() < deadline, f"not ready within {STARTUP_DEADLINE:.0f} s: {pending}"
        for port in list(pending):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                    pending.discard(port)
            except httpx.HTTPError:
                pass
        time.sleep(0.2)


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_dev_comes_up_ready_and_exits_cleanly_on_signal(services_dir: Path, sig: signal.Signals) -> None:
    data_dir = services_dir / ".chatmill"
    env = _dev_environment(data_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "chatmill", "dev"],
        env=env,
        cwd=services_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_ready(process, [env["INGRESS_PORT"], env["API_PORT"], env["SANDBOX_PORT"]])
        postmaster_pid = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        started = [*_descendants(process.pid), psutil.Process(postmaster_pid)]
        assert any("redis-server" in p.name() for p in started)
        process.send_signal(sig)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{env['INGRESS_PORT']}" in output
    assert "First step" in output
    assert "local flow runner" in output
    _, alive = psutil.wait_procs(started, timeout=10)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
