"""Forged, expired and tampered access tokens are refused with 401 and the one error shape."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import psycopg
import pytest
from jose import jwt
from starlette.testclient import TestClient

from chatmill.settings import Settings
from management_api.security import issue_access_token
from tests.management_api.conftest import Tenant


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(settings: Settings, tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": str(tenant.owner["id"]),
        "org": str(tenant.organization["id"]),
        "role": "owner",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": uuid.uuid4().hex,
        "typ": "access",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(settings: Settings, claims: dict[str, Any], *, key: str | None = None, alg: str = "HS256") -> str:
    token: str = jwt.encode(claims, key or settings.jwt_secret.get_secret_value(), algorithm=alg)
    return token


def _assert_refused(api: TestClient, token: str) -> None:
    response = api.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert "Bearer" in response.headers["WWW-Authenticate"]


def test_a_well_formed_token_is_accepted(api: TestClient, settings: Settings, tenant: Tenant) -> None:
    token = _signed(settings, _claims(settings, tenant))
    response = api.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["user"]["id"] == str(tenant.owner["id"])


def test_alg_none_is_refused(api: TestClient, settings: Settings, tenant: Tenant) -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(settings, tenant))}."
    _assert_refused(api, token)


def test_hs256_with_another_key_is_refused(api: TestClient, settings: Settings, tenant: Tenant) -> None:
    _assert_refused(api, _signed(settings, _claims(settings, tenant), key="another-key-" + "x" * 40))


def test_other_hmac_algorithms_are_refused_even_with_the_right_key(
    api: TestClient, settings: Settings, tenant: Tenant
) -> None:
    _assert_refused(api, _signed(settings, _claims(settings, tenant), alg="HS512"))


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"exp": int(time.time()) - 10}, id="expired"),
        pytest.param({"aud": "someone-else"}, id="wrong-audience"),
        pytest.param({"iss": "evil-issuer"}, id="wrong-issuer"),
        pytest.param({"exp": None}, id="no-exp"),
        pytest.param({"iat": None}, id="no-iat"),
        pytest.param({"aud": None}, id="no-aud"),
        pytest.param({"iss": None}, id="no-iss"),
        pytest.param({"jti": None}, id="no-jti"),
        pytest.param({"iat": int(time.time()) + 3600, "nbf": None}, id="issued-in-the-future"),
        pytest.param({"typ": "refresh"}, id="not-an-access-token"),
        pytest.param({"sub": str(uuid.uuid4())}, id="unknown-user"),
    ],
)
def test_bad_claims_are_refused(
    api: TestClient, settings: Settings, tenant: Tenant, overrides: dict[str, Any]
) -> None:
    _assert_refused(api, _signed(settings, _claims(settings, tenant, **overrides)))


def test_a_tampered_payload_is_refused(api: TestClient, settings: Settings, tenant: Tenant) -> None:
    agent_token, _ = issue_access_token(
        settings, user_id=tenant.agent["id"], organization_id=tenant.organization["id"], role="agent"
    )
    header, payload, signature = agent_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims |= {"sub": str(tenant.owner["id"]), "role": "owner"}
    _assert_refused(api, f"{header}.{_b64(claims)}.{signature}")


def test_the_role_comes_from_the_database_not_the_token(
    api: TestClient, settings: Settings, tenant: Tenant
) -> None:
    """A token minted with role 'owner' for an agent (say, before a demotion) grants an agent's rights."""
    token = _signed(settings, _claims(settings, tenant, sub=str(tenant.agent["id"]), role="owner"))
    response = api.put(
        "/api/organizations/billing", headers={"Authorization": f"Bearer {token}"}, json={"tier": "free"}
    )
    assert response.status_code == 403


def test_a_removed_member_is_locked_out_at_once(
    api: TestClient, db: psycopg.Connection[Any], tenant: Tenant
) -> None:
    db.execute("DELETE FROM users WHERE id = %s", (tenant.agent["id"],))
    response = api.get("/api/auth/me", headers=tenant.headers["agent"])
    assert response.status_code == 401


@pytest.mark.parametrize("header", ["", "Basic dXNlcjpwYXNz", "Bearer", "Bearer not.a.jwt", "Token abc"])
def test_missing_or_malformed_credentials(api: TestClient, header: str) -> None:
    headers = {"Authorization": header} if header else {}
    response = api.get("/api/chatbots", headers=headers)
    assert response.status_code == 401
    assert set(response.json()) == {"error"}
