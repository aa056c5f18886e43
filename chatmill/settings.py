"""Chatmill settings: every knob comes from the environment (or a `.env` file).

One `Settings` class, built at each entry point (CLI command, app factory, test fixture) and passed
down; nothing reads the environment anywhere else.

Environments:
- ``development`` (default) and ``test`` accept the built-in development secrets below, so that
  ``chatmill dev`` works on a fresh machine with no configuration at all.
- any other value (``production``, ``staging``, …) refuses a missing secret, a placeholder such as
  ``changeme``, or one of the development defaults, naming the variable.

With ``DATABASE_URL`` / ``REDIS_URL`` unset, Chatmill starts the embedded PostgreSQL and Redis
under ``CHATMILL_DATA_DIR`` (see :mod:`chatmill.embedded`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEVELOPMENT_ENVIRONMENTS = frozenset({"development", "test"})

# Development-only defaults. Publicly known, therefore refused outside development.
DEV_JWT_SECRET = "dev-only-jwt-secret-not-for-production-0000000000"  # noqa: S105
DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM="  # base64 of 32 bytes
DEV_WHATSAPP_APP_SECRET = "dev-whatsapp-app-secret"  # noqa: S105
DEV_WHATSAPP_VERIFY_TOKEN = "dev-verify-token"  # noqa: S105
DEV_MCP_TOKEN = "dev-mcp-token"  # noqa: S105

_DEV_DEFAULTS = frozenset(
    {DEV_JWT_SECRET, DEV_ENCRYPTION_KEY, DEV_WHATSAPP_APP_SECRET, DEV_WHATSAPP_VERIFY_TOKEN, DEV_MCP_TOKEN}
)
_PLACEHOLDERS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "change_me",
        "changethis",
        "secret",
        "password",
        "xxx",
        "todo",
        "replace-me",
    }
)

LlmProvider = Literal["offline", "openai", "gemini"]
EmbeddingProvider = Literal["offline", "openai", "gemini"]


class SettingsError(ValueError):
    """A setting is missing or unsafe; the message names the environment variable."""


def _is_placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    return lowered in _PLACEHOLDERS or lowered.startswith("changeme") or lowered.startswith("<")


class Settings(BaseSettings):
    """All configuration. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    chatmill_env: str = Field(default="development", description="development | test | production")
    chatmill_data_dir: Path = Field(default=Path(".chatmill"), description="embedded services' data")
    log_level: str = "INFO"

    # Storage. Unset means: start the embedded server under chatmill_data_dir.
    database_url: str | None = None
    db_pool_min_size: int = Field(default=2, ge=1)
    db_pool_max_size: int = Field(default=20, ge=1)
    redis_url: str | None = None

    # Flow backend. Unset WINDMILL_URL means: the local runner executes the flows.
    windmill_url: str | None = None
    windmill_token: SecretStr | None = None
    windmill_workspace: str = "chatmill"
    runner_workers: int = Field(default=10, ge=1, le=100)

    # LLM and embedding providers. "offline" needs no key and no download.
    llm_provider: LlmProvider = "offline"
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_embedding_model: str = "text-embedding-3-small"
    gemini_api_key: SecretStr | None = None
    gemini_model: str = "gemini-2.5-flash"
    gemini_embedding_model: str = "gemini-embedding-001"
    embedding_provider: EmbeddingProvider = "offline"
    llm_timeout_seconds: float = Field(default=30.0, gt=0)

    # Secrets.
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_issuer: str = "chatmill"
    jwt_audience: str = "chatmill-dashboard"
    jwt_ttl_seconds: int = Field(default=24 * 3600, gt=0)
    encryption_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=lambda: [SecretStr(DEV_ENCRYPTION_KEY)],
        description="comma-separated Fernet keys; the first encrypts, all decrypt (rotation)",
    )
    mcp_token: SecretStr = SecretStr(DEV_MCP_TOKEN)

    # WhatsApp (platform Meta app).
    whatsapp_app_secret: SecretStr = SecretStr(DEV_WHATSAPP_APP_SECRET)
    whatsapp_verify_token: SecretStr = SecretStr(DEV_WHATSAPP_VERIFY_TOKEN)
    whatsapp_graph_url: str | None = Field(
        default=None, description="unset: the local sandbox in development, graph.facebook.com otherwise"
    )
    whatsapp_api_version: str = "v21.0"

    # HTTP.
    host: str = "127.0.0.1"
    ingress_port: int = Field(default=8000, ge=0, le=65535)
    api_port: int = Field(default=8001, ge=0, le=65535)
    mcp_port: int = Field(default=8002, ge=0, le=65535)
    sandbox_port: int = Field(default=8003, ge=0, le=65535)
    public_base_url: str | None = None
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="proxies whose X-Forwarded-For is trusted (client IPs for rate limits); '*' behind Caddy",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("encryption_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url", "redis_url", "windmill_url", "whatsapp_graph_url", "public_base_url")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _refuse_unsafe_secrets(self) -> Settings:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise SettingsError("DB_POOL_MIN_SIZE must not exceed DB_POOL_MAX_SIZE")
        if not self.encryption_keys:
            raise SettingsError("ENCRYPTION_KEYS must hold at least one key")
        if self.is_development:
            return self
        checks: list[tuple[str, SecretStr | None]] = [
            ("JWT_SECRET", self.jwt_secret),
            ("WHATSAPP_APP_SECRET", self.whatsapp_app_secret),
            ("WHATSAPP_VERIFY_TOKEN", self.whatsapp_verify_token),
            ("MCP_TOKEN", self.mcp_token),
            *(("ENCRYPTION_KEYS", key) for key in self.encryption_keys),
        ]
        if self.windmill_url:
            checks.append(("WINDMILL_TOKEN", self.windmill_token))
        for name, secret in checks:
            value = secret.get_secret_value() if secret is not None else ""
            if _is_placeholder(value) or value in _DEV_DEFAULTS:
                raise SettingsError(
                    f"{name} is missing or a placeholder; set a real secret in the environment "
                    f"(CHATMILL_ENV={self.chatmill_env} refuses development defaults)"
                )
        if len(self.jwt_secret.get_secret_value()) < 32:
            raise SettingsError("JWT_SECRET must be at least 32 characters outside development")
        return self

    @property
    def is_development(self) -> bool:
        return self.chatmill_env in DEVELOPMENT_ENVIRONMENTS

    @property
    def graph_url(self) -> str:
        """Base URL of the WhatsApp Graph API (the local sandbox in development unless set)."""
        if self.whatsapp_graph_url:
            return self.whatsapp_graph_url.rstrip("/")
        if self.is_development:
            return f"http://{self.host}:{self.sandbox_port}"
        return "https://graph.facebook.com"

    def webhook_url(self, channel_id: str | None = None) -> str:
        """The callback URL to paste into Meta's console."""
        base = (self.public_base_url or f"http://{self.host}:{self.ingress_port}").rstrip("/")
        return f"{base}/webhook/whatsapp" + (f"/{channel_id}" if channel_id else "")
