"""The handle_message flow's shared logic: leases, turns, replies, release and re-dispatch.

One run answers one *turn*: every unanswered inbound message of a conversation, in order. Its
``turn_id`` is ``uuid5`` of the outbox row that started it, so a retried or recovered run (a crashed
worker, a Windmill retry) computes the same turn and resumes it instead of starting another.

- **Lease**: a run holds ``conversations.lease_holder = turn_id`` until ``lease_expires_at``; another
  run for the same conversation finds the lease held and ends (its message is part of the holder's
  turn or is picked up when the holder lets go). An expired lease can be taken over.
- **Parts**: the reply is stored as outbound ``pending`` rows ``(turn_id, part_index)`` before any is
  sent; sending records each wamid right after Meta accepts it (``record_sent_wamid``), so a retried
  send step skips what was sent and never sends a part twice.
- **Letting go**: the holder marks its turn answered and releases the lease; if messages arrived
  meanwhile it re-dispatches the newest one's outbox row (a new generation, hence a new job id), so
  they get their own reply after this one — never interleaved.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from f.chatmill.lib.database import Conn

TURN_NAMESPACE = uuid.UUID("6a1f0d4e-8c2b-4f37-a5d9-3e7b1c0f9a24")
LEASE_SECONDS = 120
MAX_DEBOUNCE_SECONDS = 10.0
CUSTOMER_SERVICE_WINDOW = dt.timedelta(hours=24)


def turn_id_for(outbox_id: uuid.UUID | str, generation: int = 0) -> uuid.UUID:
    """The turn a run answers: fixed by its outbox row and dispatch generation, so a retried or
    recovered run resumes its own turn."""
    return uuid.uuid5(TURN_NAMESPACE, f"{outbox_id}:{generation}")


class ConversationError(RuntimeError):
    """The flow input names something that does not exist."""


@dataclass(frozen=True)
class Start:
    outbox_id: uuid.UUID
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    generation: int
    answered: bool

    @property
    def turn_id(self) -> uuid.UUID:
        return turn_id_for(self.outbox_id, self.generation)


_START = """
SELECT o.id AS outbox_id, o.organization_id, o.conversation_id, o.message_id, o.generation,
       m.answered_at IS NOT NULL AS answered
FROM inbound_outbox o JOIN messages m ON m.id = o.message_id AND m.organization_id = o.organization_id
WHERE o.id = %(outbox_id)s
"""


def load_start(conn: Conn, outbox_id: str) -> Start:
    try:
        key = uuid.UUID(outbox_id)
    except ValueError as exc:
        raise ConversationError(f"outbox_id {outbox_id!r} is not a UUID") from exc
    row = conn.execute(_START, {"outbox_id": key}).fetchone()
    if row is None:
        raise ConversationError(f"no outbox row {outbox_id}")
    return Start(**row)


_ACQUIRE = """
UPDATE conversations SET lease_holder = %(holder)s,
    lease_expires_at = now() + make_interval(secs => %(seconds)s)
WHERE id = %(conversation_id)s AND organization_id = %(organization_id)s
  AND (lease_holder IS NULL OR lease_expires_at < now() OR lease_holder = %(holder)s)
RETURNING id
"""


def acquire_lease(conn: Conn, start: Start, turn_id: uuid.UUID, seconds: int = LEASE_SECONDS) -> bool:
    """Take (or renew) the conversation's lease for this turn; False when another run holds it."""
    values = {
        "holder": str(turn_id),
        "seconds": seconds,
        "conversation_id": start.conversation_id,
        "organization_id": start.organization_id,
    }
    return conn.execute(_ACQUIRE, values).fetchone() is not None


_CONTEXT = """
SELECT c.id AS conversation_id, c.organization_id, c.channel_id, c.chatbot_id, c.last_inbound_at,
       c.paused_at IS NOT NULL AND (c.paused_until IS NULL OR c.paused_until > now()) AS paused,
       ct.wa_id, ct.user_id, ch.phone_number_id, ch.access_token_encrypted,
       b.debounce_ms, b.history_turns, o.billing_tier, o.quota_notice,
       t.monthly_message_limit, t.monthly_token_limit
FROM conversations c
JOIN contacts ct ON ct.id = c.contact_id AND ct.organization_id = c.organization_id
JOIN whatsapp_channels ch ON ch.id = c.channel_id AND ch.organization_id = c.organization_id
JOIN chatbots b ON b.id = c.chatbot_id AND b.organization_id = c.organization_id
JOIN organizations o ON o.id = c.organization_id
JOIN billing_tiers t ON t.code = o.billing_tier
WHERE c.id = %(conversation_id)s AND c.organization_id = %(organization_id)s
"""


