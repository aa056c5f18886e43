"""Persisting one webhook POST in one transaction.

Per message: resolve the contact (``ingress_upsert_contact``), upsert the conversation
(``last_inbound_at`` for the 24-hour window), insert the message with ``ON CONFLICT (channel_id,
wamid) DO NOTHING``, and, only for a newly stored message that should be answered and is within the
contact's rate limit, an outbox row. Per status: ``apply_message_status`` (forward only; unknown
wamids are kept for later). The caller acknowledges the webhook only after this commits.

Messages are processed ordered by (number, sender) with their order kept per sender, so concurrent
POSTs lock conversations in the same order; a deadlock or serialization failure retries the whole
transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncConnection

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

_STORE_MESSAGE = """
WITH contact AS (
    SELECT ingress_upsert_contact(%(organization_id)s, %(channel_id)s, %(wa_id)s, %(user_id)s,
                                  %(profile_name)s, %(username)s, %(received_at)s) AS id
), conversation AS (
    INSERT INTO conversations (organization_id, chatbot_id, channel_id, contact_id, last_inbound_at, last_message_at)
    SELECT %(organization_id)s, %(chatbot_id)s, %(channel_id)s, contact.id, %(received_at)s, %(received_at)s
    FROM contact
    ON CONFLICT (channel_id, contact_id) DO UPDATE SET
        last_inbound_at = GREATEST(conversations.last_inbound_at, EXCLUDED.last_inbound_at),
        last_message_at = GREATEST(conversations.last_message_at, EXCLUDED.last_message_at)
    RETURNING id, contact_id
), message AS (
    INSERT INTO messages (organization_id, chatbot_id, channel_id, conversation_id, contact_id, direction, author,
                          type, text, payload, media, context_wamid, forwarded, wamid, wa_timestamp, status)
    SELECT %(organization_id)s, %(chatbot_id)s, %(channel_id)s, conversation.id, conversation.contact_id,
           'inbound', 'customer', %(type)s, %(text)s, %(payload)s, %(media)s, %(context_wamid)s, %(forwarded)s,
           %(wamid)s, %(wa_timestamp)s, 'received'
    FROM conversation
    ON CONFLICT (channel_id, wamid) DO NOTHING
    RETURNING id
)
SELECT conversation.id AS conversation_id, conversation.contact_id, message.id AS message_id
FROM conversation LEFT JOIN message ON true
"""

_INSERT_OUTBOX = """
INSERT INTO inbound_outbox (organization_id, conversation_id, message_id)
VALUES (%(organization_id)s, %(conversation_id)s, %(message_id)s)
ON CONFLICT (message_id) DO NOTHING
"""

_MARK_RATE_LIMITED = """
UPDATE messages SET rate_limited = true, answered_at = now(), answer_outcome = 'rate_limited'
WHERE id = %(message_id)s AND organization_id = %(organization_id)s
"""

_APPLY_STATUS = """
SELECT apply_message_status(%(organization_id)s, %(channel_id)s, %(wamid)s, %(status)s, %(at)s,
                            %(error_code)s, %(error_title)s, %(payload)s) AS matched
"""


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


async def store_batch(
    conn: AsyncConnection[Any], batch: Batch, routes: dict[str, Route], limiter: RateLimiter
) -> StoreResult:
    """Store everything in ``batch`` in one transaction (retried on deadlock); return what happened."""
    for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
        try:
            async with conn.transaction():
                return await _store(conn, batch, routes, limiter)
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            if attempt == TRANSACTION_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def _store(
    conn: AsyncConnection[Any], batch: Batch, routes: dict[str, Route], limiter: RateLimiter
) -> StoreResult:
    result = StoreResult()
    now = dt.datetime.now(dt.UTC)
    for message in sorted(batch.messages, key=_lock_order):
        route = routes.get(message.phone_number_id)
        if route is None:
            result.messages["unknown_number"] += 1
            continue
        await _store_message(conn, message, route, limiter, now, result)
    for status in sorted(batch.statuses, key=lambda s: (s.phone_number_id, s.wamid)):
        route = routes.get(status.phone_number_id)
        if route is None:
            result.statuses["unknown_number"] += 1
            continue
        matched = await _apply_status(conn, status, route)
        result.statuses["applied" if matched else "unmatched"] += 1
    return result


def _lock_order(message: InboundMessage) -> tuple[str, str]:
    return (message.phone_number_id, message.user_id or message.wa_id or "")


async def _store_message(
    conn: AsyncConnection[Any],
    message: InboundMessage,
    route: Route,
    limiter: RateLimiter,
    now: dt.datetime,
    result: StoreResult,
) -> None:
    values = {
        "organization_id": route.organization_id,
        "chatbot_id": route.chatbot_id,
        "channel_id": route.channel_id,
        "wa_id": message.wa_id,
        "user_id": message.user_id,
        "profile_name": message.profile_name,
        "username": message.username,
        # The 24-hour window runs from the customer's message; a clock ahead of ours is capped.
        "received_at": min(message.timestamp, now),
        "type": message.type,
        "text": message.text,
        "payload": json.dumps(message.payload),
        "media": json.dumps(message.media) if message.media else None,
        "context_wamid": message.context_wamid,
        "forwarded": message.forwarded,
        "wamid": message.wamid,
        "wa_timestamp": message.timestamp,
    }
    cursor = await conn.execute(_STORE_MESSAGE, values)
    row = await cursor.fetchone()
    assert row is not None
    if row["message_id"] is None:
        result.messages["duplicate"] += 1
        return
    ids = {"organization_id": route.organization_id, "message_id": row["message_id"]}
    if message.answerable:
        admitted = await limiter.admit(
            route.chatbot_id, row["contact_id"], limit=route.rate_limit_per_minute, member=message.wamid
        )
        if not admitted:
            await conn.execute(_MARK_RATE_LIMITED, ids)
            result.messages["rate_limited"] += 1
            return
        await conn.execute(_INSERT_OUTBOX, {**ids, "conversation_id": row["conversation_id"]})
        result.new_outbox += 1
    result.messages["accepted"] += 1


async def _apply_status(conn: AsyncConnection[Any], status: StatusUpdate, route: Route) -> bool:
    cursor = await conn.execute(
        _APPLY_STATUS,
        {
            "organization_id": route.organization_id,
            "channel_id": route.channel_id,
            "wamid": status.wamid,
            "status": status.status,
            "at": status.timestamp,
            "error_code": status.error_code,
            "error_title": status.error_title,
            "payload": json.dumps(status.payload),
        },
    )
    row = await cursor.fetchone()
    return bool(row and row["matched"])
