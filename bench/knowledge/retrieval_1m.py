"""Hybrid retrieval on 1,000,000 chunks (384 dimensions): latency p50/p99 and recall@10 per share.

    .venv/bin/python bench/knowledge/retrieval_1m.py                 # embedded PostgreSQL, ~15-30 min
    .venv/bin/python bench/knowledge/retrieval_1m.py --rows 100000   # a quicker run
    BENCH_DATABASE_URL=postgresql://… .venv/bin/python bench/knowledge/retrieval_1m.py

Builds a fresh database (migrations applied), loads random unit vectors with ``COPY … FORMAT
BINARY`` for chatbots holding 0.1 %, 1 %, 10 % and 50 % of the rows (the rest spread over 100
filler chatbots, all one embedding model), builds the model's partial HNSW index, then for each
share runs ``--queries`` hybrid queries (vector + full-text, RRF) through
``f.chatmill.lib.retrieval.retrieve`` and reports latency percentiles and recall@10 of the vector
side against exact search computed with numpy (the baseline measured in the same run). It measures
twice: with the model's index only (what pgvector 0.6 can do without a chatbot index), then after
``maintain_indexes`` gave the large chatbots their own partial index (what ingestion does).

Vectors: ``--data text`` (default) embeds generated texts with the offline model — each text draws
most of its 12 words from one of 2,000 topic vocabularies of 40 real WordPiece words, like a
business's documents — and maps the 256-dimensional vectors to 384 dimensions with a random
orthonormal projection (cosines are preserved exactly). ``--data clustered`` draws isotropic
Gaussian noise around 5,000 random centres; ``--data uniform`` draws uniformly on the sphere, a
pathological case for every approximate index (in 384 dimensions such vectors are nearly
orthogonal, so "nearest" carries almost no structure). Real embeddings sit on a low-dimensional
manifold, which is what the ``text`` data reproduces.
Writes ``bench/results/retrieval_1m.json``. Target: p99 <= 30 ms, recall@10 >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from f.chatmill.lib.embeddings import offline_model, register_model
from f.chatmill.lib.retrieval import explain, maintain_indexes, refresh_chunk_stats, retrieve
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from chatmill.embedded import EmbeddedPostgres
from chatmill.migrations import apply_migrations

MODEL = "bench:random-384"
DIMENSIONS = 384
SHARES = {"0.1%": 0.001, "1%": 0.01, "10%": 0.10, "50%": 0.50}
FILLER_BOTS = 100
VOCABULARY = [f"w{i:05d}" for i in range(30_000)]
RESULTS = Path(__file__).resolve().parents[1] / "results"


CENTRES = 5_000
NOISE = 0.9
_centres: np.ndarray[Any, Any] | None = None


TOPICS = 2_000
TOPIC_WORDS = 40
_topics: np.ndarray[Any, Any] | None = None
_projection: np.ndarray[Any, Any] | None = None
_words: list[str] = []


def _topic_texts(rng: np.random.Generator, rows: int, length: int = 12) -> list[str]:
    """Texts of ``length`` words, ~80 % from one topic's vocabulary, the rest from the whole vocabulary."""
    global _topics, _words
    if _topics is None:
        vocabulary = offline_model().tokenizer.get_vocab()
        _words = sorted(w for w in vocabulary if w.isalpha() and w.islower() and len(w) > 3)
        _topics = rng.integers(0, len(_words), size=(TOPICS, TOPIC_WORDS))
    topic = rng.integers(0, TOPICS, size=rows)
    picks = _topics[topic[:, None], rng.integers(0, TOPIC_WORDS, size=(rows, length))]
    general = rng.random((rows, length)) < 0.2
    picks[general] = rng.integers(0, len(_words), size=int(general.sum()))
    return [" ".join(_words[i] for i in row) for row in picks]


