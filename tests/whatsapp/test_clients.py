"""The sync and async WhatsApp clients against the sandbox app (in process, no network)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import httpx
import pytest
from f.chatmill.lib.whatsapp import AsyncWhatsAppClient, WhatsAppClient, WhatsAppError, text_message

from chatmill.sandbox import create_app
from tests.conftest import make_settings
from tests.servers import serve as live_server

PHONE_ID = "106540352242922"
TOKEN = "sandbox-token"


@pytest.fixture
def sandbox() -> Iterator[httpx.Client]:
    """The sandbox served on loopback, and a plain httpx client pointed at it."""
    with live_server(create_app(make_settings())) as url, httpx.Client(base_url=url) as client:
        yield client


def test_sync_client_sends_and_the_sandbox_records_it(sandbox: httpx.Client) -> None:
    client = WhatsAppClient(str(sandbox.base_url), "v21.0", http=sandbox)
    wamid = client.send(PHONE_ID, TOKEN, text_message("16505551234", "Hello there", reply_to="wamid.IN"))
    assert wamid.startswith("wamid.")
    client.mark_read(PHONE_ID, TOKEN, "wamid.IN")
    sent = sandbox.get("/sandbox/messages", params={"to": "16505551234"}).json()["messages"]
    assert [(m["id"], m["body"], m["reply_to"], m["phone_number_id"]) for m in sent] == [
        (wamid, "Hello there", "wamid.IN", PHONE_ID)
    ]
    assert sandbox.get("/sandbox/messages", params={"to": "1999"}).json()["messages"] == []
    reads = sandbox.get("/sandbox/reads").json()["reads"]
    assert [(r["message_id"], r["typing"]) for r in reads] == [("wamid.IN", True)]


def test_sync_client_raises_classified_errors_from_injected_failures(sandbox: httpx.Client) -> None:
    client = WhatsAppClient(f"{sandbox.base_url}/", "v21.0", http=sandbox)
    assert (
        sandbox.post("/sandbox/failures", json={"code": 131056, "to": "16505551234", "times": 2}).status_code
        == 201
    )
    payload = text_message("16505551234", "Hi")
    for _ in range(2):
        with pytest.raises(WhatsAppError) as caught:
            client.send(PHONE_ID, TOKEN, payload)
        assert (caught.value.code, caught.value.http_status) == (131056, 400)
        assert caught.value.classification == "pair_rate_limit"
        assert caught.value.retryable
    # Another recipient was never affected, and the third send goes through.
    assert client.send(PHONE_ID, TOKEN, text_message("16505550000", "Hi")).startswith("wamid.")
    assert client.send(PHONE_ID, TOKEN, payload).startswith("wamid.")

    sandbox.post("/sandbox/failures", json={"code": 131047})
    with pytest.raises(WhatsAppError) as closed:
        client.send(PHONE_ID, TOKEN, payload)
    assert (closed.value.classification, closed.value.retryable) == ("window_closed", False)
    sandbox.post("/sandbox/failures", json={"code": 131000})
    with pytest.raises(WhatsAppError) as server:
        client.send(PHONE_ID, TOKEN, payload)
    assert (server.value.http_status, server.value.classification) == (500, "transient")


def test_sandbox_validates_bodies_like_meta(sandbox: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"/v21.0/{PHONE_ID}/messages"
    good = text_message("16505551234", "ok")
    cases = [
        {**good, "messaging_product": "sms"},
        {k: v for k, v in good.items() if k != "to"},
        {**good, "to": "not-a-number"},
        {**good, "text": {"body": ""}},
        {**good, "text": {"body": "x" * 4097}},
        {**good, "type": "image"},
        {"messaging_product": "whatsapp", "status": "read"},
        {"messaging_product": "whatsapp", "status": "delivered", "message_id": "wamid.X"},
    ]
    for body in cases:
        response = sandbox.post(url, json=body, headers=headers)
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == 100
    assert sandbox.post(url, json={**good, "text": {"body": "x" * 4096}}, headers=headers).status_code == 200
    missing = sandbox.post(url, json=good)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == 190
    assert sandbox.post(url, json=good, headers={"Authorization": "Basic abc"}).status_code == 401
    assert len(sandbox.get("/sandbox/messages").json()["messages"]) == 1


def test_a_network_failure_is_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = WhatsAppClient(
        "http://graph.invalid", "v21.0", http=httpx.Client(transport=httpx.MockTransport(refuse))
    )
    with pytest.raises(WhatsAppError) as caught:
        client.send(PHONE_ID, TOKEN, text_message("16505551234", "Hi"))
    assert (caught.value.code, caught.value.classification, caught.value.retryable) == (
        None,
        "transient",
        True,
    )


def test_async_client_sends_reads_and_fetches_media() -> None:
    app = create_app(make_settings())

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as control:
            content = b"\x89PNG fake image"
            uploaded = await control.post(
                "/sandbox/media",
                json={"mime_type": "image/png", "content_base64": base64.b64encode(content).decode()},
            )
            media_id = uploaded.json()["id"]
            async with AsyncWhatsAppClient(
                "http://sandbox", "v21.0", http=httpx.AsyncClient(transport=transport)
            ) as client:
                wamid = await client.send(PHONE_ID, TOKEN, text_message("16505551234", "async hello"))
                await client.mark_read(PHONE_ID, TOKEN, "wamid.IN", typing=False)
                info = await client.media(media_id, TOKEN)
                assert (info["mime_type"], info["file_size"]) == ("image/png", len(content))
                assert await client.download_media(info["url"], TOKEN) == content
                with pytest.raises(WhatsAppError) as missing:
                    await client.media("999", TOKEN)
                assert missing.value.code == 100
                await control.post("/sandbox/failures", json={"code": 190})
                with pytest.raises(WhatsAppError) as auth:
                    await client.send(PHONE_ID, TOKEN, text_message("16505551234", "x"))
                assert (auth.value.http_status, auth.value.classification) == (401, "auth")
            listed = (await control.get("/sandbox/messages", params={"to": "16505551234"})).json()["messages"]
            assert [m["id"] for m in listed] == [wamid]
            reads = (await control.get("/sandbox/reads", params={"message_id": "wamid.IN"})).json()["reads"]
            assert [r["typing"] for r in reads] == [False]

    asyncio.run(scenario())


def test_sandbox_accepts_templates_and_records_them(sandbox: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    template = {
        "messaging_product": "whatsapp",
        "to": "16505551234",
        "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}},
    }
    assert sandbox.post(f"/v21.0/{PHONE_ID}/messages", json=template, headers=headers).status_code == 200
    bad = {**template, "template": {"name": "hello_world"}}
    assert sandbox.post(f"/v21.0/{PHONE_ID}/messages", json=bad, headers=headers).status_code == 400
    [listed] = sandbox.get("/sandbox/messages").json()["messages"]
    assert (listed["type"], listed["body"]) == ("template", "[template hello_world]")
