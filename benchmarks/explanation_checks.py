"""Sanity checks of the explanation methods: do the maps depend on the model, point at a pasted impostor
patch, and stay put under small noise? A table of methods x recognizer x metrics, with seconds per pair.

    nice -n 10 .venv/bin/python benchmarks/explanation_checks.py --pairs 5
    nice -n 10 .venv/bin/python benchmarks/explanation_checks.py --pairs 5 --methods corr-rise,occlusion --model dlib

Pairs: the first N same-person pairs of LFW View 1 ``pairsDevTest.txt`` (``benchmarks.faithfulness``
loads them, aligned as there); impostor patches come from its different-person pairs. Every map
explains face a of a pair against face b. Checks, each a column:

* **randomisation** (Adebayo et al., NeurIPS 2018, cascading model-parameter randomisation):
  Quantus ``MPRT`` (layer_order "top_down": the layers are re-initialised one by one from the
  embedding down, cumulatively), with Quantus' ``correlation_spearman`` and ``ssim`` between the
  original map and each randomised model's map (Quantus defaults: |map|, normalised by its
  maximum). Reported: the mean over layers and the value with every layer randomised. A map that
  depends on the model falls towards 0; one that survives (stays near 1) gets a warning. Quantus
  implements the test, the layer walk and both similarities, so they are used rather than rewritten.
  The "model" Quantus randomises is :class:`ScoreModel`: face a's pixels -> cos(e(a), e(b)), both
  embeddings by the same (randomised) network. Black-box recognizers have no parameters: n/a.
* **pointing** (Patch-LFW after Huber et al., WACV 2024): a region (eyes, nose or mouth, placed
  from the chip's 5 template landmarks) of another person's face is pasted onto face a of a genuine
  pair. A signed map must put its dissimilarity (its most negative values) there: Quantus
  ``PointingGame`` on -map (hit: the most dissimilar pixel lies in the patch) and
  ``RelevanceRankAccuracy`` (share of the patch-sized top of -map inside the patch). Unsigned
  methods (Grad-CAM) cannot say "dissimilar": n/a.
* **max-sensitivity** (Yeh et al., NeurIPS 2019): Quantus ``MaxSensitivity``, the largest relative
  change of the (max-normalised) map over ``--noise-samples`` inputs with uniform noise of
  +-``--noise`` grey levels (rounded into the uint8 chip, so it is real pixel noise). Lower is steadier.
* **deletion / insertion**: the project's tie-free curves (``explain.faithfulness.compare_maps``),
  beside Quantus ``PixelFlipping`` (deletion only; ties in array order) on the same maps, both to
  mid grey in the same steps, so a gap between the two AUCs is what tie order does to a method.

Quantus is installed with ``pip install --no-deps quantus`` plus pandas, scikit-image and cachetools
(its opencv-python requirement would shadow the project's headless OpenCV): the ``checks`` extra.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from benchmarks.faithfulness import dev_pair_chips, method_maps
from cqa_core.explain.corr_rise import corr_rise
from cqa_core.explain.faithfulness import compare_maps
from cqa_core.explain.maprender import UNITS
from cqa_core.explain.similarity_map import similarity_map_chips
from cqa_core.explain.xssab import xssab_chips
from cqa_core.recognizers.base import Recognizer
from cqa_core.recognizers.cqa import Embedding, from_cqa
from cqa_core.recognizers.load import load_recognizer

METHODS = ("similarity-map", "xssab", "corr-rise", "occlusion", "rise", "ig", "gradcam")
REGIONS = ("eyes", "nose", "mouth")
GREY = 127.5  # the deletion baseline of both implementations


def face_map(rec: Recognizer, a: np.ndarray, b: np.ndarray, method: str, masks: int = 300) -> np.ndarray:
    """(S, S) map of chip a against chip b: this issue's new methods directly, the rest through the registry."""
    chips = np.stack([a, b])  # (2, S, S, 3)
    if method == "similarity-map":
        return similarity_map_chips(rec, chips).maps[0]
    if method == "xssab":
        return xssab_chips(rec, chips).maps[0]
    if method == "corr-rise":
        return corr_rise(rec, a[None], b[None], masks=masks)[0]
    return method_maps(rec, a, b, [method])[0][method]


