"""Sanity checks of the explanation methods on every recognizer: do the maps depend on the model, point
at a pasted impostor patch, stay put under small noise, and delete what matters? A table of methods x
recognizers x metrics, with seconds per pair (printed as Markdown, written as JSON).

    PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/explanation_checks.py --models default,onnx-export,dlib \\
        --pairs 8 --json checks.json     # the dashboard's methods on all three (docs/leaderboard.md splits it)
    PYTHONPATH=. .venv/bin/python benchmarks/explanation_checks.py --merge a.json b.json   # one table of runs

Recognizers (``--models``, specs of ``cqa eval --model``): ``default`` (the bundled CQA-Face),
``onnx-export`` (that model exported to ONNX here and loaded back white-box through onnx2torch: the
same weights through a foreign graph) or any ``.onnx`` path, and ``dlib`` (black-box). Each runs every
method of the registry it supports (``methods.available``; the dashboard's listed ones, ``--methods
all`` adds pytorch-grad-cam's classes).

Pairs: the first N same-person pairs of LFW View 1 ``pairsDevTest.txt``, aligned crops from the
``ensure_aligned`` cache (its rows for these pairs; dlib cuts its own 150 chip with their landmarks),
else the fixed LFW centre affine for 112 chips. Face a of each pair is explained against face b.
Budgets (small, for 2 shared CPU cores): white-box recognizers 7 x 7 occlusion windows and 100
RISE / CorrRISE masks, black-box ones 5 x 5 and 50; max-sensitivity 3 noisy inputs; deletion /
insertion 16 steps (15 on dlib's chip); the randomisation walk (10 steps) on the first
``--randomisation-pairs`` pairs only.

Which metric comes from where, and why:

* Quantus (Hedström et al., JMLR 2023) for the checks it implements, so that the numbers are the
  reference implementations the literature reports rather than a re-derivation here:
  - **randomisation**: ``MPRT`` (Adebayo et al., NeurIPS 2018, cascading model-parameter
    randomisation, ``layer_order="top_down"``: layers re-initialised from the embedding down,
    cumulatively), one walk per map with Quantus' ``correlation_spearman`` as its similarity and a
    2-D SSIM recorded beside it (Quantus 0.6's ``ssim`` compares the flattened rows MPRT hands it).
    The walk takes ``--blocks`` steps (default 10): the layers Quantus would reset one by one (60 in
    CQA-Face, 36 in its ONNX export), in that many consecutive groups (:class:`BlockScoreModel`), a
    map per step instead of per layer; ``--blocks 100`` is Quantus' own layer-by-layer walk.
    Reported: mean over the steps and the value with every layer randomised. A map that depends on
    the model falls towards 0; one that stays high survives randomisation (Adebayo's failure mode).
    The "model" Quantus randomises is :class:`ScoreModel`: face a's pixels -> cos(e(a), e(b)), both
    embeddings by the same (randomised) network. A black-box recognizer (dlib) has no parameters to
    randomise: n/a, not a pass.
  - **pointing** (Patch-LFW after Huber et al., WACV 2024): a region (eyes, nose or mouth, from the
    chip's template landmarks) of another person's face is pasted onto face a; a signed map must put
    its dissimilarity (its most negative values) there: ``PointingGame`` on -map (hit rate) and
    ``RelevanceRankAccuracy`` (share of the patch-sized top of -map inside the patch). Unsigned maps
    cannot say "dissimilar": n/a.
  - **max-sensitivity** (Yeh et al., NeurIPS 2019): ``MaxSensitivity``, the largest relative change
    of the max-normalised map under uniform noise of +-``--noise`` grey levels. Lower is steadier.
  - **deletion (Quantus)**: ``PixelFlipping`` on the same map, same grey baseline and steps.
* The project's own tie-free **deletion / insertion** (``explain.faithfulness.compare_maps``): ties
  broken at random and averaged, because Quantus' PixelFlipping removes tied pixels in array order,
  which flatters or punishes flat maps (Grad-CAM upsampled from 7 x 7, occlusion windows) by the
  accident of position. Both AUCs integrate from the clean score over the deleted fraction [0, 1], so
  their gap is what tie order does to a method.

Quantus is installed with ``pip install --no-deps quantus`` plus pandas, scikit-image and cachetools
(its opencv-python requirement would shadow the project's headless OpenCV): the ``checks`` extra.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmarks.faithfulness import lfw_dev_pairs
from benchmarks.quantus_models import (
    BlockScoreModel,
    ScoreModel,
    face_map,
    pixels,
    quantus_explainer,
)
from cqa_core.data.align import load_image
from cqa_core.data.datasets import aligned_dir
from cqa_core.data.pairs import Pair, pair_paths, read_pairs
from cqa_core.data.verification import aligned_sources
from cqa_core.explain import methods as registry
from cqa_core.explain.common import ExplainError
from cqa_core.explain.faithfulness import compare_maps
from cqa_core.recognizers.base import Recognizer
from cqa_core.recognizers.chips import recognizer_chips
from cqa_core.recognizers.load import load_recognizer
from cqa_core.settings import Settings

REGIONS = ("eyes", "nose", "mouth")
DONORS = 4  # pairs loaded past the explained ones, to give the last of them an impostor of another person
GREY = 127.5  # the deletion baseline of both implementations
COLUMNS = {  # JSON key -> table header
    "seconds_per_pair": "s / pair", "deletion_auc": "deletion", "quantus_deletion_auc": "deletion (Quantus)",
    "insertion_auc": "insertion", "pointing_hit": "pointing hit", "pointing_rank": "pointing rank",
    "max_sensitivity": "max-sens.", "mprt_spearman_mean": "MPRT rho mean", "mprt_spearman_last": "MPRT rho all",
    "mprt_ssim_mean": "MPRT SSIM mean", "mprt_ssim_last": "MPRT SSIM all",
}


def dev_pairs(n: int) -> list[Pair]:
    """The first n same-person pairs of pairsDevTest.txt."""
    return [p for p in read_pairs(Settings.from_env().lfw / "pairsDevTest.txt") if p.same][:n]


def pair_chips(rec: Recognizer, pairs: list[Pair]) -> list[tuple[np.ndarray, np.ndarray]]:
    """rec's chips of the pairs: the aligned cache's crops (and landmarks) when it holds them, else
    the LFW centre affine (112 chips only)."""
    lfw = Settings.from_env().lfw
    crops = [c for pq in pair_paths(pairs, aligned_dir(lfw.name)) for c in pq]  # a0, b0, a1, b1, ...
    sources = aligned_sources(aligned_dir(lfw.name), lfw, crops) if all(c.is_file() for c in crops) else None
    if sources is None:
        if not rec.preprocess.is_arcface112:
            raise ExplainError(f"{rec.name} cuts its own chip with the aligned cache's landmarks; run `cqa align`")
        return lfw_dev_pairs(len(pairs), same=True, align="center")
    faces = np.stack([load_image(c) for c in crops])  # (2n, 112, 112, 3)
    chips = faces if rec.preprocess.is_arcface112 else recognizer_chips(rec, faces, sources, progress=False)
    return list(zip(chips[0::2], chips[1::2], strict=True))


def impostor_of(pairs: list[Pair], chips: list[tuple[np.ndarray, np.ndarray]], i: int) -> np.ndarray:
    """Face b of the next pair of another person (the patch donor of pair i)."""
    return chips[next(j for j in range(i + 1, len(pairs)) if pairs[j].name1 != pairs[i].name1)][1]


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


def ssim_2d(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two flattened square maps as images (Adebayo et al.), over their joint range."""
    from skimage.metrics import structural_similarity  # optional: scikit-image, the checks extra

    side = round(a.size ** 0.5)
    rng = float(max(np.ptp(np.concatenate([a.ravel(), b.ravel()])), 1e-12))
    return float(structural_similarity(a.reshape(side, side), b.reshape(side, side), data_range=rng))


