"""handle_message, step 3: send the stored parts in order, exactly once each, then let go.

Each pending part is sent (reply context on the first part, pointing at the customer's last
message) and its wamid recorded before the next one goes, so a retried step skips what was sent.
Cloud API errors are classified by ``error.code`` (f.chatmill.lib.whatsapp): transient ones and
rate limits are retried here with tenacity and jittered backoff (131056, the pair rate limit,
backs off 4^n s for this recipient); a permanent one (131047 window closed, 131026 undeliverable,
…) is recorded on the part and raised without another call, so the step fails for good and the
flow's failure module takes over. Afterwards the reply counts towards usage, the turn's messages
are marked answered, the lease is released, and a message that arrived meanwhile is re-dispatched.
"""

from __future__ import annotations

import random
from typing import Any, TypedDict

from f.chatmill.lib import conversation as cv
from f.chatmill.lib.database import connect
from f.chatmill.lib.secretbox import SecretBox
from f.chatmill.lib.whatsapp import WhatsAppClient, WhatsAppError, text_message
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay

MAX_ATTEMPTS_PER_PART = 5
MAX_SECONDS_PER_PART = 90.0


class postgresql(TypedDict, total=False):
    host: str
    port: int
    user: str
    dbname: str
    sslmode: str
    password: str


class SendFailed(RuntimeError):
    """A part could not be delivered and retrying will not help; recorded on the message."""


def main(
    db: postgresql,
    context: dict[str, Any],
    graph_url: str = "https://graph.facebook.com",
    whatsapp_api_version: str = "v21.0",
    encryption_keys: str = "",
) -> dict[str, Any]:
    box = SecretBox([key for key in encryption_keys.split(",") if key])
    with connect(db) as conn:
        start = cv.load_start(conn, context["outbox_id"])
        turn_id = start.turn_id
        chat = cv.conversation_context(conn, start.organization_id, start.conversation_id)
        token = box.decrypt(chat["access_token_encrypted"])
        recipient = chat["wa_id"] or chat["user_id"]
        reply_to = context["turn"][-1]["wamid"]
        sent = 0
        with WhatsAppClient(graph_url, whatsapp_api_version) as client:
            for part in cv.parts(conn, start.organization_id, turn_id):
                if part["wamid"]:
                    continue  # sent by an earlier attempt
                if part["status"] == "failed":
                    raise SendFailed(
                        f"part {part['part_index']} failed with code {part['error_code']}; not retried"
                    )
                cv.acquire_lease(conn, start, turn_id)  # renew while sending
                payload = text_message(
                    recipient, part["text"], reply_to=reply_to if part["part_index"] == 0 else None
                )
                try:
                    wamid = _send_with_retries(client, chat["phone_number_id"], token, payload)
                except WhatsAppError as exc:
                    if exc.retryable:
                        raise  # still throttled after our budget: the flow retries the step later
                    cv.fail_part(conn, start.organization_id, part["id"], exc.code, exc.title or exc.message)
                    raise SendFailed(f"part {part['part_index']} not delivered: {exc}") from exc
                cv.record_sent(conn, start.organization_id, part["id"], wamid)
                sent += 1
        cv.count_reply(conn, start, len(context["turn"]))
        cv.finish_turn(conn, start.organization_id, turn_id, "replied")
        redispatched = cv.release(conn, start, turn_id)
        return {"turn_id": str(turn_id), "sent": sent, "redispatched": redispatched}


def _wait(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    base = error.backoff_seconds(state.attempt_number) if isinstance(error, WhatsAppError) else 1.0
    return base * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security


def _send_with_retries(
    client: WhatsAppClient, phone_number_id: str, token: str, payload: dict[str, Any]
) -> str:
    retrying = Retrying(
        retry=retry_if_exception(lambda exc: isinstance(exc, WhatsAppError) and exc.retryable),
        wait=_wait,
        stop=stop_after_attempt(MAX_ATTEMPTS_PER_PART) | stop_after_delay(MAX_SECONDS_PER_PART),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            return client.send(phone_number_id, token, payload)
    raise AssertionError("unreachable")
