"""Branch attention CAMs and hook-free Grad-CAM of a pair similarity.

Attention CAMs are the model's own maps M_i (``CQAOutput.attention_maps``): upsampled
bilinearly to 112 x 112, then warped back onto the photo through the inverse of the alignment
affine. Grad-CAM of cos(e_a, e_b) differentiates with respect to the stem output X directly:
the stem runs once, X is made a leaf that requires grad, ``model.head_features(X)`` runs the rest.

    w_c   = mean_{h,w} d cos / d X_c          (B, C)
    cam   = ReLU(sum_c w_c X_c)               (B, h, w)
    map   = upsample(cam) to the input size   (B, H, W)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from cqa_core.explain.common import (
    ExplainError,
    as_batch,
    cosine,
    in_eval_mode,
    minmax,
    model_device,
    to_numpy,
    upsample,
)
from cqa_core.preprocess import INPUT_SIZE


@in_eval_mode
def attention_cams(model: torch.nn.Module, images, size: int = INPUT_SIZE) -> np.ndarray:
    """Branch attention maps M_i upsampled to the input size.

    Args:
        model: a CQAFace (any module returning a CQAOutput).
        images: model input (see :func:`cqa_core.explain.common.as_batch`).
        size: output side in pixels (112 = the aligned face).

    Returns:
        (B, b, size, size) float32 in [0, 1] (bilinear interpolation keeps the range).
    """
    with torch.no_grad():
        out = model(as_batch(images, model_device(model)))
    return to_numpy(upsample(out.attention_maps, size))  # (B, b, size, size)


def warp_to_photo(maps: np.ndarray, affine: np.ndarray, photo_size: tuple[int, int]) -> np.ndarray:
    """Warp aligned-face maps back onto the photo through the inverse alignment affine.

    Args:
        maps: (..., 112, 112) maps on the aligned face.
        affine: (2, 3) matrix mapping photo (x, y) to aligned (x, y).
        photo_size: (width, height) of the photo.

    Returns:
        (..., height, width) float32 maps; photo pixels outside the aligned crop are 0.
    """
    import cv2

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


def crop_support(affine: np.ndarray, photo_size: tuple[int, int]) -> np.ndarray:
    """(height, width) map of where the aligned 112 x 112 crop lies on the photo (1 inside, 0 outside)."""
    return warp_to_photo(np.ones((INPUT_SIZE, INPUT_SIZE), np.float32), affine, photo_size)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, support: np.ndarray | None = None) -> np.ndarray:
    """Blend a [0, 1] heatmap (jet colour map) onto an RGB uint8 image; returns uint8 (H, W, 3).

    ``support`` (H, W) in [0, 1] scales the opacity per pixel: pass :func:`crop_support` so photo
    pixels outside the aligned crop (where the model saw nothing) stay untinted.
    """
    import cv2

    if image.shape[:2] != heat.shape:
        raise ExplainError(f"heatmap {heat.shape} does not match image {image.shape[:2]}")
    h8 = np.uint8(np.clip(heat, 0.0, 1.0) * 255)  # (H, W)
    colour = cv2.cvtColor(cv2.applyColorMap(h8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)  # (H, W, 3)
    a = np.float32(alpha) if support is None else (alpha * np.asarray(support, np.float32))[..., None]  # (H, W, 1)
    blend = (1.0 - a) * image.astype(np.float32) + a * colour.astype(np.float32)  # (H, W, 3)
    return np.clip(blend, 0, 255).astype(np.uint8)


class BranchOverlay(NamedTuple):
    """One branch's overlay and the number shown next to it."""

    branch: int
    quality: float
    image: np.ndarray  # (H, W, 3) uint8 heatmap blended on the photo


def branch_overlays(photo: np.ndarray, maps: np.ndarray, quality: np.ndarray, alpha: float = 0.5,
                    support: np.ndarray | None = None) -> list[BranchOverlay]:
    """Per-branch overlays: maps (b, H, W) on the photo (H, W, 3), each with its quality score."""
    return [BranchOverlay(i, float(quality[i]), overlay(photo, maps[i], alpha, support)) for i in range(len(maps))]


class GradCAMResult(NamedTuple):
    """Hook-free Grad-CAM of the pair similarity, for both faces."""

    similarity: np.ndarray  # (B,) cos(e_a, e_b)
    raw_a: np.ndarray  # (B, h, w) ReLU(sum_c w_c X_c) of face a, before any scaling
    raw_b: np.ndarray  # (B, h, w) same for face b
    map_a: np.ndarray  # (B, H, W) upsampled to the input size (min-max scaled when asked)
    map_b: np.ndarray  # (B, H, W)


def _grad_cam(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM from X (B, C, h, w) and d target / d X (B, C, h, w) -> (B, h, w)."""
    weights = grad.mean(dim=(2, 3))  # (B, C) spatial mean of the gradient
    return torch.relu(torch.einsum("bc,bchw->bhw", weights, x))  # (B, h, w)


@in_eval_mode
def similarity_gradcam(model: torch.nn.Module, images_a, images_b, normalise: bool = True) -> GradCAMResult:
    """Grad-CAM of cos(e_a, e_b) on the stem output X, without hooks.

    Both faces go through the stem in one batch; one backward gives d cos / d X for both.

    Args:
        model: CQAFace in eval mode (BN running statistics make faces independent).
        images_a: face(s) a, B of them.
        images_b: face(s) b, B or 1 of them.
        normalise: min-max scale each map at h x w then upsample, exactly as pytorch-grad-cam
            post-processes (so the two agree); False upsamples the raw map.

    Returns:
        A :class:`GradCAMResult` of numpy arrays.
    """
    device = model_device(model)
    xa, xb = as_batch(images_a, device), as_batch(images_b, device)  # (B, 3, H, W), (B', 3, H, W)
    if xb.shape[0] not in (1, xa.shape[0]):
        raise ExplainError(f"face b batch ({xb.shape[0]}) must be 1 or match face a ({xa.shape[0]})")
    xb = xb.expand(xa.shape[0], -1, -1, -1)  # (B, 3, H, W)
    with torch.no_grad():
        feats = model.stem(torch.cat([xa, xb]))  # (2B, C, h, w)
    fa, fb = feats.chunk(2)  # (B, C, h, w) each
    return gradcam_from_features(model, fa, fb, tuple(xa.shape[-2:]), normalise)


@in_eval_mode
def gradcam_from_features(model: torch.nn.Module, feats_a: torch.Tensor, feats_b: torch.Tensor,
                          size: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE), normalise: bool = True) -> GradCAMResult:
    """:func:`similarity_gradcam` from stem outputs X_a, X_b (B, C, h, w) already computed."""
    feats = torch.cat([feats_a, feats_b]).detach().requires_grad_(True)  # (2B, C, h, w) leaf
    with torch.enable_grad():
        emb = model.head_features(feats).embedding  # (2B, 512)
        ea, eb = emb.chunk(2)  # (B, 512) each
        sim = cosine(ea, eb)  # (B,)
        (grad,) = torch.autograd.grad(sim.sum(), feats)  # (2B, C, h, w)
    cam = _grad_cam(feats.detach(), grad)  # (2B, h, w)
    scaled = minmax(cam) if normalise else cam  # (2B, h, w)
    up = upsample(scaled[:, None], size)[:, 0]  # (2B, H, W)
    if normalise:
        up = minmax(up)  # pytorch-grad-cam scales again after aggregating layers
    ca, cb = cam.chunk(2)
    ua, ub = up.chunk(2)
    return GradCAMResult(to_numpy(sim), to_numpy(ca), to_numpy(cb), to_numpy(ua), to_numpy(ub))
