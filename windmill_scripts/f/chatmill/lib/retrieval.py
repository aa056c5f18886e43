"""Hybrid retrieval over a chatbot's knowledge: pgvector (cosine) + PostgreSQL full-text, fused by RRF.

    retrieve(conn, organization_id=…, chatbot_id=…, query=…, providers=…) -> list[Hit]
    await retrieve_async(aconn, …)                                      same, on an AsyncConnection

Every query is scoped by ``organization_id`` AND ``chatbot_id`` (a chatbot id of another
organization finds nothing). The chatbot row supplies the embedding model, the text-search
configuration (``text_search_config``), ``retrieval_top_k`` and ``retrieval_min_score``.

One SQL statement does the work (``_HYBRID_SQL``):
- vector candidates: the chatbot's chunks nearest to the query vector by cosine distance,
- text candidates: ``websearch_to_tsquery`` over the chunk ``tsv`` with the chatbot's regconfig,
  the question's words joined with ``or`` (a question's words are rarely all in one chunk),
  ranked by ``ts_rank_cd``,
- reciprocal rank fusion ``sum(1 / (60 + rank))`` over both lists, then top-k with the chunk's
  source and document for citations.

Threshold: a hit is kept when it matched the full-text query or its cosine similarity reaches
``min_similarity`` (the chatbot's ``retrieval_min_score``; 0, the default, keeps every vector
candidate).

Exact scan or index (:func:`plan_scan`): one HNSW index per model holds every chatbot's chunks, so
an index scan filtered to one chatbot sees only ``ef_search × share`` of its rows. Therefore:

- a chatbot with at most ``exact_max_rows`` chunks of its model is scanned exactly (a few ms);
- a larger one gets a **dedicated partial HNSW index** (``… WHERE embedding_model = '<m>' AND
  chatbot_id = '<id>'``), built by :func:`maintain_indexes` after ingestion (``CONCURRENTLY`` on an
  autocommit connection), and is searched through it at full recall;
- until that index exists (valid): HNSW on the model's index with an iterative scan where the
  server's pgvector supports it (>= 0.8), else with ``ef_search`` widened to
  ``candidates × 3 / share`` (at most 1000) when the chatbot holds at least ``min_hnsw_share`` of
  the model's rows, else an exact scan.

Chunk counts come from ``knowledge_chunk_stats`` (refreshed by ingestion), so no query counts rows.
``tests/knowledge/test_retrieval_recall.py`` proves recall@10 >= 0.95 at 0.1 %, 1 %, 10 % and
50 % shares, on both index paths.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from f.chatmill.lib.embeddings import embed, vector_literal
from f.chatmill.lib.providers import EmbeddingConfig, ProviderConfig

Mode = Literal["hybrid", "vector", "text"]
ScanKind = Literal["exact", "hnsw", "iterative", "dedicated"]

RRF_K = 60
HNSW_MAX_EF_SEARCH = 1000


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk, with what a citation needs."""

    chunk_id: int
    content: str
    score: float  # RRF score (higher is better)
    similarity: float | None  # cosine similarity when it was a vector candidate
    text_match: bool
    source_id: str
    source_name: str
    document_id: str
    uri: str
    title: str | None
    page: int | None
    heading: str | None
    chunk_index: int

    def citation(self) -> dict[str, Any]:
        """The JSON stored in messages.citations and shown to the customer."""
        return {
            "source_id": self.source_id,
            "source": self.source_name,
            "document_id": self.document_id,
            "uri": self.uri,
            "title": self.title,
            "page": self.page,
            "chunk_id": self.chunk_id,
        }


@dataclass(frozen=True)
class RetrievalTuning:
    """When to scan exactly and how wide to search. Defaults suit tables up to a few million rows."""

    exact_max_rows: int = 20_000
    min_hnsw_share: float = 0.10
    min_candidates: int = 20
    candidates_per_result: int = 4
    max_scan_tuples: int = 40_000  # pgvector >= 0.8 iterative scan budget
    min_ef_search: int = 320  # HNSW candidate list on a chatbot's own index / iterative scans


@dataclass(frozen=True)
class ScanPlan:
    kind: ScanKind
    ef_search: int | None = None
    settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Scope:
    model: str
    dimensions: int
    ts_config: str
    top_k: int
    min_similarity: float
    bot_rows: int
    model_rows: int
    extversion: str
    dedicated: bool


