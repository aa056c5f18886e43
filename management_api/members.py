"""``/api/members``: the organization's users.

Owners and admins list members; only owners invite and remove them (owners manage members and
billing). There is no email delivery yet, so an invitation answers a one-time temporary password
that the owner passes on; only its bcrypt hash is stored. Removing a member deletes the account
(their messages stay, ``sent_by`` becomes NULL) and so ends their sessions at once; an owner cannot
remove themselves, so an organization always keeps an owner.
"""

from __future__ import annotations

import asyncio
import secrets

from psycopg import errors as pg_errors
from pydantic import BaseModel, Field

from chatmill.errors import Conflict, NotFound
from chatmill.passwords import hash_password
from management_api.accounts import USER_COLUMNS, Email, UserOut, UserRole
from management_api.db import connection, fetch_all, one
from management_api.endpoints import MANAGERS, OWNERS, Context, Operation


class MemberList(BaseModel):
    items: list[UserOut]


class InviteRequest(BaseModel):
    model_config = {
        "json_schema_extra": {
            "examples": [{"email": "joao@example.com", "role": "agent", "full_name": "João"}]
        }
    }
    email: Email
    role: UserRole = "agent"
    full_name: str | None = Field(default=None, max_length=200)


class Invitation(BaseModel):
    member: UserOut
    temporary_password: str = Field(description="shown once; give it to the member to log in")


_LIST = f"""
SELECT {USER_COLUMNS} FROM users WHERE organization_id = %(organization_id)s AND is_active
ORDER BY created_at, id
"""
_INVITE = f"""
INSERT INTO users (organization_id, email, password_hash, full_name, role, invited_by)
VALUES (%(organization_id)s, %(email)s, %(password_hash)s, %(full_name)s, %(role)s, %(invited_by)s)
RETURNING {USER_COLUMNS}
"""
_REMOVE = "DELETE FROM users WHERE id = %(id)s AND organization_id = %(organization_id)s RETURNING id"


async def list_members(ctx: Context) -> MemberList:
    rows = await fetch_all(ctx.resources, _LIST, {"organization_id": ctx.org})
    return MemberList(items=[UserOut.model_validate(row) for row in rows])


async def invite_member(ctx: Context) -> Invitation:
    body = ctx.body(InviteRequest)
    password = secrets.token_urlsafe(15)
    password_hash = await asyncio.to_thread(hash_password, password)
    try:
        async with connection(ctx.resources) as conn:
            row = await one(
                conn,
                _INVITE,
                {
                    "organization_id": ctx.org,
                    "email": body.email,
                    "password_hash": password_hash,
                    "full_name": body.full_name,
                    "role": body.role,
                    "invited_by": ctx.user.user_id,
                },
            )
    except pg_errors.UniqueViolation:
        raise Conflict("an account with this email already exists") from None
    return Invitation(member=UserOut.model_validate(row), temporary_password=password)


async def remove_member(ctx: Context) -> None:
    member_id = ctx.id("member_id")
    if member_id == ctx.user.user_id:
        raise Conflict("you cannot remove yourself; another owner can")
    async with connection(ctx.resources) as conn:
        row = await one(conn, _REMOVE, {"id": member_id, "organization_id": ctx.org})
    if row is None:
        raise NotFound("member not found")


OPERATIONS = [
    Operation("GET", "/api/members", list_members, "List members", "members", response=MemberList, roles=MANAGERS),
    Operation(
        "POST", "/api/members", invite_member, "Invite a member (owner only)", "members",
        response=Invitation, status=201, body=InviteRequest, roles=OWNERS, errors=(409,),
    ),
    Operation(
        "DELETE", "/api/members/{member_id}", remove_member, "Remove a member (owner only)", "members",
        status=204, roles=OWNERS, errors=(409,),
    ),
]  # fmt: skip
