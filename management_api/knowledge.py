"""Knowledge sources of a chatbot: upload a file, add a URL, crawl a site; list, get, re-sync, delete.

Creating a source stores the row (status ``pending``, the job id chosen up front) and then starts
the ``f/chatmill/ingest_source`` flow with that job id (Windmill, or the local runner); the flow
moves the status to processing → ready/failed and fills progress and counts. If the flow backend
cannot be reached the source is marked ``failed`` with the reason and the answer is 503;
``POST …/{source_id}/sync`` starts ingestion again (also for a scheduled-style manual refresh).

Limits (decided here): uploads up to 10 MB of PDF, DOCX, HTML, Markdown, TXT or CSV, recognised by
file extension and checked against the content (PDF/DOCX magic bytes, UTF-8 for text formats);
URLs are http(s) without credentials, and outside development not a literal private/loopback
address (the fetcher re-checks resolved addresses); crawls up to 500 pages and depth 5.
Deleting a source hides it and removes its documents and chunks, so retrieval stops using it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import uuid
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator
from starlette.datastructures import UploadFile
from starlette.requests import Request

from chatmill.errors import NotFound, PayloadTooLarge, ServiceUnavailable, ValidationFailed
from chatmill.flows import INGEST_SOURCE, FlowError, flow_backend
from management_api.chatbots import ensure_chatbot
from management_api.db import Row, all_rows, connection, one
from management_api.endpoints import MANAGERS, Context, Operation, UnsupportedMediaType, read_limited

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
_MULTIPART_OVERHEAD = 64 * 1024
FILE_TYPES: dict[str, str] = {
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".html": "text/html",
    ".htm": "text/html",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".csv": "text/csv",
}
_MAGIC = {".pdf": b"%PDF-", ".docx": b"PK\x03\x04"}


class Source(BaseModel):
    id: uuid.UUID
    chatbot_id: uuid.UUID
    kind: Literal["file", "url", "crawl"]
    name: str
    url: str | None
    file_name: str | None
    content_type: str | None
    byte_size: int | None
    options: dict[str, Any]
    status: Literal["pending", "processing", "ready", "failed"]
    progress_done: int
    progress_total: int
    error: str | None
    document_count: int
    chunk_count: int
    job_id: uuid.UUID | None
    last_synced_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SourceList(BaseModel):
    items: list[Source]


class UploadForm(BaseModel):
    """multipart/form-data: ``file`` (required) and an optional display ``name``."""

    file: str = Field(
        json_schema_extra={"format": "binary"}, description="PDF, DOCX, HTML, MD, TXT or CSV; ≤ 10 MB"
    )
    name: str | None = Field(default=None, max_length=200)


class UrlSource(BaseModel):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"url": "https://example.com/faq"}]},
    }
    url: str = Field(min_length=8, max_length=2048)
    name: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        return check_url(value)


class CrawlSource(UrlSource):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {
            "examples": [
                {
                    "url": "https://example.com/",
                    "max_pages": 50,
                    "max_depth": 2,
                    "exclude_patterns": ["/blog/"],
                }
            ]
        },
    }
    max_pages: int = Field(default=50, ge=1, le=500)
    max_depth: int = Field(default=2, ge=0, le=5)
    include_patterns: list[str] = Field(default_factory=list, max_length=20)
    exclude_patterns: list[str] = Field(default_factory=list, max_length=20)

    @field_validator("include_patterns", "exclude_patterns")
    @classmethod
    def _short(cls, value: list[str]) -> list[str]:
        if any(not pattern or len(pattern) > 200 for pattern in value):
            raise ValueError("patterns are 1 to 200 characters")
        return value


def check_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an http(s) URL with a host is required")
    if parts.username or parts.password:
        raise ValueError("URLs with credentials are not accepted")
    return value.strip()


def _private_literal(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local or address.is_reserved


_COLUMNS = """id, chatbot_id, kind, name, url, file_name, content_type, octet_length(file_content) AS byte_size,
options, status, progress_done, progress_total, error, document_count, chunk_count, job_id, last_synced_at,
created_at, updated_at"""
_INSERT = f"""
INSERT INTO knowledge_sources (organization_id, chatbot_id, kind, name, url, file_name, content_type,
                               file_content, file_sha256, options, job_id)
VALUES (%(organization_id)s, %(chatbot_id)s, %(kind)s, %(name)s, %(url)s, %(file_name)s, %(content_type)s,
        %(file_content)s, %(file_sha256)s, %(options)s, %(job_id)s)
