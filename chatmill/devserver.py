"""``chatmill dev`` and ``chatmill serve``: run the apps with uvicorn in one asyncio loop.

``dev`` runs every part in one process (the embedded PostgreSQL and Redis are its only child
processes): SIGINT or SIGTERM asks each server to finish its requests and close, then the embedded
services are stopped, and the process exits 0 leaving nothing running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette

from chatmill.settings import Settings

_log = logging.getLogger(__name__)


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop when it is installed (uvicorn[standard]), else asyncio's own loop.

    uvicorn picks uvloop itself only when it creates the loop; here we create it, for several
    servers and background tasks in one loop.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us (several servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class AppSpec:
    name: str
    factory: Callable[[Settings], Starlette]
    port: int


def app_specs(settings: Settings) -> dict[str, AppSpec]:
    from ingress.app import create_app as create_ingress
    from management_api.app import create_app as create_api

    specs = {
        "ingress": AppSpec("ingress", create_ingress, settings.ingress_port),
        "api": AppSpec("api", create_api, settings.api_port),
    }
    if sandbox_enabled(settings):
        from chatmill.sandbox import create_app as create_sandbox

        specs["sandbox"] = AppSpec("sandbox", create_sandbox, settings.sandbox_port)
    return specs


def sandbox_enabled(settings: Settings) -> bool:
    """The WhatsApp sandbox runs when development settings point the Graph API at it."""
    return settings.is_development and settings.whatsapp_graph_url is None


Background = Callable[[Settings, asyncio.Event], Coroutine[Any, Any, None]]


def background_tasks(settings: Settings) -> dict[str, Background]:
    """Long-running parts beside the apps: the local flow runner unless Windmill is configured."""
    if settings.windmill_url:
        return {}
    from chatmill.runner.service import run_runner

    return {"runner": run_runner}


NOT_YET_AVAILABLE = {
    "MCP tool servers": "pricing, lead capture, handoff (no issue yet)",
}


async def serve(
    settings: Settings,
    specs: list[AppSpec],
    *,
    on_started: Callable[[], None] | None = None,
    background: dict[str, Background] | None = None,
) -> int:
    """Serve ``specs`` (and run ``background`` parts) until SIGINT/SIGTERM; return the exit status
    (0 on a requested shutdown). A background part gets an event that is set when it should stop."""
    servers = [
        _Server(
            uvicorn.Config(
                spec.factory(settings),
                host=settings.host,
                port=spec.port,
                log_level=settings.log_level.lower(),
                lifespan="on",
                access_log=False,
                proxy_headers=True,
                forwarded_allow_ips=settings.forwarded_allow_ips,
                timeout_graceful_shutdown=10,
            )
        )
        for spec in specs
    ]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def request_exit() -> None:
        stop.set()
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_exit)
    tasks = [
        asyncio.create_task(server.serve(), name=spec.name)
        for server, spec in zip(servers, specs, strict=True)
    ]
    tasks += [asyncio.create_task(run(settings, stop), name=name) for name, run in (background or {}).items()]
    try:
        await _wait_started(servers, tasks)
        if all(server.started for server in servers) and on_started is not None:
            on_started()
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        request_exit()  # one server ending (or failing to start) ends them all
        await asyncio.gather(*tasks, return_exceptions=True)
        failed = [task for task in tasks if task.exception() is not None]
        for task in failed:
            _log.error("%s stopped: %r", task.get_name(), task.exception())
        return 1 if failed or not all(server.started for server in servers) else 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _wait_started(servers: list[_Server], tasks: list[asyncio.Task[None]]) -> None:
    while not all(server.started for server in servers):
        if any(task.done() for task in tasks):
            return
        await asyncio.sleep(0.05)
