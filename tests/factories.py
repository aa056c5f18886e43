"""Factories for test data: every row a test needs, with sane defaults and overridable fields.

Each function takes an open connection (rows as dicts) and returns the inserted row.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import psycopg
import psycopg.types.json
from f.chatmill.lib.secretbox import SecretBox, hint

from chatmill.passwords import hash_password
from chatmill.settings import DEV_ENCRYPTION_KEY

Row = dict[str, Any]
Conn = psycopg.Connection[dict[str, Any]]

_sequence = itertools.count(1)
TEST_BOX = SecretBox([DEV_ENCRYPTION_KEY])


def _insert(conn: Conn, table: str, values: dict[str, Any]) -> Row:
    columns = list(values)
    query = psycopg.sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING *").format(
        psycopg.sql.Identifier(table),
        psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, columns)),
        psycopg.sql.SQL(", ").join(psycopg.sql.Placeholder(column) for column in columns),
    )
    row = conn.execute(query, values).fetchone()
    assert row is not None
    return row


def create_organization(conn: Conn, **fields: Any) -> Row:
    n = next(_sequence)
    return _insert(conn, "organizations", {"name": f"Organization {n}", **fields})


def create_user(conn: Conn, organization: Row, *, password: str = "correct-Horse-9", **fields: Any) -> Row:
    n = next(_sequence)
    values = {
        "organization_id": organization["id"],
        "email": f"user{n}@example.com",
        "password_hash": hash_password(password, rounds=4),
        "role": "owner",
        **fields,
    }
    return _insert(conn, "users", values)


def create_chatbot(conn: Conn, organization: Row, **fields: Any) -> Row:
    n = next(_sequence)
    return _insert(conn, "chatbots", {"organization_id": organization["id"], "name": f"Bot {n}", **fields})


def create_channel(
    conn: Conn,
    chatbot: Row,
    *,
    access_token: str = "test-access-token",
    app_secret: str | None = None,
    verify_token: str | None = None,
    **fields: Any,
) -> Row:
    n = next(_sequence)
    values: dict[str, Any] = {
        "organization_id": chatbot["organization_id"],
        "chatbot_id": chatbot["id"],
        "phone_number_id": str(900000000000000 + n),
        "access_token_encrypted": TEST_BOX.encrypt(access_token),
        "access_token_hint": hint(access_token),
    }
    if app_secret is not None:
        values |= {"app_secret_encrypted": TEST_BOX.encrypt(app_secret), "app_secret_hint": hint(app_secret)}
    if verify_token is not None:
        values |= {
            "verify_token_encrypted": TEST_BOX.encrypt(verify_token),
            "verify_token_hint": hint(verify_token),
        }
    return _insert(conn, "whatsapp_channels", values | fields)


def create_contact(conn: Conn, channel: Row, **fields: Any) -> Row:
    n = next(_sequence)
    values = {
        "organization_id": channel["organization_id"],
        "channel_id": channel["id"],
        "wa_id": f"1555{n:07d}",
    }
    return _insert(conn, "contacts", values | fields)


def create_conversation(conn: Conn, channel: Row, contact: Row | None = None, **fields: Any) -> Row:
    contact = contact or create_contact(conn, channel)
    values = {
        "organization_id": channel["organization_id"],
        "chatbot_id": channel["chatbot_id"],
        "channel_id": channel["id"],
        "contact_id": contact["id"],
    }
    return _insert(conn, "conversations", values | fields)


def create_message(conn: Conn, conversation: Row, **fields: Any) -> Row:
    inbound = fields.get("direction", "inbound") == "inbound"
    values = {
        "organization_id": conversation["organization_id"],
        "chatbot_id": conversation["chatbot_id"],
        "channel_id": conversation["channel_id"],
        "conversation_id": conversation["id"],
        "contact_id": conversation["contact_id"],
        "direction": "inbound",
        "author": "customer" if inbound else "assistant",
        "type": "text",
        "text": "hello",
        "status": "received" if inbound else "pending",
        "wamid": f"wamid.test.{uuid.uuid4().hex}" if inbound else None,
    }
    return _insert(conn, "messages", values | fields)


def create_knowledge_source(conn: Conn, chatbot: Row, **fields: Any) -> Row:
    """A knowledge source; by default an uploaded Markdown file (pass kind/url for a URL or crawl)."""
    n = next(_sequence)
    values: dict[str, Any] = {
        "organization_id": chatbot["organization_id"],
        "chatbot_id": chatbot["id"],
        "kind": "file",
        "name": f"Source {n}",
    }
    values |= fields
    if isinstance(values.get("options"), dict):
        values["options"] = psycopg.types.json.Jsonb(values["options"])
    if values["kind"] == "file":
        values.setdefault("file_name", f"notes-{n}.md")
        values.setdefault("file_content", b"# Notes\n\nNothing yet.\n")
    return _insert(conn, "knowledge_sources", values)


def create_lead(conn: Conn, chatbot: Row, **fields: Any) -> Row:
    """A captured lead of ``chatbot`` (management API tests)."""
    n = next(_sequence)
    values: dict[str, Any] = {
        "organization_id": chatbot["organization_id"],
        "chatbot_id": chatbot["id"],
        "name": f"Lead {n}",
        "email": f"lead{n}@example.com",
        "phone": f"+1555{n:07d}",
        "interest": "wedding cake",
    }
    return _insert(conn, "leads", values | fields)


def enable_integration(conn: Conn, organization: Row, integration_id: str, **fields: Any) -> Row:
    """An organization_integrations row (enabled, empty config unless given)."""
    values: dict[str, Any] = {
        "organization_id": organization["id"],
        "integration_id": integration_id,
        **fields,
    }
    if isinstance(values.get("config"), dict):
        values["config"] = psycopg.types.json.Jsonb(values["config"])
    return _insert(conn, "organization_integrations", values)
