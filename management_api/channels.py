"""WhatsApp channels: connect a business number to a chatbot, list, rotate credentials, disconnect.

Secrets (access token, app secret, verify token) are encrypted with ``ENCRYPTION_KEYS`` before they
reach the database and are never returned: responses carry a hint (last 4 characters). The
response names the webhook URL to paste into Meta's console: a number with its own app secret is
on the tenant's own Meta app and gets ``/webhook/whatsapp/{channel_id}``; one without uses the
platform app's ``/webhook/whatsapp`` (and the platform verify token). A number can be live on one
channel only (409 otherwise); disconnecting keeps the row (history refers to it) and frees the
number. Connecting beyond the tier's ``max_channels`` is 409.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from f.chatmill.lib.secretbox import SecretBox, hint
from psycopg import errors as pg_errors
from pydantic import BaseModel, Field

from chatmill.errors import Conflict, NotFound, ValidationFailed
from chatmill.settings import Settings
from management_api.chatbots import ensure_chatbot
from management_api.db import Row, all_rows, connection, one
from management_api.endpoints import EVERYONE, MANAGERS, Context, Operation

_DIGITS = r"^[0-9]{1,32}$"


def secret_box(settings: Settings) -> SecretBox:
    return SecretBox([key.get_secret_value() for key in settings.encryption_keys])


class ChannelConnect(BaseModel):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {
            "examples": [
                {
                    "phone_number_id": "106540352242922",
                    "waba_id": "102290129340398",
                    "display_phone_number": "+1 555 010 0000",
                    "access_token": "EAAG-example-access-token",
                }
            ]
        },
    }
    phone_number_id: str = Field(pattern=_DIGITS)
    waba_id: str | None = Field(default=None, pattern=_DIGITS)
    display_phone_number: str | None = Field(default=None, max_length=32)
    access_token: str = Field(min_length=8, max_length=4096)
    app_secret: str | None = Field(
        default=None, min_length=8, max_length=256, description="tenant's own Meta app"
    )
    verify_token: str | None = Field(default=None, min_length=8, max_length=256)
    send_rate_per_second: int | None = Field(default=None, ge=1, le=1000)


class CredentialRotation(BaseModel):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"access_token": "EAAG-new-access-token"}]},
    }
    access_token: str | None = Field(default=None, min_length=8, max_length=4096)
    app_secret: str | None = Field(default=None, min_length=8, max_length=256)
    verify_token: str | None = Field(default=None, min_length=8, max_length=256)


class Channel(BaseModel):
    id: uuid.UUID
    chatbot_id: uuid.UUID
    phone_number_id: str
    waba_id: str | None
    display_phone_number: str | None
    access_token_hint: str
    app_secret_hint: str | None
    verify_token_hint: str | None
    uses_own_app: bool = Field(description="true: the number is on the tenant's own Meta app")
    webhook_url: str = Field(description="paste into Meta's console (Webhooks → Callback URL)")
    send_rate_per_second: int
    created_at: datetime
    updated_at: datetime


class ChannelList(BaseModel):
    items: list[Channel]


_COLUMNS = """id, chatbot_id, phone_number_id, waba_id, display_phone_number, access_token_hint, app_secret_hint,
verify_token_hint, app_secret_encrypted IS NOT NULL AS uses_own_app, send_rate_per_second, created_at, updated_at"""
_LIST = f"""
SELECT {_COLUMNS} FROM whatsapp_channels
WHERE organization_id = %(organization_id)s AND chatbot_id = %(chatbot_id)s AND disconnected_at IS NULL
ORDER BY created_at, id
"""
_GET = f"""
SELECT {_COLUMNS} FROM whatsapp_channels
WHERE organization_id = %(organization_id)s AND id = %(channel_id)s AND disconnected_at IS NULL
"""
_TIER_ROOM = """
SELECT t.max_channels IS NULL
       OR (SELECT count(*) FROM whatsapp_channels w
           WHERE w.organization_id = o.id AND w.disconnected_at IS NULL) < t.max_channels AS has_room
FROM organizations o JOIN billing_tiers t ON t.code = o.billing_tier WHERE o.id = %(organization_id)s
FOR UPDATE OF o
"""
_INSERT = f"""
INSERT INTO whatsapp_channels (organization_id, chatbot_id, phone_number_id, waba_id, display_phone_number,
    access_token_encrypted, access_token_hint, app_secret_encrypted, app_secret_hint,
    verify_token_encrypted, verify_token_hint, send_rate_per_second)
VALUES (%(organization_id)s, %(chatbot_id)s, %(phone_number_id)s, %(waba_id)s, %(display_phone_number)s,
    %(access_token_encrypted)s, %(access_token_hint)s, %(app_secret_encrypted)s, %(app_secret_hint)s,
    %(verify_token_encrypted)s, %(verify_token_hint)s, coalesce(%(send_rate_per_second)s, 80))
