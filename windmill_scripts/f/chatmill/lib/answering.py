"""A grounded reply to the customer's turn: retrieval + prompt + LLM (with tools), or offline extracts.

    generate_reply(conn, organization_id=…, chatbot=<chatbots row>, turn=[…], history=[…],
                   providers=ProviderConfig(…), tools=None) -> Reply

``turn`` holds the customer's unanswered messages (oldest first), ``history`` earlier messages as
``{"role": "user"|"assistant", "content": …}`` (oldest first). The question retrieved for is the
turn's text joined (the latest message last).

Which model answers: the chatbot's ``llm_provider`` / ``llm_model`` when it names a provider the
platform has a key for, else the platform's ``LLM_PROVIDER`` (``providers.llm_provider``).

- **offline** (the default, no key): the extractive answerer. It keeps the hits that pass the
  threshold (cosine similarity >= max(chatbot ``retrieval_min_score``, :data:`OFFLINE_MIN_SIMILARITY`),
  or a full-text match together with a similarity >= :data:`OFFLINE_TEXT_MIN_SIMILARITY`), and
  quotes from the best one or two the sentences closest to the question (trimmed to
  :data:`OFFLINE_MAX_QUOTE_CHARS`), each with its source; with nothing passing it says it does not
  know (in the customer's language when it is one of en/es/pt/fr/de, guessed from common words).
  Deterministic, and a few milliseconds plus the retrieval query.
- **openai / gemini**: system prompt = the chatbot's ``system_prompt`` + our grounding rules
  (``prompts/grounding.md``) + the numbered passages (``prompts/knowledge.md``); the tool loop of
  :mod:`f.chatmill.lib.llm`. Citations are the passages the answer cites as ``[n]`` (all passages
  shown when it cites none).

Token usage: ``Reply.prompt_tokens`` / ``completion_tokens`` are for the caller's message row; the
organization's monthly counters (``usage_monthly``) are incremented here when ``record_usage`` is
true (the default), in the same call, so a reply is counted once per successful generation.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from f.chatmill.lib.embeddings import offline_model
from f.chatmill.lib.llm import LlmConfig, ToolSet, complete
from f.chatmill.lib.providers import ProviderConfig
from f.chatmill.lib.retrieval import Hit, retrieve

__all__ = ["ProviderConfig", "Reply", "ToolSet", "generate_reply"]

PROMPTS = Path(__file__).resolve().parent / "prompts"
OFFLINE_MODEL_LABEL = "offline-extractive"
OFFLINE_MIN_SIMILARITY = 0.5
OFFLINE_TEXT_MIN_SIMILARITY = 0.25
OFFLINE_MAX_QUOTES = 2
OFFLINE_MAX_QUOTE_CHARS = 400
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_CITATION_MARK = re.compile(r"\[(\d{1,2})\]")

_LANGUAGE_HINTS = {
    "es": {
        "el",
        "la",
        "los",
        "las",
        "que",
        "de",
        "y",
        "es",
        "por",
        "para",
        "cuánto",
        "cuándo",
        "dónde",
        "qué",
        "hola",
        "tienen",
        "puedo",
    },
    "pt": {
        "o",
        "os",
        "que",
        "de",
        "e",
        "é",
        "para",
        "quanto",
        "quando",
        "onde",
        "olá",
        "vocês",
        "têm",
        "posso",
        "não",
        "obrigado",
    },
    "fr": {
        "le",
        "la",
        "les",
        "que",
        "de",
        "et",
        "est",
        "pour",
        "combien",
        "quand",
        "où",
        "bonjour",
        "vous",
        "je",
        "puis",
    },
    "de": {
        "der",
        "die",
        "das",
        "und",
        "ist",
        "wie",
        "wann",
        "wo",
        "ich",
        "sie",
        "hallo",
        "haben",
        "kann",
        "nicht",
    },
    "en": {
        "the",
        "is",
        "are",
        "what",
        "when",
        "where",
        "how",
        "do",
        "you",
        "i",
        "can",
        "hello",
        "have",
        "my",
        "your",
    },
}


@dataclass
class Reply:
    text: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = OFFLINE_MODEL_LABEL
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    grounded: bool = False  # False: nothing in the knowledge passed the threshold


@functools.cache
def prompt(name: str) -> str:
    """A prompt file from ``prompts/`` (read once per process)."""
    return (PROMPTS / name).read_text(encoding="utf-8")


@functools.cache
def _localized(name: str) -> dict[str, str]:
    lines = (line.split("|", 1) for line in prompt(name).splitlines() if "|" in line)
    return {language: text.strip() for language, text in lines}


def guess_language(text: str) -> str:
    """en/es/pt/fr/de from common words (offline replies only; LLMs follow the grounding rules)."""
    words = re.findall(r"\w+", text.lower())
    scores = {language: sum(word in hints for word in words) for language, hints in _LANGUAGE_HINTS.items()}
    best = max(scores, key=lambda language: (scores[language], language == "en"))
    return best if scores[best] > 0 else "en"


def _effective_provider(chatbot: Mapping[str, Any], providers: ProviderConfig) -> tuple[str, str | None]:
    wanted = str(chatbot.get("llm_provider") or "offline")
    keys = {
        "openai": providers.openai_api_key or providers.openai_base_url,
        "gemini": providers.gemini_api_key,
    }
    if wanted != "offline" and keys.get(wanted):
        return wanted, chatbot.get("llm_model")
    return providers.llm_provider, None


def generate_reply(
    conn: psycopg.Connection[Any],
    *,
    organization_id: uuid.UUID | str,
    chatbot: Mapping[str, Any],
    turn: Sequence[str],
    history: Sequence[Mapping[str, str]],
    providers: ProviderConfig,
    tools: ToolSet | None = None,
    record_usage: bool = True,
) -> Reply:
    """The reply to ``turn`` (see the module docstring). Raises ProviderError when the LLM fails."""
    question = "\n".join(part.strip() for part in turn if part and part.strip())
    if not question:
        return Reply(text="", model=OFFLINE_MODEL_LABEL)
    hits = retrieve(
        conn,
        organization_id=organization_id,
        chatbot_id=chatbot["id"],
        query=question,
        providers=providers,
        top_k=int(chatbot.get("retrieval_top_k") or 5),
    )
    provider, model = _effective_provider(chatbot, providers)
    if provider == "offline":
        return _offline_reply(question, hits, float(chatbot.get("retrieval_min_score") or 0))
    reply = _llm_reply(provider, model, chatbot, question, history, hits, providers, tools)
    if record_usage and (reply.prompt_tokens or reply.completion_tokens):
        record_token_usage(
            conn,
            organization_id=organization_id,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
        )
    return reply


# -------------------------------------------------------------------------------------------- offline


def _passes(hit: Hit, min_similarity: float) -> bool:
    similarity = hit.similarity if hit.similarity is not None else 0.0
    return similarity >= max(min_similarity, OFFLINE_MIN_SIMILARITY) or (
        hit.text_match and similarity >= OFFLINE_TEXT_MIN_SIMILARITY
    )


def _trim(question_vector: np.ndarray[Any, Any], content: str) -> str:
    """The sentences of ``content`` closest to the question, in their original order, bounded."""
    body = content.split("\n", 1)[1] if "\n" in content else content
    sentences = [s.strip() for s in _SENTENCE.split(body) if s.strip()]
    if len(body) <= OFFLINE_MAX_QUOTE_CHARS or len(sentences) <= 1:
        return (
            body
            if len(body) <= OFFLINE_MAX_QUOTE_CHARS
            else body[: OFFLINE_MAX_QUOTE_CHARS - 1].rstrip() + "…"
        )
    scores = offline_model().encode(sentences) @ question_vector
    chosen: list[int] = []
    length = 0
    for index in np.argsort(-scores, kind="stable"):
        size = len(sentences[int(index)]) + 1
        if chosen and length + size > OFFLINE_MAX_QUOTE_CHARS:
            break
        chosen.append(int(index))
        length += size
    text = " ".join(sentences[i] for i in sorted(chosen))
    return (
        text if len(text) <= OFFLINE_MAX_QUOTE_CHARS else text[: OFFLINE_MAX_QUOTE_CHARS - 1].rstrip() + "…"
    )


def _source_label(hit: Hit) -> str:
    label = hit.title or hit.source_name or hit.uri
    if hit.uri and hit.uri.startswith(("http://", "https://")):
        label = f"{label} ({hit.uri})" if label != hit.uri else label
    if hit.page is not None:
        label += f", p. {hit.page}"
    return label


def _offline_reply(question: str, hits: Sequence[Hit], min_similarity: float) -> Reply:
    language = guess_language(question)
    passing = [hit for hit in hits if _passes(hit, min_similarity)][:OFFLINE_MAX_QUOTES]
    if not passing:
        unknown = _localized("offline_unknown.txt")
        return Reply(text=unknown.get(language, unknown["en"]), model=OFFLINE_MODEL_LABEL, grounded=False)
    question_vector = offline_model().encode([question])[0]
    lines = [_localized("offline_found.txt").get(language, "Here is what I found:")]
    for hit in passing:
        lines.append(f"\n“{_trim(question_vector, hit.content)}”\n— {_source_label(hit)}")
    return Reply(
        text="\n".join(lines),
        citations=[hit.citation() for hit in passing],
        model=OFFLINE_MODEL_LABEL,
        grounded=True,
    )


# ------------------------------------------------------------------------------------------------ LLM


def build_system_prompt(chatbot: Mapping[str, Any], hits: Sequence[Hit]) -> str:
    """The chatbot's prompt, then our grounding rules, then the numbered passages."""
    parts = [str(chatbot.get("system_prompt") or "").strip(), prompt("grounding.md").strip()]
    if hits:
        passages = "\n\n".join(
            f"[{number}] ({_source_label(hit)})\n{hit.content}" for number, hit in enumerate(hits, start=1)
        )
        parts.append(prompt("knowledge.md").strip().replace("{passages}", passages))
    else:
        parts.append(prompt("no_knowledge.md").strip())
    return "\n\n".join(part for part in parts if part)


