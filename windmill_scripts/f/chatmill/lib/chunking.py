"""Structure-aware chunking: headings and paragraphs first, then sentences, token-bounded with overlap.

    chunk_blocks(blocks, title=…, uri=…, max_tokens=…, overlap_tokens=…) -> list[Chunk]

Blocks under one heading (and, for PDFs, on one page) are packed together until ``max_tokens``;
a heading or page change always starts a new chunk. A block longer than the limit is split at
sentence boundaries (at words when a sentence is still too long). When a section spills over into
another chunk, that chunk begins with the last ``overlap_tokens`` worth of sentences of the previous
one. Each chunk's text starts with its heading (when there is one), which helps both the vector and
the full-text side; its metadata keeps title, URL/file name, page and heading for citations.

Token counts are approximate (words and punctuation marks, which tracks WordPiece counts for
prose closely enough to bound chunks); no tokenizer call is needed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from f.chatmill.lib.extraction import Block

DEFAULT_MAX_TOKENS = 220
DEFAULT_OVERLAP_TOKENS = 40
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+")


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


@dataclass(frozen=True)
class Chunk:
    content: str
    token_count: int
    metadata: dict[str, Any] = field(default_factory=dict)


def _pieces(text: str, max_tokens: int) -> list[str]:
    """Split one block into sentences of at most ``max_tokens`` (words as a last resort)."""
    out: list[str] = []
    for sentence in _SENTENCE.split(text):
        if count_tokens(sentence) <= max_tokens:
            out.append(sentence)
            continue
        words = sentence.split()
        current: list[str] = []
        for word in words:
            if current and count_tokens(" ".join([*current, word])) > max_tokens:
                out.append(" ".join(current))
                current = []
            current.append(word)
        if current:
            out.append(" ".join(current))
    return out


def _overlap(sentences: Sequence[str], overlap_tokens: int) -> list[str]:
    kept: list[str] = []
    total = 0
    for sentence in reversed(sentences):
        size = count_tokens(sentence)
        if total + size > overlap_tokens:
            break
        kept.insert(0, sentence)
        total += size
    return kept


def chunk_blocks(
    blocks: Sequence[Block],
    *,
    title: str | None = None,
    uri: str | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
) -> list[Chunk]:
    """Pack blocks into chunks (see the module docstring). Identical chunk texts are kept once."""
    chunks: list[Chunk] = []
    seen: set[str] = set()
    section: tuple[str | None, int | None] | None = None
    current: list[str] = []  # sentences/pieces of the chunk being built
    current_tokens = 0

    def emit() -> None:
        nonlocal current, current_tokens
        if not current or section is None:
            return
        heading, page = section
        body = " ".join(current).strip()
        content = f"{heading}\n{body}" if heading and not body.startswith(heading) else body
        if content not in seen:
            seen.add(content)
            metadata: dict[str, Any] = {"title": title, "uri": uri, "heading": heading, "page": page}
            chunks.append(
                Chunk(content, count_tokens(content), {k: v for k, v in metadata.items() if v is not None})
            )

    for block in blocks:
        key = (block.heading, block.page)
        if key != section:
            emit()
            section, current, current_tokens = key, [], 0
        for piece in _pieces(block.text, max_tokens):
            size = count_tokens(piece)
            if current and current_tokens + size > max_tokens:
                emit()
                current = _overlap(current, overlap_tokens)
                current_tokens = sum(count_tokens(s) for s in current)
                if current_tokens + size > max_tokens:
                    current, current_tokens = [], 0
            current.append(piece)
            current_tokens += size
    emit()
    return chunks
