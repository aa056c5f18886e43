"""``/api/chatbots``: the assistants of an organization.

Create takes a name and, optionally, any setting; the rest are the schema's defaults (offline
provider, temperature 0.3, top-k 5, 1.5 s debounce, 20 replies a minute). ``PATCH`` changes only
the fields sent (``llm_model: null`` goes back to the provider's default). The embedding model is
read-only here: changing it means re-embedding, a separate job. Delete is soft: the row stays for
history and leads, every listing hides it, and its WhatsApp numbers are disconnected in the same
transaction so webhooks stop routing to it. Creating beyond the tier's ``max_chatbots`` is 409.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal

from psycopg import sql
from pydantic import BaseModel, Field, field_validator

from chatmill.errors import Conflict, NotFound, ValidationFailed
from management_api.db import Conn, connection, one
from management_api.endpoints import EVERYONE, MANAGERS, Context, Operation
from management_api.pagination import Page, PageQuery, decode_cursor, encode_cursor

TextSearchConfig = Literal[
    "simple", "arabic", "armenian", "basque", "catalan", "danish", "dutch", "english", "finnish", "french",
    "german", "greek", "hindi", "hungarian", "indonesian", "irish", "italian", "lithuanian", "nepali",
    "norwegian", "portuguese", "romanian", "russian", "serbian", "spanish", "swedish", "tamil", "turkish",
    "yiddish",
]  # fmt: skip
Provider = Literal["offline", "openai", "gemini"]
MAX_SETTINGS_BYTES = 16_000


class Chatbot(BaseModel):
    id: uuid.UUID
    name: str
    system_prompt: str
    llm_provider: Provider
    llm_model: str | None
    temperature: float
    max_output_tokens: int
    embedding_model: str
    text_search_config: str
    retrieval_top_k: int
    retrieval_min_score: float
    history_turns: int
    debounce_ms: int
    rate_limit_per_minute: int
    fallback_message: str
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class _Settings(BaseModel):
    system_prompt: str | None = Field(default=None, min_length=1, max_length=20_000)
    llm_provider: Provider | None = None
    llm_model: str | None = Field(default=None, min_length=1, max_length=200)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_output_tokens: int | None = Field(default=None, ge=16, le=16384)
    text_search_config: TextSearchConfig | None = None
    retrieval_top_k: int | None = Field(default=None, ge=1, le=50)
    retrieval_min_score: float | None = Field(default=None, ge=0.0, le=1000.0)
    history_turns: int | None = Field(default=None, ge=0, le=100)
    debounce_ms: int | None = Field(default=None, ge=0, le=30000)
    rate_limit_per_minute: int | None = Field(default=None, ge=1, le=10000)
    fallback_message: str | None = Field(default=None, min_length=1, max_length=4096)
    settings: dict[str, Any] | None = None

    @field_validator("settings")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value)) > MAX_SETTINGS_BYTES:
            raise ValueError(f"settings are limited to {MAX_SETTINGS_BYTES} bytes of JSON")
        return value


class ChatbotCreate(_Settings):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {
            "examples": [{"name": "Bakery assistant", "temperature": 0.4, "debounce_ms": 2000}]
        },
    }
    name: str = Field(min_length=1, max_length=200)


class ChatbotPatch(_Settings):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {
            "examples": [{"name": "Renamed bot", "temperature": 0.7, "retrieval_top_k": 8}]
        },
    }
    name: str | None = Field(default=None, min_length=1, max_length=200)


# Columns a PATCH may set to NULL; every other column is NOT NULL.
_NULLABLE = frozenset({"llm_model"})
_COLUMNS = sql.SQL(
    "id, name, system_prompt, llm_provider, llm_model, temperature, max_output_tokens, embedding_model,"
    " text_search_config::text AS text_search_config, retrieval_top_k, retrieval_min_score, history_turns,"
    " debounce_ms, rate_limit_per_minute, fallback_message, settings, created_at, updated_at"
)
_EXISTS = """
SELECT id FROM chatbots WHERE organization_id = %(organization_id)s AND id = %(chatbot_id)s AND deleted_at IS NULL
"""
_LIST = sql.SQL("""
SELECT {columns} FROM chatbots
WHERE organization_id = %(organization_id)s AND deleted_at IS NULL
  AND (%(after_t)s::timestamptz IS NULL OR (created_at, id) < (%(after_t)s, %(after_id)s))
ORDER BY created_at DESC, id DESC LIMIT %(limit)s
""").format(columns=_COLUMNS)
_GET = sql.SQL("""
SELECT {columns} FROM chatbots
WHERE organization_id = %(organization_id)s AND id = %(chatbot_id)s AND deleted_at IS NULL
""").format(columns=_COLUMNS)
_TIER_ROOM = """
SELECT t.max_chatbots IS NULL
       OR (SELECT count(*) FROM chatbots c WHERE c.organization_id = o.id AND c.deleted_at IS NULL) < t.max_chatbots
       AS has_room
