"""Perturbation explanations that need only embeddings: they explain ANY :class:`Recognizer`.

    maps = occlusion(rec, chips_a, chips_b)            # (B, S, S): drop in similarity per pixel
    maps = rise(rec, chips_a, chips_b, masks=500)      # (B, S, S): RISE, seeded
    maps = feature_ablation(rec, chips_a, chips_b)     # (B, S, S): grid superpixels removed one by one

Chips are the recognizer's own uint8 RGB chips (B, S, S, 3) (``base.cut_chip``). Row i of
``chips_a`` is explained against row i of ``chips_b`` (one partner row is used for every face):
the score is the pair similarity cos(e(a'), e(b)) while face a is perturbed and b is held fixed.
To explain both faces of a pair, pass ``chips_a = [a, b]`` and ``chips_b = [b, a]``.

Every method runs its perturbed images through :func:`similarity_forward` in batches: a
recognizer's torch module directly when it has one (float pixels, no rounding), any other through
``recognizer.embed`` on uint8 chips (perturbed pixels rounded and clipped), so a black-box
recognizer (dlib) and a white-box one are explained by the same code. Cost is counted in
embeddings: ``progress(done, total)`` is called after every batch (None = silent).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cqa_core.explain.common import ExplainError
from cqa_core.explain.tensors import cosine
from cqa_core.recognizers.base import Recognizer, RecognizerError

Progress = Callable[[int, int], None]
Forward = Callable[[torch.Tensor], torch.Tensor]


def embed_pixels(recognizer: Recognizer, x: torch.Tensor) -> torch.Tensor:
    """Embeddings (n, D) float32 on the CPU of float RGB pixels (n, 3, S, S) in 0-255.

    A recognizer with a ``module`` runs it on ``preprocess.to_tensor`` of the pixels (no
    rounding, no gradient); any other gets uint8 chips (rounded, clipped) through ``embed``.
    """
    if recognizer.module is not None:
        with torch.no_grad():
            inp = recognizer.preprocess.to_tensor(x.detach().permute(0, 2, 3, 1), recognizer.device)  # (n, 3, S, S)
            return recognizer.module(inp).float().cpu()  # (n, D)
    chips = x.detach().round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # (n, S, S, 3)
    return torch.from_numpy(np.asarray(recognizer.embed(chips), np.float32))  # (n, D)


def similarity_forward(recognizer: Recognizer, reference: np.ndarray | torch.Tensor) -> Forward:
    """f(x) = cos(e(x), reference): float RGB pixels (n, 3, S, S) in 0-255 -> (n,) similarities.

    Embeddings by :func:`embed_pixels` (the module's fast path when there is one, else
    ``recognizer.embed`` on uint8 chips). This is the function captum's perturbation
    attributions call.

    Args:
        recognizer: any Recognizer.
        reference: (D,) embedding of the partner face (best made by :func:`embed_pixels` too).
    """
    ref = torch.as_tensor(reference).detach().float().cpu().reshape(1, -1)  # (1, D)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return cosine(embed_pixels(recognizer, x), ref)  # (n,)

    return forward


class _Counter:
    """Counts the images every forward evaluates and reports them to ``progress``."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def wrap(self, forward: Forward) -> Forward:
        def counted(x: torch.Tensor) -> torch.Tensor:
            out = forward(x)  # (n,)
            self.step(len(x))
            return out

        return counted

    def step(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total)


def pixels(chips: np.ndarray) -> torch.Tensor:
    """uint8 RGB chips (N, S, S, 3) -> float pixels (N, 3, S, S) in 0-255 (what the perturbations edit)."""
    return torch.from_numpy(np.array(chips, np.uint8, copy=True)).permute(0, 3, 1, 2).float()  # (N, 3, S, S)


