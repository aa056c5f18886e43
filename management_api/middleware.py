"""Request ids, access log lines and response headers for every request.

The id is the caller's ``X-Request-ID`` when it is a short token (``[A-Za-z0-9._-]{1,64}``),
otherwise a fresh one; it is echoed in the response's ``X-Request-ID``, kept on
``request.state.request_id`` (the 500 handler puts it in the error body) and written on one access
log line per request (method, path, status, duration — never bodies, tokens or query strings).
API responses also get ``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff``, and every
response a ``Server-Timing: app;dur=<ms>`` header (time in the app until the response started).
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatmill.errors import error_response

log = logging.getLogger("management_api.access")
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get("x-request-id", "")
        request_id = incoming if _VALID_ID.fullmatch(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        is_api = str(scope.get("path", "")).startswith("/api")
        status = 500
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                # Time spent in the app until the response starts (what the benchmark reads).
                headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.3f}"
                if is_api:
                    headers.setdefault("Cache-Control", "no-store")
                    headers["X-Content-Type-Options"] = "nosniff"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            log.info(
                "request_id=%s %s %s %d %.1fms",
                request_id,
                scope.get("method"),
                scope.get("path"),
                status,
                (time.perf_counter() - started) * 1000,
            )


class StrictCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, with refused preflights in the API's one error shape."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        message = bytes(response.body).decode(errors="replace")
        headers = {k: v for k, v in response.headers.items() if k.lower().startswith("vary")}
        return error_response(400, "cors_rejected", message, headers=headers)
