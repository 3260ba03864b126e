"""CorrRISE: random masks correlated with the similarity score (Lu, Xu & Ebrahimi, WACV 2024).

Y. Lu, Z. Xu, T. Ebrahimi, "Towards Visual Saliency Explanations of Face Verification", WACV 2024
(arXiv 2305.08546).

Like RISE (:func:`cqa_core.explain.blackbox.rise`), face a is seen through M random soft masks
(the same sampler, seeded) while its partner b is held fixed, and each masked face gives a score
s_m = cos(e(a * M_m + grey * (1 - M_m)), e_b). Instead of a score-weighted mean mask, each pixel
u gets the Pearson correlation, over the masks, between how much of it was kept and the score:

    map(u) = corr_m(M_m(u), s_m)        in [-1, 1]

Positive where keeping the pixel goes with a higher similarity (a similar region), negative where
keeping it goes with a lower one (a dissimilar region), ~0 where it does not matter (the noise
of a correlation over M masks is about 1 / sqrt(M)). Only ``Recognizer.embed`` (or the module's
fast path of :func:`~cqa_core.explain.blackbox.embed_pixels`) is used, so every recognizer,
black-box ones too, can be explained. Cost per face: ``masks`` embeddings.
"""

from __future__ import annotations

import numpy as np
import torch

from cqa_core.explain.blackbox import (
    Progress,
    _Counter,
    _pair_inputs,
    _rise_draws,
    _rise_upsample,
    similarity_forward,
)
from cqa_core.explain.common import ExplainError
from cqa_core.recognizers.base import Recognizer


def pearson_maps(sums: dict[str, torch.Tensor], n: int) -> torch.Tensor:
    """Per-pixel Pearson correlation from running sums over n masks; 0 where either side is constant.

    ``sums``: "s" (B,) sum of scores, "ss" (B,) of squared scores, "m" (S, S) of mask values,
    "mm" (S, S) of squared mask values, "sm" (B, S, S) of score x mask value. float64.
    """
    cov = n * sums["sm"] - sums["s"].view(-1, 1, 1) * sums["m"]  # (B, S, S) n^2 cov
    var_m = (n * sums["mm"] - sums["m"] ** 2).clamp_min(0.0)  # (S, S) n^2 var of the mask
    var_s = (n * sums["ss"] - sums["s"] ** 2).clamp_min(0.0)  # (B,) n^2 var of the score
    den = torch.sqrt(var_m[None] * var_s.view(-1, 1, 1))  # (B, S, S)
    tiny = 1e-12 * max(float(den.max()), 1e-300)
    return torch.where(den > tiny, cov / den.clamp_min(1e-300), torch.zeros_like(cov)).clamp(-1.0, 1.0)


def corr_rise(recognizer: Recognizer, chips_a: np.ndarray, chips_b: np.ndarray, masks: int = 500, cells: int = 7,
              p: float = 0.5, seed: int = 0, baseline: float = 127.5, batch: int = 64,
              progress: Progress | None = None) -> np.ndarray:
    """CorrRISE maps of the pair similarity (module docstring), any recognizer; RISE's masks.

    Args:
        recognizer: any Recognizer.
        chips_a: (B, S, S, 3) uint8 faces to explain.
        chips_b: (B or 1, S, S, 3) uint8 partners.
        masks: the budget: random masks per face (the correlation's noise is ~1 / sqrt(masks)).
        cells: grid cells per side of a mask.
        p: probability that a cell is kept.
        seed: seed of the masks (same seed, same maps; the masks are those of ``blackbox.rise``).
        baseline: grey value (0-255) of the removed pixels.
        batch: masked images per forward.
        progress: ``progress(done, total)`` after every batch, in embeddings; None = silent.

    Returns:
        (B, S, S) float32 Pearson correlations in [-1, 1]: > 0 similar regions, < 0 dissimilar.
    """
    if masks < 2:
        raise ExplainError(f"CorrRISE needs at least 2 masks to correlate, got {masks}")
    if batch < 1:
        raise ExplainError(f"CorrRISE batch must be at least 1, got {batch}")
    x, refs = _pair_inputs(recognizer, chips_a, chips_b)  # (B, 3, S, S), (B, D)
    size = x.shape[-1]
    grids, shifts = _rise_draws(masks, cells, p, seed, size)  # (M, 1, c, c), (M, 2): drawn up front
    forwards = [similarity_forward(recognizer, r) for r in refs]
    f64 = {"dtype": torch.float64}
    sums = {"s": torch.zeros(len(x), **f64), "ss": torch.zeros(len(x), **f64), "m": torch.zeros(size, size, **f64),
            "mm": torch.zeros(size, size, **f64), "sm": torch.zeros(len(x), size, size, **f64)}
    centre = torch.zeros(len(x), **f64)  # (B,) each face's first-batch mean score: sums of s - centre
    counter = _Counter(progress, len(x) * masks)  # (Pearson is shift-free; centring keeps the float64 sums exact)
    for k in range(0, masks, batch):
        m = _rise_upsample(grids[k:k + batch], shifts[k:k + batch], size)  # (n, 1, S, S)
        md = m[:, 0].double()  # (n, S, S)
        sums["m"] += md.sum(0)
        sums["mm"] += (md * md).sum(0)
        for i, forward in enumerate(forwards):
            s = forward(x[i:i + 1] * m + baseline * (1 - m)).double()  # (n,)
            if k == 0:
                centre[i] = s.mean()
            s = s - centre[i]  # (n,)
            sums["s"][i] += s.sum()
            sums["ss"][i] += (s * s).sum()
            sums["sm"][i] += (s.view(-1, 1, 1) * md).sum(0)  # (S, S)
            counter.step(len(m))
    return pearson_maps(sums, masks).numpy().astype(np.float32)  # (B, S, S)
