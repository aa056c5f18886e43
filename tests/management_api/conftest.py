"""Fixtures for the management API: the app through TestClient, a recorded Graph API, whole tenants."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from starlette.testclient import TestClient

from chatmill.settings import Settings
from management_api.app import create_app
from management_api.security import issue_access_token
from tests import factories

PASSWORD = "correct-Horse-9"


@dataclass
class GraphApi:
    """Meta's Graph API at the HTTP boundary: records sends, answers a wamid (or a set error)."""

    requests: list[httpx.Request] = field(default_factory=list)
    error: tuple[int, dict[str, Any]] | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.error is not None:
            return httpx.Response(self.error[0], json=self.error[1])
        return httpx.Response(200, json={"messages": [{"id": f"wamid.sent.{uuid.uuid4().hex}"}]})

    @property
    def sent(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]


@pytest.fixture
def graph() -> GraphApi:
    return GraphApi()


@pytest.fixture
def api(settings: Settings, graph: GraphApi) -> Iterator[TestClient]:
    app = create_app(settings, transport=httpx.MockTransport(graph.handle))
    with TestClient(app) as client:
        yield client


def login(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@dataclass
class Tenant:
    """An organization with one of everything, and tokens for an owner, an admin and an agent."""

    organization: dict[str, Any]
    owner: dict[str, Any]
    admin: dict[str, Any]
    agent: dict[str, Any]
    chatbot: dict[str, Any]
    channel: dict[str, Any]
    conversation: dict[str, Any]
    message: dict[str, Any]
    source: dict[str, Any]
    lead: dict[str, Any]
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def ids(self) -> dict[str, Any]:
        """Values for every path parameter the API has."""
        return {
            "chatbot_id": self.chatbot["id"],
            "channel_id": self.channel["id"],
            "conversation_id": self.conversation["id"],
            "message_id": self.message["id"],
            "source_id": self.source["id"],
            "member_id": self.agent["id"],
            "integration_id": "pricing",
        }


def make_tenant(
    db: psycopg.Connection[Any],
    client: TestClient,
    *,
    tier: str = "pro",
    integrations: tuple[str, ...] = ("pricing",),
) -> Tenant:
    organization = factories.create_organization(db, billing_tier=tier)
    owner = factories.create_user(db, organization, role="owner")
    admin = factories.create_user(db, organization, role="admin")
    agent = factories.create_user(db, organization, role="agent")
    chatbot = factories.create_chatbot(db, organization)
    channel = factories.create_channel(db, chatbot)
    recent = datetime.now(UTC) - timedelta(minutes=5)
    conversation = factories.create_conversation(db, channel, last_inbound_at=recent, last_message_at=recent)
    message = factories.create_message(db, conversation, text="Do you bake on Sundays?")
    source = factories.create_knowledge_source(db, chatbot)
    lead = factories.create_lead(db, chatbot, conversation_id=conversation["id"])
    for integration_id in integrations:
        factories.enable_integration(db, organization, integration_id)
    tenant = Tenant(organization, owner, admin, agent, chatbot, channel, conversation, message, source, lead)
    tenant.headers["owner"] = login(client, owner["email"])  # one real login; the others are minted
    settings = client.app.state.settings  # type: ignore[attr-defined]
    for role, user in (("admin", admin), ("agent", agent)):
        token, _ = issue_access_token(
            settings, user_id=user["id"], organization_id=organization["id"], role=role
        )
        tenant.headers[role] = {"Authorization": f"Bearer {token}"}
    return tenant


@pytest.fixture
def tenant(db: psycopg.Connection[Any], api: TestClient) -> Tenant:
    return make_tenant(db, api)
