"""Text embeddings: the offline static model and the OpenAI / OpenAI-compatible / Gemini providers.

    embed(texts, config) -> list[list[float]]     one unit vector per text, in order
    model_name(config) -> str                      the name chunks are tagged with ('offline', 'openai:…')
    register_model(conn, name, provider, dims)     row in embedding_models + its partial HNSW index

The **offline** model (the default) is a static embedding table distilled once with model2vec from
sentence-transformers/all-MiniLM-L6-v2 (``tools/distill_offline_embedder.py``; weights and the
Apache-2.0 attribution under ``models/minilm-l6-static-256/``). At run time it needs numpy and
``tokenizers`` only: WordPiece-tokenize, average the token vectors, normalize. It is deterministic,
downloads nothing and embeds tens of thousands of short texts per second on one core.

Vectors live in the untyped ``knowledge_chunks.embedding`` column tagged with ``embedding_model``;
each model gets one partial HNSW expression index, ``((embedding::vector(D)) vector_cosine_ops)
WHERE embedding_model = '<name>'``, created by :func:`register_model` (idempotent). HNSW indexes
``vector`` up to 2000 dimensions, so Gemini vectors are requested at 768 dimensions and an OpenAI
model's native size is kept (1536 for text-embedding-3-small).

Provider errors: :class:`EmbeddingError` (a subclass of :class:`f.chatmill.lib.providers.ProviderError`);
429 / 5xx / timeouts are retried with jittered exponential backoff (tenacity), nothing else is.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import psycopg
from psycopg import sql

from f.chatmill.lib.providers import EmbeddingConfig, ProviderError, call_with_retries

OFFLINE_MODEL_NAME = "offline"
OFFLINE_DIMENSIONS = 256
GEMINI_DIMENSIONS = 768
MAX_HNSW_DIMENSIONS = 2000
# Where the offline model lives. CHATMILL_OFFLINE_MODEL_DIR overrides it (a Windmill worker image
# that does not carry the repository mounts the folder and points this variable at it).
DEFAULT_OFFLINE_MODEL_DIR = Path(__file__).resolve().parent / "models" / "minilm-l6-static-256"
_MAX_TOKENS = 512
_BATCH = {"openai": 256, "gemini": 100}

Vector = list[float]


class EmbeddingError(ProviderError):
    """An embedding provider failed, or answered something that is not a vector per text."""


# --------------------------------------------------------------------------------------------------
# Offline static model


@dataclass(frozen=True)
class StaticModel:
    """A token → vector table plus the tokenizer that produced the token ids."""

    vectors: np.ndarray[Any, np.dtype[np.float32]]
    tokenizer: Any  # tokenizers.Tokenizer
    unk_id: int | None

    @property
    def dimensions(self) -> int:
        return int(self.vectors.shape[1])

    def encode(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Mean of the token vectors of each text, L2-normalized (a zero vector for no tokens)."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        for row, encoding in enumerate(encodings):
            ids = [i for i in encoding.ids[:_MAX_TOKENS] if i != self.unk_id]
            if ids:
                out[row] = self.vectors[ids].mean(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


_load_lock = threading.Lock()


@functools.cache
def _load_static_model(directory: str) -> StaticModel:
    from tokenizers import Tokenizer

    path = Path(directory)
    vectors = np.load(path / "embeddings.npy").astype(np.float32)
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    unk = json.loads((path / "tokenizer.json").read_text()).get("model", {}).get("unk_token")
    unk_id = tokenizer.token_to_id(unk) if isinstance(unk, str) else None
    return StaticModel(vectors=vectors, tokenizer=tokenizer, unk_id=unk_id)


def offline_model() -> StaticModel:
    """The offline model, loaded once per process (about 0.1 s, 30 MB of float32)."""
    directory = os.environ.get("CHATMILL_OFFLINE_MODEL_DIR") or str(DEFAULT_OFFLINE_MODEL_DIR)
    with _load_lock:
        return _load_static_model(directory)


# --------------------------------------------------------------------------------------------------
# Public API


def model_name(config: EmbeddingConfig) -> str:
    """The name vectors from ``config`` are tagged with: 'offline', 'openai:<model>', 'gemini:<model>'."""
    if config.provider == "offline":
        return OFFLINE_MODEL_NAME
    return f"{config.provider}:{config.model}"


def model_dimensions(config: EmbeddingConfig) -> int | None:
    """Dimensions when known without a call (offline, Gemini); None: ask the provider (OpenAI)."""
    if config.provider == "offline":
        return OFFLINE_DIMENSIONS
    if config.provider == "gemini":
        return config.dimensions or GEMINI_DIMENSIONS
    return config.dimensions


def embed(texts: Sequence[str], config: EmbeddingConfig) -> list[Vector]:
    """Embed ``texts`` (in order) with the configured provider; every vector has unit length.

    Batches by the provider's limit. Raises :class:`EmbeddingError` when a provider fails after
    its retries or answers the wrong number of vectors.
    """
    if not texts:
        return []
    if config.provider == "offline":
        return [row.tolist() for row in offline_model().encode(texts)]
    batch = _BATCH.get(config.provider, 100)
    vectors: list[Vector] = []
    for start in range(0, len(texts), batch):
        part = list(texts[start : start + batch])
        got = _embed_openai(part, config) if config.provider == "openai" else _embed_gemini(part, config)
        if len(got) != len(part):
            raise EmbeddingError(f"{config.provider} returned {len(got)} vectors for {len(part)} texts")
        vectors.extend(_normalized(vector) for vector in got)
    return vectors


def embed_array(texts: Sequence[str], config: EmbeddingConfig) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Like :func:`embed`, as a float32 matrix (the offline model skips the list conversion)."""
    if config.provider == "offline":
        return offline_model().encode(texts)
    return np.asarray(embed(texts, config), dtype=np.float32)


