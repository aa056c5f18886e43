"""Ingest one knowledge source: fetch → extract → chunk → embed (new text only) → upsert → mark.

    ingest_source(conn, source_id, providers, …) -> IngestResult

The source row decides what is fetched (``kind``: an uploaded ``file``, one ``url``, or a
``crawl``); the chatbot row decides the embedding model and the text-search configuration.

Upsert by content hash: a document is keyed ``(source_id, uri)``, a chunk ``(document_id,
content_hash)``. Only chunks whose text is new are embedded; unchanged chunks keep their vectors
(their position and metadata are refreshed); chunks whose text disappeared are deleted, and so are
documents that are gone (a page that now answers 404, a page no longer linked). A page that failed
for a passing reason (timeout, 5xx) keeps its previous chunks.

Outcome: the source ends ``ready`` with counts in ``document_count``, ``chunk_count`` and
``last_run`` (documents, chunks, embedded, deleted, warnings per skipped page) or ``failed`` with a
reason in ``error`` — a file that is not what its extension says, an encrypted PDF, an empty
document, a 404, a redirect loop, a crawl where no page could be used. Such outcomes are *returned*
(retrying would not change them); anything unexpected (the database gone, a provider down after its
retries) marks the source failed when it still can and is re-raised, so Windmill retries the step.
``progress_done`` / ``progress_total`` count documents as they are processed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from f.chatmill.lib.chunking import Chunk, chunk_blocks
from f.chatmill.lib.embeddings import content_hash, embed, ensure_model, vector_literal
from f.chatmill.lib.extraction import ExtractionError, extract
from f.chatmill.lib.fetching import CrawlOptions, FetchError, FetchLimits, Page, crawl, fetch_page, new_client
from f.chatmill.lib.providers import ProviderConfig
from f.chatmill.lib.retrieval import embedding_config_for, maintain_indexes, refresh_chunk_stats

_log = logging.getLogger(__name__)
EMBED_BATCH = 64
Progress = Callable[[int, int], None]


class ModelChanged(RuntimeError):
    """``chatmill reembed`` switched the chatbot's model mid-run: retry (Windmill does)."""


class SourceError(Exception):
    """The source cannot be ingested as it is; the message is shown to the business owner."""


@dataclass
class IngestResult:
    source_id: str
    status: str  # ready | failed | skipped
    error: str | None = None
    documents: int = 0
    chunks: int = 0
    embedded: int = 0
    unchanged: int = 0
    deleted: int = 0
    warnings: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _RawDocument:
    uri: str
    body: bytes
    content_type: str | None
    name: str | None


