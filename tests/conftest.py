"""Shared fixtures: real data roots (skipped with a reason when absent), tiny models and folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from cqa_core.settings import LFW_DIR, Settings


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ../shared/data; skips the test when it is absent."""
    root = Settings.from_env().data_root  # the test session is an entry point: it reads the environment once
    if not root.is_dir():
        pytest.skip(f"shared face data not found at {root} (set CQA_DATA)")
    return root


@pytest.fixture(scope="session")
def lfw_root(shared_data: Path) -> Path:
    """The raw LFW deep-funneled folder (Name/Name_NNNN.jpg + pairs.txt)."""
    root = shared_data / LFW_DIR
    if not (root / "pairs.txt").exists():
        pytest.skip(f"LFW not found at {root}")
    return root


@pytest.fixture(scope="module")
def calibrated_model():
    """Light CQA-Face, b = 4, seed 0, eval mode, with non-trivial BatchNorm running statistics."""
    import torch

    from cqa_core.config import ModelConfig
    from cqa_core.explain.toy import calibrate
    from cqa_core.model import create_model

    torch.manual_seed(0)
    return calibrate(create_model(ModelConfig(stem="light", branches=4)))


def make_face_folder(root: Path, classes: int = 4, per_class: int = 6, size: int = 112, seed: int = 0) -> Path:
    """A tiny synthetic identity folder ``root/idNN/NNN.png`` of size x size RGB images whose
    colour pattern depends on the class (learnable in a few steps). Returns ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for c in range(classes):
        d = root / f"id{c:02d}"
        d.mkdir(parents=True, exist_ok=True)
        base = np.stack([(xx * (c + 1) * 7) % 256, (yy * (c + 2) * 5) % 256, ((xx + yy) * (c + 3)) % 256], -1)
        for i in range(per_class):
            noise = rng.integers(-20, 20, size=(size, size, 3))
            img = np.clip(base + noise, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


@pytest.fixture
def face_folder(tmp_path: Path) -> Path:
    """Synthetic 112x112 identity folder: 4 classes x 6 images (see ``make_face_folder``)."""
    return make_face_folder(tmp_path / "faces")