def vector_literal(vector: Sequence[float] | np.ndarray[Any, Any]) -> str:
    """pgvector's text form, ``[x,y,…]`` (cast with ``::vector`` in SQL)."""
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


def content_hash(text: str) -> bytes:
    """SHA-256 of a chunk's text: the key that skips re-embedding unchanged content."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def _normalized(vector: Sequence[float]) -> Vector:
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    result: Vector = (array / norm).tolist() if norm > 0 else array.tolist()
    return result


# --------------------------------------------------------------------------------------------------
# Providers


def _embed_openai(texts: list[str], config: EmbeddingConfig) -> list[Vector]:
    import openai

    client = openai.OpenAI(
        api_key=config.api_key or "unset",
        base_url=config.base_url,
        timeout=config.timeout_seconds,
        max_retries=0,  # tenacity retries, with jitter and only on retryable errors
    )

    def call() -> list[Vector]:
        kwargs: dict[str, Any] = {"model": config.model, "input": texts}
        if config.dimensions:
            kwargs["dimensions"] = config.dimensions
        response = client.embeddings.create(**kwargs)
        ordered = sorted(response.data, key=lambda item: item.index)
        return [list(item.embedding) for item in ordered]

    return call_with_retries(call, config.max_attempts, error_type=EmbeddingError)


def _embed_gemini(texts: list[str], config: EmbeddingConfig) -> list[Vector]:
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key=config.api_key or "unset",
        http_options=types.HttpOptions(
            base_url=config.base_url,
            timeout=int(config.timeout_seconds * 1000),
            retry_options=None,
        ),
    )

    def call() -> list[Vector]:
        response = client.models.embed_content(
            model=config.model,
            contents=cast(Any, list(texts)),
            config=types.EmbedContentConfig(
                output_dimensionality=config.dimensions or GEMINI_DIMENSIONS,
                task_type="RETRIEVAL_DOCUMENT",
            ),
        )
        return [list(item.values or []) for item in response.embeddings or []]

    return call_with_retries(call, config.max_attempts, error_type=EmbeddingError)


# --------------------------------------------------------------------------------------------------
# Registration: embedding_models row + the model's partial HNSW index

_INSERT_MODEL = """
INSERT INTO embedding_models (name, provider, dimensions) VALUES (%(name)s, %(provider)s, %(dimensions)s)
ON CONFLICT (name) DO NOTHING
"""
_SELECT_MODEL = "SELECT name, provider, dimensions, index_name FROM embedding_models WHERE name = %(name)s"
_SET_INDEX_NAME = "UPDATE embedding_models SET index_name = %(index_name)s WHERE name = %(name)s"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    provider: str
    dimensions: int
    index_name: str | None


def index_name_for(name: str) -> str:
    """A stable, valid identifier for a model's partial HNSW index."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"knowledge_chunks_hnsw_{digest}"


