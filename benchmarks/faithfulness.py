"""Deletion / insertion AUC of Grad-CAM, IG, occlusion, RISE, attention, random and flat maps on LFW, any recognizer.

Pairs: the first N same-person pairs of LFW View 1 ``pairsDevTest.txt`` (``--different`` for
different-person pairs), aligned crops from the ``ensure_aligned`` cache when it is complete
(else the fixed LFW centre affine; ``--align`` forces one). Each map explains cos(e_a, e_b) for
face a; ties are broken at random and averaged over ``--draws`` orders (see
``cqa_core.explain.faithfulness``); the blur baseline is used for deletion and insertion.

    nice -n 10 .venv/bin/python benchmarks/faithfulness.py --pairs 100
    nice -n 10 .venv/bin/python benchmarks/faithfulness.py --pairs 100 --model dlib --methods occlusion,rise,random --steps 10

``--model`` takes any recognizer of ``cqa eval --model``; maps are made on its own chip (dlib: 150 x
150, cut from the photo with the cache's landmarks).

prints a Markdown table: mean AUC +- standard error over pairs, and the paired difference to the
random map. ``flat`` vs ``random`` is the check that ties carry no hidden order: they must agree
within the standard error.

Methods (each makes one map of face a's chip for cos(e_a, e_b)); all but the last three are the
explanation registry's (``cqa explain --list-methods``) at their default budget:

* ``gradcam``   similarity Grad-CAM on the last spatial layer (white-box recognizers)
* ``ig``        integrated gradients, run until |delta| <= 1 % of the score gap (capped)
* ``occlusion`` drop in similarity when a grey window covers the pixel (13 x 13 windows on CQA-Face,
  7 x 7 on other recognizers: ``methods.default_budget``)
* ``rise``      RISE, the similarity-weighted mean of random masks (500 masks on CQA-Face, else 100)
* ``attention`` the branch attention maps M_i, averaged with the QAN weights S_hat_i (not
  pair-specific: what the model attends to in face a, whatever face b is)
* ``random``    a random pixel order (a fresh one per pair): the chance level
* ``flat``      all zeros: "no information"; with random tie-breaking it must score as ``random``

and :func:`cqa_core.explain.faithfulness.curves` scores it (ties broken at random, averaged over
``draws``). The table reports the mean AUC over pairs with its standard error, and the paired
difference to ``random`` (negative deletion difference = deletes faster than chance).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from cqa_core.data.align import center_affine, load_image, warp
from cqa_core.data.datasets import MARKER, aligned_dir
from cqa_core.data.pairs import pair_paths, read_pairs
from cqa_core.data.verification import aligned_sources
from cqa_core.explain import methods as registry
from cqa_core.explain.analysis import as_recognizer
from cqa_core.explain.common import ExplainError
from cqa_core.explain.faithfulness import compare_maps
from cqa_core.explain.methods import Context
from cqa_core.explain.result import Check
from cqa_core.explain.tensors import eval_mode, to_numpy, upsample
from cqa_core.recognizers.base import Recognizer
from cqa_core.recognizers.chips import recognizer_chips
from cqa_core.recognizers.load import load_recognizer
from cqa_core.settings import LFW_DIR, Settings

METHODS = ("gradcam", "ig", "occlusion", "rise", "attention", "random", "flat")


class PairResult(NamedTuple):
    """AUCs of one pair: method -> value, plus the clean similarity and IG's completeness."""

    similarity: float  # cos(e_a, e_b)
    deletion: dict[str, float]
    insertion: dict[str, float]
    ig_relative_delta: float | None  # |delta| / |gap| of the IG map (None without "ig")
    ig_converged: bool | None


class Row(NamedTuple):
    """One method's line of the table (means over pairs, standard errors)."""

    method: str
    deletion: float
    deletion_se: float
    insertion: float
    insertion_se: float
    deletion_vs_random: float  # mean paired difference deletion(method) - deletion(random)
    deletion_vs_random_se: float
    insertion_vs_random: float
    insertion_vs_random_se: float


