"""History: keyset pagination on (created_at, id), filters, cursors, and the message detail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from tests import factories
from tests.management_api.conftest import Tenant

BULK_INSERT = """
INSERT INTO messages (organization_id, chatbot_id, channel_id, conversation_id, contact_id, direction, author,
                      type, text, status, created_at)
SELECT %(organization_id)s, %(chatbot_id)s, %(channel_id)s, %(id)s, %(contact_id)s,
       CASE WHEN i %% 2 = 0 THEN 'inbound' ELSE 'outbound' END,
       CASE WHEN i %% 2 = 0 THEN 'customer' ELSE 'assistant' END,
       'text', 'message ' || i, CASE WHEN i %% 2 = 0 THEN 'received' ELSE 'sent' END,
       -- three messages share each millisecond, so the id must break ties
       %(base)s + (i / 3) * interval '1 millisecond'
FROM generate_series(1, %(count)s) AS i
"""


def bulk_messages(
    db: psycopg.Connection[Any], conversation: dict[str, Any], count: int, base: datetime
) -> None:
    db.execute(BULK_INSERT, conversation | {"count": count, "base": base})


def page_through(api: TestClient, url: str, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        response = api.get(url, headers=headers, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_every_message_exactly_once_in_order_with_inserts_between_pages(
    api: TestClient, db: psycopg.Connection[Any], tenant: Tenant
) -> None:
    conversation = tenant.conversation
    bulk_messages(db, conversation, 10_500, datetime.now(UTC) - timedelta(days=1))
    url = f"/api/chatbots/{tenant.chatbot['id']}/history"
    params: dict[str, str | int] = {"conversation_id": str(conversation["id"]), "limit": 200}
    seen: list[str] = []
    inserted_meanwhile = 0
    cursor = None
    while True:
        response = api.get(
            url, headers=tenant.headers["agent"], params=params | ({"cursor": cursor} if cursor else {})
        )
        assert response.status_code == 200
        page = response.json()
        assert len(page["items"]) <= 200
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # A customer keeps writing while the dashboard pages through.
        factories.create_message(db, conversation, text=f"new {inserted_meanwhile}")
        inserted_meanwhile += 1

    expected = [
        str(row["id"])
        for row in db.execute(
            "SELECT id FROM messages WHERE conversation_id = %s ORDER BY created_at, id",
            (conversation["id"],),
        )
    ]
    assert inserted_meanwhile >= 52
    assert len(expected) == 10_500 + 1 + inserted_meanwhile
    assert len(seen) == len(set(seen))
    assert seen == expected


def test_newest_first_and_the_chatbot_wide_history(
    api: TestClient, db: psycopg.Connection[Any], tenant: Tenant
) -> None:
    other = factories.create_conversation(db, tenant.channel)
    bulk_messages(db, other, 300, datetime.now(UTC) - timedelta(hours=2))
    url = f"/api/chatbots/{tenant.chatbot['id']}/history"

    items = page_through(api, url, tenant.headers["owner"], order="desc", limit=70)

    rows = db.execute(
        "SELECT id FROM messages WHERE chatbot_id = %s ORDER BY created_at DESC, id DESC",
        (tenant.chatbot["id"],),
    ).fetchall()
    assert [item["id"] for item in items] == [str(row["id"]) for row in rows]
    assert len(items) == 301


def test_date_range(api: TestClient, db: psycopg.Connection[Any], tenant: Tenant) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    bulk_messages(db, tenant.conversation, 30, base)  # i/3 ms: 0..10 ms after base
    url = f"/api/chatbots/{tenant.chatbot['id']}/history"
    since, until = base + timedelta(milliseconds=2), base + timedelta(milliseconds=5)

    items = page_through(
        api, url, tenant.headers["owner"], since=since.isoformat(), until=until.isoformat(), limit=4
    )

    # created_at in [2 ms, 5 ms): i / 3 in {2, 3, 4} → i in 6..14
    assert sorted(item["text"] for item in items) == sorted(f"message {i}" for i in range(6, 15))


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 201},
        {"cursor": "garbage"},
        {"cursor": "eyJrIjoiY2hhdGJvdHMiLCJ2IjpbbnVsbCxudWxsXX0"},  # a chatbots cursor
        {"since": "2026-01-01T00:00:00"},  # no time zone
        {"order": "sideways"},
        {"conversation_id": "not-a-uuid"},
    ],
)
def test_bad_parameters_are_422(api: TestClient, tenant: Tenant, params: dict[str, Any]) -> None:
    response = api.get(
        f"/api/chatbots/{tenant.chatbot['id']}/history", headers=tenant.headers["owner"], params=params
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_failed"


def test_a_cursor_only_continues_its_own_order(
    api: TestClient, db: psycopg.Connection[Any], tenant: Tenant
) -> None:
    bulk_messages(db, tenant.conversation, 10, datetime.now(UTC) - timedelta(hours=1))
    url = f"/api/chatbots/{tenant.chatbot['id']}/history"
    cursor = api.get(url, headers=tenant.headers["owner"], params={"limit": 2}).json()["next_cursor"]
    response = api.get(url, headers=tenant.headers["owner"], params={"cursor": cursor, "order": "desc"})
    assert response.status_code == 422


def test_message_detail_has_thread_context_and_citations(
    api: TestClient, db: psycopg.Connection[Any], tenant: Tenant
) -> None:
    conversation = tenant.conversation
    for i in range(7):
        factories.create_message(db, conversation, text=f"before {i}")
    answer = factories.create_message(
        db,
        conversation,
        direction="outbound",
        author="assistant",
        text="We open at 8 on Sundays.",
        citations=psycopg.types.json.Jsonb([{"source_id": str(tenant.source["id"]), "uri": "faq.md"}]),
    )
    for i in range(2):
        factories.create_message(db, conversation, text=f"after {i}")

    response = api.get(
        f"/api/chatbots/{tenant.chatbot['id']}/history/{answer['id']}", headers=tenant.headers["agent"]
    )

    assert response.status_code == 200
    body = response.json()
    assert body["message"]["text"] == "We open at 8 on Sundays."
    assert body["message"]["citations"] == [{"source_id": str(tenant.source["id"]), "uri": "faq.md"}]
    assert [m["text"] for m in body["before"]] == [f"before {i}" for i in range(2, 7)]
    assert [m["text"] for m in body["after"]] == ["after 0", "after 1"]


def test_a_message_of_another_chatbot_is_404(
    api: TestClient, db: psycopg.Connection[Any], tenant: Tenant
) -> None:
    other_bot = factories.create_chatbot(db, tenant.organization)
    response = api.get(
        f"/api/chatbots/{other_bot['id']}/history/{tenant.message['id']}", headers=tenant.headers["owner"]
    )
    assert response.status_code == 404
