"""Knowledge sources: creation starts the ingestion flow (local runner or Windmill), limits, delete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from starlette.testclient import TestClient

from chatmill.settings import Settings
from management_api.app import create_app
from management_api.knowledge import MAX_UPLOAD_BYTES
from tests.conftest import make_settings
from tests.management_api.conftest import Tenant, make_tenant


def _run_of(db: psycopg.Connection[Any], job_id: str) -> dict[str, Any] | None:
    return db.execute("SELECT flow_path, args, status FROM runner_runs WHERE id = %s", (job_id,)).fetchone()


def test_a_url_source_is_stored_pending_and_queued_for_ingestion(
    api: TestClient, db: psycopg.Connection[Any], tenant: Tenant
) -> None:
    response = api.post(
        f"/api/chatbots/{tenant.chatbot['id']}/knowledge/url",
        headers=tenant.headers["admin"],
        json={"url": "https://example.com/faq", "name": "FAQ"},
    )

    assert response.status_code == 201, response.text
    source = response.json()
    assert (source["kind"], source["status"], source["name"]) == ("url", "pending", "FAQ")
    assert _run_of(db, source["job_id"]) == {
        "flow_path": "f/chatmill/ingest_source",
        "args": {"source_id": source["id"]},
        "status": "queued",
    }


def test_a_crawl_keeps_its_limits(api: TestClient, db: psycopg.Connection[Any], tenant: Tenant) -> None:
    url = f"/api/chatbots/{tenant.chatbot['id']}/knowledge/crawl"
    body = {"url": "https://example.com/", "max_pages": 120, "max_depth": 3, "exclude_patterns": ["/blog/"]}
    response = api.post(url, headers=tenant.headers["owner"], json=body)
    assert response.status_code == 201
    assert response.json()["options"] == {
        "max_pages": 120, "max_depth": 3, "include_patterns": [], "exclude_patterns": ["/blog/"]
    }  # fmt: skip
    for bad in (
        {"max_pages": 501},
        {"max_depth": 6},
        {"url": "ftp://example.com/"},
        {"url": "https://u:p@example.com"},
    ):
        assert api.post(url, headers=tenant.headers["owner"], json=body | bad).status_code == 422


def test_upload_accepts_known_types_and_checks_content(
    api: TestClient, db: psycopg.Connection[Any], tenant: Tenant
) -> None:
    url = f"/api/chatbots/{tenant.chatbot['id']}/knowledge/upload"
    owner = tenant.headers["owner"]
    ok = api.post(
        url, headers=owner, files={"file": ("prices.csv", b"item,price\ncake,10\n")}, data={"name": "Prices"}
    )
    assert ok.status_code == 201, ok.text
    source = ok.json()
    assert (source["kind"], source["name"], source["content_type"], source["byte_size"]) == (
        "file", "Prices", "text/csv", 19
    )  # fmt: skip
    stored = db.execute(
        "SELECT file_content, file_sha256 FROM knowledge_sources WHERE id = %s", (source["id"],)
    ).fetchone()
    assert stored is not None
    assert bytes(stored["file_content"]) == b"item,price\ncake,10\n"
    assert _run_of(db, source["job_id"]) is not None

    assert api.post(url, headers=owner, files={"file": ("tool.exe", b"MZ\x90\x00")}).status_code == 415
    assert api.post(url, headers=owner, files={"file": ("fake.pdf", b"not a pdf")}).status_code == 422
    assert (
        api.post(url, headers=owner, files={"file": ("latin1.txt", "café".encode("latin-1"))}).status_code
        == 422
    )
    assert api.post(url, headers=owner, files={"file": ("empty.md", b"")}).status_code == 422
    assert api.post(url, headers=owner, files={"name": (None, "no file")}).status_code == 422
    assert api.post(url, headers=owner, json={"file": "x"}).status_code == 415


def test_upload_size_limit(api: TestClient, tenant: Tenant) -> None:
    response = api.post(
        f"/api/chatbots/{tenant.chatbot['id']}/knowledge/upload",
        headers=tenant.headers["owner"],
        files={"file": ("big.txt", b"a" * (MAX_UPLOAD_BYTES + 1))},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_list_get_resync_delete(api: TestClient, db: psycopg.Connection[Any], tenant: Tenant) -> None:
    base = f"/api/chatbots/{tenant.chatbot['id']}/knowledge"
    source_url = f"{base}/{tenant.source['id']}"
    listed = api.get(base, headers=tenant.headers["agent"]).json()["items"]
    assert [s["id"] for s in listed] == [str(tenant.source["id"])]
    assert api.get(source_url, headers=tenant.headers["agent"]).json()["status"] == "pending"

    db.execute(
        "UPDATE knowledge_sources SET status = 'failed', error = 'boom' WHERE id = %s", (tenant.source["id"],)
    )
    again = api.post(f"{source_url}/sync", headers=tenant.headers["owner"])
    assert again.status_code == 200
    assert (again.json()["status"], again.json()["error"]) == ("pending", None)
    assert _run_of(db, again.json()["job_id"]) is not None

    document = db.execute(
        "INSERT INTO knowledge_documents (organization_id, chatbot_id, source_id, uri, content_hash)"
        " VALUES (%s, %s, %s, 'faq.md', '\\x00') RETURNING id",
        (tenant.organization["id"], tenant.chatbot["id"], tenant.source["id"]),
    ).fetchone()
    assert document is not None
    assert api.delete(source_url, headers=tenant.headers["owner"]).status_code == 204
    assert api.get(source_url, headers=tenant.headers["owner"]).status_code == 404
    assert api.get(base, headers=tenant.headers["owner"]).json()["items"] == []
    assert db.execute("SELECT 1 FROM knowledge_documents WHERE id = %s", (document["id"],)).fetchone() is None


def test_search_preview_runs_retrieval(api: TestClient, tenant: Tenant) -> None:
    response = api.post(
        f"/api/chatbots/{tenant.chatbot['id']}/knowledge/search",
        headers=tenant.headers["agent"],
        json={"query": "Do you open on Sundays?"},
    )
    assert response.status_code == 200
    assert response.json() == {"query": "Do you open on Sundays?", "hits": []}


class Windmill:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, text="ok" if self.status < 400 else "internal error")


@pytest.fixture
def windmill_settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url=database_url,
        redis_url=redis_url,
        chatmill_data_dir=tmp_path / ".chatmill",
        windmill_url="http://windmill.internal:8000",
        windmill_token="wm-token",
    )


def _windmill_client(settings: Settings, windmill: Windmill) -> Iterator[TestClient]:
    with TestClient(create_app(settings, transport=httpx.MockTransport(windmill.handle))) as client:
        yield client


def test_with_windmill_configured_the_flow_is_started_there(
    windmill_settings: Settings, db: psycopg.Connection[Any]
) -> None:
    windmill = Windmill()
    for client in _windmill_client(windmill_settings, windmill):
        tenant = make_tenant(db, client)
        response = client.post(
            f"/api/chatbots/{tenant.chatbot['id']}/knowledge/url",
            headers=tenant.headers["owner"],
            json={"url": "https://example.com/"},
        )
        assert response.status_code == 201
        source = response.json()
    [request] = windmill.requests
    assert request.url.path == "/api/w/chatmill/jobs/run/f/f/chatmill/ingest_source"
    assert request.url.params["job_id"] == source["job_id"]
    assert json.loads(request.content) == {"source_id": source["id"]}
    assert request.headers["Authorization"] == "Bearer wm-token"


def test_windmill_down_marks_the_source_failed_and_answers_503(
    windmill_settings: Settings, db: psycopg.Connection[Any]
) -> None:
    windmill = Windmill(status=503)
    for client in _windmill_client(windmill_settings, windmill):
        tenant = make_tenant(db, client)
        response = client.post(
            f"/api/chatbots/{tenant.chatbot['id']}/knowledge/url",
            headers=tenant.headers["owner"],
            json={"url": "https://example.com/"},
        )
        assert response.status_code == 503
        row = db.execute(
            "SELECT status, error FROM knowledge_sources WHERE chatbot_id = %s AND kind = 'url'",
            (tenant.chatbot["id"],),
        ).fetchone()
        assert row is not None
        assert row["status"] == "failed"
        assert "could not start ingestion" in row["error"]
