"""Chatmill's error hierarchy and the one renderer every app uses.

    ChatmillError            base: an HTTP status, a machine-readable code and a message
    ├── BadRequest           400 bad_request
    ├── Unauthorized         401 unauthorized
    ├── Forbidden            403 forbidden
    ├── NotFound             404 not_found (also for another organization's resources)
    ├── Conflict             409 conflict
    ├── PayloadTooLarge      413 payload_too_large
    ├── ValidationFailed     422 validation_failed (details lists the fields)
    ├── RateLimited          429 rate_limited (sets Retry-After)
    └── ServiceUnavailable   503 service_unavailable (a dependency is down; retry later)

Every failure leaves an app as ``{"error": {"code": …, "message": …, "details"?: …}}``, including
Starlette's ``HTTPException`` (unknown routes, wrong methods) and unexpected exceptions (500, with
no internals in the body).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

_log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    503: "service_unavailable",
}


class ChatmillError(Exception):
    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class BadRequest(ChatmillError):
    status_code = 400
    code = "bad_request"


class Unauthorized(ChatmillError):
    status_code = 401
    code = "unauthorized"


class Forbidden(ChatmillError):
    status_code = 403
    code = "forbidden"


class NotFound(ChatmillError):
    status_code = 404
    code = "not_found"


class Conflict(ChatmillError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(ChatmillError):
    status_code = 413
    code = "payload_too_large"


class ValidationFailed(ChatmillError):
    status_code = 422
    code = "validation_failed"


class RateLimited(ChatmillError):
    status_code = 429
    code = "rate_limited"


class ServiceUnavailable(ChatmillError):
    status_code = 503
    code = "service_unavailable"


def error_response(
    status_code: int, code: str, message: str, *, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status_code, headers=headers)


async def handle_chatmill_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ChatmillError)
    return error_response(exc.status_code, exc.code, exc.message, details=exc.details, headers=exc.headers)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    return error_response(exc.status_code, code, message, headers=dict(exc.headers or {}))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    _log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error; it has been logged")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ChatmillError: handle_chatmill_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
