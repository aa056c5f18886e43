"""Access tokens (JWT) and the caller behind a request.

Access tokens are HS256 JWTs signed with ``JWT_SECRET``, valid ``JWT_TTL_SECONDS`` (24 h). Decoding
accepts exactly one algorithm (so ``alg: none`` and algorithm confusion are refused before any
signature check) and requires ``exp``, ``iat``, ``iss``, ``aud``, ``sub`` and ``jti``; a token
issued in the future (beyond a small clock skew) is refused too.

The token only says who the caller was when it was issued: every request reloads the user, so a
removed member, a deactivated account or a changed role takes effect at once. Logging out puts
the token's ``jti`` on a Redis deny list until the token would have expired.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from jose import JWTError, jwt
from starlette.requests import Request

from chatmill.errors import Unauthorized
from chatmill.resources import Resources
from chatmill.settings import Settings
from management_api.db import fetch_one

ALGORITHM = "HS256"
CLOCK_SKEW_SECONDS = 30
_REQUIRED = ("exp", "iat", "iss", "aud", "sub", "jti")

_LOAD_USER = """
SELECT u.id, u.organization_id, u.role, u.email
FROM users u JOIN organizations o ON o.id = u.organization_id
WHERE u.id = %(user_id)s AND u.organization_id = %(organization_id)s
  AND u.is_active AND o.deleted_at IS NULL
"""


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    organization_id: uuid.UUID
    role: str
    email: str
    token_id: str
    token_expires_at: int


def issue_access_token(
    settings: Settings, *, user_id: uuid.UUID, organization_id: uuid.UUID, role: str, now: int | None = None
) -> tuple[str, int]:
    """A signed access token and its expiry (epoch seconds)."""
    issued = int(time.time()) if now is None else now
    expires = issued + settings.jwt_ttl_seconds
    claims = {
        "sub": str(user_id),
        "org": str(organization_id),
        "role": role,
        "iat": issued,
        "nbf": issued,
        "exp": expires,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": uuid.uuid4().hex,
        "typ": "access",
    }
    token = jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)
    return token, expires


def _unauthorized(message: str) -> Unauthorized:
    return Unauthorized(message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def decode_access_token(settings: Settings, token: str) -> dict[str, Any]:
    """The verified claims, or :class:`Unauthorized` (never says which check failed)."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise _unauthorized("invalid or expired token")
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={f"require_{claim}": True for claim in _REQUIRED} | {"leeway": 0},
        )
    except JWTError:
        raise _unauthorized("invalid or expired token") from None
    if (
        claims.get("typ") != "access"
        or not isinstance(claims.get("iat"), int)
        or claims["iat"] > time.time() + CLOCK_SKEW_SECONDS
        or not isinstance(claims.get("org"), str)
    ):
        raise _unauthorized("invalid or expired token")
    return claims


def revoked_key(token_id: str) -> str:
    return f"auth:revoked:{token_id}"


async def authenticate(request: Request, resources: Resources) -> Principal:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "send an access token: Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"}
        )
    claims = decode_access_token(resources.settings, token.strip())
    try:
        user_id, organization_id = uuid.UUID(claims["sub"]), uuid.UUID(claims["org"])
    except ValueError:
        raise _unauthorized("invalid or expired token") from None
    revoked, row = await asyncio.gather(  # the deny list and the user, concurrently
        resources.redis.exists(revoked_key(str(claims["jti"]))),
        fetch_one(resources, _LOAD_USER, {"user_id": user_id, "organization_id": organization_id}),
    )
    if revoked:
        raise _unauthorized("this token was revoked (logged out)")
    if row is None:
        raise _unauthorized("the account behind this token no longer exists or is disabled")
    return Principal(
        user_id=row["id"],
        organization_id=row["organization_id"],
        role=row["role"],
        email=row["email"],
        token_id=str(claims["jti"]),
        token_expires_at=int(claims["exp"]),
    )
