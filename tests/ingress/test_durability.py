"""Batches, concurrent duplicates, status ordering, rate limits and outages."""

from __future__ import annotations

import threading
from typing import Any

import httpx
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from starlette.testclient import TestClient

from chatmill.settings import Settings
from ingress.app import create_app
from tests import factories
from tests.ingress.conftest import post
from tests.servers import Outage, serve
from tests.webhooks import change, encode, envelope, signed_headers, status, text_message

SECRET = "dev-whatsapp-app-secret"


def _count(db: factories.Conn, sql: str) -> int:
    row = db.execute(f"SELECT count(*) AS n FROM {sql}").fetchone()
    assert row is not None
    return int(row["n"])


def test_every_entry_change_message_and_status_of_a_batch_is_stored(
    ingress: TestClient, channel: dict[str, Any], db: factories.Conn
) -> None:
    conversation = factories.create_conversation(db, channel)
    for n in range(3):
        factories.create_message(
            db, conversation, direction="outbound", wamid=f"wamid.out.{n}", status="sent"
        )
    entries = [
        [
            change(
                messages=[
                    text_message(f"wamid.in.{e}.{m}", f"question {e}.{m}", wa_id=f"1555000{e}{m}")
                    for m in range(4)
                ],
                statuses=[status(f"wamid.out.{e}", "delivered")],
            ),
            change(messages=[text_message(f"wamid.in.{e}.x", "another change", wa_id="15550009999")]),
        ]
        for e in range(3)
    ]
    response = post(ingress, encode(envelope(*entries)), SECRET)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "messages": {"accepted": 15}, "statuses": {"applied": 3}}
    assert _count(db, "messages WHERE direction = 'inbound'") == 15
    assert _count(db, "inbound_outbox") == 15
    assert _count(db, "contacts") == 14  # 12 senders + one shared by every entry + the factory's
    assert _count(db, "messages WHERE direction = 'outbound' AND status = 'delivered'") == 3