_LOAD_SOURCE = """
SELECT s.id, s.organization_id, s.chatbot_id, s.kind, s.name, s.url, s.file_name, s.content_type,
       s.file_content, s.options, s.deleted_at, b.embedding_model, b.text_search_config::text AS ts_config
FROM knowledge_sources s
JOIN chatbots b ON b.organization_id = s.organization_id AND b.id = s.chatbot_id
WHERE s.id = %(source_id)s
"""
_MARK_PROCESSING = """
UPDATE knowledge_sources SET status = 'processing', error = NULL, progress_done = 0, progress_total = 0
WHERE organization_id = %(organization_id)s AND id = %(source_id)s
"""
_SET_PROGRESS = """
UPDATE knowledge_sources SET progress_done = %(done)s, progress_total = %(total)s
WHERE organization_id = %(organization_id)s AND id = %(source_id)s
"""
_MARK_READY = """
UPDATE knowledge_sources
SET status = 'ready', error = NULL, last_run = %(last_run)s,
    document_count = (SELECT count(*) FROM knowledge_documents d
                      WHERE d.organization_id = %(organization_id)s AND d.source_id = %(source_id)s),
    chunk_count = (SELECT count(*) FROM knowledge_chunks c
                   WHERE c.organization_id = %(organization_id)s AND c.source_id = %(source_id)s),
    progress_done = progress_total, last_synced_at = now(),
    next_sync_at = CASE WHEN sync_interval IS NULL THEN NULL ELSE now() + sync_interval END
WHERE organization_id = %(organization_id)s AND id = %(source_id)s
RETURNING document_count, chunk_count
"""
_MARK_FAILED = """
UPDATE knowledge_sources
SET status = 'failed', error = %(error)s, last_run = %(last_run)s, last_synced_at = now(),
    next_sync_at = CASE WHEN sync_interval IS NULL THEN NULL ELSE now() + sync_interval END
WHERE organization_id = %(organization_id)s AND id = %(source_id)s
"""
_UPSERT_DOCUMENT = """
INSERT INTO knowledge_documents (organization_id, chatbot_id, source_id, uri, title, mime_type, content_hash,
                                 byte_size, metadata, fetched_at)
VALUES (%(organization_id)s, %(chatbot_id)s, %(source_id)s, %(uri)s, %(title)s, %(mime_type)s, %(content_hash)s,
        %(byte_size)s, %(metadata)s, now())
ON CONFLICT (source_id, uri) DO UPDATE
SET title = excluded.title, mime_type = excluded.mime_type, content_hash = excluded.content_hash,
    byte_size = excluded.byte_size, metadata = excluded.metadata, fetched_at = now()
RETURNING id
"""
_EXISTING_CHUNKS = """
SELECT id, content_hash FROM knowledge_chunks
WHERE organization_id = %(organization_id)s AND document_id = %(document_id)s
"""
_DELETE_CHUNKS = """
DELETE FROM knowledge_chunks WHERE organization_id = %(organization_id)s AND id = ANY(%(ids)s)
"""
_UPDATE_CHUNK = """
UPDATE knowledge_chunks SET chunk_index = %(chunk_index)s, metadata = %(metadata)s
WHERE organization_id = %(organization_id)s AND id = %(id)s
  AND (chunk_index IS DISTINCT FROM %(chunk_index)s OR metadata IS DISTINCT FROM %(metadata)s)
"""
_INSERT_CHUNK = """
INSERT INTO knowledge_chunks (organization_id, chatbot_id, source_id, document_id, chunk_index, content,
                              content_hash, token_count, metadata, embedding, embedding_model, ts_config)
VALUES (%(organization_id)s, %(chatbot_id)s, %(source_id)s, %(document_id)s, %(chunk_index)s, %(content)s,
        %(content_hash)s, %(token_count)s, %(metadata)s, %(embedding)s::vector, %(model)s, %(ts_config)s::regconfig)
"""
_DELETE_STALE_DOCUMENTS = """
DELETE FROM knowledge_documents
WHERE organization_id = %(organization_id)s AND source_id = %(source_id)s AND NOT (uri = ANY(%(keep)s))
RETURNING id
"""
_COUNT_DOCUMENT_CHUNKS = """
SELECT count(*) AS n FROM knowledge_chunks
WHERE organization_id = %(organization_id)s AND source_id = %(source_id)s AND NOT (document_id = ANY(%(keep)s))
"""
_LOCK_CHATBOT_MODEL = """
SELECT embedding_model FROM chatbots WHERE organization_id = %(organization_id)s AND id = %(chatbot_id)s FOR SHARE
"""
_RECORD_EMBEDDING_USAGE = """
INSERT INTO usage_monthly (organization_id, period, embedding_tokens)
VALUES (%(organization_id)s, date_trunc('month', now() AT TIME ZONE 'UTC')::date, %(tokens)s)
ON CONFLICT (organization_id, period)
DO UPDATE SET embedding_tokens = usage_monthly.embedding_tokens + excluded.embedding_tokens, updated_at = now()
"""


