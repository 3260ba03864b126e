"""A recognizer's own decision threshold: the cosine that best splits LFW View 1's test pairs.

Side-by-side verdicts judge each model at its own operating point, never at another model's: a
dlib descriptor's cosines live on another scale than an ArcFace's. The threshold is the one that
maximises accuracy on ``pairsDevTest.txt`` (LFW View 1: 500 same and 500 different pairs over
1,549 photos), LFW's development split; View 2 (``pairs.txt``) stays for reporting accuracy. Only
those photos are aligned (``data.verification.aligned_pair_photos``, the cache training shares).
Computed once per model and kept as JSON under ``<cache>/thresholds/``, named by the sha1 of its
weights (the model file's, else its parameters'), so every run that loads the same weights finds it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cqa_core.checkpoint import atomic_write
from cqa_core.data import lfw_dir
from cqa_core.data.pairs import read_pairs
from cqa_core.data.verification import aligned_pair_photos, from_pair_list
from cqa_core.evaluation.protocols import Options, embedder
from cqa_core.metrics import best_threshold, pair_scores
from cqa_core.recognizers.base import Recognizer, module_digest
from cqa_core.recognizers.cqa import in_memory_key
from cqa_core.recognizers.load import load_recognizer
from cqa_core.settings import Settings

PAIRS = "pairsDevTest.txt"


def threshold_path(rec: Recognizer, cache_root: Path) -> Path:
    """Where ``rec``'s threshold is kept. ``rec.digest`` may name an object in memory (a CQA-Face
    model's is its id, for in-process caches), so a module is named by its weights' sha1 here."""
    key = module_digest(rec.module) if in_memory_key(rec.digest) and rec.module is not None else rec.digest
    return Path(cache_root) / "thresholds" / f"{rec.kind}-{key}.json"


def lfw_threshold(rec: Recognizer, cache_root: Path, progress: Callable[[str], None] | None = None,
                  path: Path | None = None) -> dict[str, Any]:
    """{"threshold", "accuracy", "pairs", "source"} of ``rec`` on LFW View 1 (cached; see the module docstring).

    Args:
        path: where the JSON is kept (default :func:`threshold_path`).

    Raises:
        FileNotFoundError: LFW (``Settings.data_root``) has no ``pairsDevTest.txt``.
    """
    path = Path(path) if path else threshold_path(rec, cache_root)
    if path.is_file():
        return json.loads(path.read_text())
    src = lfw_dir()
    if not (src / PAIRS).is_file():
        raise FileNotFoundError(f"no LFW View 1 pair list at {src / PAIRS}: a model's own threshold needs LFW")
    say = progress or (lambda text: None)
    say(f"{rec.name}: aligning the LFW View 1 photos (once, shared with training)")
    aligned = aligned_pair_photos(src, read_pairs(src / PAIRS))
    ps = from_pair_list("lfw-view1", src / PAIRS, aligned, raw=False, src=src)
    say(f"{rec.name}: embedding {len(ps.images)} LFW View 1 faces for its threshold")
    e = embedder(rec, Options(), progress=False)(ps.images, ps.sources)  # (M, D)
    scores = pair_scores(e[ps.index1], e[ps.index2])  # (N,)
    thr, acc = best_threshold(scores, np.asarray(ps.issame, bool))
    result = {"threshold": float(thr), "accuracy": float(acc), "pairs": int(len(scores)),
              "source": f"LFW View 1 {PAIRS}", "model": rec.name}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m cqa_core.evaluation.threshold SPEC --out PATH``: the dashboard computes a model's
    threshold in this separate process (settings from the environment), never in its own threads."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", help="a recognizer spec (cqa_core.recognizers.load_recognizer)")
    p.add_argument("--checkpoint", default=None, help="the CQA-Face a 'default' spec means")
    p.add_argument("--out", required=True, help="the JSON file to write")
    args = p.parse_args(argv)
    settings = Settings.from_env()
    torch.set_num_threads(settings.torch_threads)
    rec = load_recognizer(args.spec, checkpoint=args.checkpoint)
    lfw_threshold(rec, settings.cache_root, progress=lambda text: print(text, flush=True), path=Path(args.out))


if __name__ == "__main__":
    main()
