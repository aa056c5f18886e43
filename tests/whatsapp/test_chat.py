"""``chatmill chat``'s pieces against a stub ingress (checks the signature) and the sandbox app."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from f.chatmill.lib.whatsapp import text_message
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chatmill.chat import ChatSession
from chatmill.sandbox import create_app as create_sandbox
from tests.conftest import make_settings

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "whatsapp" / "message_text.json"
SECRET = "chat-test-app-secret"


def stub_ingress(received: list[dict[str, Any]]) -> Starlette:
    """Records verified webhooks; refuses a bad signature with 401 like the real ingress."""

    async def webhook(request: Request) -> Response:
        raw = await request.body()
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("x-hub-signature-256", ""), expected):
            return JSONResponse(
                {"error": {"code": "unauthorized", "message": "bad signature"}}, status_code=401
            )
        received.append(json.loads(raw))
        return Response(status_code=200)

    return Starlette(routes=[Route("/webhook/whatsapp", webhook, methods=["POST"])])


def _session(
    received: list[dict[str, Any]], sandbox: Starlette, out: io.StringIO, secret: str = SECRET
) -> ChatSession:
    http = httpx.AsyncClient(
        mounts={
            "http://ingress": httpx.ASGITransport(app=stub_ingress(received)),
            "http://sandbox": httpx.ASGITransport(app=sandbox),
        }
    )
    return ChatSession(
        app_secret=secret, ingress_url="http://ingress", sandbox_url="http://sandbox", http=http, out=out
    )


def test_a_typed_line_becomes_a_signed_webhook_shaped_like_meta_s() -> None:
    received: list[dict[str, Any]] = []
    session = _session(received, create_sandbox(make_settings()), io.StringIO())

    async def scenario() -> str:
        async with session.http:
            return await session.say("Do you have sourdough? ¿Sí?")

    wamid = asyncio.run(scenario())
    [body] = received
    fixture = json.loads(FIXTURE.read_text())
    # Same structure as Meta's sample notification, our text and wamid.
    assert body.keys() == fixture.keys()
    value, sample = body["entry"][0]["changes"][0]["value"], fixture["entry"][0]["changes"][0]["value"]
    assert value.keys() == sample.keys()
    assert value["metadata"] == sample["metadata"]  # the seeded demo channel
    assert value["contacts"] == sample["contacts"]
    message = value["messages"][0]
    assert message.keys() == sample["messages"][0].keys()
    assert (message["id"], message["from"], message["text"]["body"]) == (
        wamid,
        "16505551234",
        "Do you have sourdough? ¿Sí?",
    )


def test_a_wrong_secret_is_refused_by_the_ingress() -> None:
    received: list[dict[str, Any]] = []
    out = io.StringIO()
    session = _session(received, create_sandbox(make_settings()), out, secret="wrong")

    async def lines() -> AsyncIterator[str]:
        yield "hello\n"

    async def scenario() -> None:
        async with session.http:
            await session.converse(lines(), poll_interval=0.01)

    asyncio.run(scenario())
    assert received == []
    assert "not delivered: the ingress answered 401" in out.getvalue()


def test_replies_are_printed_and_acknowledged_with_delivered_and_read() -> None:
    received: list[dict[str, Any]] = []
    sandbox = create_sandbox(make_settings())
    out = io.StringIO()
    session = _session(received, sandbox, out)

    async def scenario() -> None:
        async with session.http:
            bot = session.http
            headers = {"Authorization": "Bearer t"}
            old = text_message("16505551234", "an old reply, before chat started")
            await bot.post("http://sandbox/v21.0/106540352242922/messages", json=old, headers=headers)
            await bot.post(
                "http://sandbox/v21.0/106540352242922/messages",
                json=text_message("19999999999", "someone else's"),
                headers=headers,
            )

            async def lines() -> AsyncIterator[str]:
                yield "Hi!\n"
                # The bot answers while the customer is still "typing".
                reply = text_message("16505551234", "Hello Sheena!\n\nWe open at 7.")
                sent = await bot.post(
                    "http://sandbox/v21.0/106540352242922/messages", json=reply, headers=headers
                )
                assert sent.status_code == 200
                for _ in range(200):
                    if "We open at 7." in out.getvalue():
                        break
                    await asyncio.sleep(0.01)
                yield "/quit\n"
                yield "never sent\n"

            await session.converse(lines(), poll_interval=0.01)

    asyncio.run(scenario())
    text = out.getvalue()
    assert "bot> Hello Sheena!" in text
    assert "We open at 7." in text
    assert "old reply" not in text
    assert "someone else" not in text
    kinds = [
        ("message", change["value"]["messages"][0]["text"]["body"])
        if "messages" in change["value"]
        else ("status", change["value"]["statuses"][0]["status"])
        for body in received
        for change in body["entry"][0]["changes"]
    ]
    assert kinds == [("message", "Hi!"), ("status", "delivered"), ("status", "read")]
    wamids = {
        body["entry"][0]["changes"][0]["value"].get("statuses", [{}])[0].get("id") for body in received[1:]
    }
    listed = sandbox.state.sandbox.messages
    assert wamids == {listed[-1]["id"]}
