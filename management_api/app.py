"""The management API: the dashboard's backend under ``/api``.

Today it serves health and metrics; the endpoints arrive with the management API issue (see the
README's "not yet working" list).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from chatmill.errors import EXCEPTION_HANDLERS
from chatmill.health import health_routes
from chatmill.metrics import metrics_route
from chatmill.resources import open_resources
from chatmill.settings import Settings


def create_app(settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> Starlette:
    registry = CollectorRegistry()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        async with open_resources(settings, name="api", transport=transport) as resources:
            yield {"resources": resources}

    app = Starlette(
        routes=[*health_routes(), metrics_route(registry)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    return app