def supports_iterative_scan(extversion: str) -> bool:
    """pgvector 0.8.0 introduced ``hnsw.iterative_scan``."""
    parts = [int(p) for p in re.findall(r"\d+", extversion)[:2]] + [0, 0]
    return (parts[0], parts[1]) >= (0, 8)


def plan_scan(
    *,
    extversion: str,
    bot_rows: int,
    model_rows: int,
    candidates: int,
    tuning: RetrievalTuning,
    dedicated: bool = False,
) -> ScanPlan:
    """Exact scan vs HNSW (see the module docstring). Pure, so every branch is testable anywhere."""
    if bot_rows <= tuning.exact_max_rows or model_rows <= 0:
        return ScanPlan("exact")
    if dedicated:
        ef = max(tuning.min_ef_search, 2 * candidates)
        return ScanPlan("dedicated", ef, {"hnsw.ef_search": str(ef)})
    if supports_iterative_scan(extversion):
        ef = max(tuning.min_ef_search, 2 * candidates)
        return ScanPlan(
            "iterative",
            ef,
            {
                "hnsw.ef_search": str(ef),
                "hnsw.iterative_scan": "relaxed_order",
                "hnsw.max_scan_tuples": str(tuning.max_scan_tuples),
            },
        )
    share = bot_rows / model_rows
    if share < tuning.min_hnsw_share:
        return ScanPlan("exact")
    ef = min(HNSW_MAX_EF_SEARCH, max(tuning.min_ef_search, math.ceil(candidates * 3 / share)))
    return ScanPlan("hnsw", ef, {"hnsw.ef_search": str(ef)})


# --------------------------------------------------------------------------------------------------
# SQL (shared by the sync and async entry points)

_SCOPE_SQL = """
SELECT b.embedding_model AS model, m.dimensions, b.text_search_config::text AS ts_config,
       b.retrieval_top_k AS top_k, b.retrieval_min_score AS min_similarity,
       coalesce((SELECT s.chunk_count FROM knowledge_chunk_stats s
                 WHERE s.chatbot_id = b.id AND s.organization_id = b.organization_id
                   AND s.embedding_model = b.embedding_model), 0) AS bot_rows,
       coalesce((SELECT sum(s.chunk_count) FROM knowledge_chunk_stats s
                 WHERE s.embedding_model = b.embedding_model), 0) AS model_rows,
       coalesce((SELECT extversion FROM pg_extension WHERE extname = 'vector'), '0') AS extversion,
       coalesce((SELECT i.indisvalid FROM pg_index i
                 WHERE i.indexrelid = to_regclass('knowledge_chunks_bot_' || left(encode(sha256(convert_to(
                     b.embedding_model || ':' || b.id::text, 'UTF8')), 'hex'), 16))), false) AS dedicated
FROM chatbots b
LEFT JOIN embedding_models m ON m.name = b.embedding_model
WHERE b.organization_id = %(organization_id)s AND b.id = %(chatbot_id)s AND b.deleted_at IS NULL
"""

# Nearest chunks through the model's (or the chatbot's dedicated) partial HNSW index: model, chatbot
# and dimensions are literals so the planner matches the index expression and predicate.
_VECTOR_INDEX_SQL = """
SELECT id, (embedding::vector({dims})) <=> %(query_vector)s::vector({dims}) AS distance
FROM knowledge_chunks
WHERE embedding_model = {model} AND chatbot_id = {chatbot}::uuid AND organization_id = %(organization_id)s
ORDER BY (embedding::vector({dims})) <=> %(query_vector)s::vector({dims})
LIMIT %(candidates)s
"""

# Exact nearest chunks: the OFFSET 0 fence keeps the index out; the chatbot's rows come through
# the (chatbot_id, embedding_model) btree and every distance is computed.
_VECTOR_EXACT_SQL = """
SELECT id, distance FROM (
    SELECT id, (embedding::vector({dims})) <=> %(query_vector)s::vector({dims}) AS distance
    FROM knowledge_chunks
    WHERE embedding_model = {model} AND organization_id = %(organization_id)s
      AND chatbot_id = %(chatbot_id)s
    OFFSET 0
) AS exact_candidates
ORDER BY distance, id
LIMIT %(candidates)s
"""

_VECTOR_NONE_SQL = "SELECT NULL::bigint AS id, NULL::float8 AS distance WHERE false"

