"""Ingestion throughput with the offline embedder: chunks per second, end to end.

    .venv/bin/python bench/knowledge/ingest_throughput.py [--documents 60] [--sections 25]

Generates Markdown documents (headings and paragraphs of varied prose), stores them as uploaded-file
sources of one chatbot in a fresh database, and runs ``ingest_source`` on each: extraction,
chunking, embedding, upsert. Baselines measured in the same run: the offline embedder alone on the
same chunk texts (embeddings/s), and a second ingestion of the unchanged sources (nothing to embed).
Target: >= 200 chunks/s. Writes ``bench/results/ingest_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from f.chatmill.lib.embeddings import embed
from f.chatmill.lib.ingestion import ingest_source
from f.chatmill.lib.providers import EmbeddingConfig, ProviderConfig
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from chatmill.embedded import EmbeddedPostgres
from chatmill.migrations import apply_migrations

RESULTS = Path(__file__).resolve().parents[1] / "results"
WORDS = [
    "bread",
    "cake",
    "delivery",
    "order",
    "price",
    "shop",
    "open",
    "close",
    "morning",
    "evening",
    "customer",
    "flour",
    "butter",
    "oven",
    "fresh",
    "weekend",
    "holiday",
    "payment",
    "card",
    "cash",
    "invoice",
    "allergy",
    "gluten",
    "vegan",
    "sugar",
    "chocolate",
    "coffee",
    "table",
    "seat",
    "reservation",
    "group",
    "event",
    "wedding",
    "birthday",
    "pastry",
    "croissant",
    "baguette",
    "sourdough",
    "rye",
    "spelt",
    "seeds",
    "nuts",
    "milk",
    "eggs",
    "box",
    "gift",
    "voucher",
    "refund",
    "return",
    "policy",
    "parking",
    "street",
    "market",
    "city",
    "village",
    "bike",
    "van",
    "driver",
]


def _document(rng: np.random.Generator, index: int, sections: int) -> str:
    parts = [f"# Handbook {index}"]
    for s in range(sections):
        parts.append(f"## Topic {index}.{s} {' '.join(rng.choice(WORDS, 2))}")
        for _ in range(3):
            sentences = [
                " ".join(rng.choice(WORDS, int(rng.integers(8, 16)))).capitalize() + "." for _ in range(4)
            ]
            parts.append(" ".join(sentences))
    return "\n\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=60)
    parser.add_argument("--sections", type=int, default=25)
    args = parser.parse_args()
    rng = np.random.default_rng(3)
    documents = [_document(rng, i, args.sections) for i in range(args.documents)]
    server = None
    base = os.environ.get("BENCH_DATABASE_URL")
    if not base:
        workdir = Path(tempfile.mkdtemp(prefix="chatmill-knowledge-bench-"))
        server = EmbeddedPostgres(workdir / "postgres")
        base = server.start()
    name = f"chatmill_bench_{secrets.token_hex(3)}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(base, dbname=name)
    report: dict[str, Any] = {"documents": args.documents}
    try:
        apply_migrations(url)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            org = conn.execute("INSERT INTO organizations (name) VALUES ('bench') RETURNING id").fetchone()[
                "id"
            ]  # type: ignore[index]
            bot = conn.execute(
                "INSERT INTO chatbots (organization_id, name) VALUES (%s, 'bench') RETURNING id", (org,)
            ).fetchone()["id"]  # type: ignore[index]
            sources = [
                conn.execute(
                    "INSERT INTO knowledge_sources (organization_id, chatbot_id, kind, name, file_name, file_content)"
                    " VALUES (%s, %s, 'file', %s, %s, %s) RETURNING id",
                    (org, bot, f"handbook {i}", f"handbook-{i}.md", text.encode()),
                ).fetchone()["id"]  # type: ignore[index]
                for i, text in enumerate(documents)
            ]
            providers = ProviderConfig()
            ingest_source(conn, sources[0], providers)  # warm-up: model load, model registration
            conn.execute("DELETE FROM knowledge_documents WHERE source_id = %s", (sources[0],))
            started = time.perf_counter()
            chunks = sum(ingest_source(conn, source, providers).embedded for source in sources)
            elapsed = time.perf_counter() - started
            report |= {
                "chunks": chunks,
                "seconds": round(elapsed, 2),
                "chunks_per_second": round(chunks / elapsed, 1),
            }
            started = time.perf_counter()
            unchanged = [ingest_source(conn, source, providers) for source in sources]
            again = time.perf_counter() - started
            assert sum(r.embedded for r in unchanged) == 0
            report["reingest_unchanged_chunks_per_second"] = round(chunks / again, 1)
            texts = [row["content"] for row in conn.execute("SELECT content FROM knowledge_chunks")]
            started = time.perf_counter()
            embed(texts, EmbeddingConfig())
            report["baseline_offline_embeddings_per_second"] = round(
                len(texts) / (time.perf_counter() - started), 1
            )
            tokens = conn.execute("SELECT avg(token_count)::int AS t FROM knowledge_chunks").fetchone()
            report["mean_chunk_tokens"] = tokens["t"] if tokens else None
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if server is not None:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest_throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"ingestion: {report['chunks_per_second']} chunks/s (target >= 200)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
