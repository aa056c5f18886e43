"""Every shared fixture is accepted with a valid signature and produces the expected rows."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from chatmill.settings import Settings
from tests import factories
from tests.ingress.conftest import post
from tests.webhooks import encode, fixture

# fixture -> (stored message type, its text, answered?)
INBOUND = {
    "message_text.json": ("text", "Does it come in another color?", True),
    "message_image.json": ("image", "[image: Taj Mahal]", True),
    "message_interactive_button_reply.json": ("interactive", None, True),
    "message_interactive_list_reply.json": ("interactive", None, True),
    "message_reaction.json": ("reaction", "[reacted 👍 to a message]", False),
    "message_unsupported.derived_envelope.json": ("unsupported", "[unsupported message: edit]", False),
}
STATUSES = ["status_sent.json", "status_delivered.derived.json", "status_failed.json"]


def _rows(db: factories.Conn, table: str) -> list[dict[str, Any]]:
    return db.execute(f"SELECT * FROM {table}").fetchall()


@pytest.mark.parametrize("name", sorted(INBOUND))
def test_inbound_fixture_is_stored_with_its_rendering(
    name: str, ingress: TestClient, settings: Settings, channel: dict[str, Any], db: factories.Conn
) -> None:
    document = fixture(name)
    raw = document["entry"][0]["changes"][0]["value"]["messages"][0]
    response = post(ingress, encode(document), settings.whatsapp_app_secret.get_secret_value())
    assert response.status_code == 200, response.text
    [message] = _rows(db, "messages")
    kind, text, answered = INBOUND[name]
    assert message["type"] == kind
    assert message["wamid"] == raw["id"]
    assert message["organization_id"] == channel["organization_id"]
    assert message["direction"] == "inbound"
    if text is not None:
        assert message["text"] == text
    else:
        reply = raw["interactive"].get("button_reply") or raw["interactive"]["list_reply"]
        assert message["text"].startswith(reply["title"])
    [contact] = _rows(db, "contacts")
    assert contact["wa_id"] == raw["from"]
    assert contact["profile_name"] == "Sheena Nelson"
    [conversation] = _rows(db, "conversations")
    assert conversation["last_inbound_at"] == message["wa_timestamp"]
    assert len(_rows(db, "inbound_outbox")) == (1 if answered else 0)


def test_image_keeps_media_metadata_for_download(
    ingress: TestClient, settings: Settings, channel: dict[str, Any], db: factories.Conn
) -> None:
    post(ingress, encode(fixture("message_image.json")), settings.whatsapp_app_secret.get_secret_value())
    [message] = _rows(db, "messages")
    assert message["media"]["id"] == "1003383421387256"
    assert message["media"]["mime_type"] == "image/jpeg"
    assert message["media"]["sha256"]


def test_reaction_points_at_the_message_it_reacts_to(
    ingress: TestClient, settings: Settings, channel: dict[str, Any], db: factories.Conn
) -> None:
    document = fixture("message_reaction.json")
    target = document["entry"][0]["changes"][0]["value"]["messages"][0]["reaction"]["message_id"]
    post(ingress, encode(document), settings.whatsapp_app_secret.get_secret_value())
    [message] = _rows(db, "messages")
    assert message["context_wamid"] == target


@pytest.mark.parametrize("name", STATUSES)
def test_status_fixture_for_an_unknown_wamid_is_kept_for_later(
    name: str, ingress: TestClient, settings: Settings, channel: dict[str, Any], db: factories.Conn
) -> None:
    document = fixture(name)
    raw = document["entry"][0]["changes"][0]["value"]["statuses"][0]
    response = post(ingress, encode(document), settings.whatsapp_app_secret.get_secret_value())
    assert response.status_code == 200
    assert response.json()["statuses"] == {"unmatched": 1}
    [kept] = _rows(db, "unmatched_statuses")
    assert (kept["wamid"], kept["status"]) == (raw["id"], raw["status"])
    assert _rows(db, "messages") == []
    assert _rows(db, "inbound_outbox") == []


@pytest.mark.parametrize("name", STATUSES)
def test_status_fixture_applies_to_our_sent_message(
    name: str, ingress: TestClient, settings: Settings, channel: dict[str, Any], db: factories.Conn
) -> None:
    document = fixture(name)
    raw = document["entry"][0]["changes"][0]["value"]["statuses"][0]
    conversation = factories.create_conversation(db, channel)
    sent = factories.create_message(db, conversation, direction="outbound", wamid=raw["id"], status="sent")
    response = post(ingress, encode(document), settings.whatsapp_app_secret.get_secret_value())
    assert response.json()["statuses"] == {"applied": 1}
    row = db.execute("SELECT * FROM messages WHERE id = %s", (sent["id"],)).fetchone()
    assert row is not None
    assert row["status"] == raw["status"]
    assert row["status_history"][-1]["status"] == raw["status"]
    if raw["status"] == "failed":
        assert row["error_code"] == 131049
        assert row["error_title"].startswith("This message was not delivered")
