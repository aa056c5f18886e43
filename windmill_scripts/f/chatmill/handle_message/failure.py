"""handle_message, failure module: record the failure, apologise once if nothing was sent, let go.

Runs when a step failed for good. Records the error on the outbox row (``failed_at``, ``failure``),
sends the chatbot's ``fallback_message`` as a one-part reply only when no part of this turn's reply
reached the customer and the 24-hour window is not known to be closed (131047) (at most once: the
apology is stored as its own turn before it is sent), marks
the turn's messages answered with outcome ``failed``, releases the lease and re-dispatches any
message that arrived meanwhile. Never raises for the apology itself: a customer who cannot be
reached (window closed, blocked) is recorded, not retried.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, TypedDict

from f.chatmill.lib import conversation as cv
from f.chatmill.lib.database import Conn, connect
from f.chatmill.lib.secretbox import SecretBox
from f.chatmill.lib.whatsapp import WINDOW_CLOSED_CODE, WhatsAppClient, WhatsAppError, text_message

_log = logging.getLogger(__name__)
APOLOGY = uuid.UUID("0b8e6f3c-54a1-4f0e-9d7e-2c4a1b9e7f31")


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
    error: dict[str, Any] | None = None,
    graph_url: str = "https://graph.facebook.com",
    whatsapp_api_version: str = "v21.0",
    encryption_keys: str = "",
) -> dict[str, Any]:
    message = str((error or {}).get("message") or "unknown error")[:1000]
    step = (error or {}).get("step_id")
    with connect(db) as conn:
        start = cv.load_start(conn, outbox_id)
        turn_id = start.turn_id
        conn.execute(
            "UPDATE inbound_outbox SET failed_at = COALESCE(failed_at, now()), failure = %s"
            " WHERE id = %s AND organization_id = %s",
            (f"{step or 'flow'}: {message}", start.outbox_id, start.organization_id),
        )
        holds_lease = cv.acquire_lease(conn, start, turn_id)
        parts = cv.parts(conn, start.organization_id, turn_id)
        reached = any(part["wamid"] for part in parts)
        window_closed = any(part["error_code"] == WINDOW_CLOSED_CODE for part in parts)
        apology_sent = False
        if holds_lease and not reached and not window_closed:  # outside the window nothing can be sent
            apology_sent = _apologise(conn, start, turn_id, graph_url, whatsapp_api_version, encryption_keys)
        cv.finish_message(conn, start, turn_id, "failed")
        redispatched = cv.release(conn, start, turn_id) if holds_lease else False
        return {
            "turn_id": str(turn_id),
            "apology_sent": apology_sent,
            "redispatched": redispatched,
            "error": message,
        }


def _apologise(
    conn: Conn, start: cv.Start, turn_id: uuid.UUID, graph_url: str, version: str, keys: str
) -> bool:
    apology_turn = uuid.uuid5(APOLOGY, str(turn_id))
    existing = cv.parts(conn, start.organization_id, apology_turn)
    if existing and (existing[0]["wamid"] or existing[0]["status"] == "failed"):
        return bool(existing[0]["wamid"])  # this failure module ran before
    chat = cv.conversation_context(conn, start.organization_id, start.conversation_id)
    fallback = conn.execute(
        "SELECT fallback_message FROM chatbots WHERE id = %s AND organization_id = %s",
        (chat["chatbot_id"], start.organization_id),
    ).fetchone()
    assert fallback is not None
    cv.store_parts(conn, start, apology_turn, [fallback["fallback_message"]], author="system")
    [part] = cv.parts(conn, start.organization_id, apology_turn)
    try:
        token = SecretBox([k for k in keys.split(",") if k]).decrypt(chat["access_token_encrypted"])
        with WhatsAppClient(graph_url, version) as client:
            wamid = client.send(
                chat["phone_number_id"], token, text_message(chat["wa_id"] or chat["user_id"], part["text"])
            )
    except WhatsAppError as exc:
        cv.fail_part(conn, start.organization_id, part["id"], exc.code, exc.title or exc.message)
        _log.warning("apology not sent for turn %s: %s", turn_id, exc)
        return False
    except ValueError as exc:  # undecryptable token
        cv.fail_part(conn, start.organization_id, part["id"], None, str(exc))
        return False
    cv.record_sent(conn, start.organization_id, part["id"], wamid)
    return True
