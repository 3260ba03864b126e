"""Library explainers on the pair similarity: pytorch-grad-cam's CAMs and captum's attributions.

pytorch-grad-cam expects a model returning one tensor; :class:`TensorOutput` is the one-line
adapter that picks a field of ``CQAOutput``. Targets are tiny callables: :class:`SimilarityTarget`
returns cos(output, reference). The target layer is ``model.stem`` (its output is
``CQAOutput.feature_map``). CAM objects are used as context managers so their hooks are removed.

captum's IntegratedGradients attributes the scalar cos(e(x), e_ref) to input pixels, adding steps
until its attributions sum to the score gap within 1 % (capped). Perturbation methods that need no
gradients (occlusion, RISE) are in :mod:`cqa_core.explain.blackbox`. Every function here takes a
CQA-Face or any module that returns embeddings (a white-box recognizer's ``module``).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from cqa_core.explain.common import ExplainError
from cqa_core.explain.tensors import (
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
SLOW_CAMS = ("ScoreCAM", "AblationCAM", "ShapleyCAM")
"""The classes that run a forward pass per channel or per masked input: seconds or more on a CPU."""

log = logging.getLogger(__name__)


class TensorOutput(nn.Module):
    """Wrap a model returning a NamedTuple so it returns one field (default: the embedding)."""

    def __init__(self, model: nn.Module, field: str = "embedding") -> None:
        super().__init__()
        self.model = model
        self.field = field

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out if isinstance(out, torch.Tensor) else getattr(out, self.field)  # e.g. (B, 512)


class SimilarityTarget:
    """pytorch-grad-cam target: cos(embedding, reference) for one face (or a batch)."""

    def __init__(self, reference: torch.Tensor) -> None:
        self.reference = reference.detach()  # (512,)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return cosine(output.reshape(-1, output.shape[-1]), self.reference[None]).squeeze(0)  # () or (B,)


def _embedding(out: Any) -> torch.Tensor:
    """The embedding of a model's output: a CQAOutput's field, or the tensor a plain embedder returns."""
    return out if isinstance(out, torch.Tensor) else out.embedding


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Embeddings (B, D) of a model-input batch, without gradient."""
    with torch.no_grad():
        return _embedding(model(x))  # (B, D)


@in_eval_mode
def library_cam(model: nn.Module, images_a, images_b, method: str = "GradCAM", layer: str | None = None,
                **cam_kwargs) -> np.ndarray:
    """Any pytorch-grad-cam method on cos(e_a, e_b), target layer ``model.stem`` (or ``layer``).

    Args:
        model: CQAFace, or any module returning embeddings (then name its spatial ``layer``).
        images_a: faces to explain, B of them.
        images_b: their partners, B or 1.
        method: a class name of ``pytorch_grad_cam`` (see ``CAM_METHODS``).
        layer: dotted name of the target layer (default: the CQA-Face stem).
        **cam_kwargs: passed to the CAM constructor (e.g. nothing, or ``reshape_transform``).

    Returns:
        (B, H, W) float32 maps in [0, 1] (pytorch-grad-cam's own min-max scaling and resize).
    """
    import pytorch_grad_cam  # optional: grad-cam, the explain extra

    cls = getattr(pytorch_grad_cam, method, None)
    if cls is None:
        raise ExplainError(f"unknown pytorch-grad-cam method {method!r}; try one of {', '.join(CAM_METHODS)}")
    device = model_device(model)
    xa, xb = as_batch(images_a, device), as_batch(images_b, device)  # (B, 3, H, W), (B'|1, 3, H, W)
    ref = embed(model, xb).expand(xa.shape[0], -1)  # (B, 512)
    targets = [SimilarityTarget(r) for r in ref]
    target = model.stem if layer is None else dict(model.named_modules())[layer]
    with keep_param_grads(model), cls(model=TensorOutput(model), target_layers=[target], **cam_kwargs) as cam:
        return np.asarray(cam(input_tensor=xa, targets=targets), dtype=np.float32)  # (B, H, W)


