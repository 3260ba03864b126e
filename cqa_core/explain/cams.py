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

from cqa_core.explain.common import ExplainError
from cqa_core.explain.render import (  # noqa: F401 - re-exported: cams is where callers look
    BranchOverlay,
    branch_overlays,
    crop_support,
    overlay,
    warp_to_photo,
)
from cqa_core.explain.tensors import (
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