def _pair_inputs(recognizer: Recognizer, chips_a: np.ndarray,
                 chips_b: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Face a as float pixels (B, 3, S, S) and the partners' embeddings (B, D) (:func:`embed_pixels`)."""
    s = recognizer.preprocess.size
    a, b = np.asarray(chips_a), np.asarray(chips_b)
    a = a[None] if a.ndim == 3 else a  # (B, S, S, 3)
    b = b[None] if b.ndim == 3 else b  # (B | 1, S, S, 3)
    for name, c in (("chips_a", a), ("chips_b", b)):
        if c.ndim != 4 or c.shape[1:] != (s, s, 3) or c.dtype != np.uint8:
            raise RecognizerError(f"{name}: {recognizer.name} takes uint8 ({s}, {s}, 3) chips, got {c.shape} {c.dtype}")
    if len(b) not in (1, len(a)):
        raise RecognizerError(f"chips_b has {len(b)} rows; give 1 or one per face of chips_a ({len(a)})")
    refs = embed_pixels(recognizer, pixels(b))  # (B | 1, D)
    refs = refs.expand(len(a), -1) if len(refs) == 1 else refs  # (B, D)
    return pixels(a), refs  # (B, 3, S, S), (B, D)


def window_and_stride(size: int, grid: int) -> tuple[int, int]:
    """Square window and stride so that ``grid`` x ``grid`` overlapping windows tile a size x size chip.

    stride = size // (grid + 1), window = size - (grid - 1) * stride: the last window ends on the
    chip's edge and neighbours overlap by window - stride >= stride (about half a window).
    150 px, grid 7: window 42, stride 18; 112 px, grid 7: window 28, stride 14.
    """
    if grid < 1 or size // (grid + 1) < 1:
        raise ExplainError(f"occlusion grid must be 1 to {size - 1} windows per side, got {grid}")
    stride = size // (grid + 1)
    return size - (grid - 1) * stride, stride


def occlusion(recognizer: Recognizer, chips_a: np.ndarray, chips_b: np.ndarray, grid: int = 7,
              baseline: float = 127.5, per_eval: int = 64, progress: Progress | None = None) -> np.ndarray:
    """Sliding-window occlusion (captum ``Occlusion``) of the pair similarity, any recognizer.

    ``grid`` x ``grid`` windows (:func:`window_and_stride`) are greyed to ``baseline`` one at a
    time; a pixel's value is the mean drop cos(a, b) - cos(a', b) over the windows covering it
    (captum's attribution, the same on the three channels, so the map is that drop itself). Cost per face:
    grid^2 + 1 embeddings (7 x 7: 50; both faces of a pair: 100).

    Args:
        recognizer: any Recognizer.
        chips_a: (B, S, S, 3) uint8 faces to explain.
        chips_b: (B or 1, S, S, 3) uint8 partners.
        grid: windows per side.
        baseline: grey value (0-255) of an occluded window. A black-box recognizer sees it rounded
            (127.5 -> 128); a white-box one sees it as is.
        per_eval: perturbed images per forward.
        progress: ``progress(done, total)`` after every forward, in embeddings; None = silent.

    Returns:
        (B, S, S) float32 maps: positive where hiding the pixel lowers the similarity.
    """
    from captum.attr import Occlusion  # optional: captum, the explain extra

    x, refs = _pair_inputs(recognizer, chips_a, chips_b)  # (B, 3, S, S), (B, D)
    window, stride = window_and_stride(x.shape[-1], grid)
    counter = _Counter(progress, len(x) * (grid * grid + 1))
    maps = []
    for i in range(len(x)):
        occ = Occlusion(counter.wrap(similarity_forward(recognizer, refs[i])))
        with torch.no_grad():
            attr = occ.attribute(x[i:i + 1], sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
                                 baselines=baseline, perturbations_per_eval=per_eval)  # (1, 3, S, S)
        maps.append(attr.mean(dim=1)[0])  # (S, S)
    return torch.stack(maps).numpy().astype(np.float32)  # (B, S, S)


def _rise_draws(n: int, cells: int, p: float, seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RISE's random numbers, all drawn up front (so batching never changes them): binary grids
    (n, 1, cells, cells) and crop offsets (n, 2)."""
    if cells < 1 or not 0.0 < p < 1.0 or n < 1:
        raise ExplainError(f"RISE needs masks >= 1, cells >= 1 and 0 < p < 1; got {n}, {cells}, {p}")
    g = torch.Generator().manual_seed(int(seed))
    grids = (torch.rand(n, 1, cells, cells, generator=g) < p).float()  # (n, 1, c, c) binary
    shifts = torch.randint(0, -(-size // cells), (n, 2), generator=g)  # (n, 2) dy, dx
    return grids, shifts


def _rise_upsample(grids: torch.Tensor, shifts: torch.Tensor, size: int) -> torch.Tensor:
    """Binary grids (n, 1, c, c) -> soft masks (n, 1, size, size): bilinear up, shifted crop."""
    cells = grids.shape[-1]
    cell = -(-size // cells)  # ceil(size / cells)
    up = torch.nn.functional.interpolate(grids, size=((cells + 1) * cell,) * 2, mode="bilinear",
                                         align_corners=False)  # (n, 1, (c+1)*cell, (c+1)*cell)
    return torch.stack([up[k, :, dy:dy + size, dx:dx + size] for k, (dy, dx) in enumerate(shifts.tolist())])


def rise_masks(n: int, size: int, cells: int = 7, p: float = 0.5, seed: int = 0) -> torch.Tensor:
    """RISE's random masks (n, 1, size, size) in [0, 1], built by hand (captum has no RISE).

    Petsiuk et al. 2018, Sec. 3.2: a binary cells x cells grid, each cell kept with probability
    ``p``, upsampled bilinearly to (cells + 1) * ceil(size / cells) pixels and cropped to size x
    size at a random offset in [0, ceil(size / cells)) on each axis. Seeded (torch.Generator): the
    same seed gives the same masks.
    """
    return _rise_upsample(*_rise_draws(n, cells, p, seed, size), size)  # (n, 1, S, S)


def rise(recognizer: Recognizer, chips_a: np.ndarray, chips_b: np.ndarray, masks: int = 500, cells: int = 7,
         p: float = 0.5, seed: int = 0, baseline: float = 127.5, batch: int = 64,
         progress: Progress | None = None) -> np.ndarray:
    """RISE (Petsiuk et al. 2018) of the pair similarity, any recognizer; masks sampled by hand.

    Each of ``masks`` random masks M_m (:func:`rise_masks`; the same masks for every face) gives
    the image x * M_m + baseline * (1 - M_m) and its score s_m = cos(e(.), e_b). The map is the
    score-weighted mean mask, normalised by the mask sum and centred on the mean score:

        saliency(u) = sum_m s_m M_m(u) / sum_m M_m(u)  -  mean_m s_m

    i.e. the expected similarity when pixel u is kept, minus the average: ~0 where the pixels do
    not matter. The paper divides by masks * p instead of the mask sum and does not centre; both
    estimate the same quantity up to the constant mean score, this one with less noise.
    Cost per face: ``masks`` embeddings. Masks are made ``batch`` at a time (memory stays small).

    Args:
        recognizer: any Recognizer.
        chips_a: (B, S, S, 3) uint8 faces to explain.
        chips_b: (B or 1, S, S, 3) uint8 partners.
        masks: the budget: random masks per face.
        cells: grid cells per side of a mask.
        p: probability that a cell is kept.
        seed: seed of the masks (same seed, same maps).
        baseline: grey value (0-255) of the removed pixels.
        batch: masked images per forward.
        progress: ``progress(done, total)`` after every batch, in embeddings; None = silent.

    Returns:
        (B, S, S) float32 maps.
    """
    x, refs = _pair_inputs(recognizer, chips_a, chips_b)  # (B, 3, S, S), (B, D)
    size = x.shape[-1]
    if batch < 1:
        raise ExplainError(f"RISE batch must be at least 1, got {batch}")
    grids, shifts = _rise_draws(masks, cells, p, seed, size)  # (M, 1, c, c), (M, 2)
    forwards = [similarity_forward(recognizer, r) for r in refs]
    num = torch.zeros(len(x), size, size, dtype=torch.float64)  # (B, S, S) sum of s_m M_m
    den = torch.zeros(size, size, dtype=torch.float64)  # (S, S) sum of M_m
    total = torch.zeros(len(x), dtype=torch.float64)  # (B,) sum of s_m
    counter = _Counter(progress, len(x) * masks)
    for k in range(0, masks, batch):
        m = _rise_upsample(grids[k:k + batch], shifts[k:k + batch], size)  # (n, 1, S, S)
        den += m.sum(dim=0)[0].double()
        for i, forward in enumerate(forwards):
            s = forward(x[i:i + 1] * m + baseline * (1 - m)).double()  # (n,)
            num[i] += (s.view(-1, 1, 1) * m[:, 0].double()).sum(dim=0)  # (S, S)
            total[i] += s.sum()
            counter.step(len(m))
    maps = num / den.clamp_min(1e-6) - (total / masks).view(-1, 1, 1)  # (B, S, S)
    return maps.numpy().astype(np.float32)  # (B, S, S)


def grid_mask(size: int, grid: int) -> torch.Tensor:
    """(1, 1, size, size) long superpixel ids: a grid x grid arrangement of equal blocks, row-major."""
    if grid < 1 or grid > size:
        raise ExplainError(f"feature ablation grid must be 1 to {size} blocks per side, got {grid}")
    idx = torch.arange(size) * grid // size  # (S,) block of each row / column
    return (idx[:, None] * grid + idx[None, :]).view(1, 1, size, size)  # (1, 1, S, S)


def feature_ablation(recognizer: Recognizer, chips_a: np.ndarray, chips_b: np.ndarray, grid: int = 8,
                     baseline: float = 127.5, per_eval: int = 64, progress: Progress | None = None) -> np.ndarray:
    """captum ``FeatureAblation`` on grid superpixels: the similarity drop when one block is greyed.

    Non-overlapping blocks (:func:`grid_mask`), so the map is piecewise constant. Cost per face:
    grid^2 + 1 embeddings. Arguments as :func:`occlusion`.

    Returns:
        (B, S, S) float32 maps.
    """
    from captum.attr import FeatureAblation  # optional: captum, the explain extra

    x, refs = _pair_inputs(recognizer, chips_a, chips_b)  # (B, 3, S, S), (B, D)
    mask = grid_mask(x.shape[-1], grid)  # (1, 1, S, S)
    counter = _Counter(progress, len(x) * (grid * grid + 1))
    maps = []
    for i in range(len(x)):
        fa = FeatureAblation(counter.wrap(similarity_forward(recognizer, refs[i])))
        with torch.no_grad():
            attr = fa.attribute(x[i:i + 1], baselines=baseline, feature_mask=mask,
                                perturbations_per_eval=per_eval)  # (1, 3, S, S)
        maps.append(attr.mean(dim=1)[0])  # (S, S)
    return torch.stack(maps).numpy().astype(np.float32)  # (B, S, S)