def randomisation(rec: Recognizer, a: np.ndarray, b: np.ndarray, method: str, blocks: int = 10) -> dict[str, float]:
    """One Quantus MPRT walk (cascading, top-down, ``blocks`` steps) scored by Spearman, 2-D SSIM beside it."""
    import quantus  # optional: the checks extra

    if rec.module is None:
        return {}
    ssim: list[float] = []

    def spearman_and_ssim(x: np.ndarray, y: np.ndarray, **kwargs: object) -> float:
        ssim.append(ssim_2d(np.asarray(x)[0], np.asarray(y)[0]))  # batched rows (1, S * S); batch of one
        return quantus.similarity_func.correlation_spearman(x, y, **kwargs)

    metric = quantus.MPRT(similarity_func=spearman_and_ssim, layer_order="top_down", disable_warnings=True)
    scores = metric(model=copy.deepcopy(BlockScoreModel(rec, b, blocks)), x_batch=pixels(a[None]), y_batch=np.zeros(1, int),
                    a_batch=None, explain_func=quantus_explainer(method), softmax=False, device="cpu")
    rho = [float(np.ravel(v)[0]) for k, v in scores.items() if k != "original"]
    ssim = ssim[1:]  # the first call compares the original map with itself
    return {"mprt_spearman_mean": float(np.mean(rho)), "mprt_spearman_last": rho[-1],
            "mprt_ssim_mean": float(np.mean(ssim)), "mprt_ssim_last": ssim[-1], "mprt_layers": float(len(rho))}


