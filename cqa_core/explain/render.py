"""Drawing what the model computed: maps onto photos, branch overlays, a face's overall quality.

Colours come from ``maprender`` (one rendering of maps: a scale, a colormap by sign, a colour bar).

numpy + OpenCV only (no torch), so a dashboard kernel that only shows analyses made elsewhere
(``workbench.service``) stays small. ``cams`` and ``quality`` re-export these functions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cqa_core.data.template import SIZE
from cqa_core.explain.common import ExplainError
from cqa_core.explain.maprender import PER_MAP, SHARED_BRANCHES, overlay, scale_of


def warp_to_photo(maps: np.ndarray, affine: np.ndarray, photo_size: tuple[int, int]) -> np.ndarray:
    """Warp aligned-face maps back onto the photo through the inverse alignment affine.

    Args:
        maps: (..., 112, 112) maps on the aligned face.
        affine: (2, 3) matrix mapping photo (x, y) to aligned (x, y).
        photo_size: (width, height) of the photo.

    Returns:
        (..., height, width) float32 maps; photo pixels outside the aligned crop are 0.
    """
    import cv2  # optional: OpenCV, the data extra

    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (2, 3) or not np.isfinite(affine).all():
        raise ExplainError(f"alignment affine must be a finite 2x3 matrix, got shape {affine.shape}")
    if abs(np.linalg.det(affine[:, :2])) < 1e-12:
        raise ExplainError("alignment affine is singular; cannot warp maps back onto the photo")
    inverse = cv2.invertAffineTransform(affine)  # (2, 3) aligned -> photo
    w, h = int(photo_size[0]), int(photo_size[1])
    lead = maps.shape[:-2]
    flat = np.asarray(maps, dtype=np.float32).reshape(-1, *maps.shape[-2:])  # (N, 112, 112)
    out = [cv2.warpAffine(m, inverse, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0) for m in flat]
    return np.stack(out).reshape(*lead, h, w)  # (..., h, w)


def crop_support(affine: np.ndarray, photo_size: tuple[int, int], size: int = SIZE) -> np.ndarray:
    """(height, width) map of where the aligned size x size crop lies on the photo (1 inside, 0 outside)."""
    return warp_to_photo(np.ones((size, size), np.float32), affine, photo_size)


class BranchOverlay(NamedTuple):
    """One branch's overlay and the number shown next to it."""

    branch: int
    quality: float
    image: np.ndarray  # (H, W, 3) uint8 heatmap blended on the photo


def branch_overlays(photo: np.ndarray, maps: np.ndarray, quality: np.ndarray, alpha: float = 0.5,
                    support: np.ndarray | None = None) -> list[BranchOverlay]:
    """Per-branch overlays: maps (b, H, W) on the photo (H, W, 3), each with its quality score, drawn
    on one scale shared by the branches (``maprender``: sequential colours, 0 to the largest weight)."""
    scale = scale_of(list(maps), "attention", "attention weight", False, SHARED_BRANCHES if len(maps) > 1 else PER_MAP)
    return [BranchOverlay(i, float(quality[i]), overlay(photo, maps[i], scale, alpha, support))
            for i in range(len(maps))]


def overall_quality(quality: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """A face's overall quality: the branch qualities weighted by each branch's attention mass.

    quality (..., b) S_hat, maps (..., b, h, w) M -> (...) = sum_i a_i S_hat_i / sum_i a_i with
    a_i = sum_hw M_i. Why this reading: each branch's S_hat scales its feature in the embedding
    (Eq. 7), and a branch that attends to more of the face carries more of it, so the weighted
    mean is the share of the face's attended evidence the QAN lets through. The plain mean would
    let a branch that looks almost nowhere count as much as one that covers the face; the minimum
    would make one weak branch (say, the mouth branch of a face with a beard) decide alone.
    With the quality supervision of ``LossConfig.quality_weight`` it estimates the visible,
    undegraded share of what the model looks at (1 = clean).
    """
    q = np.asarray(quality, dtype=np.float64)
    mass = np.asarray(maps, dtype=np.float64).sum(axis=(-2, -1))  # (..., b)
    return ((mass * q).sum(-1) / np.maximum(mass.sum(-1), 1e-12)).astype(np.float32)
