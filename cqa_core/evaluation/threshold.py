"""A recognizer's own decision threshold: the cosine that best splits LFW View 1's test pairs.

Side-by-side verdicts judge each model at its own operating point, never at another model's: a
dlib descriptor's cosines live on another scale than an ArcFace's. The threshold is the one that
maximises accuracy on ``pairsDevTest.txt`` (LFW View 1: 500 same and 500 different pairs over
1,549 photos), LFW's development split; View 2 (``pairs.txt``) stays for reporting accuracy. Only
those photos are aligned (``data.verification.aligned_pair_photos``, the cache training shares).
Computed once per model and kept as JSON under ``<cache>/thresholds/``, named by the sha1 of its
weights (the model file's, else its parameters'), so every run that loads the same weights finds it;
a process that reuses one says so in one line on stderr (once per file).

Both ends of the dashboard's computation live here. The parent (:class:`Thresholds`, what the
analysis service's engine holds) starts one child per model, never in its own threads::

    python -m cqa_core.evaluation.threshold MODEL --digest D --out PATH --lfw DIR --cache DIR

MODEL is the weights file (or a recognizer's name, "dlib"), D its weights' digest
(:func:`weights_digest`, checked by the child before it computes anything), and the two folders
what it reads (LFW) and where it keeps the aligned photos. It gets no settings of its own: no
``CQA_*`` variable reaches it, and it runs one torch thread beside the service.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cqa_core.checkpoint import atomic_write
from cqa_core.data.pairs import read_pairs
from cqa_core.data.reuse import say_reused
from cqa_core.data.verification import aligned_pair_photos, from_pair_list
from cqa_core.evaluation.protocols import Options, embedder
from cqa_core.metrics import best_threshold, pair_scores
from cqa_core.recognizers.base import Recognizer, RecognizerError, module_digest
from cqa_core.recognizers.load import load_recognizer
from cqa_core.settings import ENV

PAIRS = "pairsDevTest.txt"


def threshold_path(rec: Recognizer, cache_root: Path) -> Path:
    """Where ``rec``'s threshold is kept: named by its weights' digest (``Recognizer.digest``)."""
    return Path(cache_root) / "thresholds" / f"{rec.kind}-{rec.digest}.json"


def weights_digest(rec: Recognizer) -> str:
    """What names ``rec``'s weights in any process: its module's tensors' sha1, else its digest."""
    return module_digest(rec.module) if rec.module is not None else rec.digest


def lfw_threshold(rec: Recognizer, lfw: Path, cache_root: Path, progress: Callable[[str], None] | None = None,
                  path: Path | None = None) -> dict[str, Any]:
    """{"threshold", "accuracy", "pairs", "source"} of ``rec`` on LFW View 1 (cached; see the module docstring).

    Args:
        lfw: LFW deep-funneled (``Settings.lfw``).
        cache_root: where aligned photos and thresholds are kept (``Settings.cache_root``).
        path: where the JSON is kept (default :func:`threshold_path`).

    Raises:
        FileNotFoundError: ``lfw`` has no ``pairsDevTest.txt``.
    """
    path = Path(path) if path else threshold_path(rec, cache_root)
    if path.is_file():
        result = json.loads(path.read_text())
        facts = [f"cosine {result['threshold']:.3f}"] if "threshold" in result else []
        if {"accuracy", "pairs", "source"} <= set(result):
            facts.append(f"{result['accuracy']:.1%} of {result['pairs']:,} {result['source']} pairs right")
        say_reused(f"{rec.name}'s LFW threshold", path, facts, built=path,
                   once=True)  # once: the analysis service reads it at every verdict
        return result
    src = Path(lfw)
    if not (src / PAIRS).is_file():
        raise FileNotFoundError(f"no LFW View 1 pair list at {src / PAIRS}: a model's own threshold needs LFW")
    say = progress or (lambda text: None)
    say(f"{rec.name}: aligning the LFW View 1 photos (once, shared with training)")
    aligned = aligned_pair_photos(src, read_pairs(src / PAIRS), cache_root=cache_root)
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


class Thresholds:
    """The parent's end: each model's threshold, read from disk or computed once in a child process."""

    def __init__(self, lfw: Path, cache_root: Path) -> None:
        self.lfw, self.cache_root = Path(lfw), Path(cache_root)
        self.procs: dict[str, subprocess.Popen] = {}  # weights digest -> its child
        self._lock = threading.Lock()

    def of(self, rec: Recognizer, weights: str, wait: bool = False, untrained: bool = False) -> dict[str, Any]:
        """``rec``'s threshold, {"computing": note} while its first computation (minutes: the photos are
        aligned once, then embedded) runs, or {"unavailable": note} without LFW or for an untrained model.

        Args:
            weights: what the child loads: the weights file (``rec``'s), or a recognizer's name.
            wait: block until the child ends (a failed one is started again first).
        """
        path = threshold_path(rec, self.cache_root)
        if path.is_file():
            return lfw_threshold(rec, self.lfw, self.cache_root, path=path)
        if not (self.lfw / PAIRS).is_file():
            return {"unavailable": f"no verdict: a model's own threshold is computed on LFW View 1, and this machine "
                                   f"has no {self.lfw / PAIRS}"}
        if untrained:
            return {"unavailable": "no verdict: an untrained model has no threshold worth computing"}
        with self._lock:
            proc = self.procs.get(rec.digest)
            if proc is None or (wait and proc.poll() not in (None, 0)):
                proc = self.procs[rec.digest] = self.start(weights, weights_digest(rec), path)
        if wait:
            proc.wait()
        if proc.poll() is None:
            return {"computing": f"{rec.name}'s LFW View 1 threshold is being computed (minutes the first time)"}
        if path.is_file():
            return lfw_threshold(rec, self.lfw, self.cache_root, path=path)
        log_file = path.with_suffix(".log")
        log = log_file.read_text(errors="replace").strip().splitlines() if log_file.is_file() else []
        raise RuntimeError(f"{rec.name}'s LFW threshold could not be computed: {log[-1] if log else 'no output'}")

    def start(self, weights: str, digest: str, path: Path) -> subprocess.Popen:
        """The child (:func:`main`), its log beside the JSON; its environment without any ``CQA_*`` variable."""
        cmd = [sys.executable, "-m", __name__, weights, "--digest", digest, "--out", str(path),
               "--lfw", str(self.lfw), "--cache", str(self.cache_root)]
        env = {k: v for k, v in os.environ.items() if k not in ENV.values()}
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".log"), "wb") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def close(self) -> None:
        """Stop the children still running (a half-done one leaves no file behind)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    """The child's end (see the module docstring): load MODEL, check its digest, compute, write OUT."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="the weights file, or a recognizer's name (cqa_core.recognizers.load_recognizer)")
    p.add_argument("--digest", required=True, help="the weights' digest (weights_digest): checked before computing")
    p.add_argument("--out", required=True, help="the JSON file to write")
    p.add_argument("--lfw", required=True, help="LFW deep-funneled (holding pairsDevTest.txt)")
    p.add_argument("--cache", required=True, help="where the aligned photos are kept")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # a background job beside the service on a shared CPU
    rec = load_recognizer(args.model)
    if weights_digest(rec) != args.digest:
        raise RecognizerError(f"{args.model}: its weights changed (digest {weights_digest(rec)}, asked {args.digest})")
    lfw_threshold(rec, Path(args.lfw), Path(args.cache), progress=lambda text: print(text, flush=True),
                  path=Path(args.out))


if __name__ == "__main__":
    main()
