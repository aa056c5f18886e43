"""The WhatsApp sandbox: a local stand-in for the Graph API's messages and media endpoints.

``chatmill dev`` serves it on ``SANDBOX_PORT`` and, with ``WHATSAPP_GRAPH_URL`` unset, development
settings point ``settings.graph_url`` at it, so the flows send here instead of to Meta.

Graph API surface (``<version>`` is any ``vNN.N``):

    POST /<version>/<phone_number_id>/messages   text and template messages and read receipts,
                                                 validated like Meta (messaging_product, recipient,
                                                 type, text.body 1..4096, template name/language,
                                                 status/message_id); → {"messages":[{"id"}]}
    GET  /<version>/<media_id>                   {url, mime_type, sha256, file_size, id}
    GET  /sandbox/media/<media_id>/content       the bytes (bearer token required, like Meta's URLs)

Every Graph call needs ``Authorization: Bearer <any non-empty token>`` (else 401, code 190).

Control surface for tests and tools (no auth; the sandbox only listens on the dev host):

    GET    /sandbox/messages?to=&after=          everything accepted, oldest first; ``after`` is a
                                                 ``seq`` (for polling)
    GET    /sandbox/reads?message_id=            read receipts received
    POST   /sandbox/failures                     {"code": 131056, "to"?: "…", "times"?: 1} → the
                                                 next matching sends answer Meta's error for ``code``
                                                 (read receipts only match failures without ``to``)
    DELETE /sandbox/failures, /sandbox/messages  reset
    POST   /sandbox/media                        {"mime_type", "content_base64"} → {"id"}

State is **in memory**, per app instance: restarting ``chatmill dev`` forgets it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chatmill.errors import EXCEPTION_HANDLERS
from chatmill.settings import Settings

TEXT_LIMIT = 4096
_WA_ID = re.compile(r"^\+?[0-9]{6,20}$")

# Realistic HTTP status and message per Meta error code (unknown codes: 400, a generic message).
_ERRORS: dict[int, tuple[int, str, str]] = {
    1: (500, "An unknown error occurred", "OAuthException"),
    2: (503, "Service temporarily unavailable", "OAuthException"),
    4: (400, "(#4) Application request limit reached", "OAuthException"),
    10: (403, "(#10) Application does not have permission for this action", "OAuthException"),
    100: (400, "(#100) Invalid parameter", "OAuthException"),
    190: (401, "Invalid OAuth access token - Cannot parse access token", "OAuthException"),
    368: (400, "Temporarily blocked for policies violations", "OAuthException"),
    80007: (400, "(#80007) Rate limit issues", "OAuthException"),
    130429: (400, "(#130429) Rate limit hit", "OAuthException"),
    131000: (500, "(#131000) Something went wrong", "OAuthException"),
    131016: (503, "(#131016) Service unavailable", "OAuthException"),
    131026: (400, "(#131026) Message undeliverable", "OAuthException"),
    131047: (400, "(#131047) Re-engagement message", "OAuthException"),
    131050: (400, "(#131050) User has stopped marketing messages", "OAuthException"),
    131051: (400, "(#131051) Unsupported message type", "OAuthException"),
    131056: (400, "(#131056) (Business Account, Consumer Account) pair rate limit hit", "OAuthException"),
    131057: (503, "(#131057) Account in maintenance mode", "OAuthException"),
}


@dataclass
class _Failure:
    code: int
    to: str | None
    times: int


@dataclass
class SandboxState:
    """What the sandbox has received; tests may read ``app.state.sandbox`` directly."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    reads: list[dict[str, Any]] = field(default_factory=list)
    failures: list[_Failure] = field(default_factory=list)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def meta_error(code: int, *, message: str | None = None, details: str | None = None) -> JSONResponse:
    """A Meta-shaped error body with the HTTP status Meta uses for ``code``."""
    status, default_message, kind = _ERRORS.get(code, (400, f"(#{code}) Error", "OAuthException"))
    error: dict[str, Any] = {
        "message": message or default_message,
        "type": kind,
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details or message or default_message},
        "fbtrace_id": "A" + secrets.token_hex(11),
    }
    return JSONResponse({"error": error}, status_code=status)


