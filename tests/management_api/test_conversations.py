"""The inbox, human handoff, and agents' manual replies through the WhatsApp send path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from tests import factories
from tests.management_api.conftest import GraphApi, Tenant


def _wa_id(db: psycopg.Connection[Any], tenant: Tenant) -> str:
    row = db.execute(
        "SELECT wa_id FROM contacts WHERE id = %s", (tenant.conversation["contact_id"],)
    ).fetchone()
    assert row is not None
    return str(row["wa_id"])


def test_inbox_latest_first_with_contact_last_message_and_pause(
    api: TestClient, db: psycopg.Connection[Any], tenant: Tenant
) -> None:
    now = datetime.now(UTC)
    older = factories.create_conversation(
        db, tenant.channel, factories.create_contact(db, tenant.channel, profile_name="Bea"),
        last_message_at=now - timedelta(hours=3), paused_at=now,
    )  # fmt: skip
    silent = factories.create_conversation(db, tenant.channel)  # no message yet: last
    factories.create_message(db, older, text="older conversation")
    last = factories.create_message(
        db, tenant.conversation, direction="outbound", author="assistant", text="Yes!"
    )

    pages = []
    cursor = None
    while True:
        params = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        response = api.get(
            f"/api/chatbots/{tenant.chatbot['id']}/conversations",
            headers=tenant.headers["agent"],
            params=params,
        )
        assert response.status_code == 200
        pages.extend(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break

    assert [c["id"] for c in pages] == [str(tenant.conversation["id"]), str(older["id"]), str(silent["id"])]
    first = pages[0]
    assert first["last_message"]["id"] == str(last["id"])
    assert first["contact"]["id"] == str(tenant.conversation["contact_id"])
    assert first["contact"]["wa_id"] == _wa_id(db, tenant)
    assert first["window_open"] is True
    assert first["paused"] is False
    assert pages[1]["paused"] is True
    assert pages[1]["contact"]["profile_name"] == "Bea"
    assert pages[2]["last_message"] is None


def test_pause_and_resume(api: TestClient, db: psycopg.Connection[Any], tenant: Tenant) -> None:
    url = f"/api/conversations/{tenant.conversation['id']}"
    paused = api.post(
        f"{url}/pause", headers=tenant.headers["agent"], json={"minutes": 30, "reason": "refund"}
    )
    assert paused.status_code == 200
    state = paused.json()
    assert state["paused"] is True
    assert state["pause_reason"] == "refund"
    until = datetime.fromisoformat(state["paused_until"])
    assert timedelta(minutes=29) < until - datetime.now(UTC) <= timedelta(minutes=30)
    row = db.execute(
        "SELECT paused_by FROM conversations WHERE id = %s", (tenant.conversation["id"],)
    ).fetchone()
    assert row == {"paused_by": tenant.agent["id"]}

    indefinitely = api.post(f"{url}/pause", headers=tenant.headers["agent"], json={}).json()
    assert indefinitely["paused"] is True
    assert indefinitely["paused_until"] is None

    resumed = api.post(f"{url}/resume", headers=tenant.headers["agent"])
    assert resumed.status_code == 200
    assert resumed.json()["paused"] is False
    assert api.post(f"{url}/pause", headers=tenant.headers["agent"], json={"minutes": 0}).status_code == 422


def test_agent_reply_is_stored_and_sent(
    api: TestClient, db: psycopg.Connection[Any], graph: GraphApi, tenant: Tenant
) -> None:
    response = api.post(
        f"/api/conversations/{tenant.conversation['id']}/messages",
        headers=tenant.headers["agent"],
        json={"text": "Hi, Ana here. Yes, we bake on Sundays."},
    )

    assert response.status_code == 201, response.text
    message = response.json()
    assert (message["author"], message["direction"], message["status"]) == ("agent", "outbound", "sent")
    assert message["sent_by"] == str(tenant.agent["id"])
    [request] = graph.requests
    assert request.url.path.endswith(f"/{tenant.channel['phone_number_id']}/messages")
    assert request.headers["Authorization"] == "Bearer test-access-token"  # decrypted from the channel
    assert graph.sent[0]["to"] == _wa_id(db, tenant)
    assert graph.sent[0]["text"]["body"] == "Hi, Ana here. Yes, we bake on Sundays."
    row = db.execute("SELECT wamid, status FROM messages WHERE id = %s", (message["id"],)).fetchone()
    assert row is not None
    assert row["wamid"] == message["wamid"]
    assert row["wamid"].startswith("wamid.sent.")
    usage = db.execute(
        "SELECT messages_out FROM usage_monthly WHERE organization_id = %s", (tenant.organization["id"],)
    ).fetchone()
    assert usage == {"messages_out": 1}


@pytest.mark.parametrize("last_inbound", [None, timedelta(hours=24, minutes=1)])
def test_outside_the_24_hour_window_a_template_is_needed(
    api: TestClient,
    db: psycopg.Connection[Any],
    graph: GraphApi,
    tenant: Tenant,
    last_inbound: timedelta | None,
) -> None:
    at = None if last_inbound is None else datetime.now(UTC) - last_inbound
    db.execute("UPDATE conversations SET last_inbound_at = %s WHERE id = %s", (at, tenant.conversation["id"]))

    response = api.post(
        f"/api/conversations/{tenant.conversation['id']}/messages",
        headers=tenant.headers["agent"],
        json={"text": "Hello?"},
    )

    assert response.status_code == 409
    error = response.json()["error"]
    assert "template" in error["message"]
    assert error["details"]["reason"] == "outside_customer_service_window"
    assert graph.requests == []
    outbound = db.execute(
        "SELECT count(*) AS n FROM messages WHERE conversation_id = %s AND direction = 'outbound'",
        (tenant.conversation["id"],),
    ).fetchone()
    assert outbound == {"n": 0}


def test_a_refused_send_is_recorded_as_failed(
    api: TestClient, db: psycopg.Connection[Any], graph: GraphApi, tenant: Tenant
) -> None:
    graph.error = (400, {"error": {"message": "Recipient blocked", "code": 131026, "type": "OAuthException"}})
    response = api.post(
        f"/api/conversations/{tenant.conversation['id']}/messages",
        headers=tenant.headers["agent"],
        json={"text": "Hi"},
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "whatsapp_error"
    row = db.execute(
        "SELECT status, error_code FROM messages WHERE conversation_id = %s AND author = 'agent'",
        (tenant.conversation["id"],),
    ).fetchone()
    assert row == {"status": "failed", "error_code": 131026}


def test_meta_closing_the_window_is_a_409(api: TestClient, graph: GraphApi, tenant: Tenant) -> None:
    graph.error = (400, {"error": {"message": "Re-engagement message", "code": 131047}})
    response = api.post(
        f"/api/conversations/{tenant.conversation['id']}/messages",
        headers=tenant.headers["agent"],
        json={"text": "Hi"},
    )
    assert response.status_code == 409
