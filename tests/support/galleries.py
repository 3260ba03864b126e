"""Synthetic galleries for dashboard tests: noise 'people' in person folders (no face is found in them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def noise_gallery(root: Path, people: int, side: int = 250, seed: int = 0) -> Path:
    """``root`` filled with ``people`` folders ``Person_i`` holding one ``side`` x ``side`` noise photo each."""
    rng = np.random.default_rng(seed)
    for i in range(people):
        d = root / f"Person_{i}"
        d.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(d / f"Person_{i}_0001.jpg")
    return root


def framed_noise_gallery(root: Path, people: int = 4, side: int = 160) -> Path:
    """Noise 'people' ``P_i`` marked LFW-framed (``.cqa-framing``): the centre crop, no MTCNN wait."""
    rng = np.random.default_rng(0)
    for i in range(people):
        (root / f"P_{i}").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(root / f"P_{i}" / "P_0001.jpg")
    (root / ".cqa-framing").write_text("lfw\n")
    return root
