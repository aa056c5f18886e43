"""The ingress app: the public fast path for WhatsApp webhooks.

Routes: ``GET|POST /webhook/whatsapp`` (the platform's Meta app), ``GET|POST
/webhook/whatsapp/{channel_id}`` (a tenant's own Meta app), ``/metrics``, ``/health/live``,
``/health/ready``. The lifespan opens the pool, Redis and httpx, and runs the outbox relay as a
background task (``run_relay=False`` leaves it out, e.g. for a dedicated relay process or tests).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from f.chatmill.lib.secretbox import SecretBox
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route

from chatmill.errors import EXCEPTION_HANDLERS
from chatmill.flows import FlowBackend, flow_backend
from chatmill.health import health_routes
from chatmill.metrics import metrics_route
from chatmill.resources import open_resources
from chatmill.settings import Settings
from ingress import webhook
from ingress.metrics import IngressMetrics
from ingress.ratelimit import RateLimiter
from ingress.relay import OutboxRelay, RelayConfig
from ingress.store import RouteCache


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    run_relay: bool = True,
    relay_config: RelayConfig | None = None,
) -> Starlette:
    registry = CollectorRegistry()
    metrics = IngressMetrics.create(registry)
    box = SecretBox([key.get_secret_value() for key in settings.encryption_keys])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        async with open_resources(
            settings, name="ingress", transport=transport, autocommit=True
        ) as resources:
            backend: FlowBackend = flow_backend(settings, pool=resources.pool, http=resources.http)
            relay = OutboxRelay(resources.pool, backend, metrics, relay_config)
            deps = webhook.WebhookDeps(
                resources=resources,
                metrics=metrics,
                limiter=RateLimiter(resources.redis, registry),
                box=box,
                on_new_outbox=relay.wake,
                routes=RouteCache(),
            )
            stop = asyncio.Event()
            task = asyncio.create_task(relay.run(stop), name="outbox-relay") if run_relay else None
            try:
                yield {"resources": resources, "webhook": deps, "relay": relay}
            finally:
                stop.set()
                if task is not None:
                    await task

    routes = [
        Route("/webhook/whatsapp", webhook.verify_subscription, methods=["GET"]),
        Route("/webhook/whatsapp", webhook.receive, methods=["POST"]),
        Route("/webhook/whatsapp/{channel_id}", webhook.verify_subscription, methods=["GET"]),
        Route("/webhook/whatsapp/{channel_id}", webhook.receive, methods=["POST"]),
        *health_routes(),
        metrics_route(registry),
    ]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    return app