def attention_map(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """Quality-weighted mean attention sum_i S_hat_i M_i / sum_i S_hat_i of (1, 3, H, W) -> (H, W)."""
    with torch.no_grad(), eval_mode(model):
        out = model(x)
    m = upsample(out.attention_maps, tuple(x.shape[-2:]))[0]  # (b, H, W)
    q = out.quality[0]  # (b,)
    return to_numpy((q[:, None, None] * m).sum(0) / q.sum())  # (H, W)


def method_maps(rec: Recognizer, a: np.ndarray, b: np.ndarray, methods: Sequence[str] = METHODS,
                rng: np.random.Generator | None = None) -> tuple[dict[str, np.ndarray], Check | None]:
    """(method -> (S, S) map of chip a for cos(e_a, e_b), integrated gradients' check or None).

    ``random`` and ``flat`` are made here; ``attention`` reads CQA-Face's branches; every other name is
    a method of the explanation registry (``cqa_core.explain.methods``) at its default budget.
    """
    rng = rng or np.random.default_rng(0)
    size = a.shape[:2]
    maps: dict[str, np.ndarray] = {}
    ig = None
    for m in methods:
        if m == "random":  # a random permutation of ranks: no ties, so one draw is exact
            maps[m] = rng.permutation(size[0] * size[1]).reshape(size).astype(np.float32)
        elif m == "flat":
            maps[m] = np.zeros(size, np.float32)
        elif m == "attention":
            if rec.readout is None:
                raise ExplainError(f"attention needs CQA-Face's branches; {rec.name} has none")
            maps[m] = attention_map(rec.readout.model, rec.preprocess.to_tensor(a[None], rec.device))
        elif m == "ig":
            pm = registry.get(m).fn(rec, np.stack([a, b]), Context())
            maps[m], ig = pm.maps[0], pm.checks[0]
        else:
            method = registry.get(m)
            if not method.supports(rec):
                raise ExplainError(method.why_not(rec))
            maps[m] = method.face_map(rec, a, b, Context())
    return maps, ig


def score_pair(rec: Recognizer, a: np.ndarray, b: np.ndarray, methods: Sequence[str] = METHODS, steps: int = 20,
               draws: int = 5, baseline: str | float = "blur", seed: int = 0) -> PairResult:
    """Deletion and insertion AUC of every method's map of chip a (see the module docstring)."""
    maps, ig = method_maps(rec, a, b, methods, np.random.default_rng(seed))
    res = compare_maps(rec, a, b, maps, baseline=baseline, steps=steps, draws=draws, seed=seed)
    sim = float(next(iter(res.values())).deletion[0]) if res else float("nan")  # nothing deleted yet: cos(e_a, e_b)
    rel = conv = None
    if ig is not None:
        rel, conv = abs(ig.values["delta"]) / max(abs(ig.values["gap"]), 1e-12), ig.ok
    return PairResult(sim, {k: c.deletion_auc for k, c in res.items()}, {k: c.insertion_auc for k, c in res.items()},
                      rel, conv)


def _mean_se(v: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


def summarize(results: Sequence[PairResult]) -> list[Row]:
    """One :class:`Row` per method, in the order of the first result."""
    rows = []
    names = list(results[0].deletion)
    for k in names:
        d = np.array([r.deletion[k] for r in results])  # (P,)
        i = np.array([r.insertion[k] for r in results])  # (P,)
        dr = d - np.array([r.deletion["random"] for r in results]) if "random" in names else np.full_like(d, np.nan)
        ir = i - np.array([r.insertion["random"] for r in results]) if "random" in names else np.full_like(i, np.nan)
        rows.append(Row(k, *_mean_se(d), *_mean_se(i), *_mean_se(dr), *_mean_se(ir)))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table of :func:`summarize`'s rows (AUC mean +- standard error)."""
    lines = ["| method | deletion AUC (lower = better) | insertion AUC (higher = better) | deletion - random | insertion - random |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.method} | {r.deletion:.3f} ± {r.deletion_se:.3f} | {r.insertion:.3f} ± {r.insertion_se:.3f} "
                     f"| {r.deletion_vs_random:+.3f} ± {r.deletion_vs_random_se:.3f} "
                     f"| {r.insertion_vs_random:+.3f} ± {r.insertion_vs_random_se:.3f} |")
    return "\n".join(lines)


def run(model: Any, pairs: Iterable[tuple[np.ndarray, np.ndarray]], progress: Callable[[int], None] | None = None,
        **kwargs) -> list[PairResult]:
    """:func:`score_pair` over (a, b) pairs of the recognizer's chips (a CQA-Face model: its 112 crops)."""
    rec = as_recognizer(model)
    out = []
    for n, (a, b) in enumerate(pairs):
        out.append(score_pair(rec, a, b, **kwargs))
        if progress:
            progress(n + 1)
    return out


def resolve_align(align: str = "auto") -> str:
    """``"cache"`` or ``"center"`` for an ``align`` option (see :func:`lfw_dev_pairs`)."""
    complete = (aligned_dir(LFW_DIR) / MARKER).exists()
    if align == "cache" and not complete:
        raise ExplainError(f"the aligned LFW cache {aligned_dir(LFW_DIR)} is not complete "
                           "(run `cqa align` or use align='center')")
    if align not in ("auto", "cache", "center"):
        raise ExplainError(f"align must be 'auto', 'cache' or 'center', got {align!r}")
    return ("cache" if complete else "center") if align == "auto" else align


def lfw_dev_pairs(n: int, same: bool = True, align: str = "auto", data: str | Path | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first ``n`` same-person (or different-person) pairs of LFW View 1 ``pairsDevTest.txt``.

    Args:
        n: number of pairs.
        same: same-person pairs (the similarity has something to lose) or different-person pairs.
        align: ``"cache"``: the aligned crops of ``ensure_aligned`` (its ``.complete.json``
            marker must exist; nothing is aligned here); ``"center"``: the fixed LFW centre
            affine; ``"auto"``: the cache when complete, else centre.
        data: the shared data root (default ``Settings.data_root``).

    Returns:
        (a, b) pairs of (112, 112, 3) uint8 RGB crops.
    """
    lfw = Path(data) / LFW_DIR if data else Settings.from_env().lfw
    pairs = [p for p in read_pairs(lfw / "pairsDevTest.txt") if bool(p.same) == same][:n]
    align = resolve_align(align)
    cache = aligned_dir(lfw.name)
    if align == "cache":
        return [(load_image(p), load_image(q)) for p, q in pair_paths(pairs, cache)]

    def centred(path: Path) -> np.ndarray:
        img = load_image(path)
        return warp(img, center_affine(img.shape[1], img.shape[0]))  # (112, 112, 3)

    return [(centred(p), centred(q)) for p, q in pair_paths(pairs, lfw)]


def dev_pair_chips(rec: Recognizer, n: int, same: bool = True, align: str = "auto") -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`lfw_dev_pairs` as ``rec``'s own chips: the 112 crops for an ArcFace-112 recognizer, else
    its chips cut from the photos with the aligned cache's landmarks (``recognizers.chips``)."""
    if rec.preprocess.is_arcface112:
        return lfw_dev_pairs(n, same, align)
    if resolve_align(align) != "cache":
        raise ExplainError(f"{rec.name} cuts its own chip from the photo's landmarks: it needs the aligned LFW "
                           "cache (run `cqa align`)")
    lfw = Settings.from_env().lfw
    pairs = [p for p in read_pairs(lfw / "pairsDevTest.txt") if bool(p.same) == same][:n]
    crops = [c for pq in pair_paths(pairs, aligned_dir(lfw.name)) for c in pq]  # a0, b0, a1, b1, ...
    sources = aligned_sources(aligned_dir(lfw.name), lfw, crops)
    if sources is None:
        raise ExplainError(f"{aligned_dir(lfw.name)}/alignment.csv lacks rows for some of these pairs; rerun `cqa align`")
    chips = recognizer_chips(rec, np.stack([load_image(c) for c in crops]), sources)  # (2n, S, S, 3)
    return list(zip(chips[0::2], chips[1::2], strict=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100, help="number of pairs (default 100)")
    parser.add_argument("--different", action="store_true", help="different-person pairs instead of same")
    parser.add_argument("--align", choices=("auto", "cache", "center"), default="auto")
    parser.add_argument("--steps", type=int, default=20, help="deletion / insertion steps (default 20)")
    parser.add_argument("--draws", type=int, default=5, help="random tie-breaking orders per map (default 5)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    parser.add_argument("--model", default=None, help="any recognizer spec of `cqa eval --model` (default: the "
                        "bundled CQA-Face; a .safetensors/.pth/.onnx path or dlib)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write per-pair AUCs to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    rec = load_recognizer(args.model)
    align = resolve_align(args.align)
    pairs = dev_pair_chips(rec, args.pairs, same=not args.different, align=align)
    methods = tuple(args.methods.split(","))
    t0 = time.perf_counter()

    def progress(n: int) -> None:
        print(f"\r{n}/{len(pairs)} pairs, {time.perf_counter() - t0:.0f} s", end="", file=sys.stderr, flush=True)

    results = run(rec, pairs, progress, methods=methods, steps=args.steps, draws=args.draws)
    print(file=sys.stderr)
    kind = "different-person" if args.different else "same-person"
    budget = registry.default_budget(rec)
    print(f"faithfulness: {len(results)} LFW pairsDevTest {kind} pairs, {align}-aligned, {rec.name} ({rec.describe()}), "
          f"blur baseline, {args.steps} steps, {args.draws} tie draws, occlusion {budget.grid}x{budget.grid}, "
          f"RISE {budget.masks} masks, {time.perf_counter() - t0:.0f} s")
    print(f"mean cos(e_a, e_b) = {np.mean([r.similarity for r in results]):.3f}\n")
    print(format_table(summarize(results)))
    rel = [r.ig_relative_delta for r in results if r.ig_relative_delta is not None]
    if rel:
        conv = sum(bool(r.ig_converged) for r in results if r.ig_converged is not None)
        print(f"\nIG: |delta| / |gap| median {np.median(rel):.4f}, max {np.max(rel):.4f}; "
              f"converged within 1 % on {conv}/{len(rel)} pairs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r._asdict() for r in results], f, indent=1)


if __name__ == "__main__":
    main()
