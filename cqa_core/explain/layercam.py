"""Grad-CAM of a pair similarity at a named layer of any white-box recognizer: the one Grad-CAM.

CQA-Face's is this one at its stem (``recognizers.cqa.LAYER``; ``cams.similarity_gradcam`` takes a
model directly); pytorch-grad-cam's classes are extra methods (``attribution.library_cam``).
The layer's output X is caught by a forward hook during one forward of both faces
(a batch of 2B), replaced downstream by a leaf copy, and ``torch.autograd.grad`` gives
d cos(e_a, e_b) / d X for both faces at once (a against b and b against a).

    w_c = mean_{h,w} d cos / d X_c          (2B, C)
    cam = ReLU(sum_c w_c X_c)               (2B, h, w)
    map = minmax(upsample(minmax(cam)))     (2B, S, S)

The hook is removed in a ``finally`` block, parameters are frozen for the call (their
``requires_grad`` restored after, so no ``.grad`` is ever written) and the module runs in eval mode
(its mode restored after).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from cqa_core.explain.common import ExplainError
from cqa_core.explain.tensors import cosine, eval_mode, minmax, to_numpy, upsample
from cqa_core.recognizers.base import Preprocess, Recognizer, find_layer


def _inputs(chips: np.ndarray | torch.Tensor, pre: Preprocess, device: torch.device) -> torch.Tensor:
    """Model input (N, 3, S, S) from uint8 RGB chips (N|-, S, S, 3) or an already preprocessed float tensor."""
    if isinstance(chips, torch.Tensor) and chips.is_floating_point() and chips.dim() in (3, 4) \
            and chips.shape[-3] == 3:
        x = chips if chips.dim() == 4 else chips[None]  # (N, 3, S, S) preprocessed
        x = x.to(device)
    else:
        x = pre.to_tensor(chips, device)  # (N, 3, S, S)
    if tuple(x.shape[-2:]) != (pre.size, pre.size):
        raise ExplainError(f"chips are {tuple(x.shape[-2:])}; this recognizer takes {pre.size} x {pre.size}")
    return x


@contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the block; the mode and requires_grad flags come back."""
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        with eval_mode(module):
            yield
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)


class GradCAMResult(NamedTuple):
    """Grad-CAM of the pair similarity, for both faces."""

    similarity: np.ndarray  # (B,) cos(e_a, e_b)
    raw_a: np.ndarray  # (B, h, w) ReLU(sum_c w_c X_c) of face a, before any scaling
    raw_b: np.ndarray  # (B, h, w) same for face b
    map_a: np.ndarray  # (B, S, S) upsampled to the input size (min-max scaled when asked)
    map_b: np.ndarray  # (B, S, S)


def layer_gradcam(recognizer: Recognizer, chips_a: np.ndarray | torch.Tensor, chips_b: np.ndarray | torch.Tensor,
                  normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(maps_a (B, S, S), maps_b (B, S, S)) of :func:`gradcam_pair`."""
    res = gradcam_pair(recognizer, chips_a, chips_b, normalise)
    return res.map_a, res.map_b


def gradcam_pair(recognizer: Recognizer, chips_a: np.ndarray | torch.Tensor, chips_b: np.ndarray | torch.Tensor,
                 normalise: bool = True) -> GradCAMResult:
    """Grad-CAM of cos(e_a, e_b) at ``recognizer.layer`` for both faces.

    Args:
        recognizer: a white-box :class:`~cqa_core.recognizers.base.Recognizer` (``module`` and ``layer``).
        chips_a: face(s) a: uint8 RGB chips (B, S, S, 3) cut for this recognizer, or its preprocessed
            float input (B, 3, S, S).
        chips_b: face(s) b, B or 1 of them, in the same form.
        normalise: min-max scale each map at h x w, upsample, scale again (pytorch-grad-cam's
            post-processing, as :func:`cqa_core.explain.cams.similarity_gradcam`); False upsamples the
            raw ReLU map.

    Returns:
        A :class:`GradCAMResult` (float32): face a explained against b, and b against a.

    Raises:
        ExplainError: a black-box recognizer, chips of the wrong size, a layer that is not a
            (N, C, h, w) map or runs more than once per forward, an output that is not (N, D).
    """
    module, layer, pre = recognizer.module, recognizer.layer, recognizer.preprocess
    if module is None or layer is None:
        raise ExplainError(f"{recognizer.name} is black-box (no torch module and layer): "
                           "explain it with occlusion or RISE")
    target = find_layer(module, layer)
    device = recognizer.device
    xa, xb = _inputs(chips_a, pre, device), _inputs(chips_b, pre, device)  # (B, 3, S, S), (B', 3, S, S)
    if xb.shape[0] not in (1, xa.shape[0]):
        raise ExplainError(f"face b batch ({xb.shape[0]}) must be 1 or match face a ({xa.shape[0]})")
    x = torch.cat([xa, xb.expand(xa.shape[0], -1, -1, -1)])  # (2B, 3, S, S)
    caught: list[torch.Tensor] = []

    def catch(_m: nn.Module, _inp: Any, out: Any) -> torch.Tensor:
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            raise ExplainError(f"layer {layer!r} does not output a (N, C, h, w) map; name a convolutional layer")
        leaf = out.detach().requires_grad_(True)  # (2B, C, h, w) X, the gradient's target
        caught.append(leaf)
        return leaf.clone()  # downstream (even in-place ops) works on a copy; X stays intact

    handle = target.register_forward_hook(catch)
    try:
        with _frozen(module), torch.enable_grad():
            emb = module(x)  # (2B, D)
            if not isinstance(emb, torch.Tensor) or emb.dim() != 2:
                raise ExplainError(f"{recognizer.name}: the module must return embeddings (N, D)")
            if not caught:
                raise ExplainError(f"layer {layer!r} did not run in the forward; name a layer on the embedding path")
            if len(caught) > 1:
                raise ExplainError(f"layer {layer!r} ran {len(caught)} times in one forward (a shared module); "
                                   "name a layer that runs once")
            ea, eb = emb.chunk(2)  # (B, D) each
            sim = cosine(ea, eb)  # (B,)
            grad = None
            if sim.requires_grad:
                (grad,) = torch.autograd.grad(sim.sum(), caught[0], allow_unused=True)  # (2B, C, h, w)
            if grad is None:
                raise ExplainError(f"the embedding does not depend on layer {layer!r}; name one on its path")
    finally:
        handle.remove()
    feats = caught[0].detach()  # (2B, C, h, w)
    weights = grad.mean(dim=(2, 3))  # (2B, C) spatial mean of the gradient
    cam = torch.relu(torch.einsum("bc,bchw->bhw", weights, feats))  # (2B, h, w)
    scaled = minmax(cam) if normalise else cam  # (2B, h, w)
    up = upsample(scaled[:, None], tuple(x.shape[-2:]))[:, 0]  # (2B, S, S)
    if normalise:
        up = minmax(up)  # (2B, S, S)
    ca, cb = cam.chunk(2)  # (B, h, w) each
    ua, ub = up.chunk(2)  # (B, S, S) each
    return GradCAMResult(to_numpy(sim.detach()), to_numpy(ca), to_numpy(cb), to_numpy(ua), to_numpy(ub))
