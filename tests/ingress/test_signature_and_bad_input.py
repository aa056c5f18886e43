"""Signatures are checked over the raw bytes before parsing; each bad input has its status and stores nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from chatmill.settings import Settings
from ingress.signature import sign, verify
from ingress.webhook import MAX_BODY_BYTES
from tests import factories
from tests.ingress.conftest import post
from tests.webhooks import encode, fixture, signed_headers

SECRET = "dev-whatsapp-app-secret"


def _stored(db: factories.Conn) -> dict[str, int]:
    counts = db.execute(
        "SELECT (SELECT count(*) FROM messages) AS messages, (SELECT count(*) FROM contacts) AS contacts,"
        " (SELECT count(*) FROM inbound_outbox) AS outbox, (SELECT count(*) FROM unmatched_statuses) AS statuses"
    ).fetchone()
    assert counts is not None
    return dict(counts)


NOTHING = {"messages": 0, "contacts": 0, "outbox": 0, "statuses": 0}


def test_non_ascii_body_verifies_both_escaped_and_literal(
    ingress: TestClient, settings: Settings, channel: dict[str, Any], db: factories.Conn
) -> None:
    document = fixture("message_reaction.json")
    escaped, literal = encode(document), encode(document, escape_unicode=False)
    assert b"\\ud83d" in escaped
    assert "👍".encode() in literal
    assert verify([SECRET], escaped, sign(SECRET, escaped))
    assert verify([SECRET], literal, sign(SECRET, literal))
    assert not verify([SECRET], literal, sign(SECRET, escaped))  # re-serialising breaks it
    assert post(ingress, escaped, SECRET).status_code == 200
    assert post(ingress, literal, SECRET).status_code == 200  # same wamid: deduplicated
    assert _stored(db)["messages"] == 1


def test_any_changed_byte_fails_the_signature() -> None:
    body = encode(fixture("message_text.json"))
    header = sign(SECRET, body)
    for position in range(0, len(body), 7):
        tampered = bytearray(body)
        tampered[position] ^= 0x01
        assert not verify([SECRET], bytes(tampered), header)
    assert not verify(["another-secret"], body, header)
    assert not verify([SECRET], body, header.replace("sha256=", "sha1="))
    assert not verify([SECRET], body, None)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, "wrong"),
        ({"X-Hub-Signature-256": "x"}, "garbled"),
    ],
)
def test_bad_signature_is_401_and_stores_nothing(
    ingress: TestClient, channel: dict[str, Any], db: factories.Conn, headers: dict[str, str], reason: str
) -> None:
    response = ingress.post(
        "/webhook/whatsapp", content=encode(fixture("message_text.json")), headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert _stored(db) == NOTHING


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        json.dumps({"object": "page", "entry": []}).encode(),
        b"[]",
        b'{"object": "whatsapp_business_account", "entry": {}}',
    ],
    ids=["malformed", "not-utf8", "wrong-object", "array", "entry-not-list"],
)
def test_unreadable_body_is_400_with_a_json_error(
    ingress: TestClient, channel: dict[str, Any], db: factories.Conn, body: bytes
) -> None:
    response = post(ingress, body, SECRET)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert _stored(db) == NOTHING


def test_oversized_body_is_413_without_reading_it_all(
    ingress: TestClient, channel: dict[str, Any], db: factories.Conn
) -> None:
    body = b"x" * (MAX_BODY_BYTES + 1)
    response = ingress.post("/webhook/whatsapp", content=body, headers=signed_headers(body, SECRET))
    assert response.status_code == 413

    def chunks() -> Any:  # no Content-Length: cut off while streaming
        for _ in range(4):
            yield b"x" * (1024 * 1024)

    streamed = ingress.post(
        "/webhook/whatsapp", content=chunks(), headers={"X-Hub-Signature-256": "sha256=00"}
    )
    assert streamed.status_code == 413
    assert _stored(db) == NOTHING


def test_unknown_number_is_acknowledged_counted_and_not_stored(
    ingress: TestClient, channel: dict[str, Any], db: factories.Conn
) -> None:
    document = fixture("message_text.json")
    document["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999999999"
    response = post(ingress, encode(document), SECRET)
    assert response.status_code == 200
    assert response.json()["messages"] == {"unknown_number": 1}
    assert _stored(db) == NOTHING
    metrics = ingress.get("/metrics").text
    assert 'chatmill_webhook_messages_total{outcome="unknown_number"} 1.0' in metrics


def test_one_unreadable_message_does_not_sink_the_rest(
    ingress: TestClient, channel: dict[str, Any], db: factories.Conn
) -> None:
    document = fixture("message_text.json")
    value = document["entry"][0]["changes"][0]["value"]
    value["messages"].append({"type": "text", "text": {"body": "no id"}})
    response = post(ingress, encode(document), SECRET)
    assert response.status_code == 200
    assert _stored(db)["messages"] == 1
    assert 'chatmill_webhook_messages_total{outcome="malformed"} 1.0' in ingress.get("/metrics").text


def test_tenant_app_path_needs_that_apps_secret_and_only_routes_its_own_number(
    ingress: TestClient, settings: Settings, channel: dict[str, Any], db: factories.Conn
) -> None:
    org = factories.create_organization(db)
    own = factories.create_channel(db, factories.create_chatbot(db, org), app_secret="tenant-secret")
    path = f"/webhook/whatsapp/{own['id']}"
    document = fixture("message_text.json")
    # signed with the platform secret: refused on the tenant's path
    assert post(ingress, encode(document), SECRET, path).status_code == 401
    # the tenant's secret cannot inject into the platform channel's number
    response = post(ingress, encode(document), "tenant-secret", path)
    assert response.status_code == 200
    assert response.json()["messages"] == {"unknown_number": 1}
    assert _stored(db) == NOTHING
    # its own number is accepted
    document["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = own["phone_number_id"]
    assert post(ingress, encode(document), "tenant-secret", path).json()["messages"] == {"accepted": 1}
    # unknown channel ids
    assert post(ingress, encode(document), "tenant-secret", "/webhook/whatsapp/not-a-uuid").status_code == 404
    platform_path = f"/webhook/whatsapp/{channel['id']}"  # a platform-app channel has no own path
    assert post(ingress, encode(document), SECRET, platform_path).status_code == 404