def register_model(
    conn: psycopg.Connection[Any], name: str, provider: str, dimensions: int, *, concurrently: bool = False
) -> RegisteredModel:
    """Insert ``name`` into embedding_models (if new) and make sure its partial HNSW index exists.

    The index is ``USING hnsw ((embedding::vector(D)) vector_cosine_ops) WHERE embedding_model =
    '<name>'`` (m=16, ef_construction=64). Idempotent. A name registered earlier with other
    dimensions raises :class:`EmbeddingError` (vectors of one model all have one size).
    ``concurrently=True`` (needs an autocommit connection) builds the index without blocking writes,
    for a model registered on a live table (``chatmill reembed``).
    """
    if not 1 <= dimensions <= MAX_HNSW_DIMENSIONS:
        raise EmbeddingError(f"{name}: {dimensions} dimensions; HNSW indexes at most {MAX_HNSW_DIMENSIONS}")
    conn.execute(_INSERT_MODEL, {"name": name, "provider": provider, "dimensions": dimensions})
    row = conn.execute(_SELECT_MODEL, {"name": name}).fetchone()
    assert row is not None
    stored = _as_model(row)
    if stored.dimensions != dimensions:
        raise EmbeddingError(f"{name} is registered with {stored.dimensions} dimensions, not {dimensions}")
    index = index_name_for(name)
    statement = sql.SQL(
        "CREATE INDEX {concurrently} IF NOT EXISTS {index} ON knowledge_chunks "
        "USING hnsw ((embedding::vector({dims})) vector_cosine_ops) WITH (m = 16, ef_construction = 64) "
        "WHERE embedding_model = {name}"
    ).format(
        concurrently=sql.SQL("CONCURRENTLY" if concurrently else ""),
        index=sql.Identifier(index),
        dims=sql.Literal(dimensions),
        name=sql.Literal(name),
    )
    conn.execute(statement)
    if stored.index_name != index:
        conn.execute(_SET_INDEX_NAME, {"name": name, "index_name": index})
    return RegisteredModel(name=name, provider=provider, dimensions=dimensions, index_name=index)


def registered_model(conn: psycopg.Connection[Any], name: str) -> RegisteredModel | None:
    row = conn.execute(_SELECT_MODEL, {"name": name}).fetchone()
    return _as_model(row) if row is not None else None


def ensure_model(conn: psycopg.Connection[Any], config: EmbeddingConfig) -> RegisteredModel:
    """Register the configured model (asking the provider for its size when it is not known)."""
    name = model_name(config)
    existing = registered_model(conn, name)
    if existing is not None and existing.index_name is not None:
        return existing
    dimensions = model_dimensions(config) or len(embed(["dimension probe"], config)[0])
    return register_model(conn, name, config.provider, dimensions)


def _as_model(row: Any) -> RegisteredModel:
    if isinstance(row, dict):
        return RegisteredModel(row["name"], row["provider"], int(row["dimensions"]), row["index_name"])
    return RegisteredModel(row[0], row[1], int(row[2]), row[3])
