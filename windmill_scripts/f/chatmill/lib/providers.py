"""Provider configuration and the one retry policy every provider call goes through.

:class:`ProviderConfig` is built from plain values whose names match ``chatmill.settings.Settings``
(Windmill scripts receive them as ``$var:f/chatmill/<field_name>`` inputs; the apps and the local
runner build it with :meth:`ProviderConfig.from_settings`). Secrets are plain ``str`` here because
Windmill hands variables over as strings; never log a ProviderConfig (its ``repr`` hides keys).

Retries (:func:`call_with_retries`): only 429, 5xx, timeouts and connection failures are retried,
with exponential backoff and full jitter (tenacity); a 400/401/403/404 fails at once. The SDK's own
retries are switched off (OpenAI ``max_retries=0``; Gemini's SDK does not retry by default), so
this is the only policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

T = TypeVar("T")

DEFAULT_MAX_ATTEMPTS = 3
_RETRY_MAX_WAIT_S = 8.0


class ProviderError(RuntimeError):
    """An LLM or embedding provider failed (after retries, when the failure was retryable).

    ``status`` is the provider's HTTP status when there was one; ``retryable`` tells whether the
    last failure was of a kind worth retrying later (Windmill's step retry).
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True)
class EmbeddingConfig:
    """Which embedder to call. ``provider``: offline | openai (any OpenAI-compatible base URL) | gemini."""

    provider: str = "offline"
    model: str = "offline"
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    timeout_seconds: float = 30.0
    dimensions: int | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


@dataclass(frozen=True)
class ProviderConfig:
    """LLM and embedding provider settings, field names as in ``chatmill.settings.Settings``."""

    llm_provider: str = "offline"
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_embedding_model: str = "text-embedding-3-small"
    gemini_api_key: str | None = field(default=None, repr=False)
    gemini_base_url: str | None = None  # tests and proxies; unset: Google's endpoint
    gemini_model: str = "gemini-2.5-flash"
    gemini_embedding_model: str = "gemini-embedding-001"
    embedding_provider: str = "offline"
    llm_timeout_seconds: float = 30.0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    def __post_init__(self) -> None:
        # Windmill variables arrive as strings ("30"); an empty secret means "not set".
        object.__setattr__(self, "llm_timeout_seconds", float(self.llm_timeout_seconds))
        object.__setattr__(self, "max_attempts", int(self.max_attempts))
        for name in ("openai_api_key", "openai_base_url", "gemini_api_key", "gemini_base_url"):
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)
        for name in ("llm_provider", "embedding_provider"):  # an unset variable: the offline default
            if not getattr(self, name):
                object.__setattr__(self, name, "offline")

    @classmethod
    def from_settings(cls, settings: Any) -> ProviderConfig:
        """Build from a ``chatmill.settings.Settings`` (duck-typed: this module runs on Windmill too)."""
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if hasattr(settings, name):
                value = getattr(settings, name)
                if hasattr(value, "get_secret_value"):
                    value = value.get_secret_value()
                values[name] = value
        return cls(**values)

    def embedding(self) -> EmbeddingConfig:
        """The embedding side of this configuration."""
        if self.embedding_provider == "openai":
            return EmbeddingConfig(
                provider="openai",
                model=self.openai_embedding_model,
                api_key=self.openai_api_key,
                base_url=self.openai_base_url,
                timeout_seconds=self.llm_timeout_seconds,
                max_attempts=self.max_attempts,
            )
        if self.embedding_provider == "gemini":
            return EmbeddingConfig(
                provider="gemini",
                model=self.gemini_embedding_model,
                api_key=self.gemini_api_key,
                base_url=self.gemini_base_url,
                timeout_seconds=self.llm_timeout_seconds,
                max_attempts=self.max_attempts,
            )
        return EmbeddingConfig()


def status_of(exc: BaseException) -> int | None:
    """The HTTP status behind an SDK exception (OpenAI ``status_code``, google-genai ``code``)."""
    for attribute in ("status_code", "code"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


# By class name as well: google-genai may use its own httpx fork (``httpx2``) whose exceptions are
# not httpx's classes.
_TIMEOUT_NAMES = frozenset(
    {"TimeoutException", "ReadTimeout", "ConnectTimeout", "WriteTimeout", "PoolTimeout", "APITimeoutError"}
)
_CONNECTION_NAMES = frozenset(
    {"APIConnectionError", "ConnectError", "ReadError", "WriteError", "RemoteProtocolError", "NetworkError"}
)


def is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TimeoutException | TimeoutError) or type(exc).__name__ in _TIMEOUT_NAMES


def is_retryable(exc: BaseException) -> bool:
    """429, 5xx, timeouts and connection failures: worth another try. Anything else is not."""
    if is_timeout(exc) or isinstance(exc, httpx.TransportError):
        return True
    if type(exc).__name__ in _CONNECTION_NAMES:
        return True
    status = status_of(exc)
    return status is not None and (status == 429 or status >= 500)


def call_with_retries(
    call: Callable[[], T], max_attempts: int, *, error_type: type[ProviderError] = ProviderError
) -> T:
    """Run ``call``; retry retryable failures with jittered exponential backoff; wrap the last error."""
    retrying = Retrying(
        stop=stop_after_attempt(max(1, max_attempts)),
        wait=wait_random_exponential(multiplier=0.5, max=_RETRY_MAX_WAIT_S),
        retry=retry_if_exception(is_retryable),
        reraise=True,
    )
    try:
        return retrying(call)
    except ProviderError:
        raise
    except Exception as exc:
        status = status_of(exc)
        kind = "timed out" if is_timeout(exc) else f"failed ({status})" if status else "failed"
        raise error_type(
            f"provider call {kind}: {type(exc).__name__}", status=status, retryable=is_retryable(exc)
        ) from exc