RETURNING {_COLUMNS}
"""
_LIST = f"""
SELECT {_COLUMNS} FROM knowledge_sources
WHERE organization_id = %(organization_id)s AND chatbot_id = %(chatbot_id)s AND deleted_at IS NULL
ORDER BY created_at DESC, id DESC
"""
_GET = f"""
SELECT {_COLUMNS} FROM knowledge_sources
WHERE organization_id = %(organization_id)s AND chatbot_id = %(chatbot_id)s AND id = %(source_id)s
  AND deleted_at IS NULL
"""
_FAILED_TO_START = f"""
UPDATE knowledge_sources SET status = 'failed', error = %(error)s
WHERE organization_id = %(organization_id)s AND id = %(source_id)s RETURNING {_COLUMNS}
"""
_RESTART = f"""
UPDATE knowledge_sources SET status = 'pending', error = NULL, progress_done = 0, progress_total = 0,
    job_id = %(job_id)s
WHERE organization_id = %(organization_id)s AND chatbot_id = %(chatbot_id)s AND id = %(source_id)s
  AND deleted_at IS NULL
RETURNING {_COLUMNS}
"""
_SOFT_DELETE = """
UPDATE knowledge_sources SET deleted_at = now(), sync_interval = NULL, next_sync_at = NULL
WHERE organization_id = %(organization_id)s AND chatbot_id = %(chatbot_id)s AND id = %(source_id)s
  AND deleted_at IS NULL
RETURNING id
"""
_DELETE_DOCUMENTS = """
DELETE FROM knowledge_documents WHERE organization_id = %(organization_id)s AND source_id = %(source_id)s
"""


async def _start(ctx: Context, row: Row) -> Source:
    """Start ingestion for a stored source row; mark it failed (and answer 503) if that is impossible."""
    resources = ctx.resources
    backend = flow_backend(ctx.settings, pool=resources.pool, http=resources.http)
    try:
        await backend.start_flow(INGEST_SOURCE, {"source_id": str(row["id"])}, job_id=row["job_id"])
    except FlowError as exc:
        async with connection(resources) as conn:
            await one(
                conn,
                _FAILED_TO_START,
                {
                    "organization_id": ctx.org,
                    "source_id": row["id"],
                    "error": f"could not start ingestion: {exc}",
                },
            )
        raise ServiceUnavailable("the ingestion service is unavailable; retry with …/sync later") from None
    return Source.model_validate(row)


async def _create(ctx: Context, values: dict[str, Any]) -> Source:
    chatbot_id = ctx.id("chatbot_id")
    if not ctx.settings.is_development and values.get("url") and _private_literal(values["url"]):
        raise ValidationFailed(
            "private and loopback addresses are not allowed",
            details=[{"loc": ["body", "url"], "message": "private address", "type": "url"}],
        )
    defaults = {
        "url": None,
        "file_name": None,
        "content_type": None,
        "file_content": None,
        "file_sha256": None,
    }
    params = (
        defaults | values | {"organization_id": ctx.org, "chatbot_id": chatbot_id, "job_id": uuid.uuid4()}
    )
    params["options"] = json.dumps(params.get("options") or {})
    async with connection(ctx.resources) as conn, conn.transaction():
        await ensure_chatbot(conn, ctx.org, chatbot_id)
        row = await one(conn, _INSERT, params)
    assert row is not None
    return await _start(ctx, row)


async def add_url_source(ctx: Context) -> Source:
    body = ctx.body(UrlSource)
    return await _create(ctx, {"kind": "url", "name": body.name or body.url[:200], "url": body.url})


async def add_crawl_source(ctx: Context) -> Source:
    body = ctx.body(CrawlSource)
    options = body.model_dump(include={"max_pages", "max_depth", "include_patterns", "exclude_patterns"})
    return await _create(
        ctx, {"kind": "crawl", "name": body.name or body.url[:200], "url": body.url, "options": options}
    )


def _upload_problem(message: str) -> ValidationFailed:
    return ValidationFailed(message, details=[{"loc": ["body", "file"], "message": message, "type": "file"}])


async def upload_source(ctx: Context) -> Source:
    request = ctx.request
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType("upload a file as multipart/form-data with a 'file' field")
    await ensure_chatbot_exists(ctx)
    raw = await read_limited(request, MAX_UPLOAD_BYTES + _MULTIPART_OVERHEAD)
    form_request = _replayed(request, raw)
    try:
        async with form_request.form(max_files=1, max_fields=5, max_part_size=64 * 1024) as form:
            upload = form.get("file")
            name = form.get("name")
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise _upload_problem("a 'file' field with a file name is required")
            content = await upload.read(MAX_UPLOAD_BYTES + 1)
            file_name = PurePosixPath(upload.filename.replace("\\", "/")).name[:255].replace("\x00", "")
            if isinstance(name, str):
                name = name.replace("\x00", "")
    except ValidationFailed:
        raise
    except Exception:  # malformed multipart bodies raise starlette/python-multipart errors
        raise _upload_problem("the multipart body could not be parsed") from None
    if len(content) > MAX_UPLOAD_BYTES:
        raise PayloadTooLarge(f"files are limited to {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    suffix = PurePosixPath(file_name.lower()).suffix
    if suffix not in FILE_TYPES:
        raise UnsupportedMediaType(f"unsupported file type; allowed: {', '.join(sorted(FILE_TYPES))}")
    _check_content(suffix, content)
    display = name.strip()[:200] if isinstance(name, str) and name.strip() else file_name
    return await _create(
        ctx,
        {
            "kind": "file",
            "name": display or "upload",
            "file_name": file_name,
            "content_type": FILE_TYPES[suffix],
            "file_content": content,
            "file_sha256": hashlib.sha256(content).digest(),
        },
    )


def _check_content(suffix: str, content: bytes) -> None:
    if not content:
        raise _upload_problem("the file is empty")
    magic = _MAGIC.get(suffix)
    if magic is not None:
        if not content.startswith(magic):
            raise _upload_problem(f"the content is not a {suffix[1:].upper()} file")
        return
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        raise _upload_problem("text files must be UTF-8") from None


def _replayed(request: Request, raw: bytes) -> Request:
    """A request whose body is ``raw`` (already read under the size limit) for form parsing."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request(request.scope, receive)