def _llm_reply(
    provider: str,
    model: str | None,
    chatbot: Mapping[str, Any],
    question: str,
    history: Sequence[Mapping[str, str]],
    hits: Sequence[Hit],
    providers: ProviderConfig,
    tools: ToolSet | None,
) -> Reply:
    if provider == "openai":
        config = LlmConfig(
            provider="openai",
            model=model or providers.openai_model,
            api_key=providers.openai_api_key,
            base_url=providers.openai_base_url,
            timeout_seconds=providers.llm_timeout_seconds,
            max_attempts=providers.max_attempts,
            temperature=float(chatbot.get("temperature") or 0.3),
            max_output_tokens=int(chatbot.get("max_output_tokens") or 800),
        )
    else:
        config = LlmConfig(
            provider="gemini",
            model=model or providers.gemini_model,
            api_key=providers.gemini_api_key,
            base_url=providers.gemini_base_url,
            timeout_seconds=providers.llm_timeout_seconds,
            max_attempts=providers.max_attempts,
            temperature=float(chatbot.get("temperature") or 0.3),
            max_output_tokens=int(chatbot.get("max_output_tokens") or 800),
        )
    messages = [{"role": m["role"], "content": m["content"]} for m in history if m.get("content")]
    messages.append({"role": "user", "content": question})
    completion = complete(config, system=build_system_prompt(chatbot, hits), messages=messages, tools=tools)
    cited = sorted({int(n) for n in _CITATION_MARK.findall(completion.text) if 1 <= int(n) <= len(hits)})
    used = [hits[n - 1] for n in cited] if cited else list(hits)
    return Reply(
        text=completion.text,
        citations=[hit.citation() for hit in used],
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        model=completion.model,
        tool_calls=completion.tool_calls,
        grounded=bool(hits),
    )


_RECORD_USAGE = """
INSERT INTO usage_monthly (organization_id, period, prompt_tokens, completion_tokens)
VALUES (%(organization_id)s, date_trunc('month', now() AT TIME ZONE 'UTC')::date, %(prompt)s, %(completion)s)
ON CONFLICT (organization_id, period) DO UPDATE
SET prompt_tokens = usage_monthly.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = usage_monthly.completion_tokens + excluded.completion_tokens,
    updated_at = now()
"""


def record_token_usage(
    conn: psycopg.Connection[Any],
    *,
    organization_id: uuid.UUID | str,
    prompt_tokens: int,
    completion_tokens: int,
) -> None:
    """Add a reply's tokens to the organization's monthly usage."""
    conn.execute(
        _RECORD_USAGE,
        {"organization_id": organization_id, "prompt": prompt_tokens, "completion": completion_tokens},
    )