class ScoreModel(nn.Module):
    """What Quantus treats as the model: float pixels (N, 3, S, S) 0-255 of face a -> (N, 1) cos(e(a), e(b)).

    e(b) is recomputed by the same module on every call, so a randomised copy changes both faces.
    """

    def __init__(self, rec: Recognizer, chip_b: np.ndarray) -> None:
        super().__init__()
        self.module = rec.module  # None for a black-box recognizer (then nothing can be randomised)
        self.name, self.kind, self.preprocess, self.layer = rec.name, rec.kind, rec.preprocess, rec.layer
        self.embed_fn = None if rec.module is not None else rec.embed
        self.chip_b = chip_b  # (S, S, 3) uint8

    def embed(self, chips: np.ndarray) -> torch.Tensor:
        if self.module is None:
            return torch.from_numpy(np.asarray(self.embed_fn(chips), np.float32))  # (N, D)
        return self.module(self.preprocess.to_tensor(chips, next(self.module.parameters()).device)).float().cpu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chips = to_chips(x)  # (N, S, S, 3) uint8
        e = self.embed(np.concatenate([chips, self.chip_b[None]]))  # (N + 1, D)
        return torch.nn.functional.cosine_similarity(e[:-1], e[-1:], dim=1)[:, None]  # (N, 1)

    def recognizer(self) -> Recognizer:
        """The (possibly randomised) network as a Recognizer the methods take."""
        if isinstance(self.module, Embedding):
            return from_cqa(self.module.model, name=self.name)
        return Recognizer(name=self.name, kind=self.kind, preprocess=self.preprocess, module=self.module,
                          embed_fn=self.embed_fn, layer=self.layer, digest=f"checks:{id(self.module)}")