def conversation_context(
    conn: Conn, organization_id: uuid.UUID, conversation_id: uuid.UUID
) -> dict[str, Any]:
    row = conn.execute(
        _CONTEXT, {"organization_id": organization_id, "conversation_id": conversation_id}
    ).fetchone()
    if row is None:
        raise ConversationError(f"conversation {conversation_id} not found")
    return row


_NEWEST_UNANSWERED = """
SELECT max(created_at) AS newest, now() AS now FROM messages
WHERE conversation_id = %(conversation_id)s AND organization_id = %(organization_id)s
  AND direction = 'inbound' AND answered_at IS NULL
"""


def debounce(conn: Conn, start: Start, debounce_ms: int, *, max_wait: float = MAX_DEBOUNCE_SECONDS) -> float:
    """Wait until the conversation has been quiet for ``debounce_ms`` (at most ``max_wait`` s)."""
    window = debounce_ms / 1000
    waited = 0.0
    while window > 0 and waited < max_wait:
        row = conn.execute(
            _NEWEST_UNANSWERED,
            {"conversation_id": start.conversation_id, "organization_id": start.organization_id},
        ).fetchone()
        if row is None or row["newest"] is None:
            break
        quiet = (row["now"] - row["newest"]).total_seconds()
        if quiet >= window:
            break
        pause = min(window - quiet, max_wait - waited)
        time.sleep(pause)
        waited += pause
    return waited


_TURN = """
SELECT id, wamid, type, text, created_at FROM messages
WHERE conversation_id = %(conversation_id)s AND organization_id = %(organization_id)s
  AND direction = 'inbound' AND (answered_at IS NULL OR turn_id = %(turn_id)s)
ORDER BY created_at, id
"""
_OWN_TURN = """
SELECT id, wamid, type, text, created_at FROM messages
WHERE conversation_id = %(conversation_id)s AND organization_id = %(organization_id)s
  AND direction = 'inbound' AND turn_id = %(turn_id)s
ORDER BY created_at, id
"""
_CLAIM_TURN = """
UPDATE messages SET turn_id = %(turn_id)s
WHERE id = ANY(%(ids)s) AND organization_id = %(organization_id)s AND answered_at IS NULL
"""


