"""Embeddings: the offline static model, provider embedders on local servers, model registration."""

from __future__ import annotations

import numpy as np
import pytest
from f.chatmill.lib.embeddings import (
    OFFLINE_DIMENSIONS,
    EmbeddingError,
    embed,
    index_name_for,
    register_model,
)
from f.chatmill.lib.providers import EmbeddingConfig

from tests import factories
from tests.knowledge.llm_server import Reply, gemini_error, llm_server, openai_error


def test_offline_vectors_are_unit_length_deterministic_and_understand_paraphrase() -> None:
    texts = [
        "We deliver to your home within 10 km.",
        "Do you bring orders to my house?",
        "The shop accepts credit cards and cash.",
    ]
    first, second = embed(texts, EmbeddingConfig()), embed(texts, EmbeddingConfig())
    assert first == second
    vectors = np.asarray(first)
    assert vectors.shape == (3, OFFLINE_DIMENSIONS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.15
    assert similarity[1, 0] > similarity[1, 2]


def test_offline_embedder_handles_empty_and_unknown_text() -> None:
    vectors = embed(["", "🥐🥐🥐"], EmbeddingConfig())
    assert len(vectors) == 2
    assert all(len(vector) == OFFLINE_DIMENSIONS for vector in vectors)
    assert embed([], EmbeddingConfig()) == []


def _openai_embeddings(count: int, dims: int = 3) -> dict[str, object]:
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": [float(i + 2) if j == i else 0.0 for j in range(dims)],
        }
        for i in reversed(range(count))
    ]
    return {
        "object": "list",
        "data": data,
        "model": "emb-test",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }


def test_openai_compatible_embeddings_keep_order_normalize_and_retry() -> None:
    script = [Reply(503, openai_error(503)), Reply(200, _openai_embeddings(2))]
    with llm_server(script) as server:
        config = EmbeddingConfig(
            provider="openai", model="emb-test", api_key="k", base_url=server.base_url + "/v1"
        )
        vectors = embed(["a", "b"], config)
    assert vectors == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]  # answered out of order, scaled
    assert server.requests[-1].path == "/v1/embeddings"
    assert server.requests[-1].body["input"] == ["a", "b"]
    assert len(server.requests) == 2


def test_gemini_embeddings_ask_for_768_dimensions_and_fail_clearly() -> None:
    body = {"embeddings": [{"values": [3.0, 4.0]}, {"values": [0.0, 2.0]}]}
    with llm_server([Reply(200, body)]) as server:
        config = EmbeddingConfig(
            provider="gemini", model="gemini-embedding-001", api_key="k", base_url=server.base_url
        )
        vectors = embed(["a", "b"], config)
    assert vectors == [pytest.approx([0.6, 0.8]), pytest.approx([0.0, 1.0])]
    assert server.requests[0].body["requests"][0]["outputDimensionality"] == 768
    with llm_server([Reply(400, gemini_error(400))]) as server:
        config = EmbeddingConfig(
            provider="gemini", model="gemini-embedding-001", api_key="k", base_url=server.base_url
        )
        with pytest.raises(EmbeddingError) as raised:
            embed(["a"], config)
    assert raised.value.status == 400
    assert len(server.requests) == 1


def test_registering_a_model_creates_its_partial_hnsw_index_once(db: factories.Conn) -> None:
    first = register_model(db, "openai:text-embedding-3-small", "openai", 1536)
    again = register_model(db, "openai:text-embedding-3-small", "openai", 1536)
    assert first == again
    assert first.index_name == index_name_for("openai:text-embedding-3-small")
    definition = db.execute(
        "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (first.index_name,)
    ).fetchone()
    assert definition is not None
    text = definition["indexdef"]
    assert "USING hnsw (((embedding)::vector(1536)) vector_cosine_ops)" in text
    assert "WHERE (embedding_model = 'openai:text-embedding-3-small'::text)" in text
    row = db.execute(
        "SELECT dimensions, index_name FROM embedding_models WHERE name = %s",
        ("openai:text-embedding-3-small",),
    ).fetchone()
    assert row == {"dimensions": 1536, "index_name": first.index_name}
    with pytest.raises(EmbeddingError, match="registered with 1536"):
        register_model(db, "openai:text-embedding-3-small", "openai", 768)
    with pytest.raises(EmbeddingError, match="at most 2000"):
        register_model(db, "gemini:huge", "gemini", 3072)
