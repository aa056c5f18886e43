"""``/api/auth``: register, login, me, refresh, logout.

- register creates an organization and its owner and logs the owner in (201); a taken email is 409.
- login answers the same 401 for an unknown email and a wrong password, and runs bcrypt in both
  cases (against a dummy hash for unknown emails) so the timing does not reveal accounts.
- login is limited per email (10 attempts a minute: the 11th answers 429) and per IP; register
  per email and per IP (see :mod:`management_api.ratelimit`).
- access tokens are JWTs (24 h); refresh tokens rotate (see :mod:`management_api.sessions`).
- logout deny-lists the access token until it expires and ends the login's refresh family
  (``all_sessions`` ends every login of the user).
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from datetime import datetime
from typing import Any

from psycopg import errors as pg_errors
from pydantic import BaseModel, Field
from starlette.requests import Request

from chatmill.errors import Conflict, NotFound, Unauthorized
from chatmill.passwords import hash_password, verify_password
from management_api import ratelimit, sessions
from management_api.accounts import (
    ORGANIZATION_COLUMNS,
    USER_COLUMNS,
    Email,
    NewPassword,
    OrganizationOut,
    UserOut,
)
from management_api.db import Row, connection, fetch_one, one
from management_api.endpoints import EVERYONE, Context, Operation
from management_api.security import issue_access_token, revoked_key


class RegisterRequest(BaseModel):
    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "email": "ana@sunrise-bakery.example",
                    "password": "Bakery-2026!",
                    "full_name": "Ana Lima",
                    "organization_name": "Sunrise Bakery",
                }
            ]
        }
    }
    email: Email
    password: NewPassword
    full_name: str | None = Field(default=None, max_length=200)
    organization_name: str = Field(min_length=1, max_length=200)


class LoginRequest(BaseModel):
    model_config = {
        "json_schema_extra": {
            "examples": [{"email": "ana@sunrise-bakery.example", "password": "Bakery-2026!"}]
        }
    }
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"refresh_token": "q1Z…"}]}}
    refresh_token: str = Field(min_length=1, max_length=256)


class LogoutRequest(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"refresh_token": "q1Z…", "all_sessions": False}]}}
    refresh_token: str | None = Field(default=None, min_length=1, max_length=256)
    all_sessions: bool = False


class Session(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_token: str = Field(description="shown once; each use returns a new one")
    refresh_expires_at: datetime
    user: UserOut
    organization: OrganizationOut


class Me(BaseModel):
    user: UserOut
    organization: OrganizationOut


_USER_BY_EMAIL = """
SELECT u.id, u.organization_id, u.password_hash, u.is_active
FROM users u JOIN organizations o ON o.id = u.organization_id
WHERE u.email = %(email)s AND o.deleted_at IS NULL
"""
_EMAIL_TAKEN = "SELECT 1 FROM users WHERE email = %(email)s"
_CREATE_ORGANIZATION = f"INSERT INTO organizations (name) VALUES (%(name)s) RETURNING {ORGANIZATION_COLUMNS}"
_CREATE_OWNER = f"""
INSERT INTO users (organization_id, email, password_hash, full_name, role)
VALUES (%(organization_id)s, %(email)s, %(password_hash)s, %(full_name)s, 'owner')
RETURNING {USER_COLUMNS}
"""
_TOUCH_LOGIN = f"""
UPDATE users SET last_login_at = now() WHERE id = %(id)s AND organization_id = %(organization_id)s
RETURNING {USER_COLUMNS}
"""
_USER = f"SELECT {USER_COLUMNS} FROM users WHERE id = %(id)s AND organization_id = %(organization_id)s"
_ORGANIZATION = f"SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE id = %(organization_id)s"


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash of a random password at the real cost, checked when the email is unknown."""
    return hash_password(secrets.token_urlsafe(24))


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _session(settings: Any, user: Row, organization: Row, refresh: sessions.IssuedRefresh) -> Session:
    token, _ = issue_access_token(
        settings, user_id=user["id"], organization_id=organization["id"], role=user["role"]
    )
    return Session(
        access_token=token,
        expires_in=settings.jwt_ttl_seconds,
        refresh_token=refresh.token,
        refresh_expires_at=refresh.expires_at,
        user=UserOut.model_validate(user),
        organization=OrganizationOut.model_validate(organization),
    )


