"""handle_message, step 1: take the conversation, wait out the debounce, gather the turn.

Ends the flow early (``stop: true``) with the reason recorded on the messages when:
- ``already_answered``: another run's reply covered this message;
- ``lease_held``: another run is answering this conversation (it picks this message up when it lets
  go, see f.chatmill.lib.conversation);
- ``paused``: a person took the conversation over (human handoff); messages are stored, not answered;
- ``window_closed``: the customer's last message is older than 24 hours (free-form replies are not
  allowed; a template would be needed);
- ``over_quota``: the organization used its tier's monthly messages or tokens; the configured
  notice is sent at most once per period;
- ``nothing_to_answer``.
The result carries ids and texts only, no secrets.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, TypedDict

from f.chatmill.lib import conversation as cv
from f.chatmill.lib.database import Conn, connect
from f.chatmill.lib.secretbox import SecretBox
from f.chatmill.lib.whatsapp import WhatsAppClient, WhatsAppError, text_message

_log = logging.getLogger(__name__)


class postgresql(TypedDict, total=False):
    host: str
    port: int
    user: str
    dbname: str
    sslmode: str
    password: str


def main(
    db: postgresql,
    outbox_id: str,
    graph_url: str = "https://graph.facebook.com",
    whatsapp_api_version: str = "v21.0",
    encryption_keys: str = "",
) -> dict[str, Any]:
    with connect(db) as conn:
        start = cv.load_start(conn, outbox_id)
        turn_id = start.turn_id
        base = {"outbox_id": str(start.outbox_id), "turn_id": str(turn_id)}
        if start.answered:
            return {**base, "stop": True, "reason": "already_answered"}
        if not cv.acquire_lease(conn, start, turn_id):
            return {**base, "stop": True, "reason": "lease_held"}
        context = cv.conversation_context(conn, start.organization_id, start.conversation_id)
        reason = _refusal(conn, context)
        if reason == "paused":
            cv.gather_turn(conn, start, turn_id)
            return _stop(conn, start, turn_id, base, reason)
        cv.debounce(conn, start, int(context["debounce_ms"]))
        turn = cv.gather_turn(conn, start, turn_id)
        if not turn:
            return _stop(conn, start, turn_id, base, "nothing_to_answer")
        if reason == "over_quota" and cv.claim_quota_notice(conn, start.organization_id):
            _send_notice(
                context, str(context["quota_notice"]), graph_url, whatsapp_api_version, encryption_keys
            )
        if reason is not None:
            return _stop(conn, start, turn_id, base, reason)
        return {
            **base,
            "stop": False,
            "reason": "reply",
            "organization_id": str(start.organization_id),
            "conversation_id": str(start.conversation_id),
            "chatbot_id": str(context["chatbot_id"]),
            "turn": [{"id": str(m["id"]), "wamid": m["wamid"], "text": m["text"] or ""} for m in turn],
            "history": cv.history(conn, start, turn_id, int(context["history_turns"])),
        }


def _refusal(conn: Conn, context: dict[str, Any]) -> str | None:
    if context["paused"]:
        return "paused"
    last = context["last_inbound_at"]
    if last is None or dt.datetime.now(dt.UTC) - last > cv.CUSTOMER_SERVICE_WINDOW:
        return "window_closed"
    if cv.over_quota(conn, context):
        return "over_quota"
    return None


def _stop(conn: Conn, start: cv.Start, turn_id: Any, base: dict[str, Any], reason: str) -> dict[str, Any]:
    cv.finish_message(conn, start, turn_id, reason)
    cv.finish_turn(conn, start.organization_id, turn_id, reason)
    redispatched = cv.release(conn, start, turn_id)
    return {**base, "stop": True, "reason": reason, "redispatched": redispatched}


def _send_notice(context: dict[str, Any], notice: str, graph_url: str, version: str, keys: str) -> None:
    """Best effort: the notice must not fail the run (the customer's messages are recorded anyway)."""
    try:
        token = SecretBox([k for k in keys.split(",") if k]).decrypt(context["access_token_encrypted"])
        with WhatsAppClient(graph_url, version) as client:
            client.send(
                context["phone_number_id"],
                token,
                text_message(context["wa_id"] or context["user_id"], notice),
            )
    except (WhatsAppError, ValueError) as exc:
        _log.warning("over-quota notice not sent: %s", exc)
