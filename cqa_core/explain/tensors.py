"""Tensor helpers every explainer shares: input batches, upsampling, scaling, the similarity, modes.

Every explainer takes model input as a float tensor (B, 3, 112, 112) in [-1, 1] (see
``cqa_core.preprocess``) or uint8 HxWx3 RGB arrays, runs on the model's device and returns
numpy arrays. Nothing here registers a hook.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cqa_core.explain.common import ExplainError
from cqa_core.preprocess import INPUT_SIZE, normalize


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free module)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def as_batch(images: torch.Tensor | np.ndarray | Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Model input from any of: float tensor (B|-, 3, H, W), uint8 HxWx3 array, list of arrays.

    Args:
        images: a normalised float tensor, or uint8 RGB array(s) of shape (H, W, 3) / (B, H, W, 3).
        device: where the batch goes.

    Returns:
        Float tensor (B, 3, H, W) in [-1, 1] on ``device``.

    Raises:
        ExplainError: for anything else (wrong rank, dtype, channel count, empty list).
    """
    if isinstance(images, torch.Tensor):
        x = images if images.dim() == 4 else images.unsqueeze(0)  # (B, 3, H, W)
        if x.dim() != 4 or x.shape[1] != 3:
            raise ExplainError(f"expected a (B, 3, H, W) tensor, got shape {tuple(images.shape)}")
        if not x.is_floating_point():
            x = normalize(x)  # (B, 3, H, W) uint8 -> [-1, 1]
        return x.to(device)
    if isinstance(images, (list, tuple)):
        if not images:
            raise ExplainError("no images given")
        images = np.stack([np.asarray(a) for a in images])  # (B, H, W, 3)
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[None]  # (1, H, W, 3)
    if a.ndim != 4 or a.shape[3] != 3 or a.dtype != np.uint8:
        raise ExplainError(f"expected HxWx3 uint8 RGB image(s), got shape {a.shape} dtype {a.dtype}")
    t = torch.from_numpy(np.array(a, copy=True)).permute(0, 3, 1, 2)  # (B, 3, H, W) uint8
    return normalize(t.to(device))  # (B, 3, H, W) float


def upsample(maps: torch.Tensor, size: int | tuple[int, int] = INPUT_SIZE) -> torch.Tensor:
    """Bilinear (half-pixel centres, like cv2.resize) upsampling of (B, k, h, w) maps to ``size``."""
    size = (size, size) if isinstance(size, int) else size
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)  # (B, k, H, W)


def minmax(maps: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Scale each (…, H, W) map to [0, 1] the way pytorch-grad-cam does: (m - min) / (max + eps)."""
    flat = maps.flatten(-2)  # (..., H*W)
    flat = flat - flat.min(dim=-1, keepdim=True).values  # (..., H*W)
    flat = flat / (flat.max(dim=-1, keepdim=True).values + eps)  # (..., H*W)
    return flat.view_as(maps)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of embeddings (B, D), (B|1, D) -> (B,)."""
    return F.cosine_similarity(a, b.expand_as(a), dim=-1, eps=1e-12)  # (B,)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """Detached float32 CPU copy of a tensor."""
    return t.detach().float().cpu().numpy()


@contextmanager
def keep_param_grads(model: nn.Module) -> Iterator[None]:
    """Restore every parameter's ``.grad`` and the train / eval mode afterwards.

    pytorch-grad-cam calls ``backward`` (filling parameter gradients) and ``model.eval()``.
    """
    params = list(model.parameters())
    saved = [p.grad for p in params]
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for p, g in zip(params, saved, strict=True):
            p.grad = g
        for m, training in modes:
            m.training = training


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run in eval mode (BN running statistics, no dropout), restoring every submodule's own mode after
    (a wrapper around a model, such as a recognizer's ``module``, must not hand its mode down to it)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


F_ = TypeVar("F_", bound=Callable)


def in_eval_mode(fn: F_) -> F_:
    """Decorator: run ``fn(model, ...)`` with the model in eval mode, then restore its mode.

    Explanations describe the deployed model (BN running statistics, no dropout) and must not
    update BN statistics as a side effect.
    """

    @functools.wraps(fn)
    def wrapper(model: nn.Module, *args, **kwargs):
        with eval_mode(model):
            return fn(model, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
