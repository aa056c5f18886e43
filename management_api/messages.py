"""Message shapes shared by history, conversations and agent replies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

Direction = Literal["inbound", "outbound"]
Author = Literal["customer", "assistant", "agent", "system"]


class Message(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    channel_id: uuid.UUID
    direction: Direction
    author: Author
    type: str
    text: str | None
    media: dict[str, Any] | None
    status: str
    error_code: int | None
    error_title: str | None
    wamid: str | None
    sent_by: uuid.UUID | None
    llm_model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    created_at: datetime


class MessageDetail(Message):
    context_wamid: str | None
    status_history: list[Any]
    citations: list[Any] | dict[str, Any] | None
    answered_at: datetime | None
    answer_outcome: str | None


MESSAGE_COLUMNS = (
    "id, conversation_id, contact_id, channel_id, direction, author, type, text, media, status, error_code,"
    " error_title, wamid, sent_by, llm_model, prompt_tokens, completion_tokens, created_at"
)
DETAIL_COLUMNS = MESSAGE_COLUMNS + ", context_wamid, status_history, citations, answered_at, answer_outcome"