def ingest_source(
    conn: psycopg.Connection[Any],
    source_id: uuid.UUID | str,
    providers: ProviderConfig | None = None,
    *,
    http: httpx.Client | None = None,
    limits: FetchLimits | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Ingest the source (see the module docstring). ``conn`` should be in autocommit mode."""
    providers = providers or ProviderConfig()
    with conn.cursor(row_factory=dict_row) as cur:
        source = cur.execute(_LOAD_SOURCE, {"source_id": source_id}).fetchone()
    if source is None:
        raise SourceError(f"knowledge source {source_id} does not exist")
    result = IngestResult(source_id=str(source["id"]), status="skipped")
    if source["deleted_at"] is not None:
        result.error = "source was deleted"
        return result
    keys = {"organization_id": source["organization_id"], "source_id": source["id"]}
    lock_key = _lock_key(source["id"])
    row = conn.execute("SELECT pg_try_advisory_lock(%s) AS locked", (lock_key,)).fetchone()
    if not (row and (row["locked"] if isinstance(row, dict) else row[0])):
        result.error = "this source is being ingested by another run"
        return result
    try:
        return _ingest_locked(
            conn, source, keys, providers, result, http=http, limits=limits, progress=progress
        )
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))


def _lock_key(source_id: Any) -> int:
    """A session advisory-lock key per source: one ingestion of a source at a time."""
    return int.from_bytes(uuid.UUID(str(source_id)).bytes[:8], "big", signed=True)


def _ingest_locked(
    conn: psycopg.Connection[Any],
    source: dict[str, Any],
    keys: dict[str, Any],
    providers: ProviderConfig,
    result: IngestResult,
    *,
    http: httpx.Client | None,
    limits: FetchLimits | None,
    progress: Progress | None,
) -> IngestResult:
    conn.execute(_MARK_PROCESSING, keys)
    try:
        _run(conn, source, providers, result, http=http, limits=limits or FetchLimits(), progress=progress)
    except (SourceError, ExtractionError, FetchError) as exc:
        result.status, result.error = "failed", str(exc)
        conn.execute(_MARK_FAILED, keys | {"error": result.error, "last_run": Jsonb(_last_run(result))})
        return result
    except Exception as exc:
        _log.exception("ingestion of source %s failed", source["id"])
        try:
            message = f"internal error ({type(exc).__name__}); the run will be retried"
            conn.execute(_MARK_FAILED, keys | {"error": message, "last_run": Jsonb(_last_run(result))})
        except psycopg.Error:
            pass
        raise
    result.status = "ready"
    row = conn.execute(_MARK_READY, keys | {"last_run": Jsonb(_last_run(result))}).fetchone()
    if row is not None:
        values = list(row.values()) if isinstance(row, dict) else list(row)
        result.documents, result.chunks = int(values[0]), int(values[1])
    return result


def _last_run(result: IngestResult) -> dict[str, Any]:
    data = result.as_dict()
    data.pop("source_id", None)
    return data


def _gather(
    source: dict[str, Any], http: httpx.Client, limits: FetchLimits, result: IngestResult
) -> tuple[list[_RawDocument], set[str]]:
    """The raw documents of the source, and the URIs whose failure is passing (keep their chunks)."""
    kind = source["kind"]
    if kind == "file":
        name = source["file_name"] or source["name"]
        return [_RawDocument(name, bytes(source["file_content"]), source["content_type"], name)], set()
    if kind == "url":
        page = fetch_page(http, source["url"], limits)
        return [_page_document(page)], set()
    options = CrawlOptions.from_json(source["options"])
    crawled = crawl(http, source["url"], options, limits)
    keep = {failure.url for failure in crawled.failures if not failure.permanent}
    for failure in crawled.failures:
        result.warnings.append({"url": failure.url, "reason": failure.reason})
    for url, why in crawled.skipped:
        if why == "disallowed by robots.txt" or why == "over the max_pages limit":
            result.warnings.append({"url": url, "reason": why})
    if not crawled.pages:
        reasons = "; ".join(f"{f.url}: {f.reason}" for f in crawled.failures[:5]) or "no page was allowed"
        raise SourceError(f"the crawl found no usable page ({reasons})")
    return [_page_document(page) for page in crawled.pages], keep


def _page_document(page: Page) -> _RawDocument:
    return _RawDocument(
        page.final_url if page.final_url else page.url, page.body, page.content_type or None, page.final_url
    )


def _run(
    conn: psycopg.Connection[Any],
    source: dict[str, Any],
    providers: ProviderConfig,
    result: IngestResult,
    *,
    http: httpx.Client | None,
    limits: FetchLimits,
    progress: Progress | None,
) -> None:
    keys = {"organization_id": source["organization_id"], "source_id": source["id"]}
    owned_client = http is None
    client = http or new_client(limits)
    try:
        documents, keep_uris = _gather(source, client, limits, result)
    finally:
        if owned_client:
            client.close()
    config = embedding_config_for(source["embedding_model"], providers)
    model = ensure_model(conn, config)
    total = len(documents)
    conn.execute(_SET_PROGRESS, keys | {"done": 0, "total": total})
    if progress:
        progress(0, total)
    kept_uris: list[str] = sorted(keep_uris)
    usable = 0
    for done, raw in enumerate(documents, start=1):
        try:
            extracted = extract(raw.body, name=raw.name, content_type=raw.content_type)
        except ExtractionError as exc:
            if source["kind"] != "crawl":
                raise
            result.warnings.append({"url": raw.uri, "reason": str(exc)})
            continue
        chunks = chunk_blocks(extracted.blocks, title=extracted.title, uri=raw.uri)
        with conn.transaction():
            _store_document(
                conn, source, raw, extracted.title, extracted.format, chunks, model.name, config, result
            )
        kept_uris.append(raw.uri)
        usable += 1
        conn.execute(_SET_PROGRESS, keys | {"done": done, "total": total})
        if progress:
            progress(done, total)
    if usable == 0:
        reasons = "; ".join(f"{w['url']}: {w['reason']}" for w in result.warnings[:5])
        raise SourceError(f"no page had usable text ({reasons})")
    with conn.transaction():
        gone_chunks = conn.execute(
            _COUNT_DOCUMENT_CHUNKS,
            keys | {"keep": _document_ids(conn, source, kept_uris)},
        ).fetchone()
        conn.execute(_DELETE_STALE_DOCUMENTS, keys | {"keep": kept_uris})
    if gone_chunks is not None:
        result.deleted += int(
            next(iter(gone_chunks.values())) if isinstance(gone_chunks, dict) else gone_chunks[0]
        )
    refresh_chunk_stats(conn, organization_id=source["organization_id"], chatbot_id=source["chatbot_id"])
    maintain_indexes(conn, organization_id=source["organization_id"], chatbot_id=source["chatbot_id"])


def _document_ids(conn: psycopg.Connection[Any], source: dict[str, Any], uris: list[str]) -> list[uuid.UUID]:
    rows = conn.execute(
        "SELECT id FROM knowledge_documents WHERE organization_id = %s AND source_id = %s AND uri = ANY(%s)",
        (source["organization_id"], source["id"], uris),
    ).fetchall()
    return [row["id"] if isinstance(row, dict) else row[0] for row in rows]


def _store_document(
    conn: psycopg.Connection[Any],
    source: dict[str, Any],
    raw: _RawDocument,
    title: str | None,
    mime: str,
    chunks: list[Chunk],
    model: str,
    config: Any,
    result: IngestResult,
) -> None:
    base = {
        "organization_id": source["organization_id"],
        "chatbot_id": source["chatbot_id"],
        "source_id": source["id"],
    }
    with conn.cursor(row_factory=dict_row) as cur:
        bot = cur.execute(_LOCK_CHATBOT_MODEL, base).fetchone()
        if bot is None or bot["embedding_model"] != model:
            raise ModelChanged("the chatbot moved to another embedding model during ingestion; run it again")
        document = cur.execute(
            _UPSERT_DOCUMENT,
            base
            | {
                "uri": raw.uri,
                "title": title,
                "mime_type": mime,
                "content_hash": hashlib.sha256(raw.body).digest(),
                "byte_size": len(raw.body),
                "metadata": Jsonb({"chunks": len(chunks)}),
            },
        ).fetchone()
        assert document is not None
        document_id = document["id"]
        existing = {
            bytes(row["content_hash"]): row["id"]
            for row in cur.execute(
                _EXISTING_CHUNKS, {"organization_id": source["organization_id"], "document_id": document_id}
            )
        }
        wanted = [(index, chunk, content_hash(chunk.content)) for index, chunk in enumerate(chunks)]
        wanted_hashes = {digest for _, _, digest in wanted}
        stale = [chunk_id for digest, chunk_id in existing.items() if digest not in wanted_hashes]
        if stale:
            cur.execute(_DELETE_CHUNKS, {"organization_id": source["organization_id"], "ids": stale})
            result.deleted += len(stale)
        fresh = [(index, chunk, digest) for index, chunk, digest in wanted if digest not in existing]
        for index, chunk, digest in wanted:
            if digest in existing:
                cur.execute(
                    _UPDATE_CHUNK,
                    {
                        "organization_id": source["organization_id"],
                        "id": existing[digest],
                        "chunk_index": index,
                        "metadata": Jsonb(chunk.metadata),
                    },
                )
                result.unchanged += 1
        tokens = 0
        for start in range(0, len(fresh), EMBED_BATCH):
            batch = fresh[start : start + EMBED_BATCH]
            vectors = embed([chunk.content for _, chunk, _ in batch], config)
            rows = [
                base
                | {
                    "document_id": document_id,
                    "chunk_index": index,
                    "content": chunk.content,
                    "content_hash": digest,
                    "token_count": chunk.token_count,
                    "metadata": Jsonb(chunk.metadata),
                    "embedding": vector_literal(vector),
                    "model": model,
                    "ts_config": source["ts_config"],
                }
                for (index, chunk, digest), vector in zip(batch, vectors, strict=True)
            ]
            cur.executemany(_INSERT_CHUNK, rows)
            result.embedded += len(batch)
            tokens += sum(chunk.token_count for _, chunk, _ in batch)
        if tokens:
            cur.execute(
                _RECORD_EMBEDDING_USAGE, {"organization_id": source["organization_id"], "tokens": tokens}
            )


_CLAIM_DUE = """
UPDATE knowledge_sources SET next_sync_at = now() + sync_interval
WHERE id IN (
    SELECT id FROM knowledge_sources
    WHERE deleted_at IS NULL AND sync_interval IS NOT NULL AND next_sync_at <= now() AND status <> 'processing'
    ORDER BY next_sync_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id
"""


def claim_due_sources(conn: psycopg.Connection[Any], *, limit: int = 20) -> list[uuid.UUID]:
    """Sources whose scheduled re-sync is due, claimed by moving their ``next_sync_at`` forward.

    A platform query (the re-sync schedule serves every organization); each claimed source is then
    ingested with its own organization's scope. SKIP LOCKED: overlapping runs never share a source.
    """
    rows = conn.execute(_CLAIM_DUE, {"limit": limit}).fetchall()
    return [row["id"] if isinstance(row, dict) else row[0] for row in rows]
