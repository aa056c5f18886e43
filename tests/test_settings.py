from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from chatmill.settings import DEV_JWT_SECRET, Settings, SettingsError
from tests.conftest import make_settings

REAL = {
    "jwt_secret": "x" * 48,
    "whatsapp_app_secret": "0123456789abcdef0123456789abcdef",
    "whatsapp_verify_token": "a-verify-token-for-meta",
    "mcp_token": "mcp-token-with-enough-entropy-123",
    "encryption_keys": Fernet.generate_key().decode(),
}


def test_development_runs_with_no_configuration() -> None:
    settings = make_settings(chatmill_env="development")
    assert settings.is_development
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.graph_url == f"http://127.0.0.1:{settings.sandbox_port}"


def test_production_accepts_real_secrets() -> None:
    settings = make_settings(chatmill_env="production", **REAL)
    assert not settings.is_development
    assert settings.graph_url == "https://graph.facebook.com"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("jwt_secret", "changeme"),
        ("jwt_secret", DEV_JWT_SECRET),
        ("whatsapp_app_secret", ""),
        ("whatsapp_verify_token", "change-me"),
        ("mcp_token", "<your token>"),
        ("encryption_keys", "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM="),
    ],
)
def test_production_refuses_placeholder_secrets_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises((SettingsError, ValidationError), match=variable.upper()):
        make_settings(chatmill_env="production", **{**REAL, variable: value})


def test_production_refuses_a_missing_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REAL.items():
        monkeypatch.setenv(name.upper(), value)
    monkeypatch.setenv("CHATMILL_ENV", "production")
    monkeypatch.delenv("JWT_SECRET")
    with pytest.raises((SettingsError, ValidationError), match="JWT_SECRET"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_short_jwt_secret_refused_outside_development() -> None:
    with pytest.raises((SettingsError, ValidationError), match="JWT_SECRET must be at least 32"):
        make_settings(chatmill_env="production", **{**REAL, "jwt_secret": "short-but-not-a-placeholder"})


def test_windmill_token_required_when_windmill_is_configured() -> None:
    with pytest.raises((SettingsError, ValidationError), match="WINDMILL_TOKEN"):
        make_settings(chatmill_env="production", windmill_url="http://windmill:8000", **REAL)


def test_lists_are_read_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [Fernet.generate_key().decode() for _ in range(2)]
    monkeypatch.setenv("ENCRYPTION_KEYS", ",".join(keys))
    monkeypatch.setenv("CORS_ORIGINS", "https://app.example.com, https://admin.example.com")
    monkeypatch.setenv("DATABASE_URL", "")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert [key.get_secret_value() for key in settings.encryption_keys] == keys
    assert settings.cors_origins == ["https://app.example.com", "https://admin.example.com"]
    assert settings.database_url is None


def test_secrets_are_not_printed() -> None:
    settings = make_settings(chatmill_env="production", **REAL)
    assert REAL["jwt_secret"] not in repr(settings)
    assert REAL["whatsapp_app_secret"] not in str(settings)
