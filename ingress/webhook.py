"""``/webhook/whatsapp`` and ``/webhook/whatsapp/{channel_id}``.

GET is Meta's verification handshake. POST, in this order, before anything is parsed:
1. body size: over 3 MB → 413 (Content-Length checked first; the stream is cut off at the limit);
2. signature over the raw bytes with the app secret (the platform's on ``/webhook/whatsapp``, the
   channel's own on ``/webhook/whatsapp/{channel_id}``) → 401 when missing or wrong;
then JSON (malformed or not a WhatsApp Business body → 400), routing by ``phone_number_id``, and one
transaction (see :mod:`ingress.store`). 200 only after the commit; PostgreSQL unavailable → 503 so
Meta redelivers. On a channel's own path only that channel's number is accepted: a tenant's app
secret cannot inject messages into another tenant's number.

Unknown numbers are acknowledged (200), counted and logged by number only — never message content.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from f.chatmill.lib.secretbox import SecretBox, SecretBoxError
from psycopg_pool import PoolTimeout
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from chatmill.errors import error_response
from chatmill.resources import Resources
from ingress import signature
from ingress.metrics import IngressMetrics
from ingress.payload import PayloadError, parse_batch
from ingress.ratelimit import RateLimiter
from ingress.store import RouteCache, store_batch

_log = logging.getLogger(__name__)

MAX_BODY_BYTES = 3 * 1024 * 1024

_CHANNEL_SECRETS = """
SELECT app_secret_encrypted, verify_token_encrypted FROM whatsapp_channels
WHERE id = %(id)s AND disconnected_at IS NULL
"""


class _TooLarge(Exception):
    pass


@dataclass
class WebhookDeps:
    resources: Resources
    metrics: IngressMetrics
    limiter: RateLimiter
    box: SecretBox
    on_new_outbox: Callable[[], None]
    routes: RouteCache


def _deps(request: Request) -> WebhookDeps:
    deps: WebhookDeps = request.state.webhook
    return deps


async def verify_subscription(request: Request) -> Response:
    """Meta's handshake: echo ``hub.challenge`` when ``hub.verify_token`` matches."""
    deps = _deps(request)
    params = request.query_params
    challenge = params.get("hub.challenge", "")
    token = params.get("hub.verify_token", "")
    if params.get("hub.mode") != "subscribe" or not challenge or not token:
        return error_response(403, "forbidden", "verification refused")
    channel_id = request.path_params.get("channel_id")
    try:
        if channel_id is None:
            expected = [deps.resources.settings.whatsapp_verify_token.get_secret_value()]
        else:
            secrets = await _channel_secrets(deps, channel_id)
            expected = [secrets["verify_token"]] if secrets and secrets["verify_token"] else []
    except (PoolTimeout, psycopg.OperationalError):
        return error_response(503, "service_unavailable", "database unavailable; retry later")
    if not any(hmac.compare_digest(token.encode(), e.encode()) for e in expected):
        return error_response(403, "forbidden", "verification refused")
    return PlainTextResponse(challenge)


async def receive(request: Request) -> Response:
    deps = _deps(request)
    started = time.perf_counter()
    outcome, response = await _receive(request, deps)
    deps.metrics.requests.labels(outcome=outcome).inc()
    deps.metrics.ack_seconds.observe(time.perf_counter() - started)
    return response


async def _receive(request: Request, deps: WebhookDeps) -> tuple[str, Response]:
    try:
        body = await _read_body(request)
    except _TooLarge:
        return "too_large", error_response(413, "payload_too_large", f"body exceeds {MAX_BODY_BYTES} bytes")
    except ClientDisconnect:
        return "bad_request", error_response(400, "bad_request", "client disconnected")

    channel_id = request.path_params.get("channel_id")
    try:
        if channel_id is None:
            secrets = [deps.resources.settings.whatsapp_app_secret.get_secret_value()]
            channel_uuid = None
        else:
            channel = await _channel_secrets(deps, channel_id)
            if channel is None or not channel["app_secret"]:
                return "unknown_channel", error_response(404, "not_found", "no such channel")
            secrets = [channel["app_secret"]]
            channel_uuid = uuid.UUID(channel_id)
    except (PoolTimeout, psycopg.OperationalError):
        return "db_unavailable", error_response(
            503, "service_unavailable", "database unavailable; retry later"
        )

    if not signature.verify(secrets, body, request.headers.get(signature.HEADER)):
        return "bad_signature", error_response(401, "unauthorized", "missing or invalid X-Hub-Signature-256")

    try:
        batch = parse_batch(json.loads(body))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "bad_request", error_response(400, "bad_request", "body is not valid JSON")
    except PayloadError as exc:
        return "bad_request", error_response(400, "bad_request", str(exc))

    try:
        async with deps.resources.pool.connection() as conn:
            routes = await deps.routes.resolve(conn, batch.phone_number_ids, channel_id=channel_uuid)
            result = await store_batch(conn, batch, routes, deps.limiter)
    except (PoolTimeout, psycopg.OperationalError) as exc:
        _log.warning("webhook not stored, database unavailable: %s", type(exc).__name__)
        return "db_unavailable", error_response(
            503, "service_unavailable", "database unavailable; retry later"
        )

    _record(deps.metrics, batch.errors, batch.skipped, result.messages, result.statuses)
    unknown = sorted(batch.phone_number_ids - routes.keys())
    if unknown:
        _log.info("webhook for unknown phone_number_id(s) %s acknowledged and ignored", unknown)
    if result.new_outbox:
        deps.on_new_outbox()
    return "accepted", JSONResponse(
        {"status": "ok", "messages": dict(result.messages), "statuses": dict(result.statuses)}
    )


def _record(
    metrics: IngressMetrics,
    errors: list[dict[str, Any]],
    skipped: list[str],
    messages: dict[str, int],
    statuses: dict[str, int],
) -> None:
    for outcome, count in messages.items():
        metrics.messages.labels(outcome=outcome).inc(count)
    for outcome, count in statuses.items():
        metrics.statuses.labels(outcome=outcome).inc(count)
    if skipped:
        metrics.messages.labels(outcome="malformed").inc(len(skipped))
        _log.warning("skipped %d unreadable webhook item(s): %s", len(skipped), skipped[:3])
    for error in errors:
        metrics.meta_errors.labels(code=str(error.get("code", "unknown"))).inc()


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _channel_secrets(deps: WebhookDeps, channel_id: str) -> dict[str, str | None] | None:
    """The decrypted app secret and verify token of a live channel, or None (unknown id)."""
    try:
        key = uuid.UUID(channel_id)
    except ValueError:
        return None
    async with deps.resources.pool.connection() as conn:
        cursor = await conn.execute(_CHANNEL_SECRETS, {"id": key})
        row = await cursor.fetchone()
    if row is None:
        return None
    return {
        "app_secret": _decrypt(deps.box, row["app_secret_encrypted"]),
        "verify_token": _decrypt(deps.box, row["verify_token_encrypted"]),
    }


def _decrypt(box: SecretBox, token: str | None) -> str | None:
    if token is None:
        return None
    try:
        return box.decrypt(token)
    except SecretBoxError:
        _log.error("a channel secret cannot be decrypted with the configured ENCRYPTION_KEYS")
        return None
