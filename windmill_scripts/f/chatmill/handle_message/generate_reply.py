"""handle_message, step 2: the reply to the turn, stored as pending parts before anything is sent.

Marks the customer's last message read with a typing indicator (shown while the answer is prepared),
retrieves from the chatbot's knowledge and calls the configured LLM (the offline extractive answerer
without keys) through f.chatmill.lib.answering, which records token usage. The reply is split at
4096 characters and stored as outbound ``pending`` parts with its citations and tokens; a retried
step finds them and does not generate again.
"""

from __future__ import annotations

import logging
from typing import Any, TypedDict

from f.chatmill.lib import conversation as cv
from f.chatmill.lib.answering import generate_reply
from f.chatmill.lib.database import connect
from f.chatmill.lib.providers import ProviderConfig
from f.chatmill.lib.secretbox import SecretBox
from f.chatmill.lib.whatsapp import WhatsAppClient, WhatsAppError, split_text

_log = logging.getLogger(__name__)


class postgresql(TypedDict, total=False):
    host: str
    port: int
    user: str
    dbname: str
    sslmode: str
    password: str


class LeaseLost(RuntimeError):
    """Another run took the conversation over (this one stalled past its lease)."""


def main(
    db: postgresql,
    context: dict[str, Any],
    graph_url: str = "https://graph.facebook.com",
    whatsapp_api_version: str = "v21.0",
    encryption_keys: str = "",
    llm_provider: str = "offline",
    openai_api_key: str = "",
    openai_base_url: str = "",
    openai_model: str = "gpt-4o-mini",
    gemini_api_key: str = "",
    gemini_model: str = "gemini-2.5-flash",
    embedding_provider: str = "offline",
    openai_embedding_model: str = "text-embedding-3-small",
    gemini_embedding_model: str = "gemini-embedding-001",
    llm_timeout_seconds: float = 30.0,
) -> dict[str, Any]:
    providers = ProviderConfig(  # empty variables mean "not set"; see ProviderConfig.__post_init__
        llm_provider=llm_provider,
        openai_api_key=openai_api_key,
        openai_base_url=openai_base_url,
        openai_model=openai_model,
        gemini_api_key=gemini_api_key,
        gemini_model=gemini_model,
        embedding_provider=embedding_provider,
        openai_embedding_model=openai_embedding_model,
        gemini_embedding_model=gemini_embedding_model,
        llm_timeout_seconds=llm_timeout_seconds,
    )
    with connect(db) as conn:
        start = cv.load_start(conn, context["outbox_id"])
        turn_id = start.turn_id
        if not cv.acquire_lease(conn, start, turn_id):
            raise LeaseLost(f"conversation {start.conversation_id} is held by another run")
        existing = cv.parts(conn, start.organization_id, turn_id)
        if existing:
            return {"turn_id": str(turn_id), "parts": len(existing), "reused": True}
        chat = cv.conversation_context(conn, start.organization_id, start.conversation_id)
        _show_typing(chat, context["turn"][-1]["wamid"], graph_url, whatsapp_api_version, encryption_keys)
        chatbot = conn.execute(
            "SELECT * FROM chatbots WHERE id = %s AND organization_id = %s",
            (chat["chatbot_id"], start.organization_id),
        ).fetchone()
        assert chatbot is not None
        reply = generate_reply(
            conn,
            organization_id=start.organization_id,
            chatbot=chatbot,
            turn=[message["text"] for message in context["turn"]],
            history=context["history"],
            providers=providers,
        )
        text = reply.text.strip() or str(chatbot["fallback_message"])
        parts = split_text(text)
        cv.store_parts(
            conn,
            start,
            turn_id,
            parts,
            model=reply.model,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            citations=reply.citations,
        )
        return {
            "turn_id": str(turn_id),
            "parts": len(parts),
            "model": reply.model,
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "grounded": reply.grounded,
        }


def _show_typing(chat: dict[str, Any], wamid: str | None, graph_url: str, version: str, keys: str) -> None:
    """Best effort: a failed read receipt must not cost the customer the answer."""
    if not wamid:
        return
    try:
        token = SecretBox([k for k in keys.split(",") if k]).decrypt(chat["access_token_encrypted"])
        with WhatsAppClient(graph_url, version) as client:
            client.mark_read(chat["phone_number_id"], token, wamid, typing=True)
    except (WhatsAppError, ValueError) as exc:
        _log.warning("read receipt not sent: %s", exc)
