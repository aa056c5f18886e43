"""``/health/live`` and ``/health/ready``, shared by every app.

Live answers 200 while the process serves requests. Ready checks PostgreSQL and Redis concurrently,
each bounded by a short timeout, and answers 200 only when both work; the body names each
dependency's status, so an operator sees which one is down:
``{"status": "ready"|"unavailable", "checks": {"postgres": {"status": "ok"}, "redis": {...}}}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chatmill.resources import Resources

CHECK_TIMEOUT_SECONDS = 2.0


async def _check(probe: Awaitable[object]) -> dict[str, str]:
    try:
        await asyncio.wait_for(probe, timeout=CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return {"status": "error", "error": f"no answer within {CHECK_TIMEOUT_SECONDS:.0f} s"}
    except Exception as exc:  # any failure of a dependency is a readiness failure
        return {"status": "error", "error": type(exc).__name__}
    return {"status": "ok"}


async def _probe_postgres(resources: Resources) -> None:
    async with resources.pool.connection(timeout=CHECK_TIMEOUT_SECONDS) as conn:
        await conn.execute("SELECT 1")


async def _probe_redis(resources: Resources) -> None:
    await resources.redis.ping()


async def live(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> JSONResponse:
    resources: Resources = request.state.resources
    postgres, redis = await asyncio.gather(
        _check(_probe_postgres(resources)), _check(_probe_redis(resources))
    )
    checks = {"postgres": postgres, "redis": redis}
    healthy = all(check["status"] == "ok" for check in checks.values())
    return JSONResponse(
        {"status": "ready" if healthy else "unavailable", "checks": checks},
        status_code=200 if healthy else 503,
    )


def health_routes() -> list[Route]:
    return [Route("/health/live", live, methods=["GET"]), Route("/health/ready", ready, methods=["GET"])]