def to_chips(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float pixels (N, 3, S, S) -> uint8 chips (N, S, S, 3) (rounded, clipped)."""
    return np.clip(np.round(np.asarray(x, np.float64)), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def pixels(chips: np.ndarray) -> np.ndarray:
    return np.asarray(chips, np.float32).transpose(0, 3, 1, 2)  # (N, 3, S, S)


def quantus_explainer(method: str, masks: int) -> Callable[..., np.ndarray]:
    """Quantus' ``explain_func(model, inputs, targets)``: maps (N, 1, S, S) of a ScoreModel's faces."""

    def explain(model: ScoreModel, inputs: np.ndarray, targets: np.ndarray, **_: object) -> np.ndarray:
        rec = model.recognizer()
        return np.stack([face_map(rec, c, model.chip_b, method, masks)[None] for c in to_chips(inputs)])

    return explain


def region_box(rec: Recognizer, region: str) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of a face region on rec's chip, from its template's 5 landmarks."""
    p = rec.preprocess.points()  # (5, 2) x, y: eyes, nose tip, mouth corners
    d = float(np.linalg.norm(p[1] - p[0]))  # inter-eye distance
    if region == "eyes":
        x0, x1, yc, hy = p[0, 0] - 0.35 * d, p[1, 0] + 0.35 * d, (p[0, 1] + p[1, 1]) / 2, 0.3 * d
    elif region == "nose":
        x0, x1, yc, hy = p[2, 0] - 0.35 * d, p[2, 0] + 0.35 * d, p[2, 1], 0.35 * d
    else:
        x0, x1, yc, hy = p[3, 0] - 0.25 * d, p[4, 0] + 0.25 * d, (p[3, 1] + p[4, 1]) / 2, 0.25 * d
    s = rec.preprocess.size
    return max(0, int(yc - hy)), min(s, int(yc + hy)), max(0, int(x0)), min(s, int(x1))


def ssim_2d(a: np.ndarray, b: np.ndarray, batched: bool = True, **_: object) -> np.ndarray:
    """SSIM of maps as images (Adebayo et al.): MPRT hands similarity functions flattened (B, S*S) maps, and
    Quantus 0.6's own ``ssim`` would compare those 1-D rows and return a list MPRT cannot use."""
    from skimage.metrics import structural_similarity  # optional: scikit-image, the checks extra

    side = round(a.shape[-1] ** 0.5)
    rows = [structural_similarity(x.reshape(side, side), y.reshape(side, side),
                                  data_range=float(max(np.ptp(np.concatenate([x, y])), 1e-12)))
            for x, y in zip(np.atleast_2d(a), np.atleast_2d(b), strict=True)]
    return np.asarray(rows)


def randomisation(rec: Recognizer, a: np.ndarray, b: np.ndarray, method: str, masks: int) -> dict[str, float]:
    """Quantus MPRT (cascading, top-down): Spearman and SSIM, mean over layers and fully randomised."""
    import quantus  # optional: the checks extra

    if rec.module is None:
        return {}
    out: dict[str, float] = {}
    for label, fn in (("spearman", quantus.similarity_func.correlation_spearman), ("ssim", ssim_2d)):
        metric = quantus.MPRT(similarity_func=fn, layer_order="top_down", disable_warnings=True)
        scores = metric(model=copy.deepcopy(ScoreModel(rec, b)).eval(), x_batch=pixels(a[None]), y_batch=np.zeros(1, int),
                        a_batch=None, explain_func=quantus_explainer(method, masks), softmax=False, device="cpu")
        layers = [v[0] for k, v in scores.items() if k != "original"]
        out[f"mprt_{label}_mean"], out[f"mprt_{label}_last"] = float(np.mean(layers)), float(layers[-1])
    return out


def pointing(rec: Recognizer, a: np.ndarray, b: np.ndarray, impostor: np.ndarray, method: str, masks: int,
             region: str) -> dict[str, float]:
    """Paste ``region`` of the impostor onto a; Quantus PointingGame / RelevanceRankAccuracy of -map."""
    import quantus  # optional: the checks extra

    if not UNITS.get(method, ("", False))[1]:
        return {}
    y0, y1, x0, x1 = region_box(rec, region)
    patched = a.copy()
    patched[y0:y1, x0:x1] = impostor[y0:y1, x0:x1]
    dissimilar = -face_map(rec, patched, b, method, masks)[None, None]  # (1, 1, S, S): high = opposes the match
    inside = np.zeros_like(dissimilar)
    inside[..., y0:y1, x0:x1] = 1.0
    args = {"model": None, "x_batch": pixels(patched[None]), "y_batch": np.zeros(1, int), "a_batch": dissimilar,
            "s_batch": inside}
    hit = quantus.PointingGame(abs=False, normalise=False, disable_warnings=True)(**args)[0]
    rank = quantus.RelevanceRankAccuracy(abs=False, normalise=False, disable_warnings=True)(**args)[0]
    return {"pointing_hit": float(hit), "pointing_rank": float(rank)}


def sensitivity(rec: Recognizer, a: np.ndarray, b: np.ndarray, method: str, masks: int, noise: float,
                samples: int) -> dict[str, float]:
    """Quantus MaxSensitivity under uniform pixel noise of +-noise grey levels (max-normalised maps)."""
    import quantus  # optional: the checks extra

    metric = quantus.MaxSensitivity(nr_samples=samples, lower_bound=noise,  # Quantus default: batch uniform noise
                                    normalise=True, abs=False, disable_warnings=True)
    score = metric(model=ScoreModel(rec, b).eval(), x_batch=pixels(a[None]), y_batch=np.zeros(1, int), a_batch=None,
                   explain_func=quantus_explainer(method, masks), softmax=False, device="cpu")
    return {"max_sensitivity": float(score[0])}


def deletion(rec: Recognizer, a: np.ndarray, b: np.ndarray, m: np.ndarray, steps: int = 16) -> dict[str, float]:
    """The project's tie-free deletion / insertion AUC beside Quantus PixelFlipping's deletion AUC.

    Both delete to mid grey in ``steps`` equal steps and integrate over the fraction axis [0, 1] from
    the clean score; they differ only in ties (ours: random order, averaged; Quantus: array order).
    """
    import quantus  # optional: the checks extra

    own = compare_maps(rec, a, b, {"m": m}, steps=steps, baseline=GREY)["m"]
    size = a.shape[0]
    score = ScoreModel(rec, b).eval()
    flip = quantus.PixelFlipping(features_in_step=size * size // steps, perturb_baseline=GREY, disable_warnings=True)
    curve = flip(model=score, x_batch=pixels(a[None]), y_batch=np.zeros(1, int),
                 a_batch=m[None, None].astype(np.float32), softmax=False, device="cpu")[0]  # (steps,) after each step
    with torch.no_grad():
        clean = float(score(torch.from_numpy(pixels(a[None])))[0, 0])
    # the AUC as ours, from the clean score (Quantus' own AUC starts after the first step and calls
    # np.trapz, which numpy 2.4 no longer has)
    auc = np.trapezoid(np.asarray([clean, *curve], np.float64), dx=1.0 / len(curve))
    return {"deletion_auc": own.deletion_auc, "insertion_auc": own.insertion_auc, "quantus_deletion_auc": float(auc)}


def check_pair(rec: Recognizer, pair: tuple[np.ndarray, np.ndarray], impostor: np.ndarray, method: str,
               args: argparse.Namespace, region: str) -> dict[str, float]:
    a, b = pair
    t0 = time.perf_counter()
    m = face_map(rec, a, b, method, args.masks)
    row = {"seconds_per_map": time.perf_counter() - t0, **deletion(rec, a, b, m)}
    row |= pointing(rec, a, b, impostor, method, args.masks, region)
    row |= sensitivity(rec, a, b, method, args.masks, args.noise, args.noise_samples)
    if not args.skip_randomisation:
        row |= randomisation(rec, a, b, method, args.masks)
    return row


def table(rows: dict[str, list[dict[str, float]]], recognizer: str) -> str:
    """Markdown: one line per method, the mean of each metric over pairs (blank: n/a)."""
    keys = sorted({k for rs in rows.values() for r in rs for k in r})
    lines = ["| method | recognizer | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for method, rs in rows.items():
        cells = [f"{np.mean([r[k] for r in rs if k in r]):.3f}" if any(k in r for r in rs) else "" for k in keys]
        lines.append(f"| {method} | {recognizer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--model", default=None, help="a recognizer spec of `cqa eval --model` (default: bundled CQA-Face)")
    parser.add_argument("--masks", type=int, default=300, help="CorrRISE masks per map")
    parser.add_argument("--noise", type=float, default=5.0, help="max-sensitivity noise, grey levels")
    parser.add_argument("--noise-samples", type=int, default=5)
    parser.add_argument("--skip-randomisation", action="store_true", help="the slow column (a map per layer)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="quantus")
    rec = load_recognizer(args.model)
    pairs = dev_pair_chips(rec, args.pairs, same=True)
    impostors = [q for _, q in dev_pair_chips(rec, args.pairs, same=False)]
    rows: dict[str, list[dict[str, float]]] = {}
    for method in args.methods.split(","):
        rows[method] = []
        for i, (pair, imp) in enumerate(zip(pairs, impostors, strict=True)):
            rows[method].append(check_pair(rec, pair, imp, method, args, REGIONS[i % len(REGIONS)]))
            print(f"\r{method}: {i + 1}/{len(pairs)}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    print(f"explanation checks: {len(pairs)} LFW pairsDevTest same-person pairs, {rec.name} ({rec.describe()})\n")
    print(table(rows, rec.name))


if __name__ == "__main__":
    main()
