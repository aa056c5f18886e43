"""LLM providers against local OpenAI-compatible and Gemini-shaped servers: retries, timeouts, tools."""

from __future__ import annotations

import time
from typing import Any

import pytest
from f.chatmill.lib.llm import Completion, LlmConfig, LlmError, ToolSet, ToolSpec, complete

from tests.knowledge.llm_server import (
    LlmServer,
    Reply,
    gemini_error,
    gemini_function_call,
    gemini_text,
    llm_server,
    openai_error,
    openai_text,
    openai_tool_call,
)

PRICE_TOOL = ToolSpec(
    name="get_price",
    description="Price of a product in EUR.",
    parameters={"type": "object", "properties": {"product": {"type": "string"}}, "required": ["product"]},
)
HELLO = [{"role": "user", "content": "How much is a croissant?"}]


def _config(provider: str, server: LlmServer, **overrides: Any) -> LlmConfig:
    base_url = server.base_url + "/v1" if provider == "openai" else server.base_url
    values: dict[str, Any] = {
        "provider": provider,
        "model": "test-model",
        "api_key": "test-key",
        "base_url": base_url,
        "timeout_seconds": 5.0,
    }
    return LlmConfig(**(values | overrides))


TEXT = {"openai": openai_text, "gemini": gemini_text}
ERROR = {"openai": openai_error, "gemini": gemini_error}


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_retries_on_429_and_503_then_succeeds(provider: str) -> None:
    script = [
        Reply(429, ERROR[provider](429)),
        Reply(503, ERROR[provider](503)),
        Reply(200, TEXT[provider]("Hello!")),
    ]
    with llm_server(script) as server:
        result = complete(_config(provider, server), system="Be brief.", messages=HELLO)
    assert result.text == "Hello!"
    assert len(server.requests) == 3


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_a_400_is_not_retried(provider: str) -> None:
    script = [Reply(400, ERROR[provider](400, "bad request")), Reply(200, TEXT[provider]("never"))]
    with llm_server(script) as server, pytest.raises(LlmError) as raised:
        complete(_config(provider, server), system="Be brief.", messages=HELLO)
    assert raised.value.status == 400
    assert raised.value.retryable is False
    assert len(server.requests) == 1


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_the_timeout_is_honoured(provider: str) -> None:
    with llm_server([Reply(200, TEXT[provider]("too late"), delay=3.0)]) as server:
        started = time.monotonic()
        with pytest.raises(LlmError) as raised:
            complete(
                _config(provider, server, timeout_seconds=0.5, max_attempts=2), system="s", messages=HELLO
            )
        elapsed = time.monotonic() - started
    assert raised.value.retryable is True
    assert "timed out" in str(raised.value)
    assert len(server.requests) == 2  # a timeout is retryable: both attempts were made
    assert elapsed < 2.9  # two 0.5 s timeouts and one jittered wait, never the 3 s the server takes


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_tokens_are_summed_over_rounds(provider: str) -> None:
    with llm_server([Reply(200, TEXT[provider]("Hi", 100, 20))]) as server:
        result = complete(_config(provider, server), system="s", messages=HELLO)
    assert (result.prompt_tokens, result.completion_tokens) == (100, 20)


def _prices(calls: list[tuple[str, dict[str, Any]]]) -> ToolSet:
    def call(name: str, arguments: dict[str, Any]) -> str:
        calls.append((name, arguments))
        return "1.80 EUR"

    return ToolSet(tools=[PRICE_TOOL], call=call)


def test_openai_tool_call_round_trip() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    script = [
        Reply(200, openai_tool_call("get_price", {"product": "croissant"})),
        Reply(200, openai_text("A croissant is 1.80 EUR.")),
    ]
    with llm_server(script) as server:
        result = complete(_config("openai", server), system="s", messages=HELLO, tools=_prices(calls))
    assert result.text == "A croissant is 1.80 EUR."
    assert calls == [("get_price", {"product": "croissant"})]
    first, second = server.requests[0].body, server.requests[1].body
    assert first["tools"][0]["function"]["name"] == "get_price"
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "1.80 EUR"}
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_price"
    assert (result.prompt_tokens, result.completion_tokens) == (20 + 11, 5 + 7)
    assert result.tool_calls == [
        {"name": "get_price", "arguments": {"product": "croissant"}, "result": "1.80 EUR", "round": 1}
    ]


def test_gemini_function_call_round_trip() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    script = [
        Reply(200, gemini_function_call("get_price", {"product": "croissant"})),
        Reply(200, gemini_text("1.80 EUR.")),
    ]
    with llm_server(script) as server:
        result = complete(_config("gemini", server), system="s", messages=HELLO, tools=_prices(calls))
    assert result.text == "1.80 EUR."
    assert calls == [("get_price", {"product": "croissant"})]
    first, second = server.requests[0], server.requests[1]
    assert first.path.endswith("/models/test-model:generateContent")
    assert first.headers.get("x-goog-api-key") == "test-key"
    assert first.body["tools"][0]["functionDeclarations"][0]["name"] == "get_price"
    response_part = second.body["contents"][-1]["parts"][0]["functionResponse"]
    assert response_part == {"name": "get_price", "response": {"result": "1.80 EUR"}}
    assert (result.prompt_tokens, result.completion_tokens) == (30 + 13, 4 + 9)


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_the_tool_loop_is_bounded_in_rounds(provider: str) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    tool_reply = (
        openai_tool_call("get_price", {"product": "x"})
        if provider == "openai"
        else gemini_function_call("get_price", {"product": "x"})
    )
    script = [Reply(200, tool_reply), Reply(200, tool_reply), Reply(200, TEXT[provider]("Done."))]
    tools = _prices(calls)
    tools.max_rounds = 2
    with llm_server(script) as server:
        result: Completion = complete(_config(provider, server), system="s", messages=HELLO, tools=tools)
    assert result.text == "Done."
    assert len(calls) == 2
    last = server.requests[-1].body
    if provider == "openai":
        assert last["tool_choice"] == "none"
    else:
        assert "tools" not in last


def test_a_failing_tool_is_reported_to_the_model() -> None:
    def broken(name: str, arguments: dict[str, Any]) -> str:
        raise ValueError("unknown product")

    script = [Reply(200, openai_tool_call("get_price", {"product": "?"})), Reply(200, openai_text("Sorry."))]
    with llm_server(script) as server:
        complete(_config("openai", server), system="s", messages=HELLO, tools=ToolSet([PRICE_TOOL], broken))
    assert server.requests[1].body["messages"][-1]["content"] == "error: unknown product"
