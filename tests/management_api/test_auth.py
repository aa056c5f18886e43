"""Register, login, me, refresh (rotation and reuse detection), logout, brute-force limits."""

from __future__ import annotations

import asyncio
from typing import Any

import bcrypt
import psycopg
import pytest
from redis.asyncio import Redis
from starlette.testclient import TestClient

from chatmill.errors import RateLimited
from management_api import ratelimit
from tests import factories
from tests.management_api.conftest import PASSWORD, login

REGISTRATION = {
    "email": "  Ana@Sunrise-Bakery.example ",
    "password": "Bakery-2026!",
    "full_name": "Ana Lima",
    "organization_name": "Sunrise Bakery",
}


def _bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}


def test_register_creates_an_organization_and_its_owner(api: TestClient, db: psycopg.Connection[Any]) -> None:
    response = api.post("/api/auth/register", json=REGISTRATION)

    assert response.status_code == 201, response.text
    session = response.json()
    assert session["user"]["email"] == "ana@sunrise-bakery.example"
    assert session["user"]["role"] == "owner"
    assert session["organization"]["name"] == "Sunrise Bakery"
    assert session["expires_in"] == 24 * 3600
    me = api.get("/api/auth/me", headers=_bearer(session)).json()
    assert me["organization"]["id"] == session["organization"]["id"]
    row = db.execute("SELECT password_hash FROM users WHERE email = 'ana@sunrise-bakery.example'").fetchone()
    assert row is not None
    assert bcrypt.checkpw(b"Bakery-2026!", row["password_hash"].encode())


def test_register_refuses_a_taken_email(api: TestClient) -> None:
    assert api.post("/api/auth/register", json=REGISTRATION).status_code == 201
    again = api.post("/api/auth/register", json=REGISTRATION | {"organization_name": "Other"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "a@b"),
        ("password", "short1!"),
        ("password", "onlyletters"),
        ("password", "password1"),
        ("password", "é" * 40),  # 40 characters, 80 bytes: over bcrypt's 72
        ("password", "Aa1" + "x" * 70),  # 73 bytes
        ("organization_name", ""),
    ],
)
def test_register_validates(api: TestClient, field: str, value: str) -> None:
    response = api.post("/api/auth/register", json=REGISTRATION | {field: value})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert any(detail["loc"][:2] == ["body", field] for detail in error["details"])


def test_login_does_not_reveal_which_part_was_wrong(api: TestClient, db: psycopg.Connection[Any]) -> None:
    organization = factories.create_organization(db)
    user = factories.create_user(db, organization)
    unknown = api.post("/api/auth/login", json={"email": "nobody@example.com", "password": PASSWORD})
    wrong = api.post("/api/auth/login", json={"email": user["email"], "password": "Wrong-password-1"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


def test_a_disabled_account_cannot_log_in(api: TestClient, db: psycopg.Connection[Any]) -> None:
    organization = factories.create_organization(db)
    user = factories.create_user(db, organization, is_active=False)
    response = api.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert response.status_code == 401


def test_the_eleventh_wrong_password_in_a_minute_is_429(api: TestClient, db: psycopg.Connection[Any]) -> None:
    organization = factories.create_organization(db)
    user = factories.create_user(db, organization)
    attempt = {"email": user["email"], "password": "Wrong-password-1"}

    statuses = [api.post("/api/auth/login", json=attempt).status_code for _ in range(10)]
    eleventh = api.post("/api/auth/login", json=attempt)

    assert statuses == [401] * 10
    assert eleventh.status_code == 429
    assert eleventh.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(eleventh.headers["Retry-After"]) <= 60
    # The right password does not get through either until the window ends.
    assert api.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD}).status_code == 429
    # Another account from the same address is not locked out by this one.
    other = factories.create_user(db, organization)
    assert (
        api.post("/api/auth/login", json={"email": other["email"], "password": PASSWORD}).status_code == 200
    )