_HYBRID_SQL = """
WITH vector_hits AS (
    SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS rank
    FROM ({vector_candidates}) AS candidates
),
text_hits AS (
    SELECT c.id, row_number() OVER (ORDER BY ts_rank_cd(c.tsv, q.query, 1) DESC, c.id) AS rank
    FROM knowledge_chunks c,
         (SELECT websearch_to_tsquery(%(ts_config)s::regconfig, %(text_query)s) AS query) AS q
    WHERE %(use_text)s AND c.organization_id = %(organization_id)s AND c.chatbot_id = %(chatbot_id)s
      AND c.tsv @@ q.query
    ORDER BY ts_rank_cd(c.tsv, q.query, 1) DESC, c.id
    LIMIT %(candidates)s
),
fused AS MATERIALIZED (
    SELECT id, sum(1.0 / ({rrf_k} + rank)) AS score, min(distance) AS distance,
           bool_or(is_text) AS text_match
    FROM (SELECT id, rank, distance, false AS is_text FROM vector_hits
          UNION ALL
          SELECT id, rank, NULL::float8, true FROM text_hits) AS ranked
    GROUP BY id
),
-- The few fused ids drive the joins (primary-key lookups), whatever the planner thinks of the
-- organization's number of documents and sources.
scored AS MATERIALIZED (
    SELECT c.id, c.content, c.chunk_index, c.metadata, c.document_id, c.source_id, c.organization_id,
           f.score, f.distance, f.text_match
    FROM fused f
    JOIN knowledge_chunks c
      ON c.id = f.id AND c.organization_id = %(organization_id)s AND c.chatbot_id = %(chatbot_id)s
    WHERE f.text_match OR %(min_similarity)s <= 0 OR (1 - f.distance) >= %(min_similarity)s
)
SELECT c.id AS chunk_id, c.content, c.score::float8 AS score,
       CASE WHEN c.distance IS NULL THEN NULL ELSE 1 - c.distance END AS similarity,
       c.text_match, c.chunk_index, c.metadata,
       s.id::text AS source_id, s.name AS source_name, d.id::text AS document_id, d.uri, d.title
FROM scored c
JOIN knowledge_documents d ON d.organization_id = c.organization_id AND d.id = c.document_id
JOIN knowledge_sources s
  ON s.organization_id = c.organization_id AND s.id = c.source_id AND s.deleted_at IS NULL
ORDER BY c.score DESC, c.id
LIMIT %(top_k)s
"""

_STOPWORDS = frozenset(
    """a an and are as at be by can could do does for from have how i if in is it its me my of on or
    our so that the their there this to was we what when where which who why will with would you your
    el la los las un una y o de del en que es por para con como cual cuando donde
    o a os as um uma e de do da em que para com como qual quando onde é
    le la les un une et ou de des du en que est pour avec comment quel quand où
    der die das ein eine und oder von zu ist mit wie was wann wo""".split()  # noqa: SIM905
)
_WORD = re.compile(r"[\w][\w.\-/]*[\w]|[\w]", re.UNICODE)


def text_query(question: str) -> str:
    """The question as a ``websearch_to_tsquery`` OR-query of its meaningful words (no operators)."""
    words: list[str] = []
    for match in _WORD.finditer(question):
        word = match.group(0)
        if word.lower() in _STOPWORDS or word.lower() in {"or", "and"}:
            continue
        if word not in words:
            words.append(word)
    return " or ".join(words[:32])


def _compose(plan: ScanPlan, scope: _Scope, mode: Mode, chatbot_id: uuid.UUID | str) -> sql.Composed:
    if mode == "text" or scope.dimensions <= 0:
        vector: sql.Composable = sql.SQL(_VECTOR_NONE_SQL)
    else:
        template = _VECTOR_EXACT_SQL if plan.kind == "exact" else _VECTOR_INDEX_SQL
        vector = sql.SQL(template).format(
            dims=sql.Literal(scope.dimensions),
            model=sql.Literal(scope.model),
            chatbot=sql.Literal(str(uuid.UUID(str(chatbot_id)))),
        )
    return sql.SQL(_HYBRID_SQL).format(vector_candidates=vector, rrf_k=sql.Literal(RRF_K))


def _scope_params(organization_id: uuid.UUID | str, chatbot_id: uuid.UUID | str) -> dict[str, Any]:
    return {"organization_id": organization_id, "chatbot_id": chatbot_id}


