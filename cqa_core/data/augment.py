"""Training-time degradations with a visibility map: masks, occluders, blur, low resolution.

Our addition to the paper's recipe (it trains on clean faces): :class:`Augmenter` turns one
aligned face into a degraded view and a *visibility map* V (112 x 112 float32 in [0, 1]) that
says how much of the face's information survives at each pixel:

* mask (MaskTheFace template, ``degrade.apply_mask``): V *= 1 - alpha;
* occluder (a rectangle or a hand-like blob: palm ellipse + four finger ellipses, filled with a
  re-coloured patch of the same photo, so it has natural skin / hair / background texture):
  V *= 1 - coverage;
* blur with sigma s, or down-scaling by f (treated as s = f / 2): V *= 1 / (1 + (s / 2.5)^2), a
  smooth fall-off (s = 1: 0.86, s = 2.5: 0.5, s = 5: 0.2) that leaves mild blur nearly intact;
* geometric jitter, colour jitter and grayscale change nothing in V (identity information
  survives them; they fight over-fitting on 6k faces).

Randomness comes only from the ``rng`` passed in: :class:`AugmentedFaces` draws it from a key
that the training sampler derives from (seed, epoch, index), so a run is the same for any
number of workers and resumes exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cqa_core.config import UNLABELLED, AugmentConfig
from cqa_core.data import degrade

SIZE = 112


def blur_visibility(sigma: float) -> float:
    """Visibility left by a Gaussian blur of ``sigma`` px on a 112 x 112 face."""
    return 1.0 / (1.0 + (sigma / 2.5) ** 2)


def _jitter(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    import cv2  # optional: OpenCV, the data extra

    angle = rng.uniform(-cfg.jitter_degrees, cfg.jitter_degrees)
    scale = 1.0 + rng.uniform(-cfg.jitter_scale, cfg.jitter_scale)
    m = cv2.getRotationMatrix2D((SIZE / 2 - 0.5, SIZE / 2 - 0.5), angle, scale)  # (2, 3)
    m[:, 2] += rng.uniform(-cfg.jitter_shift, cfg.jitter_shift, 2)
    return cv2.warpAffine(img, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def _color(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    s = cfg.color_strength
    x = img.astype(np.float32)  # (112, 112, 3)
    x = x * rng.uniform(1 - s, 1 + s)  # brightness
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - s, 1 + s) + mean  # contrast
    gray = x.mean(axis=2, keepdims=True)  # (112, 112, 1)
    x = (x - gray) * rng.uniform(1 - s, 1 + s) + gray  # saturation
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def occluder_shape(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A random occluder's coverage (size, size) float32 in {0, 1}: a rectangle or a hand-like blob."""
    import cv2  # optional: OpenCV, the data extra

    cover = np.zeros((size, size), np.uint8)
    if rng.random() < 0.5:  # rectangle, 20-50% of the side each way
        w, h = (rng.uniform(0.2, 0.5, 2) * size).astype(int)
        x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        cover[y0:y0 + h, x0:x0 + w] = 1
    else:  # hand: a palm ellipse and four fingers fanning out from it
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        r = rng.uniform(0.12, 0.2) * size
        base = rng.uniform(0, 2 * math.pi)
        cv2.ellipse(cover, (int(cx), int(cy)), (int(r), int(r * 0.8)), math.degrees(base), 0, 360, 1, -1)
        for k in range(4):
            a = base + (k - 1.5) * 0.35
            length, width = r * rng.uniform(1.2, 1.8), r * 0.22
            fx, fy = cx + math.cos(a) * (r + length / 2), cy + math.sin(a) * (r + length / 2)
            cv2.ellipse(cover, (int(fx), int(fy)), (int(length / 2), max(2, int(width))), math.degrees(a), 0, 360, 1, -1)
    return cover.astype(np.float32)


