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