def _scope_of(row: Mapping[str, Any] | None) -> _Scope | None:
    if row is None:
        return None
    return _Scope(
        model=str(row["model"]),
        dimensions=int(row["dimensions"] or 0),
        ts_config=str(row["ts_config"]),
        top_k=int(row["top_k"]),
        min_similarity=float(row["min_similarity"]),
        bot_rows=int(row["bot_rows"]),
        model_rows=int(row["model_rows"]),
        extversion=str(row["extversion"]),
        dedicated=bool(row["dedicated"]),
    )


def embedding_config_for(model: str, providers: ProviderConfig) -> EmbeddingConfig:
    """The embedder that produced vectors tagged ``model`` ('offline', 'openai:x', 'gemini:x')."""
    provider, _, name = model.partition(":")
    if provider == "openai":
        return EmbeddingConfig(
            provider="openai",
            model=name,
            api_key=providers.openai_api_key,
            base_url=providers.openai_base_url,
            timeout_seconds=providers.llm_timeout_seconds,
            max_attempts=providers.max_attempts,
        )
    if provider == "gemini":
        return EmbeddingConfig(
            provider="gemini",
            model=name,
            api_key=providers.gemini_api_key,
            base_url=providers.gemini_base_url,
            timeout_seconds=providers.llm_timeout_seconds,
            max_attempts=providers.max_attempts,
        )
    return EmbeddingConfig()


def _params(
    scope: _Scope,
    *,
    organization_id: uuid.UUID | str,
    chatbot_id: uuid.UUID | str,
    query: str,
    query_vector: str | None,
    top_k: int | None,
    min_similarity: float | None,
    mode: Mode,
    tuning: RetrievalTuning,
) -> tuple[dict[str, Any], int]:
    k = top_k or scope.top_k
    candidates = max(tuning.min_candidates, k * tuning.candidates_per_result)
    words = text_query(query)
    return (
        {
            "organization_id": organization_id,
            "chatbot_id": chatbot_id,
            "query_vector": query_vector,
            "ts_config": scope.ts_config,
            "text_query": words,
            "use_text": mode != "vector" and bool(words),
            "candidates": candidates,
            "min_similarity": scope.min_similarity if min_similarity is None else min_similarity,
            "top_k": k,
        },
        candidates,
    )


def _hits(rows: list[dict[str, Any]]) -> list[Hit]:
    hits = []
    for row in rows:
        metadata = row["metadata"] or {}
        page = metadata.get("page")
        hits.append(
            Hit(
                chunk_id=int(row["chunk_id"]),
                content=row["content"],
                score=float(row["score"]),
                similarity=None if row["similarity"] is None else float(row["similarity"]),
                text_match=bool(row["text_match"]),
                source_id=row["source_id"],
                source_name=row["source_name"],
                document_id=row["document_id"],
                uri=row["uri"],
                title=row["title"],
                page=int(page) if isinstance(page, int | float) else None,
                heading=metadata.get("heading"),
                chunk_index=int(row["chunk_index"]),
            )
        )
    return hits


def retrieve(
    conn: psycopg.Connection[Any],
    *,
    organization_id: uuid.UUID | str,
    chatbot_id: uuid.UUID | str,
    query: str,
    providers: ProviderConfig | None = None,
    query_vector: list[float] | None = None,
    top_k: int | None = None,
    min_similarity: float | None = None,
    mode: Mode = "hybrid",
    tuning: RetrievalTuning | None = None,
) -> list[Hit]:
    """Top-k chunks of one chatbot for ``query``, best first (empty for an unknown chatbot).

    ``providers`` embeds the query with the chatbot's model (offline when omitted);
    ``query_vector`` skips that (benchmarks). ``mode`` 'vector' / 'text' run one side only (tests
    and evaluation). Runs in its own transaction block (``SET LOCAL`` of the HNSW settings).
    """
    tuning = tuning or RetrievalTuning()
    with conn.cursor(row_factory=dict_row) as cur:
        scope = _scope_of(cur.execute(_SCOPE_SQL, _scope_params(organization_id, chatbot_id)).fetchone())
        if scope is None or (not query.strip() and query_vector is None):
            return []
        vector = _query_vector(scope, query, providers, query_vector, mode)
        params, candidates = _params(
            scope,
            organization_id=organization_id,
            chatbot_id=chatbot_id,
            query=query,
            query_vector=vector,
            top_k=top_k,
            min_similarity=min_similarity,
            mode=mode,
            tuning=tuning,
        )
        plan = plan_scan(
            extversion=scope.extversion,
            bot_rows=scope.bot_rows,
            model_rows=scope.model_rows,
            candidates=candidates,
            tuning=tuning,
            dedicated=scope.dedicated,
        )
        with conn.transaction():
            for name, value in plan.settings.items():
                cur.execute("SELECT set_config(%s, %s, true)", (name, value))
            rows = cur.execute(_compose(plan, scope, mode, chatbot_id), params).fetchall()
    return _hits(rows)