def _occlude(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    cover = occluder_shape(rng)  # (112, 112)
    dy, dx = rng.integers(20, SIZE - 20, 2)
    texture = np.roll(img, (int(dy), int(dx)), axis=(0, 1)).astype(np.float32)  # same photo, elsewhere
    texture = np.clip(texture * rng.uniform(0.6, 1.3, 3) + rng.uniform(-30, 30), 0, 255)  # re-coloured
    out = img * (1 - cover[:, :, None]) + texture * cover[:, :, None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), cover


class Augmenter:
    """Apply :class:`AugmentConfig`'s degradations to one (112, 112, 3) uint8 RGB face."""

    def __init__(self, config: AugmentConfig, mask_root: str | None = None) -> None:
        self.config, self.mask_root = config, mask_root

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """-> (degraded (112, 112, 3) uint8, visibility (112, 112) float32 in [0, 1])."""
        c = self.config
        vis = np.ones(img.shape[:2], np.float32)  # (112, 112)
        if rng.random() < c.p_jitter:
            img = _jitter(img, c, rng)
        if rng.random() < c.p_color:
            img = _color(img, c, rng)
        if rng.random() < c.p_gray:
            img = np.repeat(img.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
        if rng.random() < c.p_mask:
            img, alpha = degrade.apply_mask(img, "random", seed=int(rng.integers(1, 2**31)), mask_root=self.mask_root)
            vis *= 1.0 - alpha
        if rng.random() < c.p_occluder:
            img, cover = _occlude(img, rng)
            vis *= 1.0 - cover
        if rng.random() < c.p_blur:
            sigma = rng.uniform(*c.blur_sigma)
            img = degrade.blur(img, sigma)
            vis *= blur_visibility(sigma)
        if rng.random() < c.p_lowres:
            factor = rng.uniform(*c.lowres_factor)
            img = degrade.downscale(img, factor)
            vis *= blur_visibility(factor / 2)
        return np.ascontiguousarray(img), vis


class AugmentedFaces(torch.utils.data.Dataset):
    """Wraps a training set of ``(uint8 (3, 112, 112), label)`` items with degradations and extras.

    Indexed by ``(index, key)`` pairs (``GlobalBatchSampler(keyed=True)``); ``key`` seeds this
    item's augmentation. Items are ``(image, label, extras)`` where extras holds
    ``visibility`` (112, 112) uint8 (V x 255, compact through the loader) and, with ``targets``
    (an (N, D) tensor of teacher embeddings in dataset order, see ``training.distill``),
    ``target`` (D,) float32. ``mixes`` (uint8 (M, 3, 112, 112) images, (M, D) targets; see
    ``training.mixes``) are items ``len(base) ..``, with the label ``config.UNLABELLED``.
    """

    def __init__(self, base: torch.utils.data.Dataset, config: AugmentConfig,
                 targets: torch.Tensor | None = None, mask_root: str | None = None,
                 mixes: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        self.base, self.targets, self.mixes = base, targets, mixes
        self.augment = Augmenter(config, mask_root) if config.enabled else None
        for attr in ("classes", "num_classes", "samples"):
            if hasattr(base, attr):
                setattr(self, attr, getattr(base, attr))

    def __len__(self) -> int:
        return len(self.base) + (0 if self.mixes is None else len(self.mixes[0]))

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int, dict[str, torch.Tensor]]:
        index, key = item
        extras: dict[str, torch.Tensor] = {}
        if index >= len(self.base):  # a teacher-labelled mix: no identity

            images, targets = self.mixes
            img, label = images[index - len(self.base)], UNLABELLED  # (3, 112, 112) uint8
            extras["target"] = targets[index - len(self.base)]  # (D,)
        else:
            img, label = self.base[index]  # (3, 112, 112) uint8
            if self.targets is not None:
                extras["target"] = self.targets[index]  # (D,)
        if self.augment is not None:
            hwc, vis = self.augment(img.permute(1, 2, 0).numpy(), np.random.default_rng(key))
            img = torch.from_numpy(hwc).permute(2, 0, 1).contiguous()  # (3, 112, 112)
            extras["visibility"] = torch.from_numpy(np.round(vis * 255).astype(np.uint8))  # (112, 112)
        else:
            extras["visibility"] = torch.full(img.shape[1:], 255, dtype=torch.uint8)  # (112, 112)
        return img, label, extras
