"""Deletion / insertion curves: does a map point at the pixels the similarity depends on?

For a saliency map s (H, W) of face a, pixels are ranked by s (highest first). At step k of n,
the top k/n of the pixels are

* deleted:  x_k = x * (1 - m_k) + baseline * m_k     (the score should fall fast: low AUC is good)
* inserted: x_k = baseline * (1 - m_k) + x * m_k     (the score should rise fast: high AUC is good)

and the score is the pair similarity cos(e(x_k), e_b). AUC is the trapezoid area over the
fraction axis [0, 1]. All n + 1 images of a curve go through the model in batches. The same
``score_fn`` and baseline are used for every method, so methods are compared on equal terms.

Ties. Maps often hold many equal values (Grad-CAM: every pixel where the ReLU cut the map to 0;
occlusion: whole stride blocks; a flat map: all of them). A stable sort would delete tied pixels
in raster order, top rows first, which is itself an ordering with a score of its own (on LFW the
top rows are hair and background). Ties are therefore broken at random and the curve is the mean
over ``draws`` draws; a map without ties is drawn once (its order is fixed). A flat map thus
scores like a random map, which is what "no information" must score.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from cqa_core.explain.blackbox import embed_pixels, pixels, similarity_forward
from cqa_core.explain.common import ExplainError
from cqa_core.explain.tensors import as_batch, cosine, eval_mode, model_device
from cqa_core.recognizers.base import Recognizer

ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # (N, 3, H, W) -> (N,)


class Curves(NamedTuple):
    """Deletion and insertion curves of one map."""

    fractions: np.ndarray  # (n+1,) fraction of pixels removed / inserted
    deletion: np.ndarray  # (n+1,) score after deleting the top fraction
    insertion: np.ndarray  # (n+1,) score after inserting the top fraction
    deletion_auc: float  # lower is better
    insertion_auc: float  # higher is better
    draws: int = 1  # random tie-breaking orders averaged (1 when the map has no ties)


def similarity_score(model: torch.nn.Module, other) -> ScoreFn:
    """score(x) = cos(e(x), e(other)): the pair similarity as a function of face a's pixels.

    Every call runs the model in eval mode (BN running statistics, no dropout; the previous mode
    is restored), so a model left in training mode is scored as deployed and keeps its statistics.
    """
    device = model_device(model)
    with torch.no_grad(), eval_mode(model):
        ref = model(as_batch(other, device)).embedding[:1]  # (1, 512)

    def score(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), eval_mode(model):
            return cosine(model(x.to(device)).embedding, ref)  # (N,)

    return score


def gaussian_blur(x: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """Separable Gaussian blur of (B, 3, H, W) images (reflect padding)."""
    r = max(1, int(3 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2 / (2 * sigma**2))  # (2r+1,)
    k = k / k.sum()
    ch = x.shape[1]
    xp = F.pad(x, (r, r, r, r), mode="reflect")  # (B, 3, H+2r, W+2r)
    xp = F.conv2d(xp, k.view(1, 1, 1, -1).expand(ch, 1, 1, -1), groups=ch)  # (B, 3, H+2r, W)
    return F.conv2d(xp, k.view(1, 1, -1, 1).expand(ch, 1, -1, 1), groups=ch)  # (B, 3, H, W)


def make_baseline(x: torch.Tensor, kind: str | float = "blur") -> torch.Tensor:
    """Baseline image for (1, 3, H, W) x: ``"blur"``, ``"mean"`` (per-channel mean) or a constant."""
    if isinstance(kind, (int, float)):
        return torch.full_like(x, float(kind))  # (1, 3, H, W)
    if kind == "blur":
        return gaussian_blur(x)  # (1, 3, H, W)
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()  # (1, 3, H, W)
    raise ExplainError(f"unknown baseline {kind!r}; use 'blur', 'mean' or a number")


def has_ties(saliency: torch.Tensor) -> bool:
    """True when two pixels of the map hold exactly the same value."""
    return torch.unique(saliency.flatten()).numel() < saliency.numel()


def _masks(saliency: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(H, W) saliency -> (steps+1, 1, H, W) masks; mask k holds the top round(k/steps * HW) pixels.

    Tied pixels are ordered by a random permutation drawn from ``generator`` (sorting the
    permuted map stably = a uniformly random order inside every group of equal values).
    """
    n = saliency.numel()
    perm = torch.randperm(n, generator=generator).to(saliency.device)  # (HW,) random tie order
    order = perm[torch.argsort(saliency.flatten()[perm], descending=True, stable=True)]  # (HW,) pixel ids, best first
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(n, device=order.device))  # (HW,) rank of each pixel
    counts = torch.round(torch.linspace(0, n, steps + 1, device=saliency.device))  # (steps+1,)
    masks = rank[None, :] < counts[:, None]  # (steps+1, HW)
    return masks.view(steps + 1, 1, *saliency.shape).float()  # (steps+1, 1, H, W)


