"""Persisting one webhook POST in one transaction — one statement, ``ingress_store_batch``
(sql/migrations/0007_ingress.sql), so a POST costs one round trip to PostgreSQL.

Per message: resolve the contact (``ingress_upsert_contact``), upsert the conversation
(``last_inbound_at`` for the 24-hour window), insert the message with ``ON CONFLICT (channel_id,
wamid) DO NOTHING``, and, only for a newly stored message that should be answered and is within the
contact's rate limit, an outbox row. Per status: ``apply_message_status`` (forward only; unknown
wamids are kept for later). The caller acknowledges the webhook only after this commits.

Messages are processed ordered by (number, sender) with their order kept per sender, so concurrent
POSTs lock conversations in the same order; a deadlock or serialization failure retries the whole
statement.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from ingress.payload import Batch, InboundMessage, StatusUpdate
from ingress.ratelimit import RateLimiter

TRANSACTION_ATTEMPTS = 3

_ROUTES = """
SELECT c.phone_number_id, c.id AS channel_id, c.organization_id, c.chatbot_id, b.rate_limit_per_minute
FROM whatsapp_channels c
JOIN chatbots b ON b.organization_id = c.organization_id AND b.id = c.chatbot_id
WHERE c.phone_number_id = ANY(%(phone_number_ids)s) AND c.disconnected_at IS NULL AND b.deleted_at IS NULL
  AND (%(channel_id)s::uuid IS NULL OR c.id = %(channel_id)s::uuid)
"""

_STORE_BATCH = "SELECT * FROM ingress_store_batch(%(messages)s, %(statuses)s)"


@dataclass(frozen=True)
class Route:
    channel_id: uuid.UUID
    organization_id: uuid.UUID
    chatbot_id: uuid.UUID
    rate_limit_per_minute: int


@dataclass
class StoreResult:
    """What one POST did, for metrics and the response."""

    messages: Counter[str] = field(
        default_factory=Counter
    )  # accepted | duplicate | unknown_number | rate_limited
    statuses: Counter[str] = field(default_factory=Counter)  # applied | unmatched | unknown_number
    new_outbox: int = 0


async def load_routes(
    conn: AsyncConnection[Any], phone_number_ids: Iterable[str], *, channel_id: uuid.UUID | None = None
) -> dict[str, Route]:
    """Live channels for these numbers (restricted to ``channel_id`` on a tenant's own app path)."""
    ids = sorted(set(phone_number_ids))
    if not ids:
        return {}
    cursor = await conn.execute(_ROUTES, {"phone_number_ids": ids, "channel_id": channel_id})
    return {
        row["phone_number_id"]: Route(
            channel_id=row["channel_id"],
            organization_id=row["organization_id"],
            chatbot_id=row["chatbot_id"],
            rate_limit_per_minute=row["rate_limit_per_minute"],
        )
        for row in await cursor.fetchall()
    }


class RouteCache:
    """Live routes by phone_number_id, remembered for ``ttl`` seconds (found ones only).

    Saves a query per webhook. A number connected a moment ago is never missed (unknown numbers are
    always looked up); a disconnect takes effect within ``ttl`` seconds.
    """

    def __init__(self, ttl: float = 5.0) -> None:
        self._ttl = ttl
        self._routes: dict[str, tuple[float, Route]] = {}

    async def resolve(
        self,
        conn: AsyncConnection[Any],
        phone_number_ids: Iterable[str],
        *,
        channel_id: uuid.UUID | None = None,
    ) -> dict[str, Route]:
        now = time.monotonic()
        wanted = set(phone_number_ids)
        found = {pid: entry[1] for pid in wanted if (entry := self._routes.get(pid)) and entry[0] > now}
        missing = wanted - found.keys()
        if missing:
            fresh = await load_routes(conn, missing)
            for pid, route in fresh.items():
                self._routes[pid] = (now + self._ttl, route)
            found |= fresh
        if channel_id is not None:
            found = {pid: route for pid, route in found.items() if route.channel_id == channel_id}
        return found


async def store_batch(
    conn: AsyncConnection[Any], batch: Batch, routes: dict[str, Route], limiter: RateLimiter
) -> StoreResult:
    """Store everything in ``batch`` with one statement (retried on deadlock); return what happened.

    The rate limit is decided first (Redis, keyed by chatbot and sender; a redelivered wamid counts
    once), then one call of ``ingress_store_batch`` stores contacts, conversations, messages,
    outbox rows and statuses atomically.
    """
    result = StoreResult()
    messages: list[dict[str, Any]] = []
    now = dt.datetime.now(dt.UTC)
    for message in sorted(batch.messages, key=_lock_order):
        route = routes.get(message.phone_number_id)
        if route is None:
            result.messages["unknown_number"] += 1
            continue
        admitted = True
        if message.answerable:
            admitted = await limiter.admit(
                route.chatbot_id,
                _sender(message),
                limit=route.rate_limit_per_minute,
                member=message.wamid,
            )
        messages.append(_message_values(message, route, now, admitted))
    statuses: list[dict[str, Any]] = []
    for status in sorted(batch.statuses, key=lambda s: (s.phone_number_id, s.wamid)):
        route = routes.get(status.phone_number_id)
        if route is None:
            result.statuses["unknown_number"] += 1
            continue
        statuses.append(_status_values(status, route))
    if not messages and not statuses:
        return result
    values = {"messages": Jsonb(messages), "statuses": Jsonb(statuses)}
    for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
        try:
            cursor = await conn.execute(_STORE_BATCH, values)
            row = await cursor.fetchone()
            break
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            if attempt == TRANSACTION_ATTEMPTS:
                raise
    assert row is not None
    for outcome in ("accepted", "duplicate", "rate_limited"):
        if row[outcome]:
            result.messages[outcome] += row[outcome]
    for outcome in ("applied", "unmatched"):
        if row[outcome]:
            result.statuses[outcome] += row[outcome]
    result.new_outbox = row["new_outbox"]
    return result


def _sender(message: InboundMessage) -> str:
    return message.user_id or message.wa_id or ""


def _lock_order(message: InboundMessage) -> tuple[str, str]:
    return (message.phone_number_id, _sender(message))


def _message_values(
    message: InboundMessage, route: Route, now: dt.datetime, admitted: bool
) -> dict[str, Any]:
    return {
        "organization_id": str(route.organization_id),
        "chatbot_id": str(route.chatbot_id),
        "channel_id": str(route.channel_id),
        "wa_id": message.wa_id,
        "user_id": message.user_id,
        "profile_name": message.profile_name,
        "username": message.username,
        # The 24-hour window runs from the customer's message; a clock ahead of ours is capped.
        "received_at": min(message.timestamp, now).isoformat(),
        "type": message.type,
        "text": message.text,
        "payload": message.payload,
        "media": message.media,
        "context_wamid": message.context_wamid,
        "forwarded": message.forwarded,
        "wamid": message.wamid,
        "wa_timestamp": message.timestamp.isoformat(),
        "answer": message.answerable,
        "admitted": admitted,
    }


def _status_values(status: StatusUpdate, route: Route) -> dict[str, Any]:
    return {
        "organization_id": str(route.organization_id),
        "channel_id": str(route.channel_id),
        "wamid": status.wamid,
        "status": status.status,
        "at": status.timestamp.isoformat(),
        "error_code": status.error_code,
        "error_title": status.error_title,
        "payload": status.payload,
    }
