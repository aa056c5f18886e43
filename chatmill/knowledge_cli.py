"""Knowledge commands of the ``chatmill`` CLI.

    chatmill ingest PATH_OR_URL --chatbot ID [--crawl] [--name N] [--max-pages N] [--max-depth N]
    chatmill eval retrieval --set DIR [--k 10] [--json] [--mode hybrid|vector|text]
    chatmill reembed --chatbot ID --model NAME

``ingest`` creates a knowledge source for the chatbot (an uploaded file, one URL, or with
``--crawl`` a whole site) and runs the same ingestion the ``ingest_source`` flow runs, with a
progress bar on stderr. ``eval retrieval`` ingests ``DIR/docs/*`` into a throwaway organization and
chatbot with the configured embedder, asks every question of ``DIR/questions.jsonl`` and prints
recall@1/@5/@10 and MRR (a hit is a retrieved chunk of one of the ``expected`` files), as a table
and as JSON; the throwaway organization is deleted afterwards. ``reembed`` moves a chatbot to
another embedding model ('offline', 'openai:<model>', 'gemini:<model>') while it keeps answering.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from f.chatmill.lib.embeddings import model_name
from f.chatmill.lib.ingestion import ingest_source
from f.chatmill.lib.providers import EmbeddingConfig, ProviderConfig
from f.chatmill.lib.reembedding import ReembedError, reembed_chatbot
from f.chatmill.lib.retrieval import Mode, retrieve
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from chatmill.embedded import embedded_database
from chatmill.migrations import apply_migrations
from chatmill.settings import Settings

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
SUPPORTED_SUFFIXES = {".pdf", ".docx", ".html", ".htm", ".md", ".markdown", ".txt", ".csv"}


def register(commands: Any) -> None:
    """Add ``ingest``, ``eval`` and ``reembed`` to the CLI's subparsers."""
    ingest = commands.add_parser("ingest", help="ingest a file, a URL or (--crawl) a site into a chatbot")
    ingest.add_argument("target", metavar="PATH_OR_URL")
    ingest.add_argument("--chatbot", required=True, help="chatbot id")
    ingest.add_argument("--crawl", action="store_true", help="crawl the whole site of the URL")
    ingest.add_argument("--name", help="source name (default: file name or URL)")
    ingest.add_argument("--max-pages", type=int, default=50)
    ingest.add_argument("--max-depth", type=int, default=3)
    ingest.add_argument("--include", action="append", default=[], help="glob of URL paths to crawl")
    ingest.add_argument("--exclude", action="append", default=[], help="glob of URL paths to skip")
    evaluate = commands.add_parser("eval", help="evaluations")
    kinds = evaluate.add_subparsers(dest="eval_kind", required=True, metavar="KIND")
    retrieval = kinds.add_parser("retrieval", help="recall@1/5/10 and MRR of an evaluation set")
    retrieval.add_argument(
        "--set", dest="eval_set", required=True, type=Path, help="DIR with docs/ and questions.jsonl"
    )
    retrieval.add_argument("--k", type=int, default=10)
    retrieval.add_argument("--json", action="store_true", help="print only the JSON")
    retrieval.add_argument(
        "--mode", choices=["hybrid", "vector", "text"], default="hybrid", help="one side only, to compare"
    )
    reembed = commands.add_parser(
        "reembed", help="move a chatbot to another embedding model, without downtime"
    )
    reembed.add_argument("--chatbot", required=True, help="chatbot id")
    reembed.add_argument("--model", required=True, help="offline | openai:<model> | gemini:<model>")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Dispatch one of this module's commands (called by chatmill.cli)."""
    with embedded_database(settings.chatmill_data_dir, settings.database_url) as database_url:
        apply_migrations(database_url)
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
            providers = ProviderConfig.from_settings(settings)
            if args.command == "ingest":
                return _ingest(conn, providers, args)
            if args.command == "eval":
                return _eval_retrieval(conn, providers, args)
            return _reembed(conn, providers, args)


