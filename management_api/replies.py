"""``POST /api/conversations/{id}/messages``: an agent's manual reply, sent through WhatsApp.

WhatsApp allows free-form messages only within 24 hours of the customer's last message; outside
that window (or when the customer never wrote) the answer is 409 explaining that a template
message is needed. Otherwise the reply is stored first (outbound, author ``agent``, ``sent_by`` the
caller, status ``pending``), then sent with the channel's decrypted access token through
``f.chatmill.lib.whatsapp``; the row then records the wamid and ``sent`` (201), or ``failed`` with
Meta's error code and title (502 ``whatsapp_error``; 409 if Meta reports the window closed). A
status webhook that arrived before the wamid was recorded (``unmatched_statuses``) is applied then.
Agent replies count as outbound messages in the month's usage. The assistant is not paused by an
agent reply; pause the conversation for that.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from f.chatmill.lib.whatsapp import WINDOW_CLOSED_CODE, AsyncWhatsAppClient, WhatsAppError, text_message
from pydantic import BaseModel, Field, field_validator

from chatmill.errors import ChatmillError, Conflict, NotFound
from management_api.channels import secret_box
from management_api.conversations import LIVE_CHATBOT_SQL, WINDOW_SQL
from management_api.db import connection, one
from management_api.endpoints import Context, Operation
from management_api.messages import DETAIL_COLUMNS, MessageDetail


class WhatsAppSendFailed(ChatmillError):
    status_code = 502
    code = "whatsapp_error"


class ReplyRequest(BaseModel):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"text": "Hi! Ana here, let me help."}]},
    }
    text: str = Field(min_length=1, max_length=4096)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the reply is empty")
        return value


_TARGET = f"""
SELECT c.id, c.chatbot_id, c.channel_id, c.contact_id, c.last_inbound_at, {WINDOW_SQL} AS window_open,
       w.phone_number_id, w.access_token_encrypted, ct.wa_id, ct.user_id, ct.opted_out_at
FROM conversations c
JOIN whatsapp_channels w ON w.organization_id = c.organization_id AND w.id = c.channel_id
    AND w.disconnected_at IS NULL
JOIN contacts ct ON ct.organization_id = c.organization_id AND ct.id = c.contact_id
WHERE c.organization_id = %(organization_id)s AND c.id = %(conversation_id)s AND {LIVE_CHATBOT_SQL}
"""
_INSERT = """
INSERT INTO messages (organization_id, chatbot_id, channel_id, conversation_id, contact_id, direction, author,
                      type, text, payload, status, turn_id, part_index, sent_by)
VALUES (%(organization_id)s, %(chatbot_id)s, %(channel_id)s, %(id)s, %(contact_id)s, 'outbound', 'agent',
        'text', %(text)s, %(payload)s, 'pending', %(turn_id)s, 0, %(user_id)s)
RETURNING id
"""
_SENT = f"""
UPDATE messages SET wamid = %(wamid)s, status = 'sent',
    status_history = status_history || jsonb_build_array(jsonb_build_object('status', 'sent', 'at', now()))
WHERE organization_id = %(organization_id)s AND id = %(message_id)s
RETURNING {DETAIL_COLUMNS}
"""
_FAILED = """
UPDATE messages SET status = 'failed', error_code = %(code)s, error_title = %(title)s,
    status_history = status_history || jsonb_build_array(jsonb_build_object('status', 'failed', 'at', now()))
WHERE organization_id = %(organization_id)s AND id = %(message_id)s
"""
_TOUCH_CONVERSATION = """
UPDATE conversations SET last_outbound_at = now(), last_message_at = now()
WHERE organization_id = %(organization_id)s AND id = %(conversation_id)s
"""
_COUNT_USAGE = """
INSERT INTO usage_monthly (organization_id, period, messages_out)
VALUES (%(organization_id)s, date_trunc('month', now() AT TIME ZONE 'UTC')::date, 1)
ON CONFLICT (organization_id, period) DO UPDATE
SET messages_out = usage_monthly.messages_out + 1, updated_at = now()
"""
# Statuses Meta sent before we recorded the wamid: apply the furthest one (failed wins).
_EARLY_STATUSES = """
WITH taken AS (
    DELETE FROM unmatched_statuses
    WHERE organization_id = %(organization_id)s AND channel_id = %(channel_id)s AND wamid = %(wamid)s
    RETURNING status
)
SELECT status FROM taken
ORDER BY CASE status WHEN 'failed' THEN 4 WHEN 'read' THEN 3 WHEN 'played' THEN 3 WHEN 'delivered' THEN 2
         ELSE 1 END DESC
