"""The management API: the dashboard's backend under ``/api``.

Every endpoint is an :class:`~management_api.endpoints.Operation` listed in :data:`OPERATIONS`; the
routes, the OpenAPI document (``/api/openapi.json``) and the offline docs page (``/api/docs``) are
all built from that one table. Cross-cutting behaviour: request ids and access logs
(:mod:`management_api.middleware`), a strict CORS allowlist (``CORS_ORIGINS``; ``*`` is ignored),
one error shape for every failure (:mod:`chatmill.errors`), and 503 when PostgreSQL or Redis is
unreachable.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import psycopg_pool
import redis.exceptions
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from chatmill.errors import EXCEPTION_HANDLERS, error_response
from chatmill.health import health_routes
from chatmill.metrics import metrics_route
from chatmill.resources import open_resources
from chatmill.settings import Settings
from management_api import (
    auth,
    channels,
    chatbots,
    conversations,
    history,
    integrations,
    knowledge,
    knowledge_search,
    leads,
    members,
    organizations,
    replies,
)
from management_api.docs import DOCS_CSP, render_docs
from management_api.endpoints import Operation, build_route
from management_api.middleware import RequestIdMiddleware, StrictCORSMiddleware
from management_api.openapi import build_openapi

_log = logging.getLogger(__name__)

OPERATIONS: list[Operation] = [
    *auth.OPERATIONS,
    *members.OPERATIONS,
    *organizations.OPERATIONS,
    *chatbots.OPERATIONS,
    *channels.OPERATIONS,
    *integrations.OPERATIONS,
    *conversations.OPERATIONS,
    *replies.OPERATIONS,
    *history.OPERATIONS,
    *knowledge.OPERATIONS,
    *knowledge_search.OPERATIONS,
    *leads.OPERATIONS,
]
CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
CORS_HEADERS = ["Authorization", "Content-Type", "X-Request-ID"]


async def _unavailable(request: Request, exc: Exception) -> Response:
    _log.warning("dependency unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return error_response(503, "service_unavailable", "a dependency is unavailable; retry later")


async def _unexpected(request: Request, exc: Exception) -> Response:
    request_id = getattr(request.state, "request_id", "-")
    _log.error(
        "request_id=%s unhandled error on %s %s", request_id, request.method, request.url.path, exc_info=exc
    )
    return error_response(
        500,
        "internal_error",
        "internal error; it has been logged",
        details={"request_id": request_id},
        headers={"X-Request-ID": request_id},
    )


@functools.cache
def _documents() -> tuple[dict[str, Any], str]:
    """The OpenAPI document and its HTML page: built once per process from the static table."""
    spec = build_openapi(OPERATIONS)
    return spec, render_docs(spec)


def _routes(spec: dict[str, Any], html: str) -> list[BaseRoute]:
    async def openapi_json(request: Request) -> Response:
        return JSONResponse(spec)

    async def docs(request: Request) -> Response:
        return HTMLResponse(html, headers={"Content-Security-Policy": DOCS_CSP})

    return [
        *health_routes(),
        Route("/api/openapi.json", openapi_json, methods=["GET"]),
        Route("/api/docs", docs, methods=["GET"]),
        *(build_route(op) for op in OPERATIONS),
    ]


def create_app(settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> Starlette:
    registry = CollectorRegistry()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        async with open_resources(settings, name="api", transport=transport) as resources:
            yield {"resources": resources}

    handlers: dict[Any, Any] = {
        **EXCEPTION_HANDLERS,
        Exception: _unexpected,
        psycopg.OperationalError: _unavailable,
        psycopg_pool.PoolTimeout: _unavailable,
        redis.exceptions.ConnectionError: _unavailable,
        redis.exceptions.TimeoutError: _unavailable,
    }
    origins = [origin for origin in settings.cors_origins if origin != "*"]
    middleware = [
        Middleware(RequestIdMiddleware),
        Middleware(
            StrictCORSMiddleware,
            allow_origins=origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            expose_headers=["X-Request-ID", "Retry-After", "Content-Disposition"],
            max_age=600,
        ),
    ]
    spec, html = _documents()
    app = Starlette(
        routes=[*_routes(spec, html), metrics_route(registry)],
        exception_handlers=handlers,
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.openapi = spec
    return app