def _project(vectors: np.ndarray[Any, Any], rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """256 → 384 dimensions with orthonormal rows: inner products (cosines) are unchanged."""
    global _projection
    if _projection is None:
        q, _ = np.linalg.qr(rng.standard_normal((DIMENSIONS, vectors.shape[1])))
        _projection = q.T.astype(np.float32)  # (256, 384), orthonormal rows
    projected: np.ndarray[Any, Any] = vectors @ _projection
    return projected


def _sample(
    rng: np.random.Generator, rows: int, data: str, length: int = 12
) -> tuple[np.ndarray[Any, Any], list[str]]:
    """``rows`` unit vectors and their texts."""
    if data == "text":
        texts = _topic_texts(rng, rows, length)
        vectors = np.concatenate(
            [_project(offline_model().encode(texts[i : i + 50_000]), rng) for i in range(0, rows, 50_000)]
        )
        return vectors, texts
    return _unit(rng, rows, data), _texts(rng, rows)


def _unit(rng: np.random.Generator, rows: int, data: str = "clustered") -> np.ndarray[Any, Any]:
    global _centres
    vectors = rng.standard_normal((rows, DIMENSIONS), dtype=np.float32)
    if data == "clustered":
        if _centres is None:
            _centres = rng.standard_normal((CENTRES, DIMENSIONS), dtype=np.float32)
            _centres /= np.linalg.norm(_centres, axis=1, keepdims=True)
        vectors *= NOISE / np.sqrt(DIMENSIONS)
        vectors += _centres[rng.integers(0, CENTRES, size=rows)]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def _texts(rng: np.random.Generator, rows: int) -> list[str]:
    words = rng.integers(0, len(VOCABULARY), size=(rows, 12))
    return [" ".join(VOCABULARY[w] for w in row) for row in words]


def _load(
    conn: psycopg.Connection[Any],
    org: uuid.UUID,
    bot: uuid.UUID,
    vectors: np.ndarray[Any, Any],
    texts: list[str],
) -> None:
    source = conn.execute(
        "INSERT INTO knowledge_sources (organization_id, chatbot_id, kind, name, url) VALUES (%s, %s, 'url', 'bench', 'https://bench.example') RETURNING id",
        (org, bot),
    ).fetchone()
    assert source is not None
    document = conn.execute(
        "INSERT INTO knowledge_documents (organization_id, chatbot_id, source_id, uri, content_hash) VALUES (%s, %s, %s, 'bench', '\\x00') RETURNING id",
        (org, bot, source["id"]),
    ).fetchone()
    assert document is not None
    with conn.cursor().copy(
        "COPY knowledge_chunks (organization_id, chatbot_id, source_id, document_id, chunk_index, content, content_hash,"
        " embedding, embedding_model) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["uuid", "uuid", "uuid", "uuid", "int4", "text", "bytea", "vector", "text"])
        for index, (vector, text) in enumerate(zip(vectors, texts, strict=True)):
            copy.write_row(
                (org, bot, source["id"], document["id"], index, text, secrets.token_bytes(8), vector, MODEL)
            )


def _measure(
    conn: psycopg.Connection[Any],
    org: uuid.UUID,
    bots: dict[str, tuple[uuid.UUID, np.ndarray[Any, Any], list[str]]],
    rng: np.random.Generator,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Hybrid latency and vector recall@10 per share, with the indexes as they are now."""
    shares: dict[str, Any] = {}
    for label, (bot, vectors, texts) in bots.items():
        latencies: list[float] = []
        vector_ms: list[float] = []
        exact_ms: list[float] = []
        found = 0
        for q in range(args.queries + 5):
            vectors_1, texts_1 = _sample(rng, 1, args.data, length=6)
            query = vectors_1[0]
            if args.data == "text":
                words = texts_1[0]
            else:
                words = " ".join(texts[int(rng.integers(0, len(texts)))].split()[:2])
            t0 = time.perf_counter()
            hits = retrieve(
                conn,
                organization_id=org,
                chatbot_id=bot,
                query=f"what about {words}?",
                query_vector=query.tolist(),
                top_k=10,
            )
            elapsed = (time.perf_counter() - t0) * 1000
            assert hits
            t0 = time.perf_counter()
            truth = set(np.argpartition(-(vectors @ query), 10)[:10].tolist())
            numpy_ms = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            vector_hits = retrieve(
                conn,
                organization_id=org,
                chatbot_id=bot,
                query="",
                query_vector=query.tolist(),
                mode="vector",
                top_k=10,
            )
            vector_elapsed = (time.perf_counter() - t0) * 1000
            if q < 5:
                continue  # warm-up
            latencies.append(elapsed)
            vector_ms.append(vector_elapsed)
            exact_ms.append(numpy_ms)
            found += len(truth & {hit.chunk_index for hit in vector_hits})
        plan, text = explain(
            conn, organization_id=org, chatbot_id=bot, query_vector=query.tolist(), query=texts[0]
        )
        if args.explain:
            print(text)
        index = (
            "chatbot index"
            if "knowledge_chunks_bot_" in text
            else "model index"
            if "knowledge_chunks_hnsw_" in text
            else "no index"
        )
        shares[label] = {
            "chatbot_rows": len(vectors),
            "plan": f"{plan.kind} ({index})",
            "ef_search": plan.ef_search,
            "hybrid_p50_ms": round(statistics.median(latencies), 2),
            "hybrid_p99_ms": round(_percentile(latencies, 99), 2),
            "vector_only_p50_ms": round(statistics.median(vector_ms), 2),
            "vector_only_p99_ms": round(_percentile(vector_ms, 99), 2),
            "recall_at_10": round(found / (10 * args.queries), 4),
            "baseline_numpy_exact_p50_ms": round(statistics.median(exact_ms), 2),
        }
        print(f"{label:>5}: {shares[label]}", flush=True)
    return shares


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of one query per share")
    parser.add_argument("--data", choices=["text", "clustered", "uniform"], default="text")
    parser.add_argument(
        "--shared-buffers", default="6GB", help="embedded server only; '' keeps pgserver's 128MB"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="chatmill-knowledge-bench-"))
    server = None
    base = os.environ.get("BENCH_DATABASE_URL")
    if not base:
        server = EmbeddedPostgres(workdir / "postgres")
        base = server.start()
        if args.shared_buffers:  # pgserver starts with 128MB: far below the table's size
            with psycopg.connect(base, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("ALTER SYSTEM SET shared_buffers = {}").format(sql.Literal(args.shared_buffers))
                )
            server.stop()
            server = EmbeddedPostgres(workdir / "postgres")
            base = server.start()
    name = f"chatmill_bench_{secrets.token_hex(3)}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(base, dbname=name)
    report: dict[str, Any] = {
        "rows": args.rows,
        "dimensions": DIMENSIONS,
        "queries_per_share": args.queries,
        "data": args.data,
    }
    try:
        apply_migrations(url)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            register_vector(conn)
            version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            report["pgvector"] = version["extversion"] if version else None
            buffers = conn.execute("SHOW shared_buffers").fetchone()
            report["shared_buffers"] = buffers["shared_buffers"] if buffers else None
            print(f"pgvector {report['pgvector']}, shared_buffers {report['shared_buffers']}", flush=True)
            conn.execute(
                "INSERT INTO embedding_models (name, provider, dimensions) VALUES (%s, 'bench', %s)",
                (MODEL, DIMENSIONS),
            )
            org = conn.execute("INSERT INTO organizations (name) VALUES ('bench') RETURNING id").fetchone()[
                "id"
            ]  # type: ignore[index]
            bots: dict[str, tuple[uuid.UUID, np.ndarray[Any, Any], list[str]]] = {}
            started = time.perf_counter()
            loaded = 0
            for label, share in SHARES.items():
                rows = int(args.rows * share)
                bot = conn.execute(
                    "INSERT INTO chatbots (organization_id, name, embedding_model) VALUES (%s, %s, %s) RETURNING id",
                    (org, f"share {label}", MODEL),
                ).fetchone()["id"]  # type: ignore[index]
                vectors, texts = _sample(rng, rows, args.data)
                _load(conn, org, bot, vectors, texts)
                bots[label] = (bot, vectors, texts)
                loaded += rows
                print(f"loaded {label} chatbot: {rows} rows", flush=True)
            filler = args.rows - loaded
            for i in range(FILLER_BOTS):
                rows = filler // FILLER_BOTS + (1 if i < filler % FILLER_BOTS else 0)
                bot = conn.execute(
                    "INSERT INTO chatbots (organization_id, name, embedding_model) VALUES (%s, %s, %s) RETURNING id",
                    (org, f"filler {i}", MODEL),
                ).fetchone()["id"]  # type: ignore[index]
                _load(conn, org, bot, *_sample(rng, rows, args.data))
            report["load_seconds"] = round(time.perf_counter() - started, 1)
            print(f"loaded {args.rows} rows in {report['load_seconds']} s", flush=True)
            for bot_row in conn.execute("SELECT id FROM chatbots").fetchall():
                refresh_chunk_stats(conn, organization_id=org, chatbot_id=bot_row["id"])
            started = time.perf_counter()
            conn.execute("SET maintenance_work_mem = '4GB'")
            conn.execute("SET max_parallel_maintenance_workers = 2")
            register_model(conn, MODEL, "bench", DIMENSIONS)
            report["index_build_seconds"] = round(time.perf_counter() - started, 1)
            print(f"built the HNSW index in {report['index_build_seconds']} s", flush=True)
            conn.execute("VACUUM ANALYZE knowledge_chunks")
            report["shares_model_index_only"] = _measure(conn, org, bots, rng, args)
            started = time.perf_counter()
            for label, (bot, _, _) in bots.items():
                built = maintain_indexes(conn, organization_id=org, chatbot_id=bot)
                if built:
                    print(
                        f"built the {label} chatbot's own index in {time.perf_counter() - started:.1f} s",
                        flush=True,
                    )
                    started = time.perf_counter()
            conn.execute("ANALYZE knowledge_chunks")
            shares = _measure(conn, org, bots, rng, args)
            report["shares"] = shares
            table = conn.execute(
                "SELECT pg_size_pretty(pg_total_relation_size('knowledge_chunks')) AS size"
            ).fetchone()
            report["table_size"] = table["size"] if table else None
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if server is not None:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retrieval_1m.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    worst = max(s["hybrid_p99_ms"] for s in report["shares"].values())
    recall = min(s["recall_at_10"] for s in report["shares"].values())
    print(f"worst p99 {worst} ms (target <= 30), worst recall@10 {recall} (target >= 0.95)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
