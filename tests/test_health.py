from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from chatmill.settings import Settings
from ingress.app import create_app as create_ingress
from management_api.app import create_app as create_api

APPS = pytest.mark.parametrize("factory", [create_ingress, create_api], ids=["ingress", "api"])


@APPS
def test_ready_when_postgres_and_redis_answer(
    factory: Callable[[Settings], Starlette], settings: Settings
) -> None:
    with TestClient(factory(settings)) as client:
        assert client.get("/health/live").json() == {"status": "ok"}
        response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"postgres": {"status": "ok"}, "redis": {"status": "ok"}},
    }


@APPS
def test_not_ready_names_the_dependency_that_is_down(
    factory: Callable[[Settings], Starlette], settings: Settings, tmp_path: object
) -> None:
    broken = settings.model_copy(update={"redis_url": "unix:///nonexistent/redis.sock"})
    with TestClient(factory(broken)) as client:
        response = client.get("/health/ready")
        assert client.get("/health/live").status_code == 200
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["postgres"] == {"status": "ok"}
    assert body["checks"]["redis"]["status"] == "error"


@APPS
def test_unknown_routes_use_the_one_error_shape(
    factory: Callable[[Settings], Starlette], settings: Settings
) -> None:
    with TestClient(factory(settings)) as client:
        missing = client.get("/no/such/route")
        wrong_method = client.post("/health/live")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "no route for GET /no/such/route"}}
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


@APPS
def test_metrics_are_exposed(factory: Callable[[Settings], Starlette], settings: Settings) -> None:
    with TestClient(factory(settings)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