def _scores(score_fn: ScoreFn, images: torch.Tensor, batch_size: int) -> np.ndarray:
    """Score (N, 3, H, W) images ``batch_size`` at a time -> (N,)."""
    out = [score_fn(images[i : i + batch_size]).detach().float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def curves(score_fn: ScoreFn, image: torch.Tensor, saliency, baseline: str | float = "blur", steps: int = 20,
           batch_size: int = 32, draws: int = 5, seed: int = 0) -> Curves:
    """Deletion and insertion curves of one saliency map, ties broken at random.

    Args:
        score_fn: batched scorer (N, 3, H, W) -> (N,), e.g. :func:`similarity_score`.
        image: face a as model input (1, 3, H, W) (or anything ``as_batch`` takes).
        saliency: (H, W) map, higher = more important.
        baseline: what deleted pixels become (see :func:`make_baseline`).
        steps: number of steps n (the curve has n + 1 points).
        batch_size: images per forward.
        draws: random tie-breaking orders averaged when the map has ties (one when it has none).
        seed: seed of the tie-breaking draws (same seed, same orders).

    Returns:
        :class:`Curves` (mean curves over the draws and their AUCs).
    """
    x = image if isinstance(image, torch.Tensor) and image.is_floating_point() else as_batch(image, torch.device("cpu"))
    x = x if x.dim() == 4 else x[None]  # (1, 3, H, W)
    s = torch.as_tensor(np.asarray(saliency), dtype=torch.float32, device=x.device)  # (H, W)
    if s.shape != x.shape[-2:]:
        raise ExplainError(f"saliency map {tuple(s.shape)} must match the image size {tuple(x.shape[-2:])}")
    if draws < 1:
        raise ExplainError(f"draws must be at least 1, got {draws}")
    base = make_baseline(x, baseline)  # (1, 3, H, W)
    draws = draws if has_ties(s) else 1
    g = torch.Generator().manual_seed(seed)
    d, i = np.zeros(steps + 1), np.zeros(steps + 1)
    for _ in range(draws):
        m = _masks(s, steps, g)  # (n+1, 1, H, W)
        d += _scores(score_fn, x * (1 - m) + base * m, batch_size) / draws  # (n+1,) deleted
        i += _scores(score_fn, base * (1 - m) + x * m, batch_size) / draws  # (n+1,) inserted
    frac = np.linspace(0.0, 1.0, steps + 1)
    return Curves(frac, d, i, float(np.trapezoid(d, frac)), float(np.trapezoid(i, frac)), draws)


def recognizer_score(rec: Recognizer, chip_b: np.ndarray) -> ScoreFn:
    """score(x) = cos(e(x), e(b)) of any recognizer, x float RGB pixels (N, 3, S, S) in 0-255.

    Black-box recognizers (dlib) see the pixels rounded to uint8 (``blackbox.embed_pixels``).
    """
    return similarity_forward(rec, embed_pixels(rec, pixels(np.asarray(chip_b)[None]))[0])


def compare_maps(model: torch.nn.Module | Recognizer, image_a, image_b, maps: dict[str, np.ndarray],
                 **kwargs) -> dict[str, Curves]:
    """Deletion / insertion curves of several maps of face a, all against cos(e_a', e_b).

    Args:
        model: a CQAFace, or any :class:`~cqa_core.recognizers.base.Recognizer` (white- or black-box).
        image_a: the face the maps explain: for a Recognizer its own uint8 chip (S, S, 3)
            (``recognizers.base.cut_chip``), for a CQAFace anything ``as_batch`` takes.
        image_b: its partner (kept fixed), the same kind.
        maps: method name -> (H, W) map.
        **kwargs: passed to :func:`curves` (baseline, steps, batch_size, draws, seed); a numeric
            baseline is in the model's input units (0-255 pixels for a Recognizer).
    """
    if isinstance(model, Recognizer):
        score, x = recognizer_score(model, image_b), pixels(np.asarray(image_a)[None])  # x (1, 3, S, S)
    else:
        score, x = similarity_score(model, image_b), as_batch(image_a, model_device(model))[:1]  # x (1, 3, H, W)
    return {name: curves(score, x, m, **kwargs) for name, m in maps.items()}