RETURNING {_COLUMNS}
"""
_ROTATE = f"""
UPDATE whatsapp_channels SET
    access_token_encrypted = coalesce(%(access_token_encrypted)s, access_token_encrypted),
    access_token_hint = coalesce(%(access_token_hint)s, access_token_hint),
    app_secret_encrypted = coalesce(%(app_secret_encrypted)s, app_secret_encrypted),
    app_secret_hint = coalesce(%(app_secret_hint)s, app_secret_hint),
    verify_token_encrypted = coalesce(%(verify_token_encrypted)s, verify_token_encrypted),
    verify_token_hint = coalesce(%(verify_token_hint)s, verify_token_hint)
WHERE organization_id = %(organization_id)s AND id = %(channel_id)s AND disconnected_at IS NULL
RETURNING {_COLUMNS}
"""
_DISCONNECT = """
UPDATE whatsapp_channels SET disconnected_at = now()
WHERE organization_id = %(organization_id)s AND id = %(channel_id)s AND disconnected_at IS NULL RETURNING id
"""


def _sealed(box: SecretBox, **secrets: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, secret in secrets.items():
        values[f"{name}_encrypted"] = box.encrypt(secret) if secret is not None else None
        values[f"{name}_hint"] = hint(secret) if secret is not None else None
    return values


def _channel(settings: Settings, row: Row) -> Channel:
    url = settings.webhook_url(str(row["id"])) if row["uses_own_app"] else settings.webhook_url()
    return Channel.model_validate(row | {"webhook_url": url})


async def connect_channel(ctx: Context) -> Channel:
    body = ctx.body(ChannelConnect)
    chatbot_id = ctx.id("chatbot_id")
    sealed = _sealed(
        secret_box(ctx.settings),
        access_token=body.access_token,
        app_secret=body.app_secret,
        verify_token=body.verify_token,
    )
    values = body.model_dump(exclude={"access_token", "app_secret", "verify_token"}) | sealed
    try:
        async with connection(ctx.resources) as conn, conn.transaction():
            await ensure_chatbot(conn, ctx.org, chatbot_id)
            room = await one(conn, _TIER_ROOM, {"organization_id": ctx.org})
            if room is None or not room["has_room"]:
                raise Conflict("your billing tier allows no more WhatsApp numbers; upgrade or disconnect one")
            row = await one(conn, _INSERT, values | {"organization_id": ctx.org, "chatbot_id": chatbot_id})
    except pg_errors.UniqueViolation:
        raise Conflict("this phone_number_id is already connected; disconnect it first") from None
    assert row is not None
    return _channel(ctx.settings, row)


async def list_channels(ctx: Context) -> ChannelList:
    ids = {"organization_id": ctx.org, "chatbot_id": ctx.id("chatbot_id")}
    async with connection(ctx.resources) as conn:
        await ensure_chatbot(conn, ctx.org, ids["chatbot_id"])
        rows = await all_rows(conn, _LIST, ids)
    return ChannelList(items=[_channel(ctx.settings, row) for row in rows])


async def get_channel(ctx: Context) -> Channel:
    async with connection(ctx.resources) as conn:
        row = await one(conn, _GET, {"organization_id": ctx.org, "channel_id": ctx.id("channel_id")})
    if row is None:
        raise NotFound("channel not found")
    return _channel(ctx.settings, row)


async def rotate_credentials(ctx: Context) -> Channel:
    body = ctx.body(CredentialRotation)
    if not body.model_dump(exclude_none=True):
        raise ValidationFailed(
            "send at least one of access_token, app_secret, verify_token",
            details=[{"loc": ["body"], "message": "no credential to rotate", "type": "missing"}],
        )
    sealed = _sealed(
        secret_box(ctx.settings),
        access_token=body.access_token,
        app_secret=body.app_secret,
        verify_token=body.verify_token,
    )
    async with connection(ctx.resources) as conn:
        row = await one(
            conn, _ROTATE, sealed | {"organization_id": ctx.org, "channel_id": ctx.id("channel_id")}
        )
    if row is None:
        raise NotFound("channel not found")
    return _channel(ctx.settings, row)


async def disconnect_channel(ctx: Context) -> None:
    async with connection(ctx.resources) as conn:
        row = await one(conn, _DISCONNECT, {"organization_id": ctx.org, "channel_id": ctx.id("channel_id")})
    if row is None:
        raise NotFound("channel not found")


_TAG = "channels"
OPERATIONS = [
    Operation("POST", "/api/chatbots/{chatbot_id}/channels", connect_channel, "Connect a WhatsApp number", _TAG,
              response=Channel, status=201, body=ChannelConnect, roles=MANAGERS, errors=(409,)),
    Operation("GET", "/api/chatbots/{chatbot_id}/channels", list_channels, "List a chatbot's numbers", _TAG,
              response=ChannelList, roles=EVERYONE),
    Operation("GET", "/api/channels/{channel_id}", get_channel, "Get a connected number", _TAG, response=Channel),
    Operation("PUT", "/api/channels/{channel_id}/credentials", rotate_credentials, "Rotate credentials", _TAG,
              response=Channel, body=CredentialRotation, roles=MANAGERS),
    Operation("DELETE", "/api/channels/{channel_id}", disconnect_channel, "Disconnect a number", _TAG,
              status=204, roles=MANAGERS),
]  # fmt: skip
