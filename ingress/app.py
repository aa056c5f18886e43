"""The ingress app: the public fast path for WhatsApp webhooks.

Today it serves health and metrics; the webhook endpoints and the outbox relay arrive with the
ingress issue (see the README's "not yet working" list).
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
        async with open_resources(settings, name="ingress", transport=transport) as resources:
            yield {"resources": resources}

    app = Starlette(
        routes=[*health_routes(), metrics_route(registry)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    return app
