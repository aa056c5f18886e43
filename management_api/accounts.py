"""Account shapes shared by auth and members: users, organizations, email and password rules.

Password rule (decided here; the issue asks for "a strength rule"): 8 or more characters, at most
72 bytes in UTF-8 (bcrypt's limit — longer passwords are refused, never truncated), at least one
letter and at least one digit or symbol, and not one of a short list of notorious passwords.
Emails are trimmed and lower-cased (the schema stores them lower-case; one account per email).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from chatmill.passwords import MAX_PASSWORD_BYTES

_EMAIL = re.compile(
    r"^[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$"
)
_NOTORIOUS = frozenset(
    {"password1", "password123", "qwerty123", "12345678a", "iloveyou1", "letmein123", "welcome1", "abc12345"}
)


def _normalize_email(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _check_email(value: str) -> str:
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise ValueError("not a valid email address")
    return value


def _check_password(value: str) -> str:
    if len(value.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(f"passwords are limited to {MAX_PASSWORD_BYTES} bytes in UTF-8 (bcrypt's limit)")
    if len(value) < 8:
        raise ValueError("passwords need at least 8 characters")
    if not any(ch.isalpha() for ch in value) or all(ch.isalpha() for ch in value):
        raise ValueError("passwords need at least one letter and at least one digit or symbol")
    if value.lower() in _NOTORIOUS:
        raise ValueError("this password is too common")
    return value


Email = Annotated[
    str,
    BeforeValidator(_normalize_email),
    AfterValidator(_check_email),
    Field(max_length=254, json_schema_extra={"format": "email"}, examples=["ana@example.com"]),
]
NewPassword = Annotated[
    str,
    AfterValidator(_check_password),
    Field(
        min_length=8,
        max_length=MAX_PASSWORD_BYTES,
        description="8+ characters, at most 72 bytes, a letter and a digit or symbol",
        examples=["Bakery-2026!"],
    ),
]
UserRole = Literal["owner", "admin", "agent"]


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    full_name: str | None
    role: UserRole
    created_at: datetime
    last_login_at: datetime | None


class OrganizationOut(BaseModel):
    id: uuid.UUID
    name: str
    billing_tier: str
    timezone: str
    created_at: datetime


USER_COLUMNS = "id, email, full_name, role, created_at, last_login_at"
ORGANIZATION_COLUMNS = "id, name, billing_tier, timezone, created_at"