def test_five_concurrent_deliveries_of_one_message_store_it_once(
    settings: Settings, channel: dict[str, Any], db: factories.Conn
) -> None:
    body = encode(envelope([change(messages=[text_message("wamid.dup", "hello")])]))
    with serve(create_app(settings, run_relay=False)) as url:
        barrier = threading.Barrier(5)
        codes: list[int] = []

        def deliver() -> None:
            barrier.wait()
            codes.append(
                httpx.post(
                    f"{url}/webhook/whatsapp", content=body, headers=signed_headers(body, SECRET)
                ).status_code
            )

        threads = [threading.Thread(target=deliver) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert codes == [200] * 5
    assert _count(db, "messages") == 1
    assert _count(db, "inbound_outbox") == 1
    assert _count(db, "contacts") == 1
    assert _count(db, "conversations") == 1


def test_statuses_delivered_out_of_order_end_at_the_highest_state(
    ingress: TestClient, channel: dict[str, Any], db: factories.Conn
) -> None:
    conversation = factories.create_conversation(db, channel)
    sent = factories.create_message(
        db, conversation, direction="outbound", wamid="wamid.ooo", status="pending"
    )
    for state in ["read", "sent", "delivered", "read"]:
        post(ingress, encode(envelope([change(statuses=[status("wamid.ooo", state)])])), SECRET)
    row = db.execute("SELECT status, status_history FROM messages WHERE id = %s", (sent["id"],)).fetchone()
    assert row is not None
    assert row["status"] == "read"
    assert [entry["status"] for entry in row["status_history"]] == ["read", "sent", "delivered"]


def test_a_status_before_the_wamid_is_recorded_is_applied_when_it_is(
    ingress: TestClient, channel: dict[str, Any], db: factories.Conn
) -> None:
    conversation = factories.create_conversation(db, channel)
    pending = factories.create_message(db, conversation, direction="outbound", status="pending")
    post(ingress, encode(envelope([change(statuses=[status("wamid.early", "delivered")])])), SECRET)
    db.execute("SELECT record_sent_wamid(%s, %s, 'wamid.early')", (pending["organization_id"], pending["id"]))
    row = db.execute("SELECT status FROM messages WHERE id = %s", (pending["id"],)).fetchone()
    assert row == {"status": "delivered"}
    assert _count(db, "unmatched_statuses") == 0


def test_over_the_rate_limit_messages_are_stored_but_not_dispatched(
    ingress: TestClient, channel: dict[str, Any], db: factories.Conn
) -> None:
    db.execute("UPDATE chatbots SET rate_limit_per_minute = 3 WHERE id = %s", (channel["chatbot_id"],))
    for n in range(5):
        post(
            ingress, encode(envelope([change(messages=[text_message(f"wamid.rl.{n}", f"spam {n}")])])), SECRET
        )
    assert _count(db, "messages") == 5
    assert _count(db, "messages WHERE rate_limited") == 2
    assert _count(db, "inbound_outbox") == 3
    # a redelivery of an admitted message is a duplicate, not a sixth message
    post(ingress, encode(envelope([change(messages=[text_message("wamid.rl.0", "spam 0")])])), SECRET)
    assert _count(db, "messages") == 5
    assert 'chatmill_webhook_messages_total{outcome="rate_limited"} 2.0' in ingress.get("/metrics").text


def test_redis_down_still_accepts_and_deduplicates(
    settings: Settings, channel: dict[str, Any], db: factories.Conn
) -> None:
    broken = settings.model_copy(update={"redis_url": "unix:///nonexistent/redis.sock"})
    body = encode(envelope([change(messages=[text_message("wamid.noredis", "hi")])]))
    with TestClient(create_app(broken, run_relay=False)) as client:
        assert post(client, body, SECRET).status_code == 200
        assert post(client, body, SECRET).json()["messages"] == {"duplicate": 1}
        assert "chatmill_ratelimit_fail_open_total 2.0" in client.get("/metrics").text  # one per delivery
    assert _count(db, "messages") == 1
    assert _count(db, "inbound_outbox") == 1


def _via_proxy(database_url: str, proxy: Outage) -> str:
    params = conninfo_to_dict(database_url)
    params.update(host="127.0.0.1", port=str(proxy.port))
    return make_conninfo(**{k: str(v) for k, v in params.items()})


def _unix_socket(database_url: str) -> str:
    params = conninfo_to_dict(database_url)
    host = str(params.get("host", ""))
    port = str(params.get("port") or "5432")
    return f"{host}/.s.PGSQL.{port}"


def test_postgres_down_answers_503_and_the_redelivery_is_stored_once(
    settings: Settings, channel: dict[str, Any], db: factories.Conn
) -> None:
    assert settings.database_url is not None
    params = conninfo_to_dict(settings.database_url)
    target: str | tuple[str, int] = (
        _unix_socket(settings.database_url)
        if str(params.get("host", "")).startswith("/")
        else (str(params["host"]), int(params.get("port") or 5432))
    )
    proxy = Outage(target)
    proxied = settings.model_copy(update={"database_url": _via_proxy(settings.database_url, proxy)})
    body = encode(envelope([change(messages=[text_message("wamid.outage", "are you there?")])]))
    try:
        with TestClient(create_app(proxied, run_relay=False)) as client:
            assert client.get("/health/ready").status_code == 200  # the pool holds live connections
            proxy.cut()
            response = post(client, body, SECRET)
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "service_unavailable"
            assert client.get("/health/ready").json()["checks"]["postgres"]["status"] == "error"
            assert _count(db, "messages") == 0
            proxy.restore()
            for _ in range(3):  # Meta redelivers, maybe more than once
                response = post(client, body, SECRET)
                if response.status_code == 200:
                    break
            assert response.status_code == 200
            assert post(client, body, SECRET).json()["messages"] == {"duplicate": 1}
    finally:
        proxy.close()
    assert _count(db, "messages") == 1
    assert _count(db, "inbound_outbox") == 1
