"""Recall@10 of the vector side against exact search, for chatbots holding 0.1 %, 1 %, 10 % and 50 %.

One model's HNSW index holds every chatbot's chunks, so a filtered index scan sees only a share of
a chatbot's rows. The retriever scans exactly below ``exact_max_rows`` or a 10 % share and widens
``ef_search`` above it (pgvector 0.6; 0.8 uses iterative scans). With the table shrunk to 20,000
rows, ``exact_max_rows`` is lowered so the 10 % and 50 % chatbots really go through the index.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from f.chatmill.lib.embeddings import register_model, vector_literal
from f.chatmill.lib.retrieval import RetrievalTuning, explain, maintain_indexes, refresh_chunk_stats, retrieve

from tests import factories

DIMENSIONS = 32
TOTAL_ROWS = 20_000
SHARES = {"0.1%": 0.001, "1%": 0.01, "10%": 0.10, "50%": 0.50}
QUERIES = 15
TUNING = RetrievalTuning(exact_max_rows=1_000)
MODEL = "test:random-32"


def _load(db: factories.Conn, bot: factories.Row, vectors: np.ndarray[Any, Any]) -> None:
    source = factories.create_knowledge_source(db, bot)
    document = db.execute(
        "INSERT INTO knowledge_documents (organization_id, chatbot_id, source_id, uri, content_hash)"
        " VALUES (%s, %s, %s, 'synthetic', '\\x00') RETURNING id",
        (bot["organization_id"], bot["id"], source["id"]),
    ).fetchone()
    assert document is not None
    with db.cursor().copy(
        "COPY knowledge_chunks (organization_id, chatbot_id, source_id, document_id, chunk_index, content,"
        " content_hash, embedding, embedding_model) FROM STDIN"
    ) as copy:
        for index, vector in enumerate(vectors):
            copy.write_row(
                (
                    bot["organization_id"],
                    bot["id"],
                    source["id"],
                    document["id"],
                    index,
                    f"chunk {index}",
                    uuid.uuid4().bytes,
                    vector_literal(vector),
                    MODEL,
                )
            )
    refresh_chunk_stats(db, organization_id=bot["organization_id"], chatbot_id=bot["id"])


@pytest.fixture
def shared_table(db: factories.Conn) -> dict[str, tuple[factories.Row, np.ndarray[Any, Any]]]:
    rng = np.random.default_rng(7)
    db.execute(
        "INSERT INTO embedding_models (name, provider, dimensions) VALUES (%s, 'test', %s)",
        (MODEL, DIMENSIONS),
    )
    org = factories.create_organization(db)
    bots: dict[str, tuple[factories.Row, np.ndarray[Any, Any]]] = {}
    remaining = TOTAL_ROWS
    for label, share in SHARES.items():
        rows = int(TOTAL_ROWS * share)
        remaining -= rows
        vectors = rng.standard_normal((rows, DIMENSIONS)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        bot = factories.create_chatbot(db, org, embedding_model=MODEL)
        _load(db, bot, vectors)
        bots[label] = (bot, vectors)
    filler = rng.standard_normal((remaining, DIMENSIONS)).astype(np.float32)
    _load(db, factories.create_chatbot(db, factories.create_organization(db), embedding_model=MODEL), filler)
    register_model(db, MODEL, "test", DIMENSIONS)  # the HNSW index, built over the loaded rows
    db.execute("ANALYZE knowledge_chunks")
    return bots


def _recall(
    db: factories.Conn, shared_table: dict[str, tuple[factories.Row, np.ndarray[Any, Any]]]
) -> tuple[dict[str, float], dict[str, str]]:
    rng = np.random.default_rng(11)
    report, kinds = {}, {}
    for label, (bot, vectors) in shared_table.items():
        found = 0
        for _ in range(QUERIES):
            query = rng.standard_normal(DIMENSIONS).astype(np.float32)
            query /= np.linalg.norm(query)
            truth = set(np.argsort(-(vectors @ query), kind="stable")[:10].tolist())
            scope = {"organization_id": bot["organization_id"], "chatbot_id": bot["id"]}
            hits = retrieve(
                db, **scope, query="", query_vector=query.tolist(), mode="vector", top_k=10, tuning=TUNING
            )
            assert len(hits) == 10, label
            found += len(truth & {int(hit.content.split()[1]) for hit in hits})
        plan, text = explain(db, **scope, query_vector=query.tolist(), tuning=TUNING)
        used = (
            "bot index"
            if "knowledge_chunks_bot_" in text
            else "model index"
            if "knowledge_chunks_hnsw_" in text
            else "no index"
        )
        kinds[label] = f"{plan.kind} ({used})"
        report[label] = found / (10 * QUERIES)
    return report, kinds


def test_recall_at_10_against_exact_search_for_every_share(
    db: factories.Conn, shared_table: dict[str, tuple[factories.Row, np.ndarray[Any, Any]]]
) -> None:
    # pgvector 0.6 without a chatbot index: exact scans, then HNSW with a widened ef_search
    before, kinds = _recall(db, shared_table)
    print(f"recall@10 by share, model index: {before} {kinds}")
    assert kinds == {
        "0.1%": "exact (no index)",
        "1%": "exact (no index)",
        "10%": "hnsw (model index)",
        "50%": "hnsw (model index)",
    }
    assert all(recall >= 0.95 for recall in before.values()), before

    # after ingestion's index maintenance: the large chatbots get their own index
    for bot, _ in shared_table.values():
        maintain_indexes(db, organization_id=bot["organization_id"], chatbot_id=bot["id"], tuning=TUNING)
    after, kinds = _recall(db, shared_table)
    print(f"recall@10 by share, chatbot indexes: {after} {kinds}")
    assert kinds == {
        "0.1%": "exact (no index)",
        "1%": "exact (no index)",
        "10%": "dedicated (bot index)",
        "50%": "dedicated (bot index)",
    }
    assert all(recall >= 0.95 for recall in after.values()), after
