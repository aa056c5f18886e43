"""``/api/leads``: the prospects the assistant captured, listed (newest first) and exported as CSV.

Filters (both endpoints): ``chatbot_id``, ``status``, ``since`` / ``until`` (created_at, with zone)
and ``q`` (case-insensitive substring of name, email, phone or company). The export streams every
matching lead (up to 100,000 rows) as UTF-8 CSV; cells that a spreadsheet would run as a formula
(starting with ``=``, ``+``, ``-``, ``@``, tab or CR) are prefixed with ``'``.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal

from psycopg import sql
from pydantic import AwareDatetime, BaseModel, Field
from starlette.responses import StreamingResponse

from chatmill.errors import NotFound
from management_api.chatbots import ensure_chatbot
from management_api.db import all_rows, connection
from management_api.endpoints import Context, Operation
from management_api.pagination import Page, PageQuery, decode_cursor, encode_cursor

EXPORT_LIMIT = 100_000
LeadStatus = Literal["new", "contacted", "qualified", "won", "lost"]
CSV_COLUMNS = (
    "id",
    "created_at",
    "chatbot_id",
    "status",
    "name",
    "phone",
    "email",
    "company",
    "interest",
    "notes",
)


class Lead(BaseModel):
    id: uuid.UUID
    chatbot_id: uuid.UUID
    conversation_id: uuid.UUID | None
    contact_id: uuid.UUID | None
    name: str | None
    phone: str | None
    email: str | None
    company: str | None
    interest: str | None
    notes: str | None
    status: LeadStatus
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class LeadFilters(BaseModel):
    chatbot_id: uuid.UUID | None = None
    status: LeadStatus | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    q: str | None = Field(
        default=None, min_length=1, max_length=200, description="search name/email/phone/company"
    )


class LeadQuery(LeadFilters, PageQuery):
    pass


_COLUMNS = sql.SQL(
    "id, chatbot_id, conversation_id, contact_id, name, phone, email, company, interest, notes, status, data,"
    " created_at, updated_at"
)


def _where(filters: LeadFilters, params: dict[str, Any]) -> list[sql.Composable]:
    where: list[sql.Composable] = [sql.SQL("organization_id = %(organization_id)s")]
    if filters.chatbot_id is not None:
        where.append(sql.SQL("chatbot_id = %(chatbot_id)s"))
        params["chatbot_id"] = filters.chatbot_id
    if filters.status is not None:
        where.append(sql.SQL("status = %(status)s"))
        params["status"] = filters.status
    if filters.since is not None:
        where.append(sql.SQL("created_at >= %(since)s"))
        params["since"] = filters.since
    if filters.until is not None:
        where.append(sql.SQL("created_at < %(until)s"))
        params["until"] = filters.until
    if filters.q is not None:
        where.append(
            sql.SQL("(name ILIKE %(q)s OR email ILIKE %(q)s OR phone ILIKE %(q)s OR company ILIKE %(q)s)")
        )
        escaped = filters.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["q"] = f"%{escaped}%"
    return where


async def _check_chatbot(ctx: Context, filters: LeadFilters) -> None:
    if filters.chatbot_id is not None:
        async with connection(ctx.resources) as conn:
            try:
                await ensure_chatbot(conn, ctx.org, filters.chatbot_id)
            except NotFound:
                raise NotFound("chatbot not found") from None


async def list_leads(ctx: Context) -> Page[Lead]:
    query = ctx.query(LeadQuery)
    await _check_chatbot(ctx, query)
    params: dict[str, Any] = {"organization_id": ctx.org, "limit": query.limit + 1}
    where = _where(query, params)
    if query.cursor:
        after_t, after_id = decode_cursor("leads", query.cursor, (datetime, uuid.UUID))
        where.append(sql.SQL("(created_at, id) < (%(after_t)s, %(after_id)s)"))
        params |= {"after_t": after_t, "after_id": after_id}
    statement = sql.SQL(
        "SELECT {} FROM leads WHERE {} ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
    ).format(_COLUMNS, sql.SQL(" AND ").join(where))
    async with connection(ctx.resources) as conn:
        rows = await all_rows(conn, statement, params)
    items = [Lead.model_validate(row) for row in rows[: query.limit]]
    cursor = encode_cursor("leads", items[-1].created_at, items[-1].id) if len(rows) > query.limit else None
    return Page[Lead](items=items, next_cursor=cursor)


def _cell(value: Any) -> str:
    text = "" if value is None else value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _line(values: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().encode()


async def export_leads(ctx: Context) -> StreamingResponse:
    filters = ctx.query(LeadFilters)
    await _check_chatbot(ctx, filters)
    params: dict[str, Any] = {"organization_id": ctx.org, "limit": EXPORT_LIMIT}
    statement = sql.SQL(
        "SELECT {} FROM leads WHERE {} ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
    ).format(
        sql.SQL(", ").join(map(sql.Identifier, CSV_COLUMNS)), sql.SQL(" AND ").join(_where(filters, params))
    )
    resources = ctx.resources

    async def rows() -> AsyncIterator[bytes]:
        yield _line(list(CSV_COLUMNS))
        async with connection(resources) as conn, conn.transaction():
            cursor = conn.cursor(name=f"leads_export_{uuid.uuid4().hex[:8]}")
            async with cursor:
                await cursor.execute(statement, params)
                async for row in cursor:
                    yield _line([_cell(row[column]) for column in CSV_COLUMNS])

    stamp = datetime.now().strftime("%Y%m%d")
    headers = {"Content-Disposition": f'attachment; filename="leads-{stamp}.csv"'}
    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers=headers)


OPERATIONS = [
    Operation("GET", "/api/leads", list_leads, "List leads (newest first, filters)", "leads",
              response=Page[Lead], query=LeadQuery, errors=(404,)),
    Operation("GET", "/api/leads/export", export_leads, "Export leads as CSV (same filters)", "leads",
              query=LeadFilters, media_type="text/csv", errors=(404,)),
]  # fmt: skip
