"""Tenant isolation and roles, generated from the app's own operation table.

Every operation whose path carries a resource id is called by organization B's owner with
organization A's ids: each must answer 404 and leave A's data exactly as it was. Every operation
restricted to some roles is called by a member whose role is not allowed: 403, nothing changed.
A new endpoint joins these matrices automatically (and fails loudly if its path parameter is new).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import psycopg
import pytest
from psycopg import sql
from starlette.testclient import TestClient

from management_api.app import OPERATIONS
from management_api.endpoints import Operation
from management_api.openapi import body_example
from tests.management_api.conftest import Tenant, make_tenant

WITH_IDS = [op for op in OPERATIONS if op.path_params]
RESTRICTED = [op for op in OPERATIONS if op.roles is not None and "agent" not in op.roles]
OWNER_ONLY = [op for op in OPERATIONS if op.roles == frozenset({"owner"})]
TENANT_TABLES = (
    "organizations",
    "users",
    "chatbots",
    "whatsapp_channels",
    "contacts",
    "conversations",
    "messages",
    "knowledge_sources",
    "knowledge_documents",
    "leads",
    "organization_integrations",
    "usage_monthly",
)


def _name(op: Operation) -> str:
    return f"{op.method} {op.path}"


def snapshot(db: psycopg.Connection[Any], organization_id: Any) -> str:
    """A digest of every row the organization owns (and of runner runs, which flows would start)."""
    digest = hashlib.sha256()
    for table in TENANT_TABLES:
        column = "id" if table == "organizations" else "organization_id"
        rows = db.execute(
            sql.SQL("SELECT to_jsonb(t) AS row FROM {} t WHERE {} = %s ORDER BY 1").format(
                sql.Identifier(table), sql.Identifier(column)
            ),
            (organization_id,),
        ).fetchall()
        digest.update(json.dumps([row["row"] for row in rows], sort_keys=True, default=str).encode())
    runs = db.execute("SELECT count(*) AS n FROM runner_runs").fetchone()
    digest.update(str(runs).encode())
    return digest.hexdigest()


def call(client: TestClient, op: Operation, ids: dict[str, Any], headers: dict[str, str]) -> Any:
    path = op.path.format(**{name: ids[name] for name in op.path_params})
    if op.body is not None and op.body_kind == "multipart":
        return client.request(
            op.method, path, headers=headers, files={"file": ("faq.md", b"# FAQ\n\nOpen daily.\n")}
        )
    if op.body is not None:
        return client.request(op.method, path, headers=headers, json=body_example(op.body))
    return client.request(op.method, path, headers=headers)


@pytest.fixture
def tenants(db: psycopg.Connection[Any], api: TestClient) -> tuple[Tenant, Tenant]:
    # B has no integration enabled: integration ids are catalog ids, so "A's resource" is A's
    # enablement of it, which B's calls must not touch.
    return make_tenant(db, api), make_tenant(db, api, integrations=())


def test_the_matrices_cover_the_api() -> None:
    names = {_name(op) for op in WITH_IDS}
    assert "GET /api/chatbots/{chatbot_id}/history/{message_id}" in names
    assert "POST /api/conversations/{conversation_id}/messages" in names
    assert "DELETE /api/members/{member_id}" in names
    assert len(WITH_IDS) >= 20
    assert {_name(op) for op in OWNER_ONLY} >= {
        "PUT /api/organizations/billing",
        "POST /api/members",
        "DELETE /api/members/{member_id}",
    }


@pytest.mark.parametrize("op", WITH_IDS, ids=_name)
def test_another_organizations_ids_answer_404_and_change_nothing(
    op: Operation, api: TestClient, db: psycopg.Connection[Any], tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    before_a, before_b = snapshot(db, a.organization["id"]), snapshot(db, b.organization["id"])

    response = call(api, op, a.ids(), b.headers["owner"])

    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"
    assert snapshot(db, a.organization["id"]) == before_a
    assert snapshot(db, b.organization["id"]) == before_b


@pytest.mark.parametrize("op", WITH_IDS, ids=_name)
def test_own_ids_reach_the_resource(
    op: Operation, api: TestClient, db: psycopg.Connection[Any], tenants: tuple[Tenant, Tenant]
) -> None:
    """The control for the matrix above: with its own ids the owner is not told 404."""
    a, _ = tenants
    response = call(api, op, a.ids(), a.headers["owner"])
    assert response.status_code < 400, f"{_name(op)}: {response.status_code} {response.text}"


@pytest.mark.parametrize("op", RESTRICTED, ids=_name)
def test_agents_cannot_manage(
    op: Operation, api: TestClient, db: psycopg.Connection[Any], tenants: tuple[Tenant, Tenant]
) -> None:
    a, _ = tenants
    before = snapshot(db, a.organization["id"])

    response = call(api, op, a.ids(), a.headers["agent"])

    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"
    assert snapshot(db, a.organization["id"]) == before


@pytest.mark.parametrize("op", OWNER_ONLY, ids=_name)
def test_only_owners_manage_billing_and_members(
    op: Operation, api: TestClient, db: psycopg.Connection[Any], tenants: tuple[Tenant, Tenant]
) -> None:
    a, _ = tenants
    before = snapshot(db, a.organization["id"])

    response = call(api, op, a.ids(), a.headers["admin"])

    assert response.status_code == 403, response.text
    assert snapshot(db, a.organization["id"]) == before


def test_ids_in_filters_are_scoped_too(api: TestClient, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    leads = api.get("/api/leads", params={"chatbot_id": str(a.chatbot["id"])}, headers=b.headers["owner"])
    assert leads.status_code == 404
    history = api.get(
        f"/api/chatbots/{b.chatbot['id']}/history",
        params={"conversation_id": str(a.conversation["id"])},
        headers=b.headers["owner"],
    )
    assert history.status_code == 200
    assert history.json()["items"] == []