def _invalid(details: str) -> JSONResponse:
    return meta_error(100, message="(#100) Invalid parameter", details=details)


def _authorized(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def _unauthorized() -> JSONResponse:
    return meta_error(190, message="An active access token must be used to query information.")


def _new_wamid() -> str:
    return "wamid." + base64.b64encode(b"sandbox." + secrets.token_bytes(18)).decode()


def _validate_message(body: Any) -> str | None:
    """Meta's checks for the payloads Chatmill sends; None when valid, else the error details."""
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    if body.get("messaging_product") != "whatsapp":
        return "The parameter messaging_product is required and must be 'whatsapp'."
    if "status" in body:
        if body["status"] != "read":
            return "Param status must be 'read'."
        if not isinstance(body.get("message_id"), str) or not body["message_id"]:
            return "The parameter message_id is required."
        typing = body.get("typing_indicator")
        if typing is not None and (not isinstance(typing, dict) or typing.get("type") != "text"):
            return "Param typing_indicator['type'] must be 'text'."
        return None
    if body.get("recipient_type", "individual") != "individual":
        return "Param recipient_type must be 'individual'."
    to = body.get("to")
    if not isinstance(to, str) or not _WA_ID.match(to):
        return "The parameter to is required and must be a phone number."
    kind = body.get("type", "text")
    if kind == "template":
        template = body.get("template")
        if (
            not isinstance(template, dict)
            or not isinstance(template.get("name"), str)
            or not template["name"]
        ):
            return "The parameter template['name'] is required."
        language = template.get("language")
        if not isinstance(language, dict) or not isinstance(language.get("code"), str):
            return "The parameter template['language']['code'] is required."
        return None
    if kind != "text":
        return f"The sandbox accepts types 'text' and 'template', not {kind!r}."
    text = body.get("text")
    if not isinstance(text, dict) or not isinstance(text.get("body"), str):
        return "The parameter text['body'] is required."
    length = len(text["body"])
    if length < 1 or length > TEXT_LIMIT:
        return f"Param text['body'] must be between 1 and {TEXT_LIMIT} characters long (got {length})."
    context = body.get("context")
    if context is not None and (
        not isinstance(context, dict) or not isinstance(context.get("message_id"), str)
    ):
        return "Param context['message_id'] must be a string."
    return None


def _take_failure(state: SandboxState, to: str | None) -> _Failure | None:
    for failure in state.failures:
        if failure.to is None or failure.to == to:
            failure.times -= 1
            if failure.times <= 0:
                state.failures.remove(failure)
            return failure
    return None


async def _send(request: Request) -> Response:
    if not _authorized(request):
        return _unauthorized()
    state: SandboxState = request.app.state.sandbox
    try:
        body = await request.json()
    except ValueError:
        return _invalid("the request body is not valid JSON")
    problem = _validate_message(body)
    if problem is not None:
        return _invalid(problem)
    phone_number_id = request.path_params["phone_number_id"]
    now = time.time()
    if "status" in body:
        failure = _take_failure(state, None)
        if failure is not None:
            return meta_error(failure.code)
        state.reads.append(
            {
                "phone_number_id": phone_number_id,
                "message_id": body["message_id"],
                "typing": body.get("typing_indicator") is not None,
                "received_at": now,
            }
        )
        return JSONResponse({"success": True})
    failure = _take_failure(state, body["to"])
    if failure is not None:
        return meta_error(failure.code)
    wamid = _new_wamid()
    state.messages.append(
        {
            "seq": next(state.seq),
            "id": wamid,
            "phone_number_id": phone_number_id,
            "to": body["to"],
            "type": body.get("type", "text"),
            "body": body["text"]["body"] if "text" in body else f"[template {body['template']['name']}]",
            "reply_to": (body.get("context") or {}).get("message_id"),
            "received_at": now,
            "payload": body,
        }
    )
    return JSONResponse(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"].lstrip("+")}],
            "messages": [{"id": wamid}],
        }
    )


