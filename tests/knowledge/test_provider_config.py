"""Windmill passes variables as strings, and an unset one as "": ProviderConfig reads them as unset."""

from __future__ import annotations

from f.chatmill.lib.providers import ProviderConfig


def test_empty_variables_mean_the_offline_defaults() -> None:
    config = ProviderConfig(
        llm_provider="", embedding_provider="", openai_api_key="", openai_base_url="", gemini_api_key=""
    )
    assert (config.llm_provider, config.embedding_provider) == ("offline", "offline")
    assert (config.openai_api_key, config.openai_base_url, config.gemini_api_key) == (None, None, None)


def test_numbers_given_as_strings_are_converted() -> None:
    config = ProviderConfig(llm_timeout_seconds="12.5", max_attempts="4")  # type: ignore[arg-type]
    assert config.llm_timeout_seconds == 12.5
    assert config.max_attempts == 4
