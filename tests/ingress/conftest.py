from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from chatmill.settings import Settings
from ingress.app import create_app
from tests import factories
from tests.webhooks import SAMPLE_PHONE_NUMBER_ID


@pytest.fixture
def channel(db: factories.Conn) -> dict[str, Any]:
    """A live channel on the fixtures' phone_number_id, on the platform's Meta app."""
    organization = factories.create_organization(db)
    chatbot = factories.create_chatbot(db, organization)
    return factories.create_channel(db, chatbot, phone_number_id=SAMPLE_PHONE_NUMBER_ID)


@pytest.fixture
def ingress(settings: Settings) -> Iterator[TestClient]:
    """The ingress without its relay (outbox rows stay undispatched for inspection)."""
    with TestClient(create_app(settings, run_relay=False)) as client:
        yield client


def post(client: TestClient, body: bytes, secret: str, path: str = "/webhook/whatsapp") -> Any:
    from tests.webhooks import signed_headers

    return client.post(path, content=body, headers=signed_headers(body, secret))