async def ensure_chatbot_exists(ctx: Context) -> None:
    async with connection(ctx.resources) as conn:
        await ensure_chatbot(conn, ctx.org, ctx.id("chatbot_id"))


async def list_sources(ctx: Context) -> SourceList:
    ids = {"organization_id": ctx.org, "chatbot_id": ctx.id("chatbot_id")}
    async with connection(ctx.resources) as conn:
        await ensure_chatbot(conn, ctx.org, ids["chatbot_id"])
        rows = await all_rows(conn, _LIST, ids)
    return SourceList(items=[Source.model_validate(row) for row in rows])


def _source_ids(ctx: Context) -> dict[str, Any]:
    return {"organization_id": ctx.org, "chatbot_id": ctx.id("chatbot_id"), "source_id": ctx.id("source_id")}


async def get_source(ctx: Context) -> Source:
    async with connection(ctx.resources) as conn:
        row = await one(conn, _GET, _source_ids(ctx))
    if row is None:
        raise NotFound("knowledge source not found")
    return Source.model_validate(row)


async def resync_source(ctx: Context) -> Source:
    async with connection(ctx.resources) as conn:
        row = await one(conn, _RESTART, _source_ids(ctx) | {"job_id": uuid.uuid4()})
    if row is None:
        raise NotFound("knowledge source not found")
    return await _start(ctx, row)


async def delete_source(ctx: Context) -> None:
    ids = _source_ids(ctx)
    async with connection(ctx.resources) as conn, conn.transaction():
        if await one(conn, _SOFT_DELETE, ids) is None:
            raise NotFound("knowledge source not found")
        await conn.execute(_DELETE_DOCUMENTS, ids)


_TAG = "knowledge"
_BASE = "/api/chatbots/{chatbot_id}/knowledge"
OPERATIONS = [
    Operation("POST", f"{_BASE}/upload", upload_source, "Upload a file and start ingesting it", _TAG,
              response=Source, status=201, body=UploadForm, body_kind="multipart", roles=MANAGERS),
    Operation("POST", f"{_BASE}/url", add_url_source, "Add a web page and start ingesting it", _TAG,
              response=Source, status=201, body=UrlSource, roles=MANAGERS),
    Operation("POST", f"{_BASE}/crawl", add_crawl_source, "Crawl a site (bounded) and ingest it", _TAG,
              response=Source, status=201, body=CrawlSource, roles=MANAGERS),
    Operation("GET", _BASE, list_sources, "List knowledge sources with status and progress", _TAG,
              response=SourceList),
    Operation("GET", f"{_BASE}/{{source_id}}", get_source, "Get a knowledge source", _TAG, response=Source),
    Operation("POST", f"{_BASE}/{{source_id}}/sync", resync_source, "Ingest a source again", _TAG,
              response=Source, roles=MANAGERS),
    Operation("DELETE", f"{_BASE}/{{source_id}}", delete_source, "Delete a knowledge source", _TAG,
              status=204, roles=MANAGERS),
]  # fmt: skip
