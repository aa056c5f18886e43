"""Rotating refresh tokens (table ``refresh_tokens``).

A refresh token is 32 random bytes (base64url), shown once; only its SHA-256 is stored. Each use
marks it used and issues a successor in the same *family* (one family per login). Presenting a
token that was already used means someone holds a copy: the whole family is revoked, so both the
thief and the user must log in again. Tokens live 30 days; logout revokes the family.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from chatmill.errors import Unauthorized
from chatmill.resources import Resources
from management_api.db import Conn, Row, connection, one

REFRESH_TTL = timedelta(days=30)

_INSERT = """
INSERT INTO refresh_tokens (organization_id, user_id, family_id, token_hash, expires_at)
VALUES (%(organization_id)s, %(user_id)s, %(family_id)s, %(token_hash)s, %(expires_at)s)
"""
_LOCK = """
SELECT rt.id, rt.organization_id, rt.user_id, rt.family_id, rt.expires_at, rt.used_at, rt.revoked_at,
       u.role, u.is_active
FROM refresh_tokens rt
JOIN users u ON u.organization_id = rt.organization_id AND u.id = rt.user_id
WHERE rt.token_hash = %(token_hash)s
FOR UPDATE OF rt
"""
_MARK_USED = "UPDATE refresh_tokens SET used_at = now() WHERE id = %(id)s"
_REVOKE_FAMILY = """
UPDATE refresh_tokens SET revoked_at = now()
WHERE family_id = %(family_id)s AND organization_id = %(organization_id)s AND revoked_at IS NULL
"""
_REVOKE_USER = """
UPDATE refresh_tokens SET revoked_at = now()
WHERE user_id = %(user_id)s AND organization_id = %(organization_id)s AND revoked_at IS NULL
"""
_FIND_FAMILY = """
SELECT family_id FROM refresh_tokens
WHERE token_hash = %(token_hash)s AND user_id = %(user_id)s AND organization_id = %(organization_id)s
"""


@dataclass(frozen=True)
class IssuedRefresh:
    token: str
    expires_at: datetime


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def issue(
    conn: Conn, *, organization_id: uuid.UUID, user_id: uuid.UUID, family_id: uuid.UUID | None = None
) -> IssuedRefresh:
    token = secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + REFRESH_TTL
    await conn.execute(
        _INSERT,
        {
            "organization_id": organization_id,
            "user_id": user_id,
            "family_id": family_id or uuid.uuid4(),
            "token_hash": token_hash(token),
            "expires_at": expires_at,
        },
    )
    return IssuedRefresh(token, expires_at)


Outcome = Literal["rotated", "unknown", "revoked", "reused", "expired", "inactive"]

_MESSAGES: dict[str, str] = {
    "unknown": "unknown refresh token",
    "revoked": "this session was ended; log in again",
    "reused": "this refresh token was already used; every session of this login was ended, log in again",
    "expired": "the refresh token expired; log in again",
    "inactive": "the account is disabled",
}


async def rotate(resources: Resources, token: str) -> tuple[Row, IssuedRefresh]:
    """The user row and a successor token, or :class:`Unauthorized` (after revoking on reuse)."""
    outcome: Outcome
    successor: IssuedRefresh | None = None
    async with connection(resources) as conn, conn.transaction():
        row = await one(conn, _LOCK, {"token_hash": token_hash(token)})
        if row is None:
            outcome = "unknown"
        elif row["revoked_at"] is not None:
            outcome = "revoked"
        elif row["used_at"] is not None:
            outcome = "reused"
            await conn.execute(_REVOKE_FAMILY, row)
        elif row["expires_at"] <= datetime.now(UTC):
            outcome = "expired"
        elif not row["is_active"]:
            outcome = "inactive"
        else:
            outcome = "rotated"
            await conn.execute(_MARK_USED, row)
            successor = await issue(
                conn,
                organization_id=row["organization_id"],
                user_id=row["user_id"],
                family_id=row["family_id"],
            )
    if outcome != "rotated" or row is None or successor is None:
        code = "refresh_token_reused" if outcome == "reused" else "unauthorized"
        error = Unauthorized(_MESSAGES[outcome], details={"reason": code})
        raise error
    return row, successor


async def revoke(
    resources: Resources,
    *,
    organization_id: uuid.UUID,
    user_id: uuid.UUID,
    token: str | None,
    all_sessions: bool,
) -> None:
    """End one login (the family of ``token``) or, with ``all_sessions``, every login of the user."""
    ids = {"organization_id": organization_id, "user_id": user_id}
    async with connection(resources) as conn:
        if all_sessions:
            await conn.execute(_REVOKE_USER, ids)
            return
        if token is None:
            return
        row = await one(conn, _FIND_FAMILY, {**ids, "token_hash": token_hash(token)})
        if row is not None:
            await conn.execute(_REVOKE_FAMILY, {**ids, "family_id": row["family_id"]})