class ProgressBar:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, label: str, width: int = 30) -> None:
        self.label, self.width = label, width
        self.tty = sys.stderr.isatty()
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        if total <= 0 or done == self._last:
            return
        self._last = done
        filled = int(self.width * done / total)
        line = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}"
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if done >= total else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _chatbot(conn: psycopg.Connection[Any], chatbot_id: str) -> dict[str, Any]:
    try:
        uuid.UUID(chatbot_id)
    except ValueError:
        raise SystemExit(f"chatmill: {chatbot_id!r} is not a chatbot id") from None
    row = conn.execute(
        "SELECT id, organization_id, name, embedding_model FROM chatbots WHERE id = %s AND deleted_at IS NULL",
        (chatbot_id,),
    ).fetchone()
    if row is None:
        raise SystemExit(f"chatmill: no chatbot {chatbot_id}")
    return dict(row)


def _file_source(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SystemExit(f"chatmill: {path} is not a file or a URL")
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        raise SystemExit(f"chatmill: {path} is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    body = path.read_bytes()
    import hashlib

    return {
        "kind": "file",
        "file_name": path.name,
        "content_type": mimetypes.guess_type(path.name)[0],
        "file_content": body,
        "file_sha256": hashlib.sha256(body).digest(),
    }


_INSERT_SOURCE = """
INSERT INTO knowledge_sources (organization_id, chatbot_id, kind, name, url, file_name, content_type, file_content,
                               file_sha256, options)
VALUES (%(organization_id)s, %(chatbot_id)s, %(kind)s, %(name)s, %(url)s, %(file_name)s, %(content_type)s,
        %(file_content)s, %(file_sha256)s, %(options)s)
RETURNING id
"""


def create_source(
    conn: psycopg.Connection[Any], chatbot: dict[str, Any], values: dict[str, Any]
) -> uuid.UUID:
    defaults = {
        "url": None,
        "file_name": None,
        "content_type": None,
        "file_content": None,
        "file_sha256": None,
    }
    row = conn.execute(
        _INSERT_SOURCE,
        defaults
        | values
        | {
            "organization_id": chatbot["organization_id"],
            "chatbot_id": chatbot["id"],
            "options": Jsonb(values.get("options", {})),
        },
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row["id"]))


def _ingest(conn: psycopg.Connection[Any], providers: ProviderConfig, args: argparse.Namespace) -> int:
    chatbot = _chatbot(conn, args.chatbot)
    target: str = args.target
    if target.startswith(("http://", "https://")):
        values: dict[str, Any] = {"kind": "crawl" if args.crawl else "url", "url": target}
        if args.crawl:
            values["options"] = {
                "max_pages": args.max_pages,
                "max_depth": args.max_depth,
                "include": args.include,
                "exclude": args.exclude,
            }
    else:
        values = _file_source(Path(target))
    values["name"] = args.name or (values.get("file_name") or target)
    source_id = create_source(conn, chatbot, values)
    started = time.perf_counter()
    result = ingest_source(conn, source_id, providers, progress=ProgressBar(f"ingesting {values['name']}"))
    elapsed = time.perf_counter() - started
    for warning in result.warnings:
        print(f"  skipped {warning['url']}: {warning['reason']}", file=sys.stderr)
    if result.status != "ready":
        print(f"source {source_id} failed: {result.error}", file=sys.stderr)
        return 1
    print(
        f"source {source_id} ready: {result.documents} document(s), {result.chunks} chunk(s), "
        f"{result.embedded} embedded in {elapsed:.1f} s"
    )
    return 0


@dataclass
class EvalReport:
    questions: int
    recall: dict[int, float]
    mrr: float
    model: str
    chunks: int

    def as_json(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "embedding_model": self.model,
            "chunks": self.chunks,
            **{f"recall@{k}": round(v, 4) for k, v in self.recall.items()},
            "mrr": round(self.mrr, 4),
        }

    def table(self) -> str:
        rows = [
            ("questions", str(self.questions)),
            ("embedding model", self.model),
            ("chunks", str(self.chunks)),
        ]
        rows += [(f"recall@{k}", f"{v:.3f}") for k, v in self.recall.items()]
        rows.append(("MRR", f"{self.mrr:.3f}"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def evaluate_retrieval(
    conn: psycopg.Connection[Any],
    providers: ProviderConfig,
    eval_set: Path,
    *,
    k: int = 10,
    mode: Mode = "hybrid",
) -> EvalReport:
    """Ingest ``eval_set/docs`` into a throwaway chatbot and score ``eval_set/questions.jsonl``."""
    docs = sorted(p for p in (eval_set / "docs").iterdir() if p.suffix.lower() in SUPPORTED_SUFFIXES)
    questions = [
        json.loads(line) for line in (eval_set / "questions.jsonl").read_text().splitlines() if line.strip()
    ]
    if not docs or not questions:
        raise SystemExit(f"chatmill: {eval_set} needs docs/ with files and a non-empty questions.jsonl")
    config: EmbeddingConfig = providers.embedding()
    org = conn.execute(
        "INSERT INTO organizations (name) VALUES ('retrieval evaluation (temporary)') RETURNING id"
    ).fetchone()
    assert org is not None
    try:
        bot = conn.execute(
            "INSERT INTO chatbots (organization_id, name, embedding_model) VALUES (%s, 'evaluation', %s) RETURNING *",
            (org["id"], model_name(config)),
        ).fetchone()
        assert bot is not None
        bar = ProgressBar("ingesting evaluation set")
        chunks = 0
        for done, path in enumerate(docs, start=1):
            source_id = create_source(conn, bot, _file_source(path) | {"name": path.name})
            result = ingest_source(conn, source_id, providers)
            if result.status != "ready":
                raise SystemExit(f"chatmill: {path.name} failed to ingest: {result.error}")
            chunks += result.chunks
            bar(done, len(docs))
        ks = sorted({1, 5, min(10, k), k})
        found = dict.fromkeys(ks, 0)
        reciprocal = 0.0
        for item in questions:
            expected = set(item["expected"])
            hits = retrieve(
                conn,
                organization_id=org["id"],
                chatbot_id=bot["id"],
                query=item["question"],
                providers=providers,
                top_k=max(ks),
                mode=mode,
            )
            ranks = [rank for rank, hit in enumerate(hits, start=1) if hit.uri in expected]
            first = ranks[0] if ranks else None
            for cutoff in ks:
                found[cutoff] += int(first is not None and first <= cutoff)
            reciprocal += 1.0 / first if first else 0.0
        n = len(questions)
        return EvalReport(n, {c: found[c] / n for c in ks}, reciprocal / n, model_name(config), chunks)
    finally:
        conn.execute("DELETE FROM organizations WHERE id = %s", (org["id"],))


def _eval_retrieval(
    conn: psycopg.Connection[Any], providers: ProviderConfig, args: argparse.Namespace
) -> int:
    report = evaluate_retrieval(conn, providers, args.eval_set, k=args.k, mode=args.mode)
    if not args.json:
        print(report.table())
    print(json.dumps(report.as_json()))
    return 0


def _reembed(conn: psycopg.Connection[Any], providers: ProviderConfig, args: argparse.Namespace) -> int:
    chatbot = _chatbot(conn, args.chatbot)
    provider, _, name = str(args.model).partition(":")
    if provider == "offline":
        target = EmbeddingConfig()
    elif provider in {"openai", "gemini"} and name:
        base = ProviderConfig(**{**providers.__dict__, "embedding_provider": provider}).embedding()
        target = EmbeddingConfig(**{**base.__dict__, "model": name})
    else:
        raise SystemExit("chatmill: --model is 'offline', 'openai:<model>' or 'gemini:<model>'")
    if chatbot["embedding_model"] == model_name(target):
        print(f"chatbot {chatbot['id']} already uses {model_name(target)}")
        return 0
    try:
        outcome = reembed_chatbot(
            conn,
            organization_id=chatbot["organization_id"],
            chatbot_id=chatbot["id"],
            target=target,
            progress=ProgressBar(f"re-embedding with {model_name(target)}"),
        )
    except ReembedError as exc:
        print(f"chatmill: {exc}", file=sys.stderr)
        return 1
    print(f"chatbot {chatbot['id']} now uses {outcome['model']} ({outcome['chunks']} chunks re-embedded)")
    return 0
