"""Chatbots (CRUD, soft delete, tier limits) and WhatsApp channels (encrypted secrets, webhook URL)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from chatmill.settings import Settings
from tests import factories
from tests.management_api.conftest import Tenant, login


def test_create_with_sane_defaults_then_get(api: TestClient, tenant: Tenant) -> None:
    owner = tenant.headers["owner"]
    created = api.post("/api/chatbots", headers=owner, json={"name": "Cakes"})
    assert created.status_code == 201
    bot = created.json()
    assert bot | {"id": None, "created_at": None, "updated_at": None} == bot | {
        "id": None,
        "created_at": None,
        "updated_at": None,
        "name": "Cakes",
        "llm_provider": "offline",
        "temperature": 0.3,
        "retrieval_top_k": 5,
        "debounce_ms": 1500,
        "rate_limit_per_minute": 20,
        "llm_model": None,
    }
    assert api.get(f"/api/chatbots/{bot['id']}", headers=tenant.headers["agent"]).json() == bot


def test_patch_changes_only_what_is_sent(api: TestClient, tenant: Tenant) -> None:
    url = f"/api/chatbots/{tenant.chatbot['id']}"
    before = api.get(url, headers=tenant.headers["owner"]).json()
    response = api.patch(
        url,
        headers=tenant.headers["admin"],
        json={
            "temperature": 1.25,
            "llm_provider": "openai",
            "llm_model": "gpt-4o-mini",
            "text_search_config": "portuguese",
        },
    )
    assert response.status_code == 200
    after = response.json()
    assert (after["temperature"], after["llm_provider"], after["llm_model"]) == (
        1.25,
        "openai",
        "gpt-4o-mini",
    )
    assert after["text_search_config"] == "portuguese"
    assert after["name"] == before["name"]
    assert after["system_prompt"] == before["system_prompt"]
    reset = api.patch(url, headers=tenant.headers["admin"], json={"llm_model": None}).json()
    assert reset["llm_model"] is None


@pytest.mark.parametrize(
    "patch",
    [{"temperature": 2.01}, {"temperature": -0.1}, {"name": None}, {"name": ""}, {"debounce_ms": 30001},
     {"unknown_field": 1}, {"text_search_config": "klingon"}, {"llm_provider": "acme"}],
)  # fmt: skip
def test_patch_validates(api: TestClient, tenant: Tenant, patch: dict[str, Any]) -> None:
    response = api.patch(f"/api/chatbots/{tenant.chatbot['id']}", headers=tenant.headers["owner"], json=patch)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]


def test_list_paginates_newest_first(api: TestClient, db: psycopg.Connection[Any], tenant: Tenant) -> None:
    for _ in range(4):
        factories.create_chatbot(db, tenant.organization)
    owner = tenant.headers["owner"]
    first = api.get("/api/chatbots", headers=owner, params={"limit": 3}).json()
    second = api.get(
        "/api/chatbots", headers=owner, params={"limit": 3, "cursor": first["next_cursor"]}
    ).json()
    ids = [bot["id"] for bot in first["items"] + second["items"]]
    expected = [
        str(row["id"])
        for row in db.execute(
            "SELECT id FROM chatbots WHERE organization_id = %s ORDER BY created_at DESC, id DESC",
            (tenant.organization["id"],),
        )
    ]
    assert ids == expected
    assert second["next_cursor"] is None


def test_delete_is_soft_and_disconnects_numbers(
    api: TestClient, db: psycopg.Connection[Any], tenant: Tenant
) -> None:
    url = f"/api/chatbots/{tenant.chatbot['id']}"
    assert api.delete(url, headers=tenant.headers["owner"]).status_code == 204
    assert api.get(url, headers=tenant.headers["owner"]).status_code == 404
    assert api.delete(url, headers=tenant.headers["owner"]).status_code == 404
    row = db.execute("SELECT deleted_at FROM chatbots WHERE id = %s", (tenant.chatbot["id"],)).fetchone()
    assert row is not None
    assert row["deleted_at"] is not None
    channel = db.execute(
        "SELECT disconnected_at FROM whatsapp_channels WHERE id = %s", (tenant.channel["id"],)
    ).fetchone()
    assert channel is not None
    assert channel["disconnected_at"] is not None
    listed = api.get("/api/chatbots", headers=tenant.headers["owner"]).json()["items"]
    assert str(tenant.chatbot["id"]) not in {bot["id"] for bot in listed}


def test_the_free_tier_allows_one_chatbot(api: TestClient, db: psycopg.Connection[Any]) -> None:
    organization = factories.create_organization(db, billing_tier="free")
    owner = factories.create_user(db, organization)
    headers = login(api, owner["email"])
    assert api.post("/api/chatbots", headers=headers, json={"name": "One"}).status_code == 201
    second = api.post("/api/chatbots", headers=headers, json={"name": "Two"})
    assert second.status_code == 409
    assert "tier" in second.json()["error"]["message"]


CONNECT = {
    "phone_number_id": "123456789012345",
    "waba_id": "998877",
    "access_token": "EAAG-secret-access-token-1234",
    "app_secret": "tenant-app-secret-5678",
    "verify_token": "tenant-verify-token-9012",
}


def test_connect_encrypts_secrets_and_returns_only_hints(
    api: TestClient, db: psycopg.Connection[Any], settings: Settings, tenant: Tenant
) -> None:
    response = api.post(
        f"/api/chatbots/{tenant.chatbot['id']}/channels", headers=tenant.headers["admin"], json=CONNECT
    )

    assert response.status_code == 201, response.text
    body = response.json()
    for secret in ("EAAG-secret-access-token-1234", "tenant-app-secret-5678", "tenant-verify-token-9012"):
        assert secret not in response.text
    assert (body["access_token_hint"], body["app_secret_hint"], body["verify_token_hint"]) == (
        "…1234",
        "…5678",
        "…9012",
    )
    assert body["uses_own_app"] is True
    assert body["webhook_url"] == settings.webhook_url(body["id"])
    row = db.execute("SELECT * FROM whatsapp_channels WHERE id = %s", (body["id"],)).fetchone()
    assert row is not None
    assert "EAAG" not in row["access_token_encrypted"]
    assert factories.TEST_BOX.decrypt(row["access_token_encrypted"]) == "EAAG-secret-access-token-1234"
    assert factories.TEST_BOX.decrypt(row["app_secret_encrypted"]) == "tenant-app-secret-5678"


def test_a_number_on_the_platform_app_uses_the_shared_webhook(
    api: TestClient, settings: Settings, tenant: Tenant
) -> None:
    body = {"phone_number_id": "5550001", "access_token": "EAAG-platform-token"}
    response = api.post(
        f"/api/chatbots/{tenant.chatbot['id']}/channels", headers=tenant.headers["owner"], json=body
    )
    assert response.status_code == 201
    assert response.json()["webhook_url"] == settings.webhook_url()
    assert response.json()["uses_own_app"] is False


def test_a_live_number_cannot_be_connected_twice(
    api: TestClient, db: psycopg.Connection[Any], tenant: Tenant
) -> None:
    url = f"/api/chatbots/{tenant.chatbot['id']}/channels"
    taken = {"phone_number_id": tenant.channel["phone_number_id"], "access_token": "EAAG-another-token"}
    assert api.post(url, headers=tenant.headers["owner"], json=taken).status_code == 409
    assert (
        api.delete(f"/api/channels/{tenant.channel['id']}", headers=tenant.headers["owner"]).status_code
        == 204
    )
    assert api.post(url, headers=tenant.headers["owner"], json=taken).status_code == 201


def test_rotate_credentials(api: TestClient, db: psycopg.Connection[Any], tenant: Tenant) -> None:
    url = f"/api/channels/{tenant.channel['id']}/credentials"
    assert api.put(url, headers=tenant.headers["owner"], json={}).status_code == 422
    response = api.put(url, headers=tenant.headers["owner"], json={"access_token": "EAAG-rotated-token-4321"})
    assert response.status_code == 200
    assert response.json()["access_token_hint"] == "…4321"
    row = db.execute(
        "SELECT access_token_encrypted FROM whatsapp_channels WHERE id = %s", (tenant.channel["id"],)
    ).fetchone()
    assert row is not None
    assert factories.TEST_BOX.decrypt(row["access_token_encrypted"]) == "EAAG-rotated-token-4321"


def test_list_and_disconnect(api: TestClient, tenant: Tenant) -> None:
    listed = api.get(f"/api/chatbots/{tenant.chatbot['id']}/channels", headers=tenant.headers["agent"]).json()
    assert [c["id"] for c in listed["items"]] == [str(tenant.channel["id"])]
    assert (
        api.delete(f"/api/channels/{tenant.channel['id']}", headers=tenant.headers["owner"]).status_code
        == 204
    )
    assert (
        api.get(f"/api/channels/{tenant.channel['id']}", headers=tenant.headers["owner"]).status_code == 404
    )
    assert (
        api.get(f"/api/chatbots/{tenant.chatbot['id']}/channels", headers=tenant.headers["agent"]).json()[
            "items"
        ]
        == []
    )
