from __future__ import annotations

import pytest

from chatmill.seed import DEMO_ACCESS_TOKEN, DEMO_PHONE_NUMBER_ID, DemoConflict, seed_demo
from chatmill.settings import Settings
from tests import factories

TABLES = ["organizations", "users", "chatbots", "whatsapp_channels", "price_items", "knowledge_sources"]


def _counts(db: factories.Conn) -> dict[str, int]:
    return {table: db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"] for table in TABLES}  # type: ignore[index]


def test_seed_demo_creates_a_routable_tenant_and_is_idempotent(
    db: factories.Conn, settings: Settings
) -> None:
    demo = seed_demo(settings.database_url or "", settings)
    assert demo.chunks > 0
    source = db.execute(
        "SELECT status, chunk_count FROM knowledge_sources WHERE id = %s", (demo.source_id,)
    ).fetchone()
    assert source == {"status": "ready", "chunk_count": demo.chunks}
    first = _counts(db)
    assert all(count >= 1 for count in first.values())
    seed_demo(settings.database_url or "", settings)
    assert _counts(db) == first

    channel = db.execute(
        "SELECT c.*, b.organization_id AS bot_org FROM whatsapp_channels c JOIN chatbots b ON b.id = c.chatbot_id"
        " WHERE c.phone_number_id = %s AND c.disconnected_at IS NULL",
        (DEMO_PHONE_NUMBER_ID,),
    ).fetchone()
    assert channel is not None
    assert channel["id"] == demo.channel_id
    assert channel["bot_org"] == demo.organization_id
    # platform app: no per-channel secret; the access token is encrypted at rest
    assert channel["app_secret_encrypted"] is None
    assert DEMO_ACCESS_TOKEN not in channel["access_token_encrypted"]
    assert factories.TEST_BOX.decrypt(channel["access_token_encrypted"]) == DEMO_ACCESS_TOKEN


def test_seed_demo_refuses_a_number_held_by_another_organization(
    db: factories.Conn, settings: Settings
) -> None:
    other = factories.create_organization(db)
    factories.create_channel(db, factories.create_chatbot(db, other), phone_number_id=DEMO_PHONE_NUMBER_ID)
    with pytest.raises(DemoConflict, match=DEMO_PHONE_NUMBER_ID):
        seed_demo(settings.database_url or "", settings)
