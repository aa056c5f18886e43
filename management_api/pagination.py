"""Keyset pagination with opaque cursors.

A cursor is the sort key of the last row of a page (for example ``(created_at, id)``), tagged with
the listing it belongs to, JSON-encoded and base64url'd. It carries no filter and no tenant: every
page query still filters by the caller's organization, so a forged cursor can only move the
position inside what the caller may read. A cursor from another listing, or garbage, is a 422.

Timestamps keep microseconds (PostgreSQL's precision), so no two rows collapse onto one key.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from chatmill.errors import ValidationFailed

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="pass as `cursor` to get the next page; null on the last page", examples=[None]
    )


class PageQuery(BaseModel):
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="page size")
    cursor: str | None = Field(default=None, max_length=512, description="`next_cursor` of the previous page")


def encode_cursor(kind: str, *values: datetime | uuid.UUID | str | None) -> str:
    parts = [value.isoformat() if isinstance(value, datetime) else value for value in values]
    raw = json.dumps(
        {"k": kind, "v": [str(p) if p is not None else None for p in parts]}, separators=(",", ":")
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _invalid() -> ValidationFailed:
    return ValidationFailed(
        "invalid cursor; use a next_cursor returned by this listing",
        details=[{"loc": ["query", "cursor"], "message": "invalid cursor", "type": "cursor"}],
    )


def decode_cursor(kind: str, cursor: str, types: tuple[type, ...]) -> list[Any]:
    """The cursor's values converted to ``types`` (datetime, uuid.UUID or str; None kept)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise _invalid() from None
    if not isinstance(data, dict) or data.get("k") != kind:
        raise _invalid()
    values = data.get("v")
    if not isinstance(values, list) or len(values) != len(types):
        raise _invalid()
    converted: list[Any] = []
    for value, target in zip(values, types, strict=True):
        if value is None:
            converted.append(None)
            continue
        if not isinstance(value, str):
            raise _invalid()
        try:
            if target is datetime:
                parsed = datetime.fromisoformat(value)
                if parsed.tzinfo is None:
                    raise ValueError("naive timestamp")
                converted.append(parsed)
            elif target is uuid.UUID:
                converted.append(uuid.UUID(value))
            else:
                converted.append(value)
        except ValueError:
            raise _invalid() from None
    return converted
