"""Building and signing WhatsApp webhook bodies for tests, from the shared fixtures."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ingress.signature import sign

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "whatsapp"
SAMPLE_PHONE_NUMBER_ID = "106540352242922"


def fixture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return document


def fixture_names() -> list[str]:
    return sorted(path.name for path in FIXTURES.glob("*.json"))


def encode(document: dict[str, Any], *, escape_unicode: bool = True) -> bytes:
    """As Meta sends it: non-ASCII escaped as \\uXXXX (or literal UTF-8 when asked)."""
    return json.dumps(document, ensure_ascii=escape_unicode).encode()


def signed_headers(body: bytes, secret: str) -> dict[str, str]:
    return {"X-Hub-Signature-256": sign(secret, body), "Content-Type": "application/json"}


def text_message(
    wamid: str, text: str, *, wa_id: str = "16505551234", timestamp: int = 1749416383, name: str = "Sheena"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One (contact, message) pair for :func:`envelope`."""
    contact = {"profile": {"name": name}, "wa_id": wa_id}
    message = {
        "from": wa_id,
        "id": wamid,
        "timestamp": str(timestamp),
        "type": "text",
        "text": {"body": text},
    }
    return contact, message


def status(
    wamid: str, state: str, *, timestamp: int = 1751142888, recipient: str = "16505551234"
) -> dict[str, Any]:
    return {"id": wamid, "status": state, "timestamp": str(timestamp), "recipient_id": recipient}


def change(
    phone_number_id: str = SAMPLE_PHONE_NUMBER_ID,
    *,
    messages: list[tuple[dict[str, Any], dict[str, Any]]] = (),  # type: ignore[assignment]
    statuses: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
    }
    if messages:
        contacts = {c["wa_id"]: c for c, _ in messages}
        value["contacts"] = list(contacts.values())
        value["messages"] = [m for _, m in messages]
    if statuses:
        value["statuses"] = list(statuses)
    return {"value": value, "field": "messages"}


def envelope(*entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A body with one entry per argument, each a list of changes."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": copy.deepcopy(changes)} for changes in entries],
    }
