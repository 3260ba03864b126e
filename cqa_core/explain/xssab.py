"""xSSAB: similarity score argument backpropagation (Huber, Luu, Terhörst & Damer, WACV 2024).

M. Huber, A. T. Luu, P. Terhörst, N. Damer, "Efficient Explainable Face Verification based on
Similarity Score Argument Backpropagation", WACV 2024 (arXiv 2304.13409).

The cosine of two normalised embeddings is a sum of arguments, one per dimension:

    cos(e_a, e_b) = sum_d n_a,d n_b,d,          n = e / |e|,

and each argument either supports the match (n_a,d n_b,d above a bound) or opposes it. With the
partner's embedding n_b held fixed, the two partial sums

    S+(x) = sum_{d in P} n(x)_d n_b,d,   S-(x) = sum_{d not in P} n(x)_d n_b,d,   P = {d : n_a,d n_b,d >= bound}

are differentiated back to face a's pixels (or to a named spatial layer). Where |d S+ / dx| is large
the pixel drives the supporting arguments, where |d S- / dx| is large it drives the opposing ones.
As in the paper each map is the channel mean of the gradient's magnitude, and the combined map is
their difference:

    positive = mean_c |d S+ / dx_c|     negative = mean_c |d S- / dx_c|     maps = positive - negative

so ``maps`` > 0 where a region mainly supports the match and < 0 where it mainly opposes it.
The bound is the decision threshold spread over the D dimensions (threshold / D, the paper's
choice); the default threshold 0 splits the arguments by the sign of n_a,d n_b,d.
Cost: one forward and two backward passes of both faces.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from cqa_core.explain.common import ExplainError
from cqa_core.explain.tensors import eval_mode, upsample
from cqa_core.recognizers.base import Recognizer, find_layer


class XSSAB(NamedTuple):
    """xSSAB maps of both faces of a pair: row 0 face a against b, row 1 face b against a."""

    maps: np.ndarray  # (2, S, S) float32 positive - negative: > 0 supports the match, < 0 opposes it
    positive: np.ndarray  # (2, S, S) float32 >= 0: mean_c |d S+ / dx|
    negative: np.ndarray  # (2, S, S) float32 >= 0: mean_c |d S- / dx|
    arguments: np.ndarray  # (2, 2) float64 [S+, S-] of each row; S+ + S- = cosine
    cosine: float  # cos(e_a, e_b)
    bound: float  # threshold / D: an argument n_a,d n_b,d at or above it supports the match


def _embed(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = module(x)
    e = out if isinstance(out, torch.Tensor) else getattr(out, "embedding", None)
    if not isinstance(e, torch.Tensor) or e.dim() != 2:
        raise ExplainError("xSSAB needs a module returning embeddings (N, D)")
    return e  # (N, D)


def xssab(module: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, threshold: float = 0.0,
          layer: str | None = None) -> XSSAB:
    """xSSAB maps of face a against b and b against a (module docstring).

    Args:
        module: returns embeddings (N, D) (or a record with ``embedding``), differentiable.
        x_a: face a as model input (1, ...) (any input shape the module takes).
        x_b: face b, the same shape.
        threshold: the verification threshold on the cosine; the bound is threshold / D.
        layer: None: gradients to the input (maps at input resolution); a dotted layer name:
            gradients to that (N, C, h, w) output, the maps upsampled bilinearly to the input's side.

    Returns:
        :class:`XSSAB`; the module's train/eval mode and its parameters' gradients are left as they were.

    Raises:
        ExplainError: not one face each, an output that is not (N, D), a layer that is not spatial.
    """
    x = torch.cat([x_a.reshape(-1, *x_a.shape[1:]), x_b.reshape(-1, *x_b.shape[1:])]).detach()  # (2, ...)
    if x.shape[0] != 2:
        raise ExplainError(f"xSSAB explains one pair: give one face a and one face b, got {x.shape[0]} faces")
    caught: list[torch.Tensor] = []
    handle = None
    if layer is not None:
        def catch(_m: nn.Module, _inp: Any, out: Any) -> torch.Tensor:
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                raise ExplainError(f"layer {layer!r} does not output a (N, C, h, w) map")
            leaf = out.detach().requires_grad_(True)  # (2, C, h, w) the gradients' target
            caught.append(leaf)
            return leaf.clone()
        handle = find_layer(module, layer).register_forward_hook(catch)
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)  # no parameter .grad is ever written
        with eval_mode(module), torch.enable_grad():
            target = x.clone().requires_grad_(True)  # (2, ...)
            n = nn.functional.normalize(_embed(module, target), dim=1)  # (2, D)
            wrt = caught[0] if caught else target
            partner = n.flip(0).detach()  # (2, D) the other face's n, held fixed
            args = n * partner  # (2, D) the arguments n_a,d n_b,d
            bound = threshold / n.shape[1]
            support = (args.detach() >= bound).to(args.dtype)  # (2, D) 1: supports the match
            s_pos, s_neg = (args * support).sum(1), (args * (1 - support)).sum(1)  # (2,), (2,)
            (g_pos,) = torch.autograd.grad(s_pos.sum(), wrt, retain_graph=True, allow_unused=True)
            (g_neg,) = torch.autograd.grad(s_neg.sum(), wrt, allow_unused=True)
    finally:
        if handle is not None:
            handle.remove()
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
    if g_pos is None or g_neg is None:
        raise ExplainError(f"the embedding does not depend on {'layer ' + repr(layer) if layer else 'the input'}")
    pos, neg = _magnitude(g_pos, x), _magnitude(g_neg, x)  # (2, S, S) each
    cos = float(args.detach().sum(1)[0])
    arguments = torch.stack([s_pos, s_neg], dim=1).detach().double().cpu().numpy()  # (2, 2)
    return XSSAB((pos - neg).numpy(), pos.numpy(), neg.numpy(), arguments, cos, bound)


def _magnitude(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """mean_c |grad| (2, h, w), upsampled to the input's (H, W) when the gradient is a layer's."""
    m = grad.detach().abs().mean(dim=1).float()  # (2, h, w)
    if tuple(m.shape[-2:]) != tuple(x.shape[-2:]):
        m = upsample(m[:, None], tuple(x.shape[-2:]))[:, 0]  # (2, H, W)
    return m.cpu()


def xssab_chips(recognizer: Recognizer, chips: np.ndarray, threshold: float = 0.0,
                at_layer: bool = False) -> XSSAB:
    """:func:`xssab` of a white-box recognizer on its uint8 chips (2, S, S, 3) [a, b].

    ``maps`` is the registry's ``PairMaps`` (2, S, S): signed, > 0 supports the match.
    ``at_layer`` takes the gradients at ``recognizer.layer`` instead of the pixels.
    """
    if recognizer.module is None:
        raise ExplainError(f"{recognizer.name} is black-box: xSSAB needs gradients through its torch module")
    chips = np.asarray(chips)
    if chips.ndim != 4 or len(chips) != 2:
        raise ExplainError(f"xSSAB takes chips (2, S, S, 3) [a, b], got {chips.shape}")
    x = recognizer.preprocess.to_tensor(chips, recognizer.device)  # (2, 3, S, S)
    return xssab(recognizer.module, x[:1], x[1:], threshold, recognizer.layer if at_layer else None)