async def retrieve_async(
    conn: psycopg.AsyncConnection[Any],
    *,
    organization_id: uuid.UUID | str,
    chatbot_id: uuid.UUID | str,
    query: str,
    providers: ProviderConfig | None = None,
    query_vector: list[float] | None = None,
    top_k: int | None = None,
    min_similarity: float | None = None,
    mode: Mode = "hybrid",
    tuning: RetrievalTuning | None = None,
) -> list[Hit]:
    """:func:`retrieve` on an ``AsyncConnection`` (the same SQL); provider embedding runs in a thread."""
    tuning = tuning or RetrievalTuning()
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_SCOPE_SQL, _scope_params(organization_id, chatbot_id))
        scope = _scope_of(await cur.fetchone())
        if scope is None or (not query.strip() and query_vector is None):
            return []
        vector = await asyncio.to_thread(_query_vector, scope, query, providers, query_vector, mode)
        params, candidates = _params(
            scope,
            organization_id=organization_id,
            chatbot_id=chatbot_id,
            query=query,
            query_vector=vector,
            top_k=top_k,
            min_similarity=min_similarity,
            mode=mode,
            tuning=tuning,
        )
        plan = plan_scan(
            extversion=scope.extversion,
            bot_rows=scope.bot_rows,
            model_rows=scope.model_rows,
            candidates=candidates,
            tuning=tuning,
            dedicated=scope.dedicated,
        )
        async with conn.transaction():
            for name, value in plan.settings.items():
                await cur.execute("SELECT set_config(%s, %s, true)", (name, value))
            await cur.execute(_compose(plan, scope, mode, chatbot_id), params)
            rows = await cur.fetchall()
    return _hits(rows)


def _query_vector(
    scope: _Scope, query: str, providers: ProviderConfig | None, given: list[float] | None, mode: Mode
) -> str | None:
    if mode == "text" or scope.dimensions <= 0:
        return None
    if given is None:
        config = embedding_config_for(scope.model, providers or ProviderConfig())
        given = embed([query], config)[0]
    return vector_literal(given)


def explain(
    conn: psycopg.Connection[Any],
    *,
    organization_id: uuid.UUID | str,
    chatbot_id: uuid.UUID | str,
    query_vector: list[float],
    query: str = "",
    top_k: int = 10,
    tuning: RetrievalTuning | None = None,
) -> tuple[ScanPlan, str]:
    """The scan plan :func:`retrieve` would choose and PostgreSQL's EXPLAIN ANALYZE of its query."""
    tuning = tuning or RetrievalTuning()
    with conn.cursor(row_factory=dict_row) as cur:
        scope = _scope_of(cur.execute(_SCOPE_SQL, _scope_params(organization_id, chatbot_id)).fetchone())
        if scope is None:
            raise LookupError("no such chatbot in this organization")
        params, candidates = _params(
            scope,
            organization_id=organization_id,
            chatbot_id=chatbot_id,
            query=query,
            query_vector=vector_literal(query_vector),
            top_k=top_k,
            min_similarity=None,
            mode="hybrid" if query else "vector",
            tuning=tuning,
        )
        plan = plan_scan(
            extversion=scope.extversion,
            bot_rows=scope.bot_rows,
            model_rows=scope.model_rows,
            candidates=candidates,
            tuning=tuning,
            dedicated=scope.dedicated,
        )
        with conn.transaction():
            for name, value in plan.settings.items():
                cur.execute("SELECT set_config(%s, %s, true)", (name, value))
            statement = sql.SQL("EXPLAIN ANALYZE ") + _compose(
                plan, scope, "hybrid" if query else "vector", chatbot_id
            )
            rows = cur.execute(statement, params).fetchall()
    return plan, "\n".join(str(next(iter(row.values()))) for row in rows)