async def register(ctx: Context) -> Session:
    body = ctx.body(RegisterRequest)
    redis = ctx.resources.redis
    await ratelimit.hit(redis, ratelimit.REGISTER_PER_IP, client_ip(ctx.request))
    await ratelimit.hit(redis, ratelimit.REGISTER_PER_EMAIL, body.email)
    if await fetch_one(ctx.resources, _EMAIL_TAKEN, {"email": body.email}):
        raise Conflict("an account with this email already exists")
    password_hash = await asyncio.to_thread(hash_password, body.password)
    try:
        async with connection(ctx.resources) as conn, conn.transaction():
            organization = await one(conn, _CREATE_ORGANIZATION, {"name": body.organization_name})
            assert organization is not None
            user = await one(
                conn,
                _CREATE_OWNER,
                {
                    "organization_id": organization["id"],
                    "email": body.email,
                    "password_hash": password_hash,
                    "full_name": body.full_name,
                },
            )
            assert user is not None
            refresh = await sessions.issue(conn, organization_id=organization["id"], user_id=user["id"])
    except pg_errors.UniqueViolation:
        raise Conflict("an account with this email already exists") from None
    return _session(ctx.settings, user, organization, refresh)


async def login(ctx: Context) -> Session:
    body = ctx.body(LoginRequest)
    email = body.email.strip().lower()
    redis = ctx.resources.redis
    await ratelimit.hit(redis, ratelimit.LOGIN_PER_IP, client_ip(ctx.request))
    await ratelimit.hit(redis, ratelimit.LOGIN_PER_EMAIL, email)
    found = await fetch_one(ctx.resources, _USER_BY_EMAIL, {"email": email})
    stored = found["password_hash"] if found is not None else _dummy_hash()
    matches = await asyncio.to_thread(verify_password, body.password, stored)
    if found is None or not matches or not found["is_active"]:
        raise Unauthorized("wrong email or password")
    async with connection(ctx.resources) as conn, conn.transaction():
        user = await one(conn, _TOUCH_LOGIN, found)
        organization = await one(conn, _ORGANIZATION, {"organization_id": found["organization_id"]})
        assert user is not None
        assert organization is not None
        refresh = await sessions.issue(conn, organization_id=organization["id"], user_id=user["id"])
    return _session(ctx.settings, user, organization, refresh)


async def me(ctx: Context) -> Me:
    ids = {"id": ctx.user.user_id, "organization_id": ctx.org}
    async with connection(ctx.resources) as conn:
        user = await one(conn, _USER, ids)
        organization = await one(conn, _ORGANIZATION, ids)
    if user is None or organization is None:
        raise NotFound("account not found")
    return Me(user=UserOut.model_validate(user), organization=OrganizationOut.model_validate(organization))


async def refresh(ctx: Context) -> Session:
    body = ctx.body(RefreshRequest)
    await ratelimit.hit(ctx.resources.redis, ratelimit.REFRESH_PER_IP, client_ip(ctx.request))
    row, successor = await sessions.rotate(ctx.resources, body.refresh_token)
    ids = {"id": row["user_id"], "organization_id": row["organization_id"]}
    async with connection(ctx.resources) as conn:
        user = await one(conn, _USER, ids)
        organization = await one(conn, _ORGANIZATION, ids)
    if user is None or organization is None:
        raise Unauthorized("the account is disabled")
    return _session(ctx.settings, user, organization, successor)


async def logout(ctx: Context) -> None:
    body = ctx.body(LogoutRequest)
    principal = ctx.user
    remaining = principal.token_expires_at - int(time.time())
    if remaining > 0:
        await ctx.resources.redis.set(revoked_key(principal.token_id), b"1", ex=remaining)
    await sessions.revoke(
        ctx.resources,
        organization_id=principal.organization_id,
        user_id=principal.user_id,
        token=body.refresh_token,
        all_sessions=body.all_sessions,
    )


_TAG = "auth"
OPERATIONS = [
    Operation(
        "POST", "/api/auth/register", register, "Create an organization and its owner", _TAG,
        response=Session, status=201, body=RegisterRequest, roles=None, errors=(409, 429),
    ),
    Operation(
        "POST", "/api/auth/login", login, "Log in with email and password", _TAG,
        response=Session, body=LoginRequest, roles=None, errors=(401, 429),
    ),
    Operation("GET", "/api/auth/me", me, "The caller and their organization", _TAG, response=Me),
    Operation(
        "POST", "/api/auth/refresh", refresh, "Exchange a refresh token for new tokens (rotation)", _TAG,
        response=Session, body=RefreshRequest, roles=None, errors=(401, 429),
    ),
    Operation(
        "POST", "/api/auth/logout", logout, "Revoke the access token and end the login", _TAG,
        status=204, body=LogoutRequest, roles=EVERYONE,
    ),
]  # fmt: skip
