"""A recognizer's own decision threshold: the cosine that best splits LFW View 1's test pairs.

Side-by-side verdicts judge each model at its own operating point, never at another model's: a
dlib descriptor's cosines live on another scale than an ArcFace's. The threshold is the one that
maximises accuracy on ``pairsDevTest.txt`` (LFW View 1: 500 same and 500 different pairs over
1,549 photos), LFW's development split; View 2 (``pairs.txt``) stays for reporting accuracy. Only
those photos are aligned (``data.verification.aligned_pair_photos``, the cache training shares).
Computed once per model (its weights digest) and kept as JSON under ``<cache>/thresholds/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cqa_core.data import lfw_dir
from cqa_core.data.pairs import read_pairs
from cqa_core.data.verification import aligned_pair_photos, from_pair_list
from cqa_core.evaluation.protocols import Options, embedder
from cqa_core.metrics import best_threshold, pair_scores
from cqa_core.recognizers.base import Recognizer

PAIRS = "pairsDevTest.txt"


def threshold_path(rec: Recognizer, cache_root: Path) -> Path:
    return Path(cache_root) / "thresholds" / f"{rec.kind}-{rec.digest}.json"


def lfw_threshold(rec: Recognizer, cache_root: Path, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """{"threshold", "accuracy", "pairs", "source"} of ``rec`` on LFW View 1 (cached; see the module docstring).

    Raises:
        FileNotFoundError: LFW (``Settings.data_root``) has no ``pairsDevTest.txt``.
    """
    path = threshold_path(rec, cache_root)
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
    path.write_text(json.dumps(result, indent=1))
    return result
