from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from chatmill.settings import Settings
from tests import factories


def _handshake(client: TestClient, token: str, path: str = "/webhook/whatsapp") -> Any:
    return client.get(
        path, params={"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}
    )


def test_platform_handshake_echoes_the_raw_challenge(ingress: TestClient, settings: Settings) -> None:
    response = _handshake(ingress, settings.whatsapp_verify_token.get_secret_value())
    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


def test_wrong_or_missing_token_is_refused(ingress: TestClient) -> None:
    assert _handshake(ingress, "wrong").status_code == 403
    assert (
        ingress.get("/webhook/whatsapp", params={"hub.mode": "subscribe", "hub.challenge": "1"}).status_code
        == 403
    )


def test_channel_handshake_uses_that_channels_own_token(ingress: TestClient, db: factories.Conn) -> None:
    org = factories.create_organization(db)
    own = factories.create_channel(
        db, factories.create_chatbot(db, org), app_secret="tenant-app-secret", verify_token="tenant-verify"
    )
    path = f"/webhook/whatsapp/{own['id']}"
    assert _handshake(ingress, "tenant-verify", path).text == "1158201444"
    assert _handshake(ingress, "dev-verify-token", path).status_code == 403
    assert _handshake(ingress, "tenant-verify", "/webhook/whatsapp/not-a-uuid").status_code == 403
