"""ingest_source, step `ingest`: fetch, extract, chunk, embed and upsert one knowledge source.

With ``source_id`` empty (the re-sync schedule), ingests up to ``max_sources`` sources whose
``next_sync_at`` has passed, one after the other. The work is in f.chatmill.lib.ingestion; this step
only opens the connection and builds the provider configuration from its inputs.

A source that cannot be ingested as it is (wrong file type, encrypted PDF, 404, redirect loop, …)
ends ``failed`` with the reason and the step returns that outcome; anything unexpected raises, so
Windmill retries the step.
"""

from __future__ import annotations

from typing import Any, TypedDict

from f.chatmill.lib.database import connect
from f.chatmill.lib.ingestion import claim_due_sources, ingest_source
from f.chatmill.lib.providers import ProviderConfig


# Windmill infers the `resource-postgresql` input from this lowercase class name: keep it.
class postgresql(TypedDict, total=False):
    host: str
    port: int
    user: str
    dbname: str
    sslmode: str
    password: str


def main(
    db: postgresql,
    source_id: str = "",
    max_sources: int = 20,
    embedding_provider: str = "offline",
    openai_api_key: str = "",
    openai_base_url: str = "",
    openai_embedding_model: str = "text-embedding-3-small",
    gemini_api_key: str = "",
    gemini_embedding_model: str = "gemini-embedding-001",
    llm_timeout_seconds: float = 30.0,
) -> dict[str, Any]:
    providers = ProviderConfig(  # empty variables mean "not set"; see ProviderConfig.__post_init__
        embedding_provider=embedding_provider,
        openai_api_key=openai_api_key,
        openai_base_url=openai_base_url,
        openai_embedding_model=openai_embedding_model,
        gemini_api_key=gemini_api_key,
        gemini_embedding_model=gemini_embedding_model,
        llm_timeout_seconds=llm_timeout_seconds,
    )
    with connect(db, application_name="chatmill-ingest-source") as conn:
        if source_id:
            return ingest_source(conn, source_id, providers).as_dict()
        results = [
            ingest_source(conn, due, providers).as_dict()
            for due in claim_due_sources(conn, limit=int(max_sources))
        ]
        return {"resynced": len(results), "results": results}