FROM organizations o JOIN billing_tiers t ON t.code = o.billing_tier WHERE o.id = %(organization_id)s
FOR UPDATE OF o
"""
_SOFT_DELETE = """
UPDATE chatbots SET deleted_at = now()
WHERE organization_id = %(organization_id)s AND id = %(chatbot_id)s AND deleted_at IS NULL RETURNING id
"""
_DISCONNECT_CHANNELS = """
UPDATE whatsapp_channels SET disconnected_at = now()
WHERE organization_id = %(organization_id)s AND chatbot_id = %(chatbot_id)s AND disconnected_at IS NULL
"""


async def ensure_chatbot(conn: Conn, organization_id: uuid.UUID, chatbot_id: uuid.UUID) -> None:
    """404 unless the chatbot exists, is not deleted and belongs to the organization."""
    if await one(conn, _EXISTS, {"organization_id": organization_id, "chatbot_id": chatbot_id}) is None:
        raise NotFound("chatbot not found")


def _values(model: BaseModel) -> dict[str, Any]:
    values = {name: getattr(model, name) for name in model.model_fields_set}
    if "settings" in values and values["settings"] is not None:
        values["settings"] = json.dumps(values["settings"])
    return values


async def list_chatbots(ctx: Context) -> Page[Chatbot]:
    query = ctx.query(PageQuery)
    after_t, after_id = (
        decode_cursor("chatbots", query.cursor, (datetime, uuid.UUID)) if query.cursor else (None, None)
    )
    params = {"organization_id": ctx.org, "after_t": after_t, "after_id": after_id, "limit": query.limit + 1}
    async with connection(ctx.resources) as conn:
        rows = await (await conn.execute(_LIST, params)).fetchall()
    items = [Chatbot.model_validate(row) for row in rows[: query.limit]]
    more = len(rows) > query.limit
    cursor = encode_cursor("chatbots", items[-1].created_at, items[-1].id) if more and items else None
    return Page[Chatbot](items=items, next_cursor=cursor)


async def get_chatbot(ctx: Context) -> Chatbot:
    async with connection(ctx.resources) as conn:
        row = await (
            await conn.execute(_GET, {"organization_id": ctx.org, "chatbot_id": ctx.id("chatbot_id")})
        ).fetchone()
    if row is None:
        raise NotFound("chatbot not found")
    return Chatbot.model_validate(row)


async def create_chatbot(ctx: Context) -> Chatbot:
    body = ctx.body(ChatbotCreate)
    values = {k: v for k, v in _values(body).items() if v is not None} | {"organization_id": ctx.org}
    insert = sql.SQL("INSERT INTO chatbots ({}) VALUES ({}) RETURNING {}").format(
        sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(map(sql.Placeholder, values)),
        _COLUMNS,
    )
    async with connection(ctx.resources) as conn, conn.transaction():
        room = await one(conn, _TIER_ROOM, {"organization_id": ctx.org})
        if room is None or not room["has_room"]:
            raise Conflict("your billing tier allows no more chatbots; upgrade or delete one")
        row = await (await conn.execute(insert, values)).fetchone()
    return Chatbot.model_validate(row)


async def update_chatbot(ctx: Context) -> Chatbot:
    values = _values(ctx.body(ChatbotPatch))
    nulls = sorted(name for name, value in values.items() if value is None and name not in _NULLABLE)
    if nulls:
        raise ValidationFailed(
            "these fields cannot be null",
            details=[
                {"loc": ["body", name], "message": "may not be null", "type": "none_forbidden"}
                for name in nulls
            ],
        )
    ids = {"organization_id": ctx.org, "chatbot_id": ctx.id("chatbot_id")}
    if not values:
        return await get_chatbot(ctx)
    update = sql.SQL(
        "UPDATE chatbots SET {} WHERE organization_id = %(organization_id)s AND id = %(chatbot_id)s"
        " AND deleted_at IS NULL RETURNING {}"
    ).format(
        sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in values),
        _COLUMNS,
    )
    async with connection(ctx.resources) as conn:
        row = await (await conn.execute(update, values | ids)).fetchone()
    if row is None:
        raise NotFound("chatbot not found")
    return Chatbot.model_validate(row)


async def delete_chatbot(ctx: Context) -> None:
    ids = {"organization_id": ctx.org, "chatbot_id": ctx.id("chatbot_id")}
    async with connection(ctx.resources) as conn, conn.transaction():
        if await one(conn, _SOFT_DELETE, ids) is None:
            raise NotFound("chatbot not found")
        await conn.execute(_DISCONNECT_CHANNELS, ids)


_TAG = "chatbots"
OPERATIONS = [
    Operation("GET", "/api/chatbots", list_chatbots, "List chatbots (newest first)", _TAG,
              response=Page[Chatbot], query=PageQuery, roles=EVERYONE),
    Operation("POST", "/api/chatbots", create_chatbot, "Create a chatbot", _TAG,
              response=Chatbot, status=201, body=ChatbotCreate, roles=MANAGERS, errors=(409,)),
    Operation("GET", "/api/chatbots/{chatbot_id}", get_chatbot, "Get a chatbot", _TAG, response=Chatbot),
    Operation("PATCH", "/api/chatbots/{chatbot_id}", update_chatbot, "Change a chatbot's settings", _TAG,
              response=Chatbot, body=ChatbotPatch, roles=MANAGERS),
    Operation("DELETE", "/api/chatbots/{chatbot_id}", delete_chatbot, "Delete a chatbot (soft)", _TAG,
              status=204, roles=MANAGERS),
]  # fmt: skip
