"""Move a chatbot's knowledge to another embedding model without downtime (``chatmill reembed``).

    reembed_chatbot(conn, organization_id=…, chatbot_id=…, target=EmbeddingConfig, progress=…)

1. Register the target model (row + partial HNSW index, built ``CONCURRENTLY`` on an autocommit
   connection so writes are not blocked) and record a ``knowledge_reembeds`` row (one running move
   per chatbot, enforced by a unique index).
2. In batches, embed each chunk with the target model into ``next_embedding`` while retrieval keeps
   using ``embedding`` with the current model: answers never stop.
3. In one short transaction, with the chatbot row locked: embed what was added meanwhile, copy
   ``next_embedding`` into ``embedding``, retag the chunks, switch ``chatbots.embedding_model`` and
   refresh the statistics. Readers see the old model until that commit and the new one after it.

Ingestion takes a share lock on the chatbot row per document and checks the model, so a document
written during step 3 waits for it and a document prepared with the old model is retried.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from f.chatmill.lib.embeddings import embed, model_dimensions, model_name, register_model, vector_literal
from f.chatmill.lib.providers import EmbeddingConfig
from f.chatmill.lib.retrieval import maintain_indexes, refresh_chunk_stats

BATCH = 256

_START = """
INSERT INTO knowledge_reembeds (organization_id, chatbot_id, from_model, to_model)
SELECT organization_id, id, embedding_model, %(to_model)s FROM chatbots
WHERE organization_id = %(organization_id)s AND id = %(chatbot_id)s AND deleted_at IS NULL
RETURNING id, from_model
"""
_PENDING_COUNT = """
SELECT count(*) AS n FROM knowledge_chunks
WHERE organization_id = %(organization_id)s AND chatbot_id = %(chatbot_id)s
  AND next_embedding_model IS DISTINCT FROM %(to_model)s
"""
_PENDING = """
SELECT id, content FROM knowledge_chunks
WHERE organization_id = %(organization_id)s AND chatbot_id = %(chatbot_id)s
  AND next_embedding_model IS DISTINCT FROM %(to_model)s
ORDER BY id LIMIT %(limit)s
"""
_SET_NEXT = """
UPDATE knowledge_chunks SET next_embedding = %(vector)s::vector, next_embedding_model = %(to_model)s
WHERE organization_id = %(organization_id)s AND id = %(id)s
"""
_PROGRESS = """
UPDATE knowledge_reembeds SET progress_done = %(done)s, progress_total = %(total)s
WHERE organization_id = %(organization_id)s AND id = %(id)s
"""
_LOCK_CHATBOT = (
    "SELECT id FROM chatbots WHERE organization_id = %(organization_id)s AND id = %(chatbot_id)s FOR UPDATE"
)
_SWAP = """
UPDATE knowledge_chunks
SET embedding = next_embedding, embedding_model = next_embedding_model, next_embedding = NULL,
    next_embedding_model = NULL
WHERE organization_id = %(organization_id)s AND chatbot_id = %(chatbot_id)s AND next_embedding_model = %(to_model)s
"""
_SWITCH = """
UPDATE chatbots SET embedding_model = %(to_model)s WHERE organization_id = %(organization_id)s AND id = %(chatbot_id)s
"""
_FINISH = """
UPDATE knowledge_reembeds SET status = %(status)s, error = %(error)s, finished_at = now()
WHERE organization_id = %(organization_id)s AND id = %(id)s
"""


class ReembedError(RuntimeError):
    """The move could not start (unknown chatbot, another move running) or failed."""


def _fill(conn: psycopg.Connection[Any], keys: dict[str, Any], target: EmbeddingConfig, limit: int) -> int:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_PENDING, keys | {"limit": limit}).fetchall()
        if not rows:
            return 0
        vectors = embed([row["content"] for row in rows], target)
        cur.executemany(
            _SET_NEXT,
            [
                keys | {"id": row["id"], "vector": vector_literal(v)}
                for row, v in zip(rows, vectors, strict=True)
            ],
        )
    return len(rows)


def reembed_chatbot(
    conn: psycopg.Connection[Any],
    *,
    organization_id: uuid.UUID | str,
    chatbot_id: uuid.UUID | str,
    target: EmbeddingConfig,
    progress: Callable[[int, int], None] | None = None,
    batch: int = BATCH,
) -> dict[str, Any]:
    """Run the whole move (see the module docstring); ``conn`` must be in autocommit mode."""
    to_model = model_name(target)
    dimensions = model_dimensions(target) or len(embed(["dimension probe"], target)[0])
    register_model(conn, to_model, target.provider, dimensions, concurrently=conn.autocommit)
    keys: dict[str, Any] = {
        "organization_id": organization_id,
        "chatbot_id": chatbot_id,
        "to_model": to_model,
    }
    try:
        started = conn.execute(_START, keys).fetchone()
    except psycopg.errors.UniqueViolation:
        raise ReembedError("another re-embedding of this chatbot is running") from None
    if started is None:
        raise ReembedError("no such chatbot in this organization")
    move_id = started["id"] if isinstance(started, dict) else started[0]
    move = keys | {"id": move_id}
    try:
        total_row = conn.execute(_PENDING_COUNT, keys).fetchone()
        total = int(total_row["n"] if isinstance(total_row, dict) else total_row[0]) if total_row else 0
        done = 0
        while True:
            count = _fill(conn, keys, target, batch)
            if count == 0:
                break
            done += count
            conn.execute(_PROGRESS, move | {"done": done, "total": max(total, done)})
            if progress:
                progress(done, max(total, done))
        with conn.transaction():
            conn.execute(_LOCK_CHATBOT, keys)
            while _fill(conn, keys, target, batch):  # chunks ingested meanwhile
                pass
            conn.execute(_SWAP, keys)
            conn.execute(_SWITCH, keys)
            refresh_chunk_stats(conn, organization_id=organization_id, chatbot_id=chatbot_id)
            conn.execute(_FINISH, move | {"status": "done", "error": None})
    except Exception as exc:
        conn.execute(_FINISH, move | {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]})
        raise
    maintain_indexes(conn, organization_id=organization_id, chatbot_id=chatbot_id)
    return {"id": str(move_id), "model": to_model, "chunks": done}
