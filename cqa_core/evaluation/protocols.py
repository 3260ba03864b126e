"""The evaluation protocols: verification, masked (M2N / M2M), cross-quality, identification, EDC.

    result, rows = evaluate(model, "lfw", "masked-m2n", Options(mask="surgical"))

Each protocol embeds the faces of a data spec (``lfw``, ``celeba299``, ``bin:PATH``,
``pairs:ROOT:PAIRS_FILE``; ``cqa_core.data.verification``) and scores them with
``cqa_core.metrics``:

* ``verify``: clean pairs, 10-fold accuracy, TAR@FAR, AUC;
* ``masked-m2n`` / ``masked-m2m``: the second face (M2N) or both faces (M2M) of every pair wear a
  synthetic mask (``data.degrade.masked_side``), seeded per pair;
* ``cross-quality``: the second face is degraded (blur, down-scaling, noise, ...), seeded per pair;
* ``identify``: rank-1 with one gallery image per identity;
* ``edc``: QAN quality as a face-image-quality score (:mod:`cqa_core.evaluation.edc`).

Folds: LFW-format lists keep their own; headerless ``pairs:`` lists get stratified folds and
``bin:`` sets consecutive blocks (:func:`refold`). ``cqa eval`` parses its flags into
:class:`Options`, calls :func:`evaluate` and prints the rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cqa_core.data.degrade import degrade, masked_side
from cqa_core.data.pairs import DEFAULT_FOLDS, has_header, stratified_folds
from cqa_core.data.verification import load_identities, load_pairset
from cqa_core.evaluation.edc import edc, pair_quality
from cqa_core.evaluation.face_scores import score_faces
from cqa_core.metrics import (
    VerificationResult,
    default_folds,
    evaluate_pairs,
    identification_rank1,
    pair_scores,
    split_gallery,
)
from cqa_core.preprocess import normalize
from cqa_core.recognizers.base import Recognizer
from cqa_core.recognizers.chips import recognizer_chips
from cqa_core.recognizers.cqa import from_cqa
from cqa_core.settings import AlignMode, Settings

PAIR_PROTOCOLS = ("verify", "masked-m2n", "masked-m2m", "cross-quality")
PROTOCOLS = (*PAIR_PROTOCOLS, "identify", "edc")
EDC_READINGS = {
    "qan": "overall QAN quality: attention-mass-weighted mean of S_hat_i (explain.quality.overall_quality)",
    "norm": "L2 norm of the pre-normalisation embedding (FC-512 + BN output), MagFace-style",
    "random": "uniform random pair qualities, mean curve of the draws",
}
"""The quality readings the ``edc`` protocol compares, each turned into a pair quality by the lower face."""


@dataclass(frozen=True)
class Options:
    """How a protocol runs (the flags of ``cqa eval``)."""

    flip: bool = False  # flip-sum embeddings (insightface test-time flip)
    limit: int | None = None  # N pairs (identities for identify), spread evenly
    batch_size: int = 64
    device: str = "cpu"
    align: AlignMode = AlignMode.MTCNN  # raw photos: MTCNN (cached) or the fixed centre crop
    mask: str = "random"  # masked-*: mask kind
    degrade: str = "downscale"  # cross-quality: degradation
    severity: int = 3  # cross-quality: 1..5
    roc: bool = False  # ROC arrays in the result
    folds: int | None = None  # folds for headerless pair lists and bin: sets
    edc_pairs: str = "verify"  # edc: the pairs whose error-versus-discard curve is measured
    edc_max_discard: float = 0.2  # edc: upper end of the area
    places: Settings = Settings()  # the entry point's data_root (LFW, CelebA, masks) and cache_root (aligned crops)


def embed(model: Any, images: Any, batch_size: int = 64, flip: bool = False,
          device: str = "cpu", progress: bool = True) -> np.ndarray:
    """Embeddings of many aligned faces.

    Args:
        model: a CQAFace (or any module whose output has ``.embedding`` or is a tensor).
        images: uint8 RGB as numpy (N, 112, 112, 3) / torch (N, 3, 112, 112), or a Dataset whose
            items are such an image or an ``(image, label)`` tuple.
        batch_size: images per forward pass.
        flip: add the embedding of the mirrored face (insightface "flip-sum").
        device: where to run.
        progress: show a tqdm bar.

    Returns:
        (N, D) float32 numpy, not normalised.
    """
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"numpy images must be (N, H, W, 3) uint8, got {images.shape}")
        images = torch.from_numpy(images).permute(0, 3, 1, 2)  # (N, 3, H, W)
    n = len(images)
    out = []
    model.eval()
    with torch.inference_mode():
        for start in tqdm(range(0, n, batch_size), desc="embed", unit="batch", disable=not progress):
            if isinstance(images, torch.Tensor):
                x = images[start:start + batch_size]  # (b, 3, H, W)
            else:
                items = [images[i] for i in range(start, min(start + batch_size, n))]
                x = torch.stack([it[0] if isinstance(it, (tuple, list)) else it for it in items])  # (b, 3, H, W)
            x = normalize(x.to(device))  # (b, 3, H, W) float in [-1, 1]
            e = _embedding(model(x))  # (b, D)
            if flip:
                e = e + _embedding(model(x.flip(-1)))  # (b, D)
            out.append(e.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 512), np.float32)


def _embedding(output: Any) -> Any:
    return output.embedding if hasattr(output, "embedding") else output


def refold(ps, spec: str, folds: int | None):
    """Set ``ps.folds`` to ``folds`` folds where the data defines none of its own.

    Headerless ``pairs:`` lists get stratified folds over the pairs actually evaluated (after
    ``--limit``); ``bin:`` sets get ``folds`` consecutive blocks. ``lfw``, ``celeba299`` and
    pair lists with a header keep their folds; asking for others there is an error.
    """
    k = DEFAULT_FOLDS if folds is None else folds
    if k < 1:
        raise ValueError(f"--folds must be >= 1, got {k}")
    if spec.startswith("pairs:") and not has_header(spec.split(":", 2)[2]):
        ps.folds = np.asarray(stratified_folds(ps.issame, k))  # (N,)
    elif spec.startswith("bin:"):
        ps.folds = default_folds(len(ps.issame), k)  # (N,)
    elif folds is not None:
        raise ValueError(f"--folds is for pair lists without a header and bin: sets; {spec} keeps its "
                         f"own {len(set(ps.folds.tolist()))} folds")
    return ps


def second_side(images: np.ndarray, index: np.ndarray, protocol: str, opts: Options, offset: int = 0) -> np.ndarray:
    """The degraded faces ``images[index]`` of a masked or cross-quality protocol, seeded per pair."""
    mask_root = opts.places.data_root / "masks"
    if protocol != "cross-quality":
        return masked_side(images, index, opts.mask, offset, mask_root=mask_root)
    out = np.empty((len(index), 112, 112, 3), np.uint8)
    for k, i in enumerate(index):
        out[k] = degrade(images[i], opts.degrade, opts.severity, seed=k + offset, mask_root=mask_root)
    return out


def pair_sides(ps, protocol: str, opts: Options, fn: Callable[[np.ndarray], Any]) -> tuple[Any, Any]:
    """``fn`` (images (M, 112, 112, 3) -> per-image rows) applied to both sides of every pair.

    Clean sides reuse one pass over ``ps.images``; degraded sides (mask, cross-quality) are built
    per pair with the same seeds as the accuracy protocols. Returns (side 1, side 2), each with N rows.
    """
    rows = fn(ps.images)
    pick = (lambda r, i: r[i]) if isinstance(rows, np.ndarray) else (lambda r, i: r.take(i))
    s1, s2 = pick(rows, ps.index1), pick(rows, ps.index2)
    if protocol in ("masked-m2n", "masked-m2m", "cross-quality"):
        s2 = fn(second_side(ps.images, ps.index2, protocol, opts))
    if protocol == "masked-m2m":
        s1 = fn(second_side(ps.images, ps.index1, protocol, opts, len(ps.index1)))
    return s1, s2


def embedder(rec: Recognizer, opts: Options, progress: bool = True) -> Callable[[np.ndarray, Any], np.ndarray]:
    """``emb(crops (M, 112, 112, 3), sources or None) -> (M, D)`` for a recognizer.

    Every recognizer embeds its own chips (``recognizers.chips``: the crops themselves for the ArcFace
    112 x 112 template, as CQA-Face's; cut from the photos when ``sources`` are known). ``opts.flip``
    adds the embedding of the mirrored chip.
    """
    def emb(images: np.ndarray, sources: Any = None) -> np.ndarray:
        chips = recognizer_chips(rec, images, sources, progress)  # (M, S, S, 3)
        out = []
        for start in tqdm(range(0, len(chips), opts.batch_size), desc=f"embed ({rec.name})", unit="batch",
                          disable=not progress):
            part = chips[start:start + opts.batch_size]  # (b, S, S, 3)
            e = rec.embed(part)  # (b, D)
            out.append(e + rec.embed(part[:, :, ::-1].copy()) if opts.flip else e)
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    return emb


def evaluate(model: torch.nn.Module | Recognizer, data: str, protocol: str, opts: Options = Options()
             ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Run ``protocol`` on ``data`` with a CQA-Face or any recognizer (``recognizers.load_recognizer``):
    (JSON-ready result with its timing, the rows ``cqa eval`` prints).

    A recognizer whose chip is not the 112 x 112 ArcFace crop (dlib) sees chips cut from the photos
    on ``verify``; on the masked and cross-quality protocols the degradations are drawn on the crops,
    so both faces of a pair are cut from their crops (black outside them), alike.
    """
    rec = model if isinstance(model, Recognizer) else from_cqa(model)
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if protocol == "edc" and rec.readout is None:
        raise ValueError(f"the edc protocol compares QAN quality with the embedding norm: {rec.name} has no QAN")
    if protocol == "edc" and not 0 < opts.edc_max_discard < 1:
        raise ValueError(f"--edc-max-discard must be in (0, 1), got {opts.edc_max_discard}")
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    result: dict[str, Any] = {"data": data, "protocol": protocol, "flip": opts.flip, "model_kind": rec.kind}
    emb = embedder(rec, opts)

    if protocol == "identify":
        images, labels = load_identities(data, opts.limit, places=opts.places)
        timing["load_s"] = time.perf_counter() - t0
        e = emb(images)
        gal, probe = split_gallery(labels, per_id=1)
        rank1 = identification_rank1(e[gal], labels[gal], e[probe], labels[probe])
        result.update(rank1=rank1, identities=int(len(set(labels.tolist()))), gallery=len(gal), probes=len(probe))
        rows = [("rank-1", f"{100 * rank1:.2f}%"), ("identities", str(result["identities"])), ("probes", str(len(probe)))]
    else:
        ps = refold(load_pairset(data, limit=opts.limit, align=opts.align.value, places=opts.places), data, opts.folds)
        timing["load_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        if protocol == "edc":
            res, rows = edc_result(rec.readout.model, ps, opts)
            result.update(res)
        else:
            sources = ps.sources if protocol == "verify" else None
            e1, e2 = pair_sides(ps, protocol, opts, lambda im: emb(im, sources if im is ps.images else None))
            res, rows = pair_result(evaluate_pairs(e1, e2, ps.issame, ps.folds), len(ps.images), protocol, opts)
            result.update(res)
        timing["embed_s"] = time.perf_counter() - t1
    timing["total_s"] = time.perf_counter() - t0
    result["timing"] = {k: round(v, 2) for k, v in timing.items()}
    result["device"] = opts.device
    return result, rows


def pair_result(r: VerificationResult, images: int, protocol: str, opts: Options
                ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """What a pair protocol reports of its scored pairs: (JSON-ready aggregates, the rows ``cqa eval`` prints).

    ``evaluate`` and a recorded run (``evaluation.runs``) both report through it, so a run's
    ``run.json`` holds exactly the numbers ``cqa eval`` prints.
    """
    result: dict[str, Any] = {**r.to_dict(roc=opts.roc), "images": int(images)}
    if protocol.startswith("masked"):
        result["mask"] = opts.mask
    if protocol == "cross-quality":
        result.update(degrade=opts.degrade, severity=opts.severity)
    rows = [("accuracy", f"{100 * r.accuracy:.2f}% +- {100 * r.accuracy_std:.2f}"),
            ("best threshold (cos)", f"{r.best_threshold:.4f}"), ("AUC", f"{r.auc:.4f}")]
    rows += [(f"TAR @ FAR={far:g}", f"{100 * v:.2f}%") for far, v in r.tar_at_far.items()]
    rows += [("pairs (same)", f"{r.n_pairs} ({r.n_same})"), ("images", str(images))]
    return result, rows


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two float vectors (ties broken by position: fine for continuous readings)."""
    ra = np.argsort(np.argsort(a)).astype(np.float64)  # (N,)
    rb = np.argsort(np.argsort(b)).astype(np.float64)  # (N,)
    return float(np.corrcoef(ra, rb)[0, 1])


def edc_result(model: torch.nn.Module, ps, opts: Options) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The ``edc`` protocol on the pairs of ``opts.edc_pairs``, built as the accuracy protocols build them:
    the EDC result (JSON-ready) and the rows ``cqa eval`` prints."""
    s1, s2 = pair_sides(ps, opts.edc_pairs, opts, lambda im: score_faces(
        model, im, batch_size=opts.batch_size, flip=opts.flip, device=opts.device))
    scores = pair_scores(s1.embedding, s2.embedding)  # (N,)
    qualities = {"qan": pair_quality(s1.overall, s2.overall), "norm": pair_quality(s1.norm, s2.norm)}  # (N,) each
    res = edc(scores, ps.issame, qualities, max_discard=opts.edc_max_discard)
    side = {name: {"side1_mean": float(getattr(s1, f).mean()), "side2_mean": float(getattr(s2, f).mean())}
            for name, f in (("qan", "overall"), ("norm", "norm"))}
    result = {"edc_pairs": opts.edc_pairs, "pair_quality": "min of the two faces", "readings": EDC_READINGS,
              "face_quality": side, "n_pairs": int(len(scores)), "images": int(len(ps.images)),
              "spearman_qan_norm": spearman(np.r_[s1.overall, s2.overall], np.r_[s1.norm, s2.norm]), **res}
    if opts.edc_pairs.startswith("masked"):
        result["mask"] = opts.mask
    if opts.edc_pairs == "cross-quality":
        result.update(degrade=opts.degrade, severity=opts.severity)
    rows = [("pairs", opts.edc_pairs), ("mated / impostor", f"{res['n_mated']} / {res['n_impostor']}")]
    for fmr, row in res["fmr"].items():
        rows.append((f"FMR={fmr} threshold", f"{row['threshold']:.4f}"))
        rows.append(("  FNMR, no discard", f"{100 * row['fnmr_at_0']:.2f}%"))
        k = round(opts.edc_max_discard * 100)
        for name, c in row["curves"].items():
            std = f" +- {c['area_std']:.4f}" if "area_std" in c else ""
            rows.append((f"  area {name} (0-{k}%)", f"{c['area']:.4f}{std}"))
    rows.append(("spearman(qan, norm)", f"{result['spearman_qan_norm']:.3f}"))
    return result, rows
