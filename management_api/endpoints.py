"""Endpoints declared once: the route, its validation, its access rule and its OpenAPI entry.

Each endpoint is an :class:`Operation` naming its handler and the pydantic models of its query,
body and response. :func:`build_route` turns it into a Starlette route that authenticates the
caller, checks the role, validates path ids, query and body, calls the handler and validates the
handler's result against the response model; :mod:`management_api.openapi` builds the document
from the same operations, so the documentation cannot drift from what is enforced.

Order of checks (so an anonymous caller learns nothing about ids): authentication (401), role
(403), path ids (422), query (422), body (413/415/422), then the handler (404 for anything outside
the caller's organization).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chatmill.errors import ChatmillError as _ChatmillError
from chatmill.errors import Forbidden, PayloadTooLarge, ValidationFailed
from chatmill.resources import Resources
from chatmill.settings import Settings
from management_api.security import Principal, authenticate

M = TypeVar("M", bound=BaseModel)

Role = Literal["owner", "admin", "agent"]
EVERYONE: frozenset[str] = frozenset({"owner", "admin", "agent"})
MANAGERS: frozenset[str] = frozenset({"owner", "admin"})
OWNERS: frozenset[str] = frozenset({"owner"})

MAX_JSON_BYTES = 1_000_000
SLUG_PATTERN = r"^[a-z][a-z0-9_]{1,63}$"
# Path parameters that are not UUIDs (everything else named *_id is a UUID).
SLUG_PARAMS = frozenset({"integration_id"})
_PATH_PARAM = re.compile(r"{([a-z_]+)}")
_SLUG = re.compile(SLUG_PATTERN)


class UnsupportedMediaType(_ChatmillError):
    status_code = 415
    code = "unsupported_media_type"


@dataclass
class Context:
    """What a handler gets: the request, the app's resources, the caller and validated input."""

    request: Request
    resources: Resources
    principal: Principal | None
    path: dict[str, Any]
    query_model: BaseModel | None
    body_model: BaseModel | None

    @property
    def settings(self) -> Settings:
        return self.resources.settings

    @property
    def user(self) -> Principal:
        assert self.principal is not None, "operation is public"
        return self.principal

    @property
    def org(self) -> uuid.UUID:
        return self.user.organization_id

    def id(self, name: str) -> uuid.UUID:
        value = self.path[name]
        assert isinstance(value, uuid.UUID)
        return value

    def body(self, model: type[M]) -> M:
        assert isinstance(self.body_model, model)
        return self.body_model

    def query(self, model: type[M]) -> M:
        assert isinstance(self.query_model, model)
        return self.query_model


Handler = Callable[[Context], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    """One endpoint. ``roles=None`` makes it public (no token)."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    response: type[BaseModel] | None = None
    status: int = 200
    body: type[BaseModel] | None = None
    body_kind: Literal["json", "multipart"] = "json"
    query: type[BaseModel] | None = None
    roles: frozenset[str] | None = EVERYONE
    media_type: str = "application/json"
    errors: tuple[int, ...] = ()
    description: str = ""

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__.lstrip("_")

    @property
    def error_statuses(self) -> list[int]:
        statuses = set(self.errors) | {500, 503}
        if self.roles is not None:
            statuses |= {401}
            if self.roles != EVERYONE:
                statuses.add(403)
        if self.path_params:
            statuses |= {404, 422}
        if self.query is not None or self.body is not None:
            statuses.add(422)
        if self.body is not None:
            statuses |= {413, 415}
        return sorted(statuses)


def validation_details(errors: list[ErrorDetails], where: str) -> list[dict[str, Any]]:
    return [
        {
            "loc": [where, *(str(part) for part in error["loc"])],
            "message": error["msg"],
            "type": error["type"],
        }
        for error in errors
    ]


def validate(model: type[M], data: Any, where: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(
            f"invalid {where}", details=validation_details(exc.errors(include_url=False), where)
        ) from None


def _parse_path(op: Operation, params: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    problems: list[dict[str, Any]] = []
    for name in op.path_params:
        raw = str(params.get(name, ""))
        if name in SLUG_PARAMS:
            if _SLUG.fullmatch(raw):
                parsed[name] = raw
            else:
                problems.append(
                    {"loc": ["path", name], "message": "not a valid identifier", "type": "pattern"}
                )
            continue
        try:
            parsed[name] = uuid.UUID(raw)
        except ValueError:
            problems.append({"loc": ["path", name], "message": "not a valid UUID", "type": "uuid_parsing"})
            continue
        if len(raw) != 36:  # uuid.UUID also accepts braces, urn: prefixes and no hyphens
            problems.append({"loc": ["path", name], "message": "not a valid UUID", "type": "uuid_parsing"})
    if problems:
        raise ValidationFailed("invalid path parameter", details=problems)
    return parsed


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) more than ``limit`` bytes whether or not Content-Length is sent."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is limited to {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is limited to {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_json(request: Request, model: type[BaseModel]) -> BaseModel:
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", ""):
        raise UnsupportedMediaType("the request body must be application/json")
    raw = await read_limited(request, MAX_JSON_BYTES)
    if b"\\u0000" in raw:  # PostgreSQL text cannot hold NUL; refuse it for every field at once
        raise ValidationFailed(
            "NUL characters are not allowed",
            details=[{"loc": ["body"], "message": "contains \\u0000", "type": "nul_character"}],
        )
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise ValidationFailed(
            "invalid request body", details=validation_details(exc.errors(include_url=False), "body")
        ) from None


def _render(op: Operation, result: Any) -> Response:
    if isinstance(result, Response):
        return result
    if op.response is None:
        return Response(status_code=op.status)
    model = result if isinstance(result, op.response) else op.response.model_validate(result)
    return JSONResponse(model.model_dump(mode="json"), status_code=op.status)


def build_route(op: Operation) -> Route:
    async def endpoint(request: Request) -> Response:
        resources: Resources = request.state.resources
        principal: Principal | None = None
        if op.roles is not None:
            principal = await authenticate(request, resources)
            if principal.role not in op.roles:
                allowed = " or ".join(sorted(op.roles))
                raise Forbidden(f"this action needs the {allowed} role; you are {principal.role}")
        path = _parse_path(op, request.path_params)
        query = None
        if op.query is not None:
            params = dict(request.query_params)
            if any("\x00" in value for value in params.values()):
                raise ValidationFailed(
                    "NUL characters are not allowed",
                    details=[{"loc": ["query"], "message": "contains NUL", "type": "nul_character"}],
                )
            query = validate(op.query, params, "query")
        body = await _read_json(request, op.body) if op.body is not None and op.body_kind == "json" else None
        context = Context(request, resources, principal, path, query, body)
        return _render(op, await op.handler(context))

    endpoint.__name__ = op.operation_id
    return Route(op.path, endpoint, methods=[op.method])