LIMIT 1
"""
_APPLY_STATUS = f"""
UPDATE messages SET status = %(status)s,
    status_history = status_history || jsonb_build_array(jsonb_build_object('status', %(status)s::text, 'at', now()))
WHERE organization_id = %(organization_id)s AND id = %(message_id)s
RETURNING {DETAIL_COLUMNS}
"""


async def send_reply(ctx: Context) -> MessageDetail:
    body = ctx.body(ReplyRequest)
    ids = {"organization_id": ctx.org, "conversation_id": ctx.id("conversation_id")}
    async with connection(ctx.resources) as conn:
        target = await one(conn, _TARGET, ids)
    if target is None:
        raise NotFound("conversation not found (or its WhatsApp number is disconnected)")
    if not target["window_open"]:
        raise Conflict(
            "the 24-hour customer service window is closed: WhatsApp only allows a template message until "
            "the customer writes again",
            details={
                "reason": "outside_customer_service_window",
                "last_inbound_at": _iso(target["last_inbound_at"]),
            },
        )
    if target["opted_out_at"] is not None:
        raise Conflict("this customer opted out of messages", details={"reason": "opted_out"})
    recipient = target["wa_id"] or target["user_id"]
    payload = text_message(recipient, body.text)
    async with connection(ctx.resources) as conn, conn.transaction():
        inserted = await one(
            conn,
            _INSERT,
            target
            | {
                "organization_id": ctx.org,
                "text": body.text,
                "payload": json.dumps(payload),
                "turn_id": uuid.uuid4(),
                "user_id": ctx.user.user_id,
            },
        )
    assert inserted is not None
    message = {"organization_id": ctx.org, "message_id": inserted["id"]}
    token = secret_box(ctx.settings).decrypt(target["access_token_encrypted"])
    client = AsyncWhatsAppClient(
        ctx.settings.graph_url, ctx.settings.whatsapp_api_version, http=ctx.resources.http
    )
    try:
        wamid = await client.send(target["phone_number_id"], token, payload)
    except WhatsAppError as exc:
        async with connection(ctx.resources) as conn:
            await conn.execute(_FAILED, message | {"code": exc.code, "title": exc.title or exc.message[:200]})
        details = {"code": exc.code, "title": exc.title, "classification": exc.classification}
        if exc.code == WINDOW_CLOSED_CODE:
            raise Conflict(
                "WhatsApp reports the 24-hour window is closed: a template is needed", details=details
            ) from None
        raise WhatsAppSendFailed(f"WhatsApp refused the message: {exc.message}", details=details) from None
    async with connection(ctx.resources) as conn, conn.transaction():
        row = await one(conn, _SENT, message | {"wamid": wamid})
        early = await one(
            conn,
            _EARLY_STATUSES,
            {"organization_id": ctx.org, "channel_id": target["channel_id"], "wamid": wamid},
        )
        if early is not None and early["status"] != "sent":
            status = "read" if early["status"] == "played" else early["status"]
            row = await one(conn, _APPLY_STATUS, message | {"status": status})
        await conn.execute(_TOUCH_CONVERSATION, ids)
        await conn.execute(_COUNT_USAGE, ids)
    return MessageDetail.model_validate(row)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


OPERATIONS = [
    Operation("POST", "/api/conversations/{conversation_id}/messages", send_reply,
              "Send an agent's reply through WhatsApp (within the 24-hour window)", "conversations",
              response=MessageDetail, status=201, body=ReplyRequest, errors=(409, 502)),
]  # fmt: skip
