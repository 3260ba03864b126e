"""Library explainers on the pair similarity: pytorch-grad-cam's CAMs and captum's attributions.

pytorch-grad-cam expects a model returning one tensor; :class:`TensorOutput` is the one-line
adapter that picks a field of ``CQAOutput``. Targets are tiny callables: :class:`SimilarityTarget`
returns cos(output, reference). The target layer is ``model.stem`` (its output is
``CQAOutput.feature_map``). CAM objects are used as context managers so their hooks are removed.

captum's IntegratedGradients and Occlusion attribute the scalar cos(e(x), e_ref) to input pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from cqa_core.explain.common import (
    ExplainError,
    as_batch,
    cosine,
    in_eval_mode,
    keep_param_grads,
    model_device,
    to_numpy,
)

CAM_METHODS = (
    "GradCAM", "HiResCAM", "GradCAMElementWise", "GradCAMPlusPlus", "XGradCAM", "LayerCAM", "EigenCAM",
    "EigenGradCAM", "KPCA_CAM", "SegEigenCAM", "ScoreCAM", "AblationCAM", "ShapleyCAM", "FinerCAM", "FEM", "RandomCAM",
)  # pytorch-grad-cam 1.5.7 classes checked on CQA-Face (RefineCAM is a wrapper, not a CAM: not supported)


class TensorOutput(nn.Module):
    """Wrap a model returning a NamedTuple so it returns one field (default: the embedding)."""

    def __init__(self, model: nn.Module, field: str = "embedding") -> None:
        super().__init__()
        self.model = model
        self.field = field

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.model(x), self.field)  # e.g. (B, 512)


class SimilarityTarget:
    """pytorch-grad-cam target: cos(embedding, reference) for one face (or a batch)."""

    def __init__(self, reference: torch.Tensor) -> None:
        self.reference = reference.detach()  # (512,)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return cosine(output.reshape(-1, output.shape[-1]), self.reference[None]).squeeze(0)  # () or (B,)


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Embeddings (B, 512) of a model-input batch, without gradient."""
    with torch.no_grad():
        return model(x).embedding  # (B, 512)


@in_eval_mode
def library_cam(model: nn.Module, images_a, images_b, method: str = "GradCAM", **cam_kwargs) -> np.ndarray:
    """Any pytorch-grad-cam method on cos(e_a, e_b), target layer ``model.stem``.

    Args:
        model: CQAFace.
        images_a: faces to explain, B of them.
        images_b: their partners, B or 1.
        method: a class name of ``pytorch_grad_cam`` (see ``CAM_METHODS``).
        **cam_kwargs: passed to the CAM constructor (e.g. nothing, or ``reshape_transform``).

    Returns:
        (B, H, W) float32 maps in [0, 1] (pytorch-grad-cam's own min-max scaling and resize).
    """
    import pytorch_grad_cam

    cls = getattr(pytorch_grad_cam, method, None)
    if cls is None:
        raise ExplainError(f"unknown pytorch-grad-cam method {method!r}; try one of {', '.join(CAM_METHODS)}")
    device = model_device(model)
    xa, xb = as_batch(images_a, device), as_batch(images_b, device)  # (B, 3, H, W), (B'|1, 3, H, W)
    ref = embed(model, xb).expand(xa.shape[0], -1)  # (B, 512)
    targets = [SimilarityTarget(r) for r in ref]
    with keep_param_grads(model), cls(model=TensorOutput(model), target_layers=[model.stem], **cam_kwargs) as cam:
        return np.asarray(cam(input_tensor=xa, targets=targets), dtype=np.float32)  # (B, H, W)


def _similarity_fn(model: nn.Module):
    """f(x, ref) = cos(e(x), ref): the scalar captum attributes, batched over x."""

    def forward(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return cosine(model(x).embedding, ref)  # (N,)

    return forward


class Attribution(NamedTuple):
    """A pixel attribution of the pair similarity."""

    map: np.ndarray  # (B, H, W) attribution summed over RGB (signed)
    delta: np.ndarray  # (B,) IG convergence delta (sum of attributions - (f(x) - f(baseline))); 0 for occlusion


@in_eval_mode
def integrated_gradients(model: nn.Module, images_a, images_b, steps: int = 32, baseline: float = 0.0,
                         internal_batch_size: int | None = 64) -> Attribution:
    """captum IntegratedGradients of cos(e_a, e_b) w.r.t. face a's pixels.

    Args:
        model: CQAFace in eval mode.
        images_a: faces to explain (B).
        images_b: partners (B or 1).
        steps: Riemann / Gauss-Legendre steps (captum default method).
        baseline: constant baseline in model-input units (0.0 = mid grey).
        internal_batch_size: how many interpolated images per forward.

    Returns:
        :class:`Attribution` with the RGB-summed map and captum's convergence delta.
    """
    from captum.attr import IntegratedGradients

    device = model_device(model)
    xa, xb = as_batch(images_a, device), as_batch(images_b, device)  # (B, 3, H, W)
    ref = embed(model, xb).expand(xa.shape[0], -1).contiguous()  # (B, 512)
    ig = IntegratedGradients(_similarity_fn(model))
    attr, delta = ig.attribute(xa, baselines=baseline, additional_forward_args=(ref,), n_steps=steps,
                               internal_batch_size=internal_batch_size, return_convergence_delta=True)
    return Attribution(to_numpy(attr.sum(dim=1)), to_numpy(delta))  # (B, H, W), (B,)


@in_eval_mode
def occlusion(model: nn.Module, images_a, images_b, window: int = 16, stride: int = 8, baseline: float = 0.0,
              per_eval: int = 64) -> Attribution:
    """captum Occlusion of cos(e_a, e_b): drop in similarity when a window of face a is greyed out."""
    from captum.attr import Occlusion

    device = model_device(model)
    xa, xb = as_batch(images_a, device), as_batch(images_b, device)  # (B, 3, H, W)
    ref = embed(model, xb).expand(xa.shape[0], -1).contiguous()  # (B, 512)
    occ = Occlusion(_similarity_fn(model))
    with torch.no_grad():
        attr = occ.attribute(xa, sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
                             baselines=baseline, additional_forward_args=(ref,), perturbations_per_eval=per_eval)
    return Attribution(to_numpy(attr.sum(dim=1)), np.zeros(xa.shape[0], np.float32))  # (B, H, W)
