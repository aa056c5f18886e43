"""Conversations: the inbox of a chatbot, human handoff (pause/resume) and agents' manual replies.

The list is latest first (``last_message_at DESC NULLS LAST, id DESC``, keyset cursor) with the
contact, the last message and the pause state. A pause without ``minutes`` lasts until resumed.
Conversations of a deleted chatbot answer 404 like foreign ones. Agent replies live in
:mod:`management_api.replies`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from chatmill.errors import NotFound
from management_api.chatbots import ensure_chatbot
from management_api.db import Row, all_rows, connection, one
from management_api.endpoints import Context, Operation
from management_api.pagination import Page, PageQuery, decode_cursor, encode_cursor

WINDOW_SQL = "coalesce(c.last_inbound_at > now() - interval '24 hours', false)"
PAUSED_SQL = "(c.paused_at IS NOT NULL AND (c.paused_until IS NULL OR c.paused_until > now()))"
LIVE_CHATBOT_SQL = """EXISTS (SELECT 1 FROM chatbots b
    WHERE b.organization_id = c.organization_id AND b.id = c.chatbot_id AND b.deleted_at IS NULL)"""


class Contact(BaseModel):
    id: uuid.UUID
    wa_id: str | None
    user_id: str | None
    profile_name: str | None
    username: str | None


class LastMessage(BaseModel):
    id: uuid.UUID
    direction: str
    author: str
    type: str
    text: str | None
    status: str
    created_at: datetime


class PauseState(BaseModel):
    id: uuid.UUID
    paused: bool
    paused_at: datetime | None
    paused_until: datetime | None
    pause_reason: str | None


class ConversationSummary(PauseState):
    chatbot_id: uuid.UUID
    channel_id: uuid.UUID
    contact: Contact
    last_message: LastMessage | None
    last_inbound_at: datetime | None
    last_message_at: datetime | None
    window_open: bool = Field(
        description="within 24 h of the customer's last message: free-form replies allowed"
    )
    created_at: datetime


class PauseRequest(BaseModel):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"minutes": 120, "reason": "refund"}]},
    }
    minutes: int | None = Field(default=None, ge=1, le=43200, description="omit: paused until resumed")
    reason: str | None = Field(default=None, max_length=500)


_LIST = f"""
SELECT c.id, c.chatbot_id, c.channel_id, c.last_inbound_at, c.last_message_at, c.paused_at, c.paused_until,
       c.pause_reason, c.created_at, {PAUSED_SQL} AS paused, {WINDOW_SQL} AS window_open,
       ct.id AS ct_id, ct.wa_id AS ct_wa_id, ct.user_id AS ct_user_id, ct.profile_name AS ct_profile_name,
       ct.username AS ct_username,
       lm.id AS lm_id, lm.direction AS lm_direction, lm.author AS lm_author, lm.type AS lm_type,
       lm.text AS lm_text, lm.status AS lm_status, lm.created_at AS lm_created_at
FROM conversations c
JOIN contacts ct ON ct.organization_id = c.organization_id AND ct.id = c.contact_id
LEFT JOIN LATERAL (
    SELECT m.id, m.direction, m.author, m.type, m.text, m.status, m.created_at FROM messages m
    WHERE m.organization_id = c.organization_id AND m.conversation_id = c.id
    ORDER BY m.created_at DESC, m.id DESC LIMIT 1
) lm ON true
WHERE c.organization_id = %(organization_id)s AND c.chatbot_id = %(chatbot_id)s
  AND (NOT %(has_cursor)s
       OR (%(after_t)s::timestamptz IS NULL AND c.last_message_at IS NULL AND c.id < %(after_id)s)
       OR (%(after_t)s::timestamptz IS NOT NULL
           AND (c.last_message_at < %(after_t)s OR c.last_message_at IS NULL
                OR (c.last_message_at = %(after_t)s AND c.id < %(after_id)s))))
