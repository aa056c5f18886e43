"""The schema itself enforces what must never happen, whatever the code does."""

from __future__ import annotations

import psycopg
import pytest

from tests import factories


def test_a_row_cannot_point_at_another_organizations_parent(db: factories.Conn) -> None:
    mine, theirs = factories.create_organization(db), factories.create_organization(db)
    their_bot = factories.create_chatbot(db, theirs)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        factories.create_channel(db, their_bot, organization_id=mine["id"])


def test_inbound_messages_are_unique_per_channel_and_wamid(db: factories.Conn) -> None:
    org = factories.create_organization(db)
    channel = factories.create_channel(db, factories.create_chatbot(db, org))
    conversation = factories.create_conversation(db, channel)
    factories.create_message(db, conversation, wamid="wamid.same")
    with pytest.raises(psycopg.errors.UniqueViolation):
        factories.create_message(db, conversation, wamid="wamid.same")
    # outbound rows not yet sent have no wamid and do not collide
    factories.create_message(db, conversation, direction="outbound", text="a")
    factories.create_message(db, conversation, direction="outbound", text="b")


def test_one_live_channel_per_phone_number(db: factories.Conn) -> None:
    org = factories.create_organization(db)
    bot = factories.create_chatbot(db, org)
    first = factories.create_channel(db, bot, phone_number_id="106540352242922")
    with pytest.raises(psycopg.errors.UniqueViolation):
        factories.create_channel(db, bot, phone_number_id="106540352242922")
    db.execute("UPDATE whatsapp_channels SET disconnected_at = now() WHERE id = %s", (first["id"],))
    factories.create_channel(db, bot, phone_number_id="106540352242922")


def test_contacts_need_a_phone_or_a_user_id_and_may_lack_a_phone(db: factories.Conn) -> None:
    org = factories.create_organization(db)
    channel = factories.create_channel(db, factories.create_chatbot(db, org))
    contact = factories.create_contact(db, channel, wa_id=None, user_id="US.13491208655302741918")
    assert contact["wa_id"] is None
    with pytest.raises(psycopg.errors.CheckViolation):
        factories.create_contact(db, channel, wa_id=None, user_id=None)


def test_chatbot_settings_are_range_checked(db: factories.Conn) -> None:
    org = factories.create_organization(db)
    with pytest.raises(psycopg.errors.CheckViolation):
        factories.create_chatbot(db, org, temperature=2.5)


def test_chunk_text_search_vector_is_generated(db: factories.Conn) -> None:
    org = factories.create_organization(db)
    bot = factories.create_chatbot(db, org)
    source = db.execute(
        "INSERT INTO knowledge_sources (organization_id, chatbot_id, kind, name, url)"
        " VALUES (%s, %s, 'url', 'site', 'https://example.com') RETURNING id",
        (org["id"], bot["id"]),
    ).fetchone()
    assert source is not None
    document = db.execute(
        "INSERT INTO knowledge_documents (organization_id, chatbot_id, source_id, uri, content_hash)"
        " VALUES (%s, %s, %s, 'https://example.com', '\\x00') RETURNING id",
        (org["id"], bot["id"], source["id"]),
    ).fetchone()
    assert document is not None
    db.execute("INSERT INTO embedding_models (name, provider, dimensions) VALUES ('t', 'test', 3)")
    db.execute(
        "INSERT INTO knowledge_chunks (organization_id, chatbot_id, source_id, document_id, chunk_index, content,"
        " content_hash, embedding, embedding_model, ts_config)"
        " VALUES (%s, %s, %s, %s, 0, 'Delivery costs 4.50 EUR', '\\x01', '[1,0,0]', 't', 'english')",
        (org["id"], bot["id"], source["id"], document["id"]),
    )
    hit = db.execute(
        "SELECT content FROM knowledge_chunks WHERE tsv @@ websearch_to_tsquery('english', 'deliveries')"
    ).fetchone()
    assert hit is not None
    assert hit["content"].startswith("Delivery")