# --------------------------------------------------------------------------------------------------
# Statistics the planner reads

_REFRESH_STATS_SQL = """
WITH counts AS (
    SELECT embedding_model, count(*) AS n FROM knowledge_chunks
    WHERE organization_id = %(organization_id)s AND chatbot_id = %(chatbot_id)s AND embedding_model IS NOT NULL
    GROUP BY embedding_model
), removed AS (
    DELETE FROM knowledge_chunk_stats s
    WHERE s.organization_id = %(organization_id)s AND s.chatbot_id = %(chatbot_id)s
      AND NOT EXISTS (SELECT 1 FROM counts c WHERE c.embedding_model = s.embedding_model)
)
INSERT INTO knowledge_chunk_stats (organization_id, chatbot_id, embedding_model, chunk_count)
SELECT %(organization_id)s, %(chatbot_id)s, embedding_model, n FROM counts
ON CONFLICT (chatbot_id, embedding_model) DO UPDATE SET chunk_count = excluded.chunk_count, updated_at = now()
"""


def refresh_chunk_stats(
    conn: psycopg.Connection[Any], *, organization_id: uuid.UUID | str, chatbot_id: uuid.UUID | str
) -> None:
    """Recount a chatbot's chunks per model (after ingestion, re-embedding, bulk loads)."""
    conn.execute(_REFRESH_STATS_SQL, {"organization_id": organization_id, "chatbot_id": chatbot_id})


# --------------------------------------------------------------------------------------------------
# Dedicated per-chatbot indexes

_LARGE_CHATBOTS_SQL = """
SELECT s.embedding_model AS model, m.dimensions
FROM knowledge_chunk_stats s JOIN embedding_models m ON m.name = s.embedding_model
WHERE s.organization_id = %(organization_id)s AND s.chatbot_id = %(chatbot_id)s AND s.chunk_count > %(min_rows)s
"""
_INDEX_STATE_SQL = "SELECT i.indisvalid AS valid FROM pg_index i WHERE i.indexrelid = to_regclass(%(name)s)"


def dedicated_index_name(model: str, chatbot_id: uuid.UUID | str) -> str:
    """Name of a chatbot's own partial HNSW index (the scope query computes the same in SQL)."""
    digest = hashlib.sha256(f"{model}:{uuid.UUID(str(chatbot_id))}".encode()).hexdigest()[:16]
    return f"knowledge_chunks_bot_{digest}"


def maintain_indexes(
    conn: psycopg.Connection[Any],
    *,
    organization_id: uuid.UUID | str,
    chatbot_id: uuid.UUID | str,
    tuning: RetrievalTuning | None = None,
) -> list[str]:
    """Give a chatbot with more than ``exact_max_rows`` chunks of a model its own HNSW index.

    Built ``CONCURRENTLY`` when ``conn`` is in autocommit mode (writes go on meanwhile); an invalid
    leftover of an interrupted build is dropped and rebuilt. Returns the names of indexes built.
    """
    tuning = tuning or RetrievalTuning()
    built: list[str] = []
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _LARGE_CHATBOTS_SQL,
            {"organization_id": organization_id, "chatbot_id": chatbot_id, "min_rows": tuning.exact_max_rows},
        ).fetchall()
        for row in rows:
            name = dedicated_index_name(row["model"], chatbot_id)
            state = cur.execute(_INDEX_STATE_SQL, {"name": name}).fetchone()
            if state is not None and state["valid"]:
                continue
            concurrently = sql.SQL("CONCURRENTLY" if conn.autocommit else "")
            if state is not None:
                cur.execute(sql.SQL("DROP INDEX {} {}").format(concurrently, sql.Identifier(name)))
            cur.execute(
                sql.SQL(
                    "CREATE INDEX {concurrently} {name} ON knowledge_chunks "
                    "USING hnsw ((embedding::vector({dims})) vector_cosine_ops) WITH (m = 16, ef_construction = 64) "
                    "WHERE embedding_model = {model} AND chatbot_id = {chatbot}::uuid"
                ).format(
                    concurrently=concurrently,
                    name=sql.Identifier(name),
                    dims=sql.Literal(int(row["dimensions"])),
                    model=sql.Literal(row["model"]),
                    chatbot=sql.Literal(str(uuid.UUID(str(chatbot_id)))),
                )
            )
            built.append(name)
    return built