@pytest.mark.parametrize(
    "limit", [ratelimit.LOGIN_PER_IP, ratelimit.REGISTER_PER_IP, ratelimit.REGISTER_PER_EMAIL]
)
def test_the_limiter_counts_per_subject_and_window(redis_url: str, limit: ratelimit.Limit) -> None:
    """The per-IP budgets, checked on the limiter itself (the API-level tests above cost a bcrypt each)."""

    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        try:
            for _ in range(limit.attempts):
                await ratelimit.hit(redis, limit, "203.0.113.7")
            with pytest.raises(RateLimited) as refused:
                await ratelimit.hit(redis, limit, "203.0.113.7")
            assert 1 <= int(refused.value.headers["Retry-After"]) <= limit.window_seconds
            await ratelimit.hit(redis, limit, "198.51.100.1")  # another subject has its own budget
        finally:
            await redis.aclose()

    asyncio.run(scenario())


def test_register_is_limited_per_email(api: TestClient) -> None:
    statuses = [api.post("/api/auth/register", json=REGISTRATION).status_code for _ in range(6)]
    assert statuses == [201, 409, 409, 409, 409, 429]


def test_refresh_rotates_and_reuse_revokes_the_family(api: TestClient, db: psycopg.Connection[Any]) -> None:
    organization = factories.create_organization(db)
    user = factories.create_user(db, organization)
    first = api.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD}).json()

    second = api.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert api.get("/api/auth/me", headers=_bearer(rotated)).status_code == 200

    # The first token is presented again (stolen copy): refused, and the whole family is revoked...
    reused = api.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert reused.json()["error"]["details"] == {"reason": "refresh_token_reused"}
    # ...so the legitimate successor no longer works either.
    assert api.post("/api/auth/refresh", json={"refresh_token": rotated["refresh_token"]}).status_code == 401
    live = db.execute(
        "SELECT count(*) AS n FROM refresh_tokens WHERE user_id = %s AND revoked_at IS NULL", (user["id"],)
    ).fetchone()
    assert live == {"n": 0}


def test_reuse_revokes_only_that_login(api: TestClient, db: psycopg.Connection[Any]) -> None:
    organization = factories.create_organization(db)
    user = factories.create_user(db, organization)
    laptop = api.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD}).json()
    phone = api.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD}).json()
    api.post("/api/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    api.post("/api/auth/refresh", json={"refresh_token": laptop["refresh_token"]})  # reuse
    assert api.post("/api/auth/refresh", json={"refresh_token": phone["refresh_token"]}).status_code == 200


def test_unknown_refresh_token(api: TestClient) -> None:
    response = api.post("/api/auth/refresh", json={"refresh_token": "made-up"})
    assert response.status_code == 401


def test_logout_revokes_the_access_token_and_the_login(api: TestClient, db: psycopg.Connection[Any]) -> None:
    organization = factories.create_organization(db)
    user = factories.create_user(db, organization)
    session = api.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD}).json()

    response = api.post(
        "/api/auth/logout", headers=_bearer(session), json={"refresh_token": session["refresh_token"]}
    )

    assert response.status_code == 204
    assert api.get("/api/auth/me", headers=_bearer(session)).status_code == 401
    assert api.post("/api/auth/refresh", json={"refresh_token": session["refresh_token"]}).status_code == 401


def test_logout_everywhere(api: TestClient, db: psycopg.Connection[Any]) -> None:
    organization = factories.create_organization(db)
    user = factories.create_user(db, organization)
    one = api.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD}).json()
    two = api.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD}).json()
    assert api.post("/api/auth/logout", headers=_bearer(one), json={"all_sessions": True}).status_code == 204
    assert api.post("/api/auth/refresh", json={"refresh_token": two["refresh_token"]}).status_code == 401


def test_me(api: TestClient, db: psycopg.Connection[Any]) -> None:
    organization = factories.create_organization(db, name="Padaria")
    user = factories.create_user(db, organization, role="agent", full_name="Rui")
    me = api.get("/api/auth/me", headers=login(api, user["email"])).json()
    assert me["user"] | {"created_at": None, "last_login_at": None} == {
        "id": str(user["id"]),
        "email": user["email"],
        "full_name": "Rui",
        "role": "agent",
        "created_at": None,
        "last_login_at": None,
    }
    assert me["organization"]["name"] == "Padaria"
