"""QAN analysis: quality scores, the relation matrix, where each branch looks, masks' effect.

Face regions on the 112 x 112 aligned face, built from ``ARCFACE_TEMPLATE`` (points: left eye,
right eye, nose tip, left / right mouth corner; pixel centres at integer coordinates):

* ``left_eye`` / ``right_eye``: ellipses centred on the eye point, semi-axes 12 px (x) by 8 px (y)
  (about a third of the 35 px eye distance wide: the eye and its lids, not the brow).
* ``nose``: ellipse centred on x = nose tip, y halfway between the eye line and the nose tip
  (+5 px, so the tip and nostrils are inside); semi-axes 9 px by half the eye-to-tip height + 4
  (from just under the eyes to below the nostrils).

The four regions are disjoint.
* ``mouth``: ellipse centred between the mouth corners, semi-axes half the corner distance + 5 px
  by 9 px (lips with a margin).

A branch's *share* of a region is sum(M_i * R) / sum(M_i) with M_i upsampled to 112 x 112: the
fraction of its attention mass that falls inside R. A uniform map gets the region's area fraction
(``region_area``), the chance level to compare with.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

from cqa_core.data.degrade import apply_mask
from cqa_core.data.template import ARCFACE_TEMPLATE, SIZE
from cqa_core.explain.common import ExplainError
from cqa_core.explain.render import overall_quality  # noqa: F401 - re-exported
from cqa_core.explain.result import MaskEffect
from cqa_core.explain.tensors import as_batch, in_eval_mode, model_device, to_numpy, upsample

REGIONS = ("left_eye", "right_eye", "nose", "mouth")


def _ellipse(cx: float, cy: float, rx: float, ry: float, size: int) -> np.ndarray:
    """Boolean (size, size) mask of an axis-aligned ellipse."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)  # (size, size) each
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


@lru_cache(maxsize=4)
def region_masks(size: int = SIZE) -> dict[str, np.ndarray]:
    """The four face regions as float32 (size, size) masks (see the module docstring)."""
    s = size / SIZE
    le, re, nose, ml, mr = (p * s for p in ARCFACE_TEMPLATE.astype(np.float64))
    eye_y = (le[1] + re[1]) / 2
    masks = {
        "left_eye": _ellipse(le[0], le[1], 12 * s, 8 * s, size),
        "right_eye": _ellipse(re[0], re[1], 12 * s, 8 * s, size),
        "nose": _ellipse(nose[0], (eye_y + nose[1]) / 2 + 5 * s, 9 * s, (nose[1] - eye_y) / 2 + 4 * s, size),
        "mouth": _ellipse((ml[0] + mr[0]) / 2, (ml[1] + mr[1]) / 2, (mr[0] - ml[0]) / 2 + 5 * s, 9 * s, size),
    }
    return {k: v.astype(np.float32) for k, v in masks.items()}


def region_area() -> dict[str, float]:
    """Fraction of the 112 x 112 face each region covers (a uniform map's share)."""
    return {k: float(v.mean()) for k, v in region_masks().items()}


