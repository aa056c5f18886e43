"""Structure-aware chunking: headings and pages start chunks, long sections split with overlap."""

from __future__ import annotations

import itertools

from f.chatmill.lib.chunking import chunk_blocks, count_tokens
from f.chatmill.lib.extraction import Block, extract


def test_long_sections_are_split_within_the_token_bound_with_sentence_overlap() -> None:
    sentences = [
        f"Sentence number {i} talks about sourdough bread and its long fermentation." for i in range(40)
    ]
    blocks = [Block(" ".join(sentences[i : i + 5]), heading="Bread") for i in range(0, 40, 5)]
    chunks = chunk_blocks(blocks, title="Guide", uri="guide.md", max_tokens=60, overlap_tokens=15)
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.content.startswith("Bread\n")
        assert count_tokens(chunk.content.split("\n", 1)[1]) <= 60
        assert chunk.metadata == {"title": "Guide", "uri": "guide.md", "heading": "Bread"}
    for previous, current in itertools.pairwise(chunks):
        last_sentence = previous.content.rsplit(". ", 1)[-1]
        assert last_sentence in current.content  # the next chunk repeats the previous one's tail
    body = " ".join(chunk.content for chunk in chunks)
    assert all(sentence in body for sentence in sentences)


def test_a_heading_or_page_change_starts_a_new_chunk() -> None:
    blocks = [
        Block("Open at seven.", heading="Hours", page=1),
        Block("Closed on Sunday.", heading="Hours", page=1),
        Block("Cards accepted.", heading="Payment", page=1),
        Block("Cash too.", heading="Payment", page=2),
    ]
    chunks = chunk_blocks(blocks)
    assert [c.content for c in chunks] == [
        "Hours\nOpen at seven. Closed on Sunday.",
        "Payment\nCards accepted.",
        "Payment\nCash too.",
    ]
    assert [c.metadata.get("page") for c in chunks] == [1, 1, 2]


def test_a_sentence_longer_than_the_bound_is_split_at_words() -> None:
    chunks = chunk_blocks([Block(" ".join(f"w{i}" for i in range(500)))], max_tokens=100, overlap_tokens=0)
    assert len(chunks) == 5
    assert all(count_tokens(chunk.content) <= 100 for chunk in chunks)


def test_identical_chunks_are_kept_once() -> None:
    chunks = chunk_blocks(
        [Block("Same text.", heading="A"), Block("Other.", heading="B"), Block("Same text.", heading="A")]
    )
    assert [c.content for c in chunks] == ["A\nSame text.", "B\nOther."]


def test_markdown_structure_survives_extraction_and_chunking() -> None:
    text = b"# Title\n\nIntro line.\n\n## Section\n\nFirst [link](http://x) and **bold**.\n\n* item one\n* item two\n"
    extracted = extract(text, name="doc.md")
    chunks = chunk_blocks(extracted.blocks, title=extracted.title)
    assert [c.content for c in chunks] == [
        "Title\nIntro line.",
        "Section\nFirst link and bold. item one item two",
    ]