ORDER BY c.last_message_at DESC NULLS LAST, c.id DESC
LIMIT %(limit)s
"""
_PAUSE = f"""
UPDATE conversations c SET paused_at = now(), paused_by = %(user_id)s, pause_reason = %(reason)s,
    paused_until = CASE WHEN %(minutes)s::int IS NULL THEN NULL
                        ELSE now() + make_interval(mins => %(minutes)s::int) END
WHERE c.organization_id = %(organization_id)s AND c.id = %(conversation_id)s AND {LIVE_CHATBOT_SQL}
RETURNING c.id, c.paused_at, c.paused_until, c.pause_reason, {PAUSED_SQL} AS paused
"""
_RESUME = f"""
UPDATE conversations c SET paused_at = NULL, paused_until = NULL, paused_by = NULL, pause_reason = NULL
WHERE c.organization_id = %(organization_id)s AND c.id = %(conversation_id)s AND {LIVE_CHATBOT_SQL}
RETURNING c.id, c.paused_at, c.paused_until, c.pause_reason, false AS paused
"""


def _summary(row: Row) -> ConversationSummary:
    contact = {k[3:]: v for k, v in row.items() if k.startswith("ct_")}
    last = {k[3:]: v for k, v in row.items() if k.startswith("lm_")} if row["lm_id"] is not None else None
    base = {k: v for k, v in row.items() if not k.startswith(("ct_", "lm_"))}
    return ConversationSummary.model_validate(base | {"contact": contact, "last_message": last})


async def list_conversations(ctx: Context) -> Page[ConversationSummary]:
    query = ctx.query(PageQuery)
    chatbot_id = ctx.id("chatbot_id")
    after_t, after_id = (
        decode_cursor("conversations", query.cursor, (datetime, uuid.UUID)) if query.cursor else (None, None)
    )
    params = {
        "organization_id": ctx.org,
        "chatbot_id": chatbot_id,
        "has_cursor": query.cursor is not None,
        "after_t": after_t,
        "after_id": after_id,
        "limit": query.limit + 1,
    }
    async with connection(ctx.resources) as conn:
        await ensure_chatbot(conn, ctx.org, chatbot_id)
        rows = await all_rows(conn, _LIST, params)
    items = [_summary(row) for row in rows[: query.limit]]
    cursor = None
    if len(rows) > query.limit:
        cursor = encode_cursor("conversations", items[-1].last_message_at, items[-1].id)
    return Page[ConversationSummary](items=items, next_cursor=cursor)


async def pause_conversation(ctx: Context) -> PauseState:
    body = ctx.body(PauseRequest)
    params = {
        "organization_id": ctx.org,
        "conversation_id": ctx.id("conversation_id"),
        "user_id": ctx.user.user_id,
        "reason": body.reason,
        "minutes": body.minutes,
    }
    async with connection(ctx.resources) as conn:
        row = await one(conn, _PAUSE, params)
    if row is None:
        raise NotFound("conversation not found")
    return PauseState.model_validate(row)


async def resume_conversation(ctx: Context) -> PauseState:
    params = {"organization_id": ctx.org, "conversation_id": ctx.id("conversation_id")}
    async with connection(ctx.resources) as conn:
        row = await one(conn, _RESUME, params)
    if row is None:
        raise NotFound("conversation not found")
    return PauseState.model_validate(row)


_TAG = "conversations"
OPERATIONS = [
    Operation("GET", "/api/chatbots/{chatbot_id}/conversations", list_conversations,
              "A chatbot's conversations, latest first", _TAG, response=Page[ConversationSummary], query=PageQuery),
    Operation("POST", "/api/conversations/{conversation_id}/pause", pause_conversation,
              "Pause the assistant (human handoff)", _TAG, response=PauseState, body=PauseRequest),
    Operation("POST", "/api/conversations/{conversation_id}/resume", resume_conversation,
              "Resume the assistant", _TAG, response=PauseState),
]  # fmt: skip
