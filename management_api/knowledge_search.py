"""``POST /api/chatbots/{id}/knowledge/search``: a preview of what retrieval gives the assistant.

Runs the very function the ``handle_message`` flow uses (``f.chatmill.lib.retrieval.retrieve_async``,
hybrid vector + full-text with the chatbot's embedding model and settings), so what the dashboard
shows is what the assistant would read. ``top_k`` defaults to the chatbot's ``retrieval_top_k``.
An embedding provider failure answers 503.
"""

from __future__ import annotations

import uuid

from f.chatmill.lib.providers import ProviderConfig, ProviderError
from f.chatmill.lib.retrieval import retrieve_async
from pydantic import BaseModel, Field, field_validator

from chatmill.errors import ServiceUnavailable
from management_api.chatbots import ensure_chatbot
from management_api.db import connection
from management_api.endpoints import Context, Operation


class SearchRequest(BaseModel):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"query": "opening hours on Sunday"}]},
    }
    query: str = Field(min_length=1, max_length=1000)
    top_k: int | None = Field(default=None, ge=1, le=50)

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query is empty")
        return value


class SearchHit(BaseModel):
    chunk_id: int
    content: str
    score: float = Field(description="fused rank score (higher is better)")
    similarity: float | None = Field(description="cosine similarity, when found by the vector search")
    text_match: bool
    source_id: uuid.UUID
    source_name: str
    document_id: uuid.UUID
    uri: str
    title: str | None
    page: int | None
    heading: str | None
    chunk_index: int


class SearchResult(BaseModel):
    query: str
    hits: list[SearchHit]


async def search_knowledge(ctx: Context) -> SearchResult:
    body = ctx.body(SearchRequest)
    chatbot_id = ctx.id("chatbot_id")
    providers = ProviderConfig.from_settings(ctx.settings)
    try:
        async with connection(ctx.resources) as conn:
            await ensure_chatbot(conn, ctx.org, chatbot_id)
            hits = await retrieve_async(
                conn,
                organization_id=ctx.org,
                chatbot_id=chatbot_id,
                query=body.query,
                providers=providers,
                top_k=body.top_k,
            )
    except ProviderError as exc:
        raise ServiceUnavailable(f"the embedding provider failed: {type(exc).__name__}") from None
    return SearchResult(
        query=body.query, hits=[SearchHit.model_validate(hit, from_attributes=True) for hit in hits]
    )


OPERATIONS = [
    Operation("POST", "/api/chatbots/{chatbot_id}/knowledge/search", search_knowledge,
              "Preview what retrieval returns for a question", "knowledge", response=SearchResult,
              body=SearchRequest),
]  # fmt: skip
