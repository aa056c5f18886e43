"""Chat completion with function calling: OpenAI (and any OpenAI-compatible base URL) and Gemini.

    complete(config, system=…, messages=[{"role": "user"|"assistant", "content": …}], tools=ToolSet|None)
        -> Completion(text, prompt_tokens, completion_tokens, model, tool_calls)

Tool calling: a :class:`ToolSet` lists :class:`ToolSpec` (name, description, JSON-schema
parameters) and one ``call(name, arguments) -> str`` handler. When the model asks for tools, each
is run and its result sent back; the loop is bounded by ``max_rounds`` and ``max_seconds``. When a
bound is reached the model is asked once more **without** tools, so the customer always gets text.
The MCP tool servers plug in by providing a ToolSet whose handler calls the MCP client; nothing here
changes. A tool handler that raises is reported to the model as ``error: …`` (it may correct itself).

Timeouts are explicit (``LlmConfig.timeout_seconds`` per HTTP call); 429 / 5xx / timeouts are
retried with jittered exponential backoff (:func:`f.chatmill.lib.providers.call_with_retries`),
nothing else is. Token usage is summed over every round.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from f.chatmill.lib.providers import DEFAULT_MAX_ATTEMPTS, ProviderError, call_with_retries


class LlmError(ProviderError):
    """The LLM provider failed after its retries, or answered something unusable."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass
class ToolSet:
    """Tools offered to the model and the function that runs them (sync; returns text for the model)."""

    tools: Sequence[ToolSpec]
    call: Callable[[str, dict[str, Any]], str]
    max_rounds: int = 4
    max_seconds: float = 30.0


@dataclass(frozen=True)
class LlmConfig:
    provider: str  # openai | gemini
    model: str
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    timeout_seconds: float = 30.0
    temperature: float = 0.3
    max_output_tokens: int = 800
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # name, arguments, result, round


def complete(
    config: LlmConfig,
    *,
    system: str,
    messages: Sequence[Mapping[str, str]],
    tools: ToolSet | None = None,
) -> Completion:
    """One answer from the model, running the tool loop when ``tools`` is given."""
    if config.provider == "openai":
        return _OpenAIChat(config).run(system, messages, tools)
    if config.provider == "gemini":
        return _GeminiChat(config).run(system, messages, tools)
    raise LlmError(f"unknown LLM provider {config.provider!r}")


def _run_tool(tools: ToolSet, name: str, arguments: dict[str, Any]) -> str:
    if name not in {spec.name for spec in tools.tools}:
        return f"error: unknown tool {name}"
    try:
        return tools.call(name, arguments)
    except Exception as exc:  # reported to the model, which may correct its call
        return f"error: {exc}"


def _parse_arguments(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class _OpenAIChat:
    def __init__(self, config: LlmConfig) -> None:
        import openai

        self.config = config
        self.client = openai.OpenAI(
            api_key=config.api_key or "unset",
            base_url=config.base_url,
            timeout=config.timeout_seconds,
            max_retries=0,
        )

    def _create(self, messages: list[dict[str, Any]], tools: ToolSet | None, allow_tools: bool) -> Any:
        kwargs: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_output_tokens,
        }
        if tools is not None and tools.tools:
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": dict(t.parameters),
                    },
                }
                for t in tools.tools
            ]
            kwargs["tool_choice"] = "auto" if allow_tools else "none"
        return call_with_retries(
            lambda: self.client.chat.completions.create(**kwargs),
            self.config.max_attempts,
            error_type=LlmError,
        )

    def run(self, system: str, history: Sequence[Mapping[str, str]], tools: ToolSet | None) -> Completion:
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
        messages += [{"role": m["role"], "content": m["content"]} for m in history]
        result = Completion(text="", model=self.config.model)
        started = time.monotonic()
        rounds = 0
        while True:
            allow = (
                tools is not None
                and rounds < tools.max_rounds
                and time.monotonic() - started < tools.max_seconds
            )
            response = self._create(messages, tools, allow)
            if response.usage is not None:
                result.prompt_tokens += int(response.usage.prompt_tokens or 0)
                result.completion_tokens += int(response.usage.completion_tokens or 0)
            result.model = response.model or result.model
            if not response.choices:
                raise LlmError("the model returned no choices")
            message = response.choices[0].message
            calls = message.tool_calls or []
            if not calls or not allow or tools is None:
                result.text = (message.content or "").strip()
                return result
            rounds += 1
            messages.append(
                {
                    "role": "assistant",
                    "content": message.content,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.function.name, "arguments": c.function.arguments},
                        }
                        for c in calls
                    ],
                }
            )
            for call in calls:
                arguments = _parse_arguments(call.function.arguments)
                output = _run_tool(tools, call.function.name, arguments)
                result.tool_calls.append(
                    {"name": call.function.name, "arguments": arguments, "result": output, "round": rounds}
                )
                messages.append({"role": "tool", "tool_call_id": call.id, "content": output})


class _GeminiChat:
    def __init__(self, config: LlmConfig) -> None:
        from google import genai
        from google.genai import types

        self.config = config
        self.types = types
        self.client = genai.Client(
            api_key=config.api_key or "unset",
            http_options=types.HttpOptions(
                base_url=config.base_url, timeout=int(config.timeout_seconds * 1000)
            ),
        )

    def _generate(self, system: str, contents: list[Any], tools: ToolSet | None, allow_tools: bool) -> Any:
        types = self.types
        declarations = []
        if tools is not None and tools.tools and allow_tools:
            declarations = [
                types.Tool(
                    function_declarations=[
                        types.FunctionDeclaration(
                            name=t.name, description=t.description, parameters_json_schema=dict(t.parameters)
                        )
                        for t in tools.tools
                    ]
                )
            ]
        config = types.GenerateContentConfig(
            system_instruction=system,
            temperature=self.config.temperature,
            max_output_tokens=self.config.max_output_tokens,
            tools=declarations or None,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        return call_with_retries(
            lambda: self.client.models.generate_content(
                model=self.config.model, contents=contents, config=config
            ),
            self.config.max_attempts,
            error_type=LlmError,
        )

    def run(self, system: str, history: Sequence[Mapping[str, str]], tools: ToolSet | None) -> Completion:
        types = self.types
        contents: list[Any] = [
            types.Content(
                role="model" if m["role"] == "assistant" else "user", parts=[types.Part(text=m["content"])]
            )
            for m in history
        ]
        result = Completion(text="", model=self.config.model)
        started = time.monotonic()
        rounds = 0
        while True:
            allow = (
                tools is not None
                and rounds < tools.max_rounds
                and time.monotonic() - started < tools.max_seconds
            )
            response = self._generate(system, contents, tools, allow)
            usage = response.usage_metadata
            if usage is not None:
                result.prompt_tokens += int(usage.prompt_token_count or 0)
                result.completion_tokens += int(usage.candidates_token_count or 0)
            result.model = response.model_version or result.model
            calls = response.function_calls or []
            if not calls or not allow or tools is None:
                result.text = (response.text or "").strip()
                return result
            rounds += 1
            if response.candidates and response.candidates[0].content is not None:
                contents.append(response.candidates[0].content)
            parts = []
            for call in calls:
                arguments = dict(call.args or {})
                output = _run_tool(tools, call.name or "", arguments)
                result.tool_calls.append(
                    {"name": call.name, "arguments": arguments, "result": output, "round": rounds}
                )
                parts.append(
                    types.Part.from_function_response(name=call.name or "", response={"result": output})
                )
            contents.append(types.Content(role="user", parts=parts))