def pointing(rec: Recognizer, a: np.ndarray, b: np.ndarray, impostor: np.ndarray, method: str,
             region: str) -> dict[str, float]:
    """Paste ``region`` of the impostor onto a; Quantus PointingGame / RelevanceRankAccuracy of -map."""
    import quantus  # optional: the checks extra

    if not registry.get(method).signed:
        return {}
    y0, y1, x0, x1 = region_box(rec, region)
    patched = a.copy()
    patched[y0:y1, x0:x1] = impostor[y0:y1, x0:x1]
    dissimilar = -face_map(rec, patched, b, method)[None, None]  # (1, 1, S, S): high = opposes the match
    inside = np.zeros_like(dissimilar)
    inside[..., y0:y1, x0:x1] = 1.0
    args = {"model": None, "x_batch": pixels(patched[None]), "y_batch": np.zeros(1, int), "a_batch": dissimilar,
            "s_batch": inside}
    hit = quantus.PointingGame(abs=False, normalise=False, disable_warnings=True)(**args)[0]
    rank = quantus.RelevanceRankAccuracy(abs=False, normalise=False, disable_warnings=True)(**args)[0]
    return {"pointing_hit": float(hit), "pointing_rank": float(rank)}


def sensitivity(rec: Recognizer, a: np.ndarray, b: np.ndarray, method: str, noise: float,
                samples: int) -> dict[str, float]:
    """Quantus MaxSensitivity under uniform pixel noise of +-noise grey levels (max-normalised maps)."""
    import quantus  # optional: the checks extra

    metric = quantus.MaxSensitivity(nr_samples=samples, lower_bound=noise,  # Quantus default: batch uniform noise
                                    normalise=True, abs=False, disable_warnings=True)
    score = metric(model=ScoreModel(rec, b).eval(), x_batch=pixels(a[None]), y_batch=np.zeros(1, int), a_batch=None,
                   explain_func=quantus_explainer(method), softmax=False, device="cpu")
    return {"max_sensitivity": float(score[0])}


def deletion(rec: Recognizer, a: np.ndarray, b: np.ndarray, m: np.ndarray) -> dict[str, float]:
    """The project's tie-free deletion / insertion AUC beside Quantus PixelFlipping's deletion AUC.

    Both delete to mid grey in the same equal steps (16 on a 112 chip, 15 on dlib's 150: PixelFlipping
    needs a step that divides the pixel count) and integrate over the fraction axis [0, 1] from
    the clean score; they differ only in ties (ours: random order, averaged; Quantus: array order).
    """
    import quantus  # optional: the checks extra

    size = a.shape[0]
    steps = next(n for n in (16, 15, 20, 12, 10) if size * size % n == 0)
    own = compare_maps(rec, a, b, {"m": m}, steps=steps, baseline=GREY)["m"]
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


def check_pair(rec: Recognizer, a: np.ndarray, b: np.ndarray, impostor: np.ndarray, method: str,
               args: argparse.Namespace, region: str, randomise: bool) -> dict[str, float]:
    """Every metric of one method on one pair (the randomisation walk only when ``randomise``)."""
    t0 = time.perf_counter()
    m = face_map(rec, a, b, method)
    row = {"seconds_per_pair": time.perf_counter() - t0, **deletion(rec, a, b, m)}
    row |= pointing(rec, a, b, impostor, method, region)
    row |= sensitivity(rec, a, b, method, args.noise, args.noise_samples)
    if randomise:
        row |= randomisation(rec, a, b, method, args.blocks)
    return row