def _similarity_fn(model: nn.Module):
    """f(x, ref) = cos(e(x), ref): the scalar captum attributes, batched over x."""

    def forward(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return cosine(_embedding(model(x)), ref)  # (N,)

    return forward


class Attribution(NamedTuple):
    """A pixel attribution of the pair similarity."""

    map: np.ndarray  # (B, H, W) attribution summed over RGB (signed)
    delta: np.ndarray  # (B,) IG convergence delta: sum of attributions - (f(x) - f(baseline)); 0 for occlusion
    gap: np.ndarray | None = None  # (B,) f(x) - f(baseline), what IG's attributions must sum to
    steps: np.ndarray | None = None  # (B,) IG steps used for each face
    converged: np.ndarray | None = None  # (B,) bool: |delta| <= tolerance before the step cap


IG_START_STEPS = 32
IG_MAX_STEPS = 512
IG_RTOL = 0.01  # |delta| <= 1 % of the score gap ...
IG_ATOL = 1e-4  # ... or this, when the gap itself is ~0 (1 % of nothing cannot be met)


def _ig_once(model: nn.Module, xa: torch.Tensor, ref: torch.Tensor, steps: int, baseline: torch.Tensor,
             internal_batch_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One captum IG run -> (attributions (B, 3, H, W), convergence delta (B,))."""
    from captum.attr import IntegratedGradients  # optional: captum, the explain extra

    ig = IntegratedGradients(_similarity_fn(model))
    return ig.attribute(xa, baselines=baseline, additional_forward_args=(ref,), n_steps=steps,
                        internal_batch_size=internal_batch_size, return_convergence_delta=True)


@in_eval_mode
def integrated_gradients(model: nn.Module, images_a, images_b, steps: int | None = None,
                         baseline: float | torch.Tensor = 0.0,
                         internal_batch_size: int | None = 64, rtol: float = IG_RTOL, atol: float = IG_ATOL,
                         max_steps: int = IG_MAX_STEPS) -> Attribution:
    """captum IntegratedGradients of cos(e_a, e_b) w.r.t. face a's pixels, run until it converges.

    IG's attributions must sum to the gap f(x) - f(baseline) (completeness); captum's convergence
    delta is how far they miss. With ``steps=None`` each face starts at 32 steps and the step
    count doubles (32, 64, ..., ``max_steps``) until |delta| <= max(rtol * |gap|, atol). Faces
    still above the tolerance at the cap keep the cap's result with ``converged`` False (and a
    log warning says so). On LFW pairs with the light model 32 steps missed by ~15 % and 128 met 1 %.

    Args:
        model: CQAFace in eval mode.
        images_a: faces to explain (B).
        images_b: partners (B or 1).
        steps: a fixed step count (no convergence loop), or None to converge.
        baseline: constant baseline in model-input units (0.0 = mid grey for CQA-Face), or a tensor
            broadcastable to the input (a recognizer's mid grey after its own normalisation).
        internal_batch_size: how many interpolated images per forward.
        rtol: tolerance as a fraction of |gap| (default 1 %).
        atol: absolute floor of the tolerance (a gap of ~0 cannot be met to 1 %).
        max_steps: the cap of the doubling.

    Returns:
        :class:`Attribution` with the RGB-summed map, captum's delta, the gap, the steps used
        per face and whether each face converged.
    """
    device = model_device(model)
    xa, xb = as_batch(images_a, device), as_batch(images_b, device)  # (B, 3, H, W)
    ref = embed(model, xb).expand(xa.shape[0], -1).contiguous()  # (B, 512)
    f = _similarity_fn(model)
    base = (torch.full_like(xa, baseline) if not isinstance(baseline, torch.Tensor)
            else baseline.to(xa).expand_as(xa).contiguous())  # (B, 3, H, W)
    with torch.no_grad():
        gap = f(xa, ref) - f(base, ref)  # (B,)
    tol = torch.clamp(rtol * gap.abs(), min=atol)  # (B,)
    n = xa.shape[0]
    attr = torch.zeros_like(xa)  # (B, 3, H, W)
    delta = torch.full((n,), float("inf"), device=device)  # (B,)
    used = torch.zeros(n, dtype=torch.long)  # (B,)
    todo = torch.arange(n)  # faces still above the tolerance
    k = steps or min(IG_START_STEPS, max_steps)
    while len(todo):
        a, d = _ig_once(model, xa[todo], ref[todo], k, base[todo], internal_batch_size)  # (t, 3, H, W), (t,)
        attr[todo], delta[todo], used[todo] = a.detach(), d.detach().to(delta.dtype), k
        if steps is not None or k >= max_steps:
            break
        todo = todo[(delta[todo].abs() > tol[todo]).cpu()]
        k = min(2 * k, max_steps)
    converged = (delta.abs() <= tol).cpu()  # (B,)
    if steps is None and not converged.all():
        log.warning("integrated gradients hit the %d-step cap on %d of %d faces (|delta| up to %.2g, gap %.2g)",
                    max_steps, int((~converged).sum()), n, float(delta.abs().max()), float(gap.abs().min()))
    return Attribution(to_numpy(attr.sum(dim=1)), to_numpy(delta), to_numpy(gap), used.numpy(),
                       converged.numpy())  # (B, H, W), (B,) x 4
