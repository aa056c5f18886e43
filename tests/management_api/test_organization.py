"""Integrations, leads, usage and billing, members."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

import psycopg
from starlette.testclient import TestClient

from tests import factories
from tests.management_api.conftest import Tenant, login


def test_catalog_shows_enabled_state_and_config(api: TestClient, tenant: Tenant) -> None:
    items = api.get("/api/integrations/available", headers=tenant.headers["agent"]).json()["items"]
    assert [i["id"] for i in items] == ["pricing", "lead_capture", "handoff"]
    assert [i["enabled"] for i in items] == [True, False, False]
    assert items[1]["config_schema"]["properties"]["notify_email"]["format"] == "email"


def test_enable_validates_against_the_catalog_schema(
    api: TestClient, db: psycopg.Connection[Any], tenant: Tenant
) -> None:
    owner = tenant.headers["owner"]
    bad = api.post(
        "/api/integrations/enable",
        headers=owner,
        json={"integration_id": "handoff", "config": {"pause_minutes": 1, "notify_phone": "abc", "extra": 1}},
    )
    assert bad.status_code == 422
    locs = {tuple(d["loc"]) for d in bad.json()["error"]["details"]}
    assert {
        ("body", "config", "pause_minutes"),
        ("body", "config", "notify_phone"),
        ("body", "config"),
    } <= locs
    email = api.post(
        "/api/integrations/enable",
        headers=owner,
        json={"integration_id": "lead_capture", "config": {"notify_email": "nope"}},
    )
    assert email.status_code == 422

    ok = api.post(
        "/api/integrations/enable",
        headers=owner,
        json={"integration_id": "handoff", "config": {"notify_phone": "5511999990000"}},
    )
    assert ok.status_code == 200
    assert ok.json()["enabled"] is True
    assert ok.json()["config"] == {"notify_phone": "5511999990000", "pause_minutes": 240}  # default filled in
    unknown = api.post(
        "/api/integrations/enable", headers=owner, json={"integration_id": "teleport", "config": {}}
    )
    assert unknown.status_code == 422


def test_disable(api: TestClient, db: psycopg.Connection[Any], tenant: Tenant) -> None:
    assert api.delete("/api/integrations/pricing", headers=tenant.headers["admin"]).status_code == 204
    row = db.execute(
        "SELECT enabled FROM organization_integrations WHERE organization_id = %s",
        (tenant.organization["id"],),
    ).fetchone()
    assert row == {"enabled": False}
    assert api.delete("/api/integrations/pricing", headers=tenant.headers["admin"]).status_code == 404
    assert api.delete("/api/integrations/Bad-Id", headers=tenant.headers["admin"]).status_code == 422


def test_leads_filters_and_pagination(api: TestClient, db: psycopg.Connection[Any], tenant: Tenant) -> None:
    other_bot = factories.create_chatbot(db, tenant.organization)
    factories.create_lead(db, other_bot, name="Carla", status="won", company="Acme")
    for i in range(4):
        factories.create_lead(db, tenant.chatbot, name=f"Bulk {i}")
    headers = tenant.headers["agent"]

    won = api.get("/api/leads", headers=headers, params={"status": "won"}).json()["items"]
    assert [lead["name"] for lead in won] == ["Carla"]
    by_bot = api.get("/api/leads", headers=headers, params={"chatbot_id": str(other_bot["id"])}).json()[
        "items"
    ]
    assert [lead["name"] for lead in by_bot] == ["Carla"]
    assert [
        x["name"] for x in api.get("/api/leads", headers=headers, params={"q": "acm"}).json()["items"]
    ] == ["Carla"]
    assert api.get("/api/leads", headers=headers, params={"q": "%"}).json()["items"] == []

    first = api.get("/api/leads", headers=headers, params={"limit": 4}).json()
    second = api.get(
        "/api/leads", headers=headers, params={"limit": 4, "cursor": first["next_cursor"]}
    ).json()
    names = [lead["name"] for lead in first["items"] + second["items"]]
    assert len(names) == len(set(names)) == 6
    assert second["next_cursor"] is None


def test_csv_export_escapes_formulas(api: TestClient, db: psycopg.Connection[Any], tenant: Tenant) -> None:
    factories.create_lead(
        db, tenant.chatbot, name='=HYPERLINK("http://evil")', notes='line1\nline2, quoted "x"'
    )
    response = api.get("/api/leads/export", headers=tenant.headers["agent"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 2
    evil = next(row for row in rows if "HYPERLINK" in row["name"])
    assert evil["name"].startswith("'=")
    assert evil["notes"] == 'line1\nline2, quoted "x"'
    assert {row["id"] for row in rows} >= {str(tenant.lead["id"])}


def test_usage_against_the_tier(api: TestClient, db: psycopg.Connection[Any], tenant: Tenant) -> None:
    period = date.today().replace(day=1)
    db.execute(
        "INSERT INTO usage_monthly (organization_id, period, messages_in, messages_out, prompt_tokens,"
        " completion_tokens, embedding_tokens) VALUES (%s, %s, 120, 100, 5000, 2000, 300)",
        (tenant.organization["id"], period),
    )
    db.execute(
        "INSERT INTO usage_monthly (organization_id, period, messages_in) VALUES (%s, '2020-01-01', 9999)",
        (tenant.organization["id"],),
    )
    usage = api.get("/api/organizations/usage", headers=tenant.headers["agent"]).json()
    assert usage["period_start"] == period.isoformat()
    assert usage["messages"] == {"used": 220, "limit": 50000}
    assert usage["tokens"] == {"used": 7300, "limit": 100000000}
    assert usage["chatbots"] == {"used": 1, "limit": 20}
    assert usage["channels"] == {"used": 1, "limit": 20}
    assert usage["tier"]["code"] == "pro"


def test_billing_change(api: TestClient, tenant: Tenant) -> None:
    owner = tenant.headers["owner"]
    changed = api.put("/api/organizations/billing", headers=owner, json={"tier": "enterprise"})
    assert changed.status_code == 200
    assert changed.json()["tier"]["code"] == "enterprise"
    assert api.get("/api/organizations/usage", headers=owner).json()["messages"]["limit"] is None
    unknown = api.put("/api/organizations/billing", headers=owner, json={"tier": "platinum"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["loc"] == ["body", "tier"]


def test_invite_list_remove_members(api: TestClient, db: psycopg.Connection[Any], tenant: Tenant) -> None:
    owner = tenant.headers["owner"]
    invited = api.post(
        "/api/members", headers=owner, json={"email": "New.Agent@Example.com", "role": "agent"}
    )
    assert invited.status_code == 201
    body = invited.json()
    assert body["member"]["email"] == "new.agent@example.com"
    assert "password_hash" not in invited.text
    headers = login(api, "new.agent@example.com", body["temporary_password"])
    assert api.get("/api/auth/me", headers=headers).json()["user"]["role"] == "agent"

    assert api.post("/api/members", headers=owner, json={"email": "new.agent@example.com"}).status_code == 409
    emails = {m["email"] for m in api.get("/api/members", headers=tenant.headers["admin"]).json()["items"]}
    assert "new.agent@example.com" in emails
    assert len(emails) == 4

    assert api.delete(f"/api/members/{body['member']['id']}", headers=owner).status_code == 204
    assert api.get("/api/auth/me", headers=headers).status_code == 401
    assert api.delete(f"/api/members/{tenant.owner['id']}", headers=owner).status_code == 409
    assert api.get("/api/auth/me", headers=owner).status_code == 200
