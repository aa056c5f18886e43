"""Cross-cutting behaviour: one error shape, ids, request ids, CORS, the OpenAPI document, the docs page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from chatmill.settings import Settings
from management_api.app import OPERATIONS, create_app
from tests.conftest import make_settings
from tests.management_api.conftest import Tenant


def _assert_error_shape(body: dict[str, Any], code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) <= {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]


def test_unknown_route_and_wrong_method(api: TestClient) -> None:
    missing = api.get("/api/nothing-here")
    assert missing.status_code == 404
    _assert_error_shape(missing.json(), "not_found")
    wrong = api.put("/api/auth/login", json={})
    assert wrong.status_code == 405
    _assert_error_shape(wrong.json(), "method_not_allowed")


def test_validation_errors_list_every_field(api: TestClient, tenant: Tenant) -> None:
    response = api.post(
        "/api/chatbots", headers=tenant.headers["owner"], json={"temperature": 9, "debounce_ms": -1}
    )
    assert response.status_code == 422
    body = response.json()
    _assert_error_shape(body, "validation_failed")
    assert {tuple(d["loc"]) for d in body["error"]["details"]} == {
        ("body", "name"), ("body", "temperature"), ("body", "debounce_ms")
    }  # fmt: skip


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b'{"name": "a\\u0000b"}'])
def test_malformed_bodies_are_422(api: TestClient, tenant: Tenant, body: bytes) -> None:
    headers = tenant.headers["owner"] | {"Content-Type": "application/json"}
    response = api.post("/api/chatbots", headers=headers, content=body)
    assert response.status_code == 422
    _assert_error_shape(response.json(), "validation_failed")


def test_wrong_content_type_and_oversized_bodies(api: TestClient, tenant: Tenant) -> None:
    headers = tenant.headers["owner"]
    form = api.post("/api/chatbots", headers=headers, data={"name": "x"})
    assert form.status_code == 415
    _assert_error_shape(form.json(), "unsupported_media_type")
    huge = api.post("/api/chatbots", headers=headers, json={"name": "x", "system_prompt": "a" * 1_100_000})
    assert huge.status_code == 413
    _assert_error_shape(huge.json(), "payload_too_large")


@pytest.mark.parametrize("bad", ["123", "not-a-uuid", "{00000000-0000-0000-0000-000000000000}", "0" * 32])
def test_path_ids_must_be_uuids(api: TestClient, tenant: Tenant, bad: str) -> None:
    response = api.get(f"/api/chatbots/{bad}", headers=tenant.headers["owner"])
    assert response.status_code == 422
    _assert_error_shape(response.json(), "validation_failed")
    assert response.json()["error"]["details"][0]["loc"] == ["path", "chatbot_id"]


def test_request_ids(api: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="management_api.access")
    echoed = api.get("/api/auth/me", headers={"X-Request-ID": "dash-42.a"})
    assert echoed.headers["X-Request-ID"] == "dash-42.a"
    fresh = api.get("/api/auth/me", headers={"X-Request-ID": "bad id with spaces\x7f"})
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["X-Request-ID"])
    assert any(
        "request_id=dash-42.a GET /api/auth/me 401" in record.getMessage() for record in caplog.records
    )
    assert echoed.headers["Cache-Control"] == "no-store"


@pytest.fixture
def cors_api(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(
        database_url=database_url,
        redis_url=redis_url,
        chatmill_data_dir=tmp_path,
        cors_origins="https://dashboard.example.com,*",
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_cors_allows_only_the_configured_origins(cors_api: TestClient) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    allowed = cors_api.options(
        "/api/chatbots", headers={"Origin": "https://dashboard.example.com"} | preflight
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://dashboard.example.com"
    refused = cors_api.options("/api/chatbots", headers={"Origin": "https://evil.example.com"} | preflight)
    assert refused.status_code == 400
    _assert_error_shape(refused.json(), "cors_rejected")
    assert "access-control-allow-origin" not in refused.headers
    simple = cors_api.get("/api/auth/me", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in simple.headers


def test_the_document_covers_every_route(api: TestClient, settings: Settings) -> None:
    spec = api.get("/api/openapi.json").json()
    assert spec["openapi"] == "3.1.0"
    documented = {(method.upper(), path) for path, methods in spec["paths"].items() for method in methods}
    routes = {
        (method, route.path)
        for route in create_app(settings).routes
        if isinstance(route, Route)
        and route.path.startswith("/api/")
        and route.path not in ("/api/openapi.json", "/api/docs")
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert routes == documented
    assert len(documented) == len(OPERATIONS)
    for methods in spec["paths"].values():
        for operation in methods.values():
            assert operation["summary"]
            assert operation["responses"]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                assert "example" in body, operation["operationId"]
    refs = re.findall(r'"#/components/(schemas|responses)/([^"]+)"', api.get("/api/openapi.json").text)
    for kind, name in refs:
        assert name in spec["components"][kind], name


def test_the_docs_page_works_offline(api: TestClient) -> None:
    response = api.get("/api/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    html = response.text
    assert "<script" not in html
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", html)
    assert "/api/chatbots/{chatbot_id}/history" in html
    assert "ChatbotCreate" in html