def attention_share(maps: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Share of each map's mass inside a weight map: (..., H, W) maps, (H, W) weight -> (...)."""
    maps = np.asarray(maps, dtype=np.float64)
    total = maps.sum(axis=(-2, -1))  # (...)
    inside = (maps * weight).sum(axis=(-2, -1))  # (...)
    return (inside / np.maximum(total, 1e-12)).astype(np.float32)


def region_shares(maps112: np.ndarray) -> dict[str, np.ndarray]:
    """Each branch's attention share per face region: (..., b, 112, 112) -> {region: (..., b)}."""
    return {name: attention_share(maps112, m) for name, m in region_masks(maps112.shape[-1]).items()}


class QualityReport(NamedTuple):
    """QAN outputs of B faces."""

    quality: np.ndarray  # (B, b) S_hat_i
    relation: np.ndarray  # (B, b, b) A
    maps112: np.ndarray  # (B, b, 112, 112) upsampled attention
    shares: dict[str, np.ndarray]  # region -> (B, b)


@in_eval_mode
def quality_report(model: torch.nn.Module, images) -> QualityReport:
    """Quality scores, relation matrix and region shares of a batch of aligned faces."""
    with torch.no_grad():
        out = model(as_batch(images, model_device(model)))
    return report_from_output(out)


def report_from_output(out) -> QualityReport:
    """:class:`QualityReport` from a CQAOutput already computed."""
    maps = to_numpy(upsample(out.attention_maps.detach(), SIZE))  # (B, b, 112, 112)
    return QualityReport(to_numpy(out.quality), to_numpy(out.relation), maps, region_shares(maps))


@in_eval_mode
def mask_effect(model: torch.nn.Module, image112: np.ndarray, masked: np.ndarray | None = None,
                alpha: np.ndarray | None = None, kind: str = "surgical", seed: int = 0) -> MaskEffect:
    """Per-branch quality change when a mask is put on an aligned face.

    Args:
        model: CQAFace in eval mode.
        image112: aligned face (112, 112, 3) uint8.
        masked: the same face with a mask; if None, ``cqa_core.data.degrade.apply_mask`` draws one.
        alpha: (112, 112) mask opacity in [0, 1]; if None with ``masked`` given, the changed pixels.
        kind, seed: passed to ``apply_mask``.
    """
    image112 = np.asarray(image112)
    if image112.shape != (SIZE, SIZE, 3) or image112.dtype != np.uint8:
        raise ExplainError(f"mask_effect needs an aligned 112x112x3 uint8 face, got {image112.shape} {image112.dtype}")
    if masked is None:
        masked, alpha = apply_mask(image112, kind=kind, seed=seed)
    masked = np.asarray(masked)
    if masked.shape != image112.shape or masked.dtype != np.uint8:
        raise ExplainError(f"masked image must match the face (112x112x3 uint8), got {masked.shape} {masked.dtype}")
    if alpha is None:
        alpha = (np.abs(masked.astype(np.int16) - image112.astype(np.int16)).max(axis=2) > 0).astype(np.float32)
    alpha = np.asarray(alpha, dtype=np.float32)
    with torch.no_grad():
        out = model(as_batch(np.stack([image112, masked]), model_device(model)))
        sim = float(torch.nn.functional.cosine_similarity(out.embedding[:1], out.embedding[1:]).item())
    rep = report_from_output(out)
    shares = attention_share(rep.maps112, alpha)  # (2, b)
    q = rep.quality
    return MaskEffect(q[0], q[1], q[1] - q[0], shares[0], shares[1], sim, masked, alpha)


class OcclusionProbe(NamedTuple):
    """How QAN quality reacts to occlusion on N faces (see :func:`occlusion_probe`)."""

    most_loses_more: float  # fraction of faces: most-covered branch drops more than least-covered
    overall_falls: float  # fraction of faces whose overall quality falls
    median_most_change: float  # median quality change (occluded - clean) of the most-covered branch
    median_overall_change: float  # median change of the overall quality
    quality_clean: np.ndarray  # (N, b)
    quality_occluded: np.ndarray  # (N, b)
    share: np.ndarray  # (N, b) attention share inside the occluded region (clean face's maps)


@in_eval_mode
def occlusion_probe(model: torch.nn.Module, clean: np.ndarray, occluded: np.ndarray, alpha: np.ndarray,
                    batch_size: int = 64) -> OcclusionProbe:
    """Does the QAN lower the quality of the branches that look at an occluder?

    Args:
        clean / occluded: (N, 112, 112, 3) uint8 aligned faces, the same faces with an occluder.
        alpha: (N, 112, 112) occluder coverage in [0, 1].
    """
    q, m = [], []
    dev = model_device(model)
    with torch.no_grad():
        for s in range(0, len(clean), batch_size):
            out = model(as_batch(np.concatenate([clean[s:s + batch_size], occluded[s:s + batch_size]]), dev))
            q.append(to_numpy(out.quality))  # (2n, b)
            m.append(to_numpy(upsample(out.attention_maps, SIZE)))  # (2n, b, 112, 112)
    n = [min(batch_size, len(clean) - s) for s in range(0, len(clean), batch_size)]
    qc = np.concatenate([x[:k] for x, k in zip(q, n, strict=True)])  # (N, b)
    qo = np.concatenate([x[k:] for x, k in zip(q, n, strict=True)])  # (N, b)
    mc = np.concatenate([x[:k] for x, k in zip(m, n, strict=True)])  # (N, b, 112, 112)
    mo = np.concatenate([x[k:] for x, k in zip(m, n, strict=True)])  # (N, b, 112, 112)
    share = attention_share(mc, np.asarray(alpha, np.float32)[:, None])  # (N, b)
    rows = np.arange(len(qc))
    most, least = share.argmax(1), share.argmin(1)  # (N,)
    drop = qc - qo  # (N, b)
    overall = overall_quality(qo, mo) - overall_quality(qc, mc)  # (N,)
    return OcclusionProbe(float((drop[rows, most] > drop[rows, least]).mean()), float((overall < 0).mean()),
                          float(np.median(-drop[rows, most])), float(np.median(overall)), qc, qo, share)
