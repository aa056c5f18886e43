"""``/api/chatbots/{id}/history``: every message of a chatbot, keyset-paginated on ``(created_at, id)``.

Pages are ascending by default (oldest first): a message stored while a client pages through the
history has a later ``created_at`` (``clock_timestamp()`` at insert) than every page already read,
so it appears on a later page and nothing is skipped or repeated. ``order=desc`` pages newest
first (new messages then appear only when starting over). Filters: ``conversation_id``, and
``since`` (inclusive) / ``until`` (exclusive), both timezone-aware.

The query is composed from fixed fragments (only the filters in use), so the planner sees plain
predicates and walks ``messages_chatbot_keyset_idx`` (or ``messages_conversation_keyset_idx`` with
a conversation filter) from the cursor: a page costs the same at any depth, with no sort.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from psycopg import sql
from pydantic import AwareDatetime, BaseModel, Field

from chatmill.errors import NotFound
from management_api.chatbots import ensure_chatbot
from management_api.db import all_rows, connection, one
from management_api.endpoints import Context, Operation
from management_api.messages import DETAIL_COLUMNS, MESSAGE_COLUMNS, Message, MessageDetail
from management_api.pagination import Page, PageQuery, decode_cursor, encode_cursor

THREAD_CONTEXT = 5
CURSOR_KIND = "history"


class HistoryQuery(PageQuery):
    conversation_id: uuid.UUID | None = Field(default=None, description="only this conversation")
    since: AwareDatetime | None = Field(default=None, description="created at or after (ISO 8601, with zone)")
    until: AwareDatetime | None = Field(default=None, description="created before (ISO 8601, with zone)")
    order: Literal["asc", "desc"] = Field(default="asc", description="asc: oldest first")


class MessageThread(BaseModel):
    message: MessageDetail
    before: list[Message] = Field(description=f"up to {THREAD_CONTEXT} earlier messages of the conversation")
    after: list[Message] = Field(description=f"up to {THREAD_CONTEXT} later messages of the conversation")


def history_query(query: HistoryQuery) -> tuple[sql.Composed, dict[str, Any]]:
    """The page query for ``query`` (also used by the benchmark to EXPLAIN it)."""
    params: dict[str, Any] = {"limit": query.limit + 1}
    where = [sql.SQL("organization_id = %(organization_id)s"), sql.SQL("chatbot_id = %(chatbot_id)s")]
    if query.conversation_id is not None:
        where.append(sql.SQL("conversation_id = %(conversation_id)s"))
        params["conversation_id"] = query.conversation_id
    if query.since is not None:
        where.append(sql.SQL("created_at >= %(since)s"))
        params["since"] = query.since
    if query.until is not None:
        where.append(sql.SQL("created_at < %(until)s"))
        params["until"] = query.until
    descending = query.order == "desc"
    if query.cursor:
        after_t, after_id = decode_cursor(f"{CURSOR_KIND}:{query.order}", query.cursor, (datetime, uuid.UUID))
        comparison = "<" if descending else ">"
        where.append(sql.SQL("(created_at, id) " + comparison + " (%(after_t)s, %(after_id)s)"))
        params |= {"after_t": after_t, "after_id": after_id}
    direction = sql.SQL("DESC" if descending else "ASC")
    statement = sql.SQL(
        "SELECT {columns} FROM messages WHERE {where} ORDER BY created_at {d}, id {d} LIMIT %(limit)s"
    ).format(columns=sql.SQL(MESSAGE_COLUMNS), where=sql.SQL(" AND ").join(where), d=direction)
    return statement, params


async def chatbot_history(ctx: Context) -> Page[Message]:
    query = ctx.query(HistoryQuery)
    chatbot_id = ctx.id("chatbot_id")
    statement, params = history_query(query)
    params |= {"organization_id": ctx.org, "chatbot_id": chatbot_id}
    async with connection(ctx.resources) as conn:
        await ensure_chatbot(conn, ctx.org, chatbot_id)
        rows = await all_rows(conn, statement, params)
    items = [Message.model_validate(row) for row in rows[: query.limit]]
    cursor = None
    if len(rows) > query.limit:
        cursor = encode_cursor(f"{CURSOR_KIND}:{query.order}", items[-1].created_at, items[-1].id)
    return Page[Message](items=items, next_cursor=cursor)


_MESSAGE = f"""
SELECT {DETAIL_COLUMNS} FROM messages
WHERE organization_id = %(organization_id)s AND chatbot_id = %(chatbot_id)s AND id = %(message_id)s
"""
_BEFORE = f"""
SELECT {MESSAGE_COLUMNS} FROM messages
WHERE organization_id = %(organization_id)s AND conversation_id = %(conversation_id)s
  AND (created_at, id) < (%(created_at)s, %(id)s)
ORDER BY created_at DESC, id DESC LIMIT {THREAD_CONTEXT}
"""
_AFTER = f"""
SELECT {MESSAGE_COLUMNS} FROM messages
WHERE organization_id = %(organization_id)s AND conversation_id = %(conversation_id)s
  AND (created_at, id) > (%(created_at)s, %(id)s)
ORDER BY created_at, id LIMIT {THREAD_CONTEXT}
"""


async def history_message(ctx: Context) -> MessageThread:
    chatbot_id = ctx.id("chatbot_id")
    ids = {"organization_id": ctx.org, "chatbot_id": chatbot_id, "message_id": ctx.id("message_id")}
    async with connection(ctx.resources) as conn:
        await ensure_chatbot(conn, ctx.org, chatbot_id)
        row = await one(conn, _MESSAGE, ids)
        if row is None:
            raise NotFound("message not found")
        anchor = {"organization_id": ctx.org, **{k: row[k] for k in ("conversation_id", "created_at", "id")}}
        before = await all_rows(conn, _BEFORE, anchor)
        after = await all_rows(conn, _AFTER, anchor)
    return MessageThread(
        message=MessageDetail.model_validate(row),
        before=[Message.model_validate(r) for r in reversed(before)],
        after=[Message.model_validate(r) for r in after],
    )


_TAG = "history"
OPERATIONS = [
    Operation("GET", "/api/chatbots/{chatbot_id}/history", chatbot_history,
              "A chatbot's messages, keyset-paginated on (created_at, id)", _TAG,
              response=Page[Message], query=HistoryQuery),
    Operation("GET", "/api/chatbots/{chatbot_id}/history/{message_id}", history_message,
              "One message with its citations and the surrounding thread", _TAG, response=MessageThread),
]  # fmt: skip