def summary(recognizer: str, method: str, rows: list[dict[str, float]]) -> dict[str, object]:
    """One line of the table: each metric's mean over the pairs that have it (absent: n/a)."""
    keys = sorted({k for r in rows for k in r})
    return {"recognizer": recognizer, "method": method, "pairs": len(rows),
            **{k: float(np.mean([r[k] for r in rows if k in r])) for k in keys},
            "randomisation_pairs": sum("mprt_spearman_last" in r for r in rows)}


def table(lines: list[dict[str, object]]) -> str:
    """Markdown: one line per (recognizer, method), means over pairs; n/a where a check does not apply."""
    out = ["| recognizer | method | " + " | ".join(COLUMNS.values()) + " |", "|" + "---|" * (len(COLUMNS) + 2)]
    for line in lines:
        cells = [f"{line[k]:.3f}" if k in line else "n/a" for k in COLUMNS]
        out.append(f"| {line['recognizer']} | {line['method']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def recognizer_for(spec: str, workdir: Path) -> Recognizer:
    """``onnx-export``: the bundled CQA-Face exported to ONNX here and loaded back; else load_recognizer's spec."""
    if spec != "onnx-export":
        return load_recognizer(spec)
    from cqa_core.export import export_onnx  # optional: onnx, only for this recognizer

    path = export_onnx(load_recognizer("default").readout.model, workdir / "cqa_face.onnx")
    return load_recognizer(path)


def method_names(rec: Recognizer, choice: str) -> list[str]:
    """The registry's methods rec supports: the listed ones, ``all``, or a comma list (unsupported dropped)."""
    usable = registry.available(rec)
    if choice == "listed":
        return [m.name for m in usable if m.listed]
    if choice == "all":
        return [m.name for m in usable]
    return [n for n in choice.split(",") if any(m.name == n for m in usable)]


def run(spec: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, object]]:
    rec = recognizer_for(spec, workdir)
    pairs = dev_pairs(args.pairs + DONORS)
    chips = pair_chips(rec, pairs)  # the last DONORS pairs only give impostor patches
    lines = []
    for method in method_names(rec, args.methods):
        rows = []
        for i, (a, b) in enumerate(chips[:args.pairs]):
            rows.append(check_pair(rec, a, b, impostor_of(pairs, chips, i), method, args, REGIONS[i % len(REGIONS)],
                                   randomise=i < args.randomisation_pairs))
            print(f"\r{spec} {method}: {i + 1}/{args.pairs}", end="", file=sys.stderr, flush=True)
        lines.append(summary(f"{rec.name} ({rec.kind})", method, rows))
        print("\n" + json.dumps(lines[-1]), file=sys.stderr, flush=True)
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="default,onnx-export,dlib", help="comma list of recognizer specs")
    parser.add_argument("--methods", default="listed", help="'listed' (the dashboard's), 'all', or a comma list")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--randomisation-pairs", type=int, default=1, help="pairs that get the MPRT walk")
    parser.add_argument("--blocks", type=int, default=10, help="steps of the randomisation walk (groups of layers)")
    parser.add_argument("--noise", type=float, default=5.0, help="max-sensitivity noise, grey levels")
    parser.add_argument("--noise-samples", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the table's lines and the run's settings")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, help="print one table of these JSON files")
    args = parser.parse_args(argv)
    if args.merge:
        print(table([line for f in args.merge for line in json.loads(f.read_text())["lines"]]))
        return
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # Quantus warns once per metric call
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory() as tmp:
        lines = [line for spec in args.models.split(",") for line in run(spec, args, Path(tmp))]
    print(f"explanation checks: {args.pairs} LFW pairsDevTest same-person pairs, randomisation on "
          f"{args.randomisation_pairs}; {started}; {platform.node()} ({platform.processor() or platform.machine()})\n")
    print(table(lines))
    if args.json:
        meta = {"started": started, "machine": platform.platform(), "command": " ".join(sys.argv), **{
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "merge"}}
        args.json.write_text(json.dumps({"settings": meta, "lines": lines}, indent=1))


if __name__ == "__main__":
    main()
