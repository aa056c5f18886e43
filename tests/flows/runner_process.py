"""A local runner in a process of its own (so a test can SIGKILL it): settings from the environment."""

from __future__ import annotations

import asyncio

from chatmill.runner.service import run_runner
from chatmill.settings import Settings

if __name__ == "__main__":
    asyncio.run(run_runner(Settings(), asyncio.Event(), heartbeat_interval=0.5, heartbeat_timeout=3.0))
