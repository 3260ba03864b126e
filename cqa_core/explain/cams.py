"""Branch attention CAMs and Grad-CAM of a pair similarity on a CQA-Face model.

Attention CAMs are the model's own maps M_i (``CQAOutput.attention_maps``): upsampled
bilinearly to 112 x 112, then warped back onto the photo through the inverse of the alignment
affine. Grad-CAM of cos(e_a, e_b) differentiates with respect to the stem output X: the project's
one Grad-CAM (``explain.layercam``) at the stem of the model as a recognizer.

    w_c   = mean_{h,w} d cos / d X_c          (B, C)
    cam   = ReLU(sum_c w_c X_c)               (B, h, w)
    map   = upsample(cam) to the input size   (B, H, W)
"""

from __future__ import annotations

import numpy as np
import torch

from cqa_core.explain.layercam import GradCAMResult, gradcam_pair
from cqa_core.explain.render import (  # noqa: F401 - re-exported: cams is where callers look
    BranchOverlay,
    branch_overlays,
    crop_support,
    warp_to_photo,
)
from cqa_core.explain.tensors import as_batch, in_eval_mode, model_device, to_numpy, upsample
from cqa_core.preprocess import INPUT_SIZE
from cqa_core.recognizers.cqa import from_cqa


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


def similarity_gradcam(model: torch.nn.Module, images_a, images_b, normalise: bool = True) -> GradCAMResult:
    """Grad-CAM of cos(e_a, e_b) on a CQA-Face's stem output X (``layercam.gradcam_pair`` at its stem).

    Args:
        model: CQAFace (run in eval mode for the call).
        images_a: face(s) a, B of them (see :func:`cqa_core.explain.tensors.as_batch`).
        images_b: face(s) b, B or 1 of them.
        normalise: min-max scale each map at h x w then upsample, exactly as pytorch-grad-cam
            post-processes (so the two agree); False upsamples the raw map.

    Returns:
        A :class:`~cqa_core.explain.layercam.GradCAMResult` of numpy arrays.
    """
    device = model_device(model)
    xa, xb = as_batch(images_a, device), as_batch(images_b, device)  # (B, 3, H, W), (B'|1, 3, H, W)
    return gradcam_pair(from_cqa(model), xa, xb, normalise)