def gather_turn(conn: Conn, start: Start, turn_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every unanswered inbound message, oldest first, claimed for this turn (idempotent).

    Only the lease holder calls this, so messages a crashed earlier turn had claimed but not
    answered are adopted too. Once this turn's reply exists (a resumed run), the turn is closed: it
    keeps the messages that reply answers, and later ones wait for their own turn.
    """
    values = {
        "conversation_id": start.conversation_id,
        "organization_id": start.organization_id,
        "turn_id": turn_id,
    }
    if parts(conn, start.organization_id, turn_id):
        return conn.execute(_OWN_TURN, values).fetchall()
    rows = conn.execute(_TURN, values).fetchall()
    if rows:
        conn.execute(
            _CLAIM_TURN,
            {
                "turn_id": turn_id,
                "ids": [row["id"] for row in rows],
                "organization_id": start.organization_id,
            },
        )
    return rows


_HISTORY = """
SELECT direction, text FROM (
    SELECT direction, text, created_at, id FROM messages
    WHERE conversation_id = %(conversation_id)s AND organization_id = %(organization_id)s
      AND text IS NOT NULL AND (turn_id IS DISTINCT FROM %(turn_id)s)
      AND (direction = 'inbound' OR wamid IS NOT NULL)
    ORDER BY created_at DESC, id DESC
    LIMIT %(limit)s
) recent ORDER BY created_at, id
"""


def history(conn: Conn, start: Start, turn_id: uuid.UUID, turns: int) -> list[dict[str, str]]:
    """The conversation before this turn, oldest first, as LLM messages (about ``turns`` exchanges)."""
    if turns <= 0:
        return []
    values = {
        "conversation_id": start.conversation_id,
        "organization_id": start.organization_id,
        "turn_id": turn_id,
        "limit": turns * 2,
    }
    return [
        {"role": "user" if row["direction"] == "inbound" else "assistant", "content": row["text"]}
        for row in conn.execute(_HISTORY, values).fetchall()
    ]


_PERIOD_USAGE = """
SELECT messages_out, prompt_tokens + completion_tokens AS tokens, quota_notice_sent_at
FROM usage_monthly WHERE organization_id = %(organization_id)s AND period = date_trunc('month', now())::date
"""


def over_quota(conn: Conn, context: Mapping[str, Any]) -> bool:
    usage = conn.execute(_PERIOD_USAGE, {"organization_id": context["organization_id"]}).fetchone()
    if usage is None:
        return False
    messages, tokens = context["monthly_message_limit"], context["monthly_token_limit"]
    return (messages is not None and usage["messages_out"] >= messages) or (
        tokens is not None and usage["tokens"] >= tokens
    )


_CLAIM_QUOTA_NOTICE = """
INSERT INTO usage_monthly (organization_id, period, quota_notice_sent_at)
VALUES (%(organization_id)s, date_trunc('month', now())::date, now())
ON CONFLICT (organization_id, period) DO UPDATE SET quota_notice_sent_at = now()
WHERE usage_monthly.quota_notice_sent_at IS NULL
RETURNING quota_notice_sent_at
"""


def claim_quota_notice(conn: Conn, organization_id: uuid.UUID) -> bool:
    """True once per period: the caller may send the over-quota notice."""
    return conn.execute(_CLAIM_QUOTA_NOTICE, {"organization_id": organization_id}).fetchone() is not None


_FINISH_TURN = """
UPDATE messages SET answered_at = COALESCE(answered_at, now()), answer_outcome = COALESCE(answer_outcome, %(outcome)s)
WHERE turn_id = %(turn_id)s AND organization_id = %(organization_id)s AND direction = 'inbound';
"""
_COMPLETE_OUTBOX = """
UPDATE inbound_outbox o SET completed_at = COALESCE(o.completed_at, now())
FROM messages m
WHERE m.id = o.message_id AND m.organization_id = o.organization_id AND m.turn_id = %(turn_id)s
  AND o.organization_id = %(organization_id)s
"""


def finish_turn(conn: Conn, organization_id: uuid.UUID, turn_id: uuid.UUID, outcome: str) -> None:
    """Mark the turn's inbound messages answered (with why) and their outbox rows completed."""
    values = {"turn_id": turn_id, "organization_id": organization_id, "outcome": outcome}
    with conn.transaction():
        conn.execute(_FINISH_TURN, values)
        conn.execute(_COMPLETE_OUTBOX, values)


def finish_message(conn: Conn, start: Start, turn_id: uuid.UUID, outcome: str) -> None:
    """Claim just the run's own message for this turn and finish it (paused, over quota, …)."""
    conn.execute(
        "UPDATE messages SET turn_id = %(turn_id)s WHERE id = %(id)s AND organization_id = %(org)s AND turn_id IS NULL",
        {"turn_id": turn_id, "id": start.message_id, "org": start.organization_id},
    )
    finish_turn(conn, start.organization_id, turn_id, outcome)


_RELEASE = """
UPDATE conversations SET lease_holder = NULL, lease_expires_at = NULL
WHERE id = %(conversation_id)s AND organization_id = %(organization_id)s AND lease_holder = %(holder)s
"""
_REDISPATCH_NEWEST = """
UPDATE inbound_outbox SET generation = generation + 1, dispatched_at = NULL, available_at = now(), job_id = NULL
WHERE id = (
    SELECT o.id FROM inbound_outbox o JOIN messages m ON m.id = o.message_id AND m.organization_id = o.organization_id
    WHERE o.conversation_id = %(conversation_id)s AND o.organization_id = %(organization_id)s
      AND m.answered_at IS NULL AND m.turn_id IS NULL AND o.dispatched_at IS NOT NULL
    ORDER BY m.created_at DESC LIMIT 1
)
RETURNING id
"""


def release(conn: Conn, start: Start, turn_id: uuid.UUID) -> bool:
    """Let go of the lease; re-dispatch if messages arrived meanwhile. True when one was re-dispatched."""
    values = {
        "conversation_id": start.conversation_id,
        "organization_id": start.organization_id,
        "holder": str(turn_id),
    }
    with conn.transaction():
        conn.execute(_RELEASE, values)
        redispatched = conn.execute(_REDISPATCH_NEWEST, values).fetchone()
    return redispatched is not None


_STORE_PART = """
INSERT INTO messages (organization_id, chatbot_id, channel_id, conversation_id, contact_id, direction, author,
                      type, text, status, turn_id, part_index, llm_model, prompt_tokens, completion_tokens, citations)
SELECT c.organization_id, c.chatbot_id, c.channel_id, c.id, c.contact_id, 'outbound', %(author)s, 'text', %(text)s,
       'pending', %(turn_id)s, %(part_index)s, %(model)s, %(prompt_tokens)s, %(completion_tokens)s, %(citations)s
FROM conversations c WHERE c.id = %(conversation_id)s AND c.organization_id = %(organization_id)s
ON CONFLICT (turn_id, part_index) DO NOTHING
"""


def store_parts(
    conn: Conn,
    start: Start,
    turn_id: uuid.UUID,
    parts: Sequence[str],
    *,
    author: str = "assistant",
    model: str | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    citations: list[dict[str, Any]] | None = None,
) -> None:
    """Store the reply's parts as pending outbound messages (tokens and citations on the first)."""
    with conn.transaction():
        for index, text in enumerate(parts):
            conn.execute(
                _STORE_PART,
                {
                    "organization_id": start.organization_id,
                    "conversation_id": start.conversation_id,
                    "turn_id": turn_id,
                    "part_index": index,
                    "text": text,
                    "author": author,
                    "model": model,
                    "prompt_tokens": prompt_tokens if index == 0 else None,
                    "completion_tokens": completion_tokens if index == 0 else None,
                    "citations": Jsonb(citations) if index == 0 and citations else None,
                },
            )


_PARTS = """
SELECT id, part_index, text, wamid, status, error_code FROM messages
WHERE turn_id = %(turn_id)s AND organization_id = %(organization_id)s AND direction = 'outbound'
ORDER BY part_index
"""


def parts(conn: Conn, organization_id: uuid.UUID, turn_id: uuid.UUID) -> list[dict[str, Any]]:
    return conn.execute(_PARTS, {"turn_id": turn_id, "organization_id": organization_id}).fetchall()


def record_sent(conn: Conn, organization_id: uuid.UUID, message_id: uuid.UUID, wamid: str) -> None:
    conn.execute("SELECT record_sent_wamid(%s, %s, %s)", (organization_id, message_id, wamid))


_FAIL_PART = """
UPDATE messages SET status = 'failed', error_code = %(code)s, error_title = %(title)s,
    status_history = status_history || jsonb_build_array(jsonb_build_object('status', 'failed', 'at', now(),
        'error_code', %(code)s::integer, 'error_title', %(title)s::text))
WHERE id = %(id)s AND organization_id = %(organization_id)s AND wamid IS NULL
"""


def fail_part(
    conn: Conn, organization_id: uuid.UUID, message_id: uuid.UUID, code: int | None, title: str
) -> None:
    conn.execute(
        _FAIL_PART, {"id": message_id, "organization_id": organization_id, "code": code, "title": title}
    )


_USAGE = """
INSERT INTO usage_monthly (organization_id, period, messages_in, messages_out)
VALUES (%(organization_id)s, date_trunc('month', now())::date, %(messages_in)s, 1)
ON CONFLICT (organization_id, period) DO UPDATE SET
    messages_in = usage_monthly.messages_in + EXCLUDED.messages_in,
    messages_out = usage_monthly.messages_out + 1, updated_at = now()
"""
_TOUCH_CONVERSATION = """
UPDATE conversations SET last_outbound_at = now(), last_message_at = GREATEST(last_message_at, now())
WHERE id = %(conversation_id)s AND organization_id = %(organization_id)s
"""


def count_reply(conn: Conn, start: Start, turn_size: int) -> None:
    """One reply (and the turn's inbound messages) towards the organization's monthly usage."""
    values = {
        "organization_id": start.organization_id,
        "conversation_id": start.conversation_id,
        "messages_in": turn_size,
    }
    conn.execute(_USAGE, values)
    conn.execute(_TOUCH_CONVERSATION, values)