async def _media_info(request: Request) -> Response:
    if not _authorized(request):
        return _unauthorized()
    media = request.app.state.sandbox.media.get(request.path_params["media_id"])
    if media is None:
        return meta_error(100, message="(#100) Unsupported get request. Object does not exist")
    info = {key: value for key, value in media.items() if key != "content"}
    info["url"] = str(request.url_for("sandbox_media_content", media_id=media["id"]))
    return JSONResponse(info)


async def _media_content(request: Request) -> Response:
    if not _authorized(request):
        return _unauthorized()
    media = request.app.state.sandbox.media.get(request.path_params["media_id"])
    if media is None:
        return meta_error(100, message="(#100) Unsupported get request. Object does not exist")
    return Response(media["content"], media_type=media["mime_type"])


async def _upload_media(request: Request) -> Response:
    body = await request.json()
    try:
        content = base64.b64decode(body["content_base64"], validate=True)
        mime_type = str(body["mime_type"])
    except (KeyError, TypeError, binascii.Error):
        return _invalid("expected {mime_type, content_base64}")
    media_id = str(body.get("id") or secrets.randbelow(10**15) + 10**15)
    request.app.state.sandbox.media[media_id] = {
        "id": media_id,
        "messaging_product": "whatsapp",
        "mime_type": mime_type,
        "sha256": hashlib.sha256(content).hexdigest(),
        "file_size": len(content),
        "content": content,
    }
    return JSONResponse({"id": media_id}, status_code=201)


async def _list_messages(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    to = request.query_params.get("to")
    try:
        after = int(request.query_params.get("after", "0"))
    except ValueError:
        after = 0
    items = [
        {key: value for key, value in message.items() if key != "payload"}
        for message in state.messages
        if message["seq"] > after and (to is None or message["to"] == to)
    ]
    return JSONResponse({"messages": items})


async def _list_reads(request: Request) -> Response:
    message_id = request.query_params.get("message_id")
    reads = [read for read in request.app.state.sandbox.reads if message_id in (None, read["message_id"])]
    return JSONResponse({"reads": reads})


async def _reset_messages(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    state.messages.clear()
    state.reads.clear()
    return Response(status_code=204)


async def _add_failure(request: Request) -> Response:
    try:
        body = await request.json()
        code = int(body["code"])
        times = int(body.get("times", 1))
        to = body.get("to")
    except (ValueError, KeyError, TypeError):
        return JSONResponse(
            {"error": {"code": "bad_request", "message": "expected {code, to?, times?}"}}, status_code=400
        )
    if times < 1 or (to is not None and not isinstance(to, str)):
        return JSONResponse(
            {"error": {"code": "bad_request", "message": "times must be >= 1, to a string"}}, status_code=400
        )
    request.app.state.sandbox.failures.append(_Failure(code=code, to=to, times=times))
    return JSONResponse({"code": code, "to": to, "times": times}, status_code=201)


async def _clear_failures(request: Request) -> Response:
    request.app.state.sandbox.failures.clear()
    return Response(status_code=204)


async def _live(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings) -> Starlette:
    """The sandbox app; ``settings`` is accepted for symmetry with the other apps' factories."""
    app = Starlette(
        routes=[
            Route("/health/live", _live, methods=["GET"]),
            Route("/health/ready", _live, methods=["GET"]),
            Route("/sandbox/messages", _list_messages, methods=["GET"]),
            Route("/sandbox/messages", _reset_messages, methods=["DELETE"]),
            Route("/sandbox/reads", _list_reads, methods=["GET"]),
            Route("/sandbox/failures", _add_failure, methods=["POST"]),
            Route("/sandbox/failures", _clear_failures, methods=["DELETE"]),
            Route("/sandbox/media", _upload_media, methods=["POST"]),
            Route(
                "/sandbox/media/{media_id}/content",
                _media_content,
                methods=["GET"],
                name="sandbox_media_content",
            ),
            Route("/{version:str}/{phone_number_id:str}/messages", _send, methods=["POST"]),
            Route("/{version:str}/{media_id:str}", _media_info, methods=["GET"]),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.sandbox = SandboxState()
    app.state.settings = settings
    return app
